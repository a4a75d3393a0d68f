# syntax=docker/dockerfile:1.7
# The `switchyard` command (db upgrade, ledger verify, asyncapi): the one-shot migrate job, backups, restores.
# It depends on every service package (its sub-commands import their migrations and models), so it is large.
# Build context: the repository root (docker build -f deploy/docker/cli.Dockerfile .). See docs/operations/images.md.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the locked dependencies of this one package into /opt/switchyard/venv -------------------------
FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
RUN python -m pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/switchyard/venv
WORKDIR /src
# Layer 1, third-party packages only: rebuilt when uv.lock or a pyproject changes, not on every code change.
# Every workspace member's pyproject is copied so uv reads the workspace the lock was made from (and the
# root's override-dependencies).
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/
COPY libs/cli/pyproject.toml libs/cli/
COPY services/audit/pyproject.toml services/audit/
COPY services/billing/pyproject.toml services/billing/
COPY services/classifier/pyproject.toml services/classifier/
COPY services/executor/pyproject.toml services/executor/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/router/pyproject.toml services/router/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package switchyard-cli
# Layer 2, our code, installed as wheels (--no-editable): the runtime stage needs no /src.
COPY libs libs
COPY services services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package switchyard-cli

# ---- runtime: the venv, a non-root user, nothing else -------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 switchyard \
    && useradd --system --uid 10001 --gid switchyard --create-home --home-dir /home/switchyard \
       --shell /usr/sbin/nologin switchyard
COPY --from=build /opt/switchyard/venv /opt/switchyard/venv
ENV PATH=/opt/switchyard/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1
WORKDIR /tmp
USER 10001:10001
# A one-shot tool, not a server: nothing to check while it runs.
HEALTHCHECK NONE
ENTRYPOINT ["switchyard"]
CMD ["--help"]
