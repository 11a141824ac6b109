# syntax=docker/dockerfile:1
#
# The entroq-redis service image: `entroq-redis serve` on 0.0.0.0:9100 (EntroQ REST API, /healthz,
# /readyz, /metrics) and EntroQ's native gRPC API on 0.0.0.0:37706 (the service's default port, the
# one EntroQ's Go client, eqc and eqlink dial). Build from the repository root:
#
#     docker build -t entroq-redis .
#
# Without arguments the container runs the embedded Valkey with its data in
# /var/lib/entroq-redis/data (mount a volume there). In production give an external store instead:
#
#     docker run -p 9100:9100 -p 37706:37706 entroq-redis --redis redis://valkey:6379/0
#
# A URL holding a password stays off the command line (every process's arguments are readable
# by every user of the host): mount it as a file and pass `--redis-file /run/secrets/redis-url`,
# or set ENTROQ_REDIS_URL and give any other arguments (they replace the default `--data`).
#
# The base image is pinned by tag and digest (docker-library's python:3.13-slim-trixie, Python
# 3.13.14); bump both together. tests/test_deploy_docker.py lints this file with hadolint and checks
# the properties documented there (non-root user, health check, pinned base, no secrets).

ARG PYTHON_IMAGE=python:3.13.14-slim-trixie@sha256:9662417aace5ae7b8e2609cce472b72a8958e134ba372808abe9cc1a0c0125e6

# ---- build: install the package and its dependencies into a self-contained virtualenv ----------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what `pip install '.[server]'` needs: the project metadata and the three package directories.
COPY pyproject.toml README.md ./
COPY entroq_redis ./entroq_redis
COPY lua ./lua
COPY server ./server

RUN python -m venv /opt/entroq-redis \
    && /opt/entroq-redis/bin/pip install --no-cache-dir '.[server]' \
    && /opt/entroq-redis/bin/entroq-redis --help > /dev/null \
    && /opt/entroq-redis/bin/python -c "from entroq_redis._extras import require; require('server', 'the image')"

# ---- runtime: the same base, the virtualenv, an unprivileged user --------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="entroq-redis" \
      org.opencontainers.image.description="EntroQ's task queue service on Redis/Valkey" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 entroq \
    && useradd --system --uid 10001 --gid entroq --no-create-home \
        --home-dir /var/lib/entroq-redis --shell /usr/sbin/nologin entroq \
    && install -d -o entroq -g entroq -m 0750 /var/lib/entroq-redis

COPY --from=build /opt/entroq-redis /opt/entroq-redis

ENV PATH=/opt/entroq-redis/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001
WORKDIR /var/lib/entroq-redis
EXPOSE 9100 37706

# Ready means the store answers and the scripts are loaded; the standard library is enough to ask.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9100/readyz', timeout=2).status == 200 else 1)"]

ENTRYPOINT ["entroq-redis", "serve", "--host", "0.0.0.0", "--port", "9100"]
CMD ["--data", "/var/lib/entroq-redis/data"]
