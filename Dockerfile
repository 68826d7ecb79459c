# syntax=docker/dockerfile:1
# The Kyklos image: one image for the operator (`kyklos run ...`) and the data-plane workers
# (`kyklos worker ...`). Build and load it into kind: see docs/install.md.
#
#   docker build -t ghcr.io/kyklos/kyklos:0.1.0 .
#
# Both stages use the same pinned base so the virtualenv's interpreter link stays valid.
ARG PYTHON_IMAGE=python:3.13.9-slim-trixie

# ---- build: install Kyklos and its dependencies (binary wheels) into a virtualenv ----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/kyklos
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# s3 and gcs extras: workers read datasets from object stores (fsspec s3fs/gcsfs); mlflow: the
# operator's registry sync (its client only). The slim base has no compiler: every compiled
# dependency must come as a binary wheel.
RUN /opt/kyklos/bin/pip install ".[s3,gcs,mlflow]" \
 && /opt/kyklos/bin/kyklos --help >/dev/null

# ---- runtime: the virtualenv on a clean base; no compilers, no pip cache, non-root ----------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kyklos" \
      org.opencontainers.image.description="Kubernetes operator for the machine-learning lifecycle" \
      org.opencontainers.image.source="https://github.com/kyklos/kyklos" \
      org.opencontainers.image.licenses="Apache-2.0"
# A numeric UID/GID, so Kubernetes can verify runAsNonRoot without a passwd lookup.
RUN groupadd --system --gid 65532 kyklos \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin kyklos
COPY --from=build /opt/kyklos /opt/kyklos
# The pod runs with a read-only root filesystem: no bytecode writes, temp files in /tmp
# (an emptyDir in the chart), HOME there too for libraries that cache under ~.
ENV PATH=/opt/kyklos/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["kyklos"]
CMD ["run", "--all-namespaces"]
