# Training and development image. The project folder is mounted at /workspace, never copied:
#   make build_dev && make train GPU=0
# Build by hand:
#   docker build -f dev.Dockerfile -t bertclf-dev [--build-arg BASE_IMAGE=...] \
#     [--secret id=pip_cert,src=$PIP_CERT] .

# The official TensorFlow GPU image of the TensorFlow version pyproject.toml pins: CUDA and cuDNN
# come with it. Any Debian/Ubuntu image with python3 (and python3-venv) works too, CPU only.
ARG BASE_IMAGE=tensorflow/tensorflow:2.21.0-gpu
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    # The mounted sources win over anything installed: edit on the host, run in the container.
    PYTHONPATH=/workspace/src \
    PATH=/opt/venv/bin:$PATH

# A virtualenv, so the same steps work on the official image and on a plain Debian base (whose
# system Python refuses pip installs). --system-site-packages keeps the official image's GPU build
# of TensorFlow visible; pip then finds the pinned version already there and skips it.
RUN python3 -m venv --system-site-packages /opt/venv

# Only the dependency list is copied, so editing the code never invalidates this layer. The CA
# certificate of a TLS-intercepting proxy arrives as a BuildKit secret: used by this step only,
# never written to a layer.
# `make build_dev` passes the checksum of pyproject.toml; `make train` compares it with the
# project's and says when the image's dependencies are out of date.
ARG PYPROJECT_SUM=
LABEL bertclf.pyproject=${PYPROJECT_SUM}
COPY pyproject.toml /tmp/bertclf/pyproject.toml
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    python3 -c "import tomllib; p = tomllib.load(open('/tmp/bertclf/pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['train'] + p['optional-dependencies']['test']))" > /tmp/bertclf/requirements.txt \
    && pip install -r /tmp/bertclf/requirements.txt \
    && rm -rf /tmp/bertclf

# Files written in the container must belong to the host user. The entrypoint starts as root,
# takes the owner of the mounted /workspace (or HOST_UID/HOST_GID), and runs the command as that
# user with setpriv (util-linux, already in every Debian/Ubuntu image). Why not fixuid: it is a
# binary from GitHub releases (not reachable from every build machine, and one more thing to
# trust), and it needs a fixed user baked into the image; this works with plain `docker run` too.
COPY docker/dev-entrypoint.sh /usr/local/bin/dev-entrypoint
RUN chmod 0755 /usr/local/bin/dev-entrypoint && mkdir -p /workspace
WORKDIR /workspace
EXPOSE 6006
ENTRYPOINT ["/usr/local/bin/dev-entrypoint"]
CMD ["python", "-m", "bertclf", "--help"]
