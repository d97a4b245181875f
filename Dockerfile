# syntax=docker/dockerfile:1
#
# adgraph images. Two targets, one file:
#   docker build -t adgraph:cpu .                 API servers and CPU workers (the embedded models only)
#   docker build --target gpu -t adgraph:gpu .    GPU workers: the `gpu` extra (torch, diffusers,
#                                                 transformers) on an NVIDIA CUDA runtime base
# No secret is baked in: ADGRAPH_SECRET, ADGRAPH_DATABASE_URL and any LLM key come from the environment at
# run time (deploy/compose.yaml, deploy/k8s/secret.yaml). Model weights are mounted, never copied in.

# Python 3.11 on Debian bookworm: the interpreter the project is developed and tested with, and Debian's
# own Chromium (what `make system` installs), so renders match the test suite's.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04

# -- axe-core for the homepage's accessibility check: plain JavaScript, so only its files travel on --------
FROM ${NODE_IMAGE} AS axe
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# -- CPU builder: the project and its base dependencies into /opt/venv ---------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kernel/ kernel/
COPY graph/ graph/
COPY nodes/ nodes/
COPY agents/ agents/
COPY gpu_runtime/ gpu_runtime/
COPY checkpoints/ checkpoints/
COPY service/ service/
# Base dependencies (the embedded u2netp, studio backdrop and stats analysis need no torch) and the S3
# client for ADGRAPH_ARTIFACTS_URL=s3://…; pyproject.toml holds the pins, which hadolint cannot see.
# hadolint ignore=DL3013
RUN pip install --no-compile '.[shared-artifacts]'
# nodes/backends/chromium.py finds axe-core at <the folder holding the `nodes` package>/node_modules, which
# for an installed (not editable) package is site-packages.
COPY --from=axe /src/node_modules /tmp/node_modules
RUN cp -r /tmp/node_modules "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/node_modules"

# -- GPU builder: the same on the CUDA base's Python (Ubuntu 24.04: 3.12), plus the `gpu` extra ------------
FROM ${CUDA_IMAGE} AS gpu-builder
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PLAYWRIGHT_BROWSERS_PATH=/opt/ms-playwright
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kernel/ kernel/
COPY graph/ graph/
COPY nodes/ nodes/
COPY agents/ agents/
COPY gpu_runtime/ gpu_runtime/
COPY checkpoints/ checkpoints/
COPY service/ service/
# torch as the `gpu` extra pins it (PyPI's Linux wheel is the CUDA build and brings its own CUDA libraries);
# pyproject.toml holds the pins, which hadolint cannot see.
# hadolint ignore=DL3013
RUN pip install --no-compile '.[gpu,shared-artifacts]'
COPY --from=axe /src/node_modules /tmp/node_modules
RUN cp -r /tmp/node_modules "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/node_modules"
# Ubuntu ships Chromium only as a snap, which cannot run in a container: use the Chromium build that the
# installed Playwright is made for instead (its system libraries are installed in the `gpu` stage).
RUN python -m playwright install chromium

# -- GPU runtime ---------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PLAYWRIGHT_BROWSERS_PATH=/opt/ms-playwright
COPY --from=gpu-builder /opt/ms-playwright /opt/ms-playwright
COPY --from=gpu-builder /opt/venv /opt/venv
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 fonts-nanum fontconfig tini \
 && /opt/venv/bin/python -m playwright install-deps chromium \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s "$(find /opt/ms-playwright -type f -name chrome -path '*chrome-linux*' | head -n 1)" /usr/bin/chromium \
 && test -x /usr/bin/chromium \
 && groupadd --system --gid 10001 adgraph \
 && useradd --system --uid 10001 --gid adgraph --home-dir /home/adgraph --create-home --shell /usr/sbin/nologin adgraph \
 && install -d -o adgraph -g adgraph /data
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/adgraph \
    ADGRAPH_DATA_DIR=/data \
    ADGRAPH_CHROMIUM_PATH=/usr/bin/chromium
WORKDIR /home/adgraph
# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["/usr/bin/tini", "--", "adgraph"]
CMD ["worker"]

# -- CPU runtime (the default target) ------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu
# Debian's Chromium renders; Nanum fonts draw Korean copy; tini, as PID 1, reaps Chromium's orphans and
# passes SIGTERM on. Debian's security updates move these packages'
# versions, so they are not pinned (the base image tag is the pin).
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-nanum fontconfig tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 adgraph \
 && useradd --system --uid 10001 --gid adgraph --home-dir /home/adgraph --create-home --shell /usr/sbin/nologin adgraph \
 && install -d -o adgraph -g adgraph /data
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/adgraph \
    ADGRAPH_DATA_DIR=/data \
    ADGRAPH_CHROMIUM_PATH=/usr/bin/chromium
WORKDIR /home/adgraph
# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
EXPOSE 8000
# 127.0.0.1 is always a trusted Host; the worker (no HTTP server) turns this off in deploy/compose.yaml.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--", "adgraph"]
# An API server; with today's CLI `--workers 0` also runs jobs in this process (see deploy/compose.yaml).
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "0"]
