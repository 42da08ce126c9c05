# The training image the Job runs: the dev image (TensorFlow, KerasHub and every pinned dependency)
# with the source baked in, so a pod needs no mounted checkout; a non-root user for the Job's
# securityContext.
#   make build_dev && docker build -f deploy/k8s/train.Dockerfile -t bertclf-train .
ARG DEV_IMAGE=bertclf-dev
FROM ${DEV_IMAGE}
COPY pyproject.toml README.md /workspace/
COPY src /workspace/src
RUN groupadd --system --gid 10001 bertclf \
    && useradd --system --uid 10001 --gid bertclf --home-dir /tmp --shell /usr/sbin/nologin bertclf
USER bertclf
ENTRYPOINT []
CMD ["python", "-m", "bertclf", "train", "--help"]
