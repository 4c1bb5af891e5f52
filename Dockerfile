# The one image every service in docker-compose.yml runs: the klaviyo-export
# command, the Celery workers and beat (`celery -A worker ...`), Flower and
# the sandbox. Configuration comes from the environment (see
# klaviyo_export/settings.py); nothing secret is baked in.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package is built from: never .venv, .env or local state.
COPY pyproject.toml README.md ./
COPY klaviyo_client ./klaviyo_client
COPY klaviyo_export ./klaviyo_export
COPY producer ./producer
COPY sandbox ./sandbox
COPY schemas ./schemas
COPY worker ./worker
# The monitoring extra brings Flower (`celery -A worker flower`).
RUN pip install ".[monitoring]" \
    && useradd --create-home --uid 10001 kx

# Run unprivileged, from a directory it may write to (celery beat keeps its
# schedule file in the working directory).
USER kx
WORKDIR /home/kx

CMD ["klaviyo-export", "--help"]
