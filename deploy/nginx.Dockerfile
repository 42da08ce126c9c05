# Stock nginx from Debian's package, for machines that cannot pull the official nginx image:
#   docker build -f deploy/nginx.Dockerfile -t local/nginx [--build-arg BASE_IMAGE=...] deploy
#   NGINX_IMAGE=local/nginx docker compose -f deploy/compose.yaml up -d
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 8080
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
