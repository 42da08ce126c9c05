# Serving image: CPU only, no TensorFlow (ONNX Runtime, and OpenVINO for bf16, on the model's serving graphs), non-root,
# gunicorn under tini, health-checked.
#   make build_api && make start_api api_port=5000
# The model is either copied in at build time (the default: the folder latest_model_config.json
# names, or MODEL_DIR=models/trained/<folder>), or mounted read-only at run time over /app/models:
#   docker run -p 5000:5000 -v "$PWD/models:/app/models:ro" bertclf-api
# Build by hand:
#   docker build -f api.Dockerfile -t bertclf-api [--build-arg BASE_IMAGE=...] \
#     [--build-arg MODEL_DIR=models/trained/<folder>] [--secret id=pip_cert,src=$PIP_CERT] .

ARG BASE_IMAGE=python:3.11-slim-bookworm

# === Build stage: the virtualenv with the pinned dependencies and the package ===
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md /src/
COPY src /src/src
# The proxy CA certificate (if any) is a BuildKit secret: visible to this step only, in no layer.
# The serving core exactly as pyproject.toml pins it: no `train` extra (TensorFlow, Keras, pandas...),
# no test extra; then drop the test suites and test data shipped inside packages (onnx's backend
# test data alone is 15 MB), OpenVINO's GPU and NPU plugins (51 MB; bf16 serving uses its CPU
# plugin only), and pip and setuptools (nothing installs at run time). Last, compile every module
# once: the server runs as a user who cannot write __pycache__, so without it each cold start
# compiled Flask, Werkzeug, Jinja2, gunicorn and OpenVINO from source again. unchecked-hash: the
# bytecode is used as is, whatever timestamps the COPY below gives the sources.
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    /opt/venv/bin/pip install /src \
    && find /opt/venv -depth -type d \( -name tests -o -name __pycache__ \) -path '*/site-packages/*' \
        -exec rm -rf {} + \
    && rm -rf /opt/venv/lib/python3*/site-packages/onnx/backend/test \
    && rm -f /opt/venv/lib/python3*/site-packages/openvino/libs/libopenvino_intel_[gn]pu_plugin.so \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && rm -rf /src \
    && /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/lib
# One model folder (MODEL_DIR, default: the one latest_model_config.json names) and a pointer to
# it, picked here so that the rest of models/ never reaches a layer of the final image.
ARG MODEL_DIR=
COPY models/ /tmp/models/
# From /tmp, MODEL_DIR=models/trained/<folder> names the folder as it does in the project.
WORKDIR /tmp
RUN /opt/venv/bin/python -m bertclf.serve.bundle /tmp/models /bundle "${MODEL_DIR}"

# === Run stage: the virtualenv, the model, a non-root user ===
FROM ${BASE_IMAGE}
# tini as PID 1 forwards SIGTERM to gunicorn, which stops taking requests and lets in-flight ones
# finish within graceful_timeout; it also reaps zombies.
RUN apt-get update && apt-get install -y --no-install-recommends tini \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 bertclf \
    && useradd --system --uid 10001 --gid bertclf --home-dir /app --shell /usr/sbin/nologin bertclf \
    && mkdir -p /app/feedback && chown bertclf:bertclf /app/feedback
COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# Owned by root, readable by all: the server cannot change its own model.
COPY --from=build --chown=root:root --chmod=a+rX,go-w /bundle /app/models

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    BERTCLF_MODELS_DIR=/app/models \
    # The models are read-only; POST /feedback writes here (make start_api mounts a named volume on it).
    BERTCLF_FEEDBACK_DB=/app/feedback/feedback.sqlite3 \
    # Inside a container the port is the boundary: listen on every interface.
    BERTCLF_HOST=0.0.0.0 \
    BERTCLF_PORT=5000
USER bertclf
EXPOSE 5000
# /ready, not /health: healthy means "can answer /predict now" (a model is loaded and no forward
# pass is stuck), not merely "the process is up".
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('BERTCLF_PORT', '5000'), timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--"]
# `bertclf serve` execs gunicorn, so gunicorn is tini's direct child and gets its signals.
CMD ["python", "-m", "bertclf", "serve"]
