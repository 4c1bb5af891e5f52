# The one image every service in docker-compose.yml but Redis runs: the
# klaviyo-export command (the listener, the sandbox, the demo), the Celery
# workers and beat (`celery -A worker ...`) and Flower. Configuration comes
# from the environment (see core/settings.py), secrets from files
# under /run/secrets; nothing secret is baked in.
FROM python:3.11-slim

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
COPY demo ./demo
COPY producer ./producer
COPY sandbox ./sandbox
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
