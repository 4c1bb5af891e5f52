"""Configuration from the environment, read once into a frozen dataclass.

Options (environment variable, default):

- ``REDIS_URL`` (``redis://127.0.0.1:6379/0``): broker, result backend and
  store, unless one of the next three overrides it.
- ``CELERY_BROKER_URL``: the broker alone (Redis or RabbitMQ ``amqp://``).
- ``CELERY_RESULT_BACKEND``: the chord's result backend (Redis).
- ``KLAVIYO_EXPORT_STORE_URL``: where connections, exports, runs and batch
  payloads live (Redis).
- ``KLAVIYO_BASE_URL``: Klaviyo, or the sandbox (read by ``klaviyo_client``).
- ``KLAVIYO_EXPORT_SECRET_KEY``: the Fernet key that encrypts API keys at rest.
- ``KLAVIYO_EXPORT_MAX_PROFILES_PER_RUN`` (0: no cap): the per-export cap for
  exports that set none (``export add --max-profiles``). The reference product
  caps every export at 100000; set that here to behave like it.
- ``KLAVIYO_EXPORT_BATCH_PROFILES`` (10000): profiles per bulk import job.
- ``KLAVIYO_EXPORT_VISIBILITY_TIMEOUT`` (1800 s, Redis broker): how long a
  message taken by a worker that then vanished stays invisible before Redis
  delivers it again. Lower means faster recovery from a lost worker; every
  task countdown is kept well under it (see ``worker.config``).
- ``KLAVIYO_EXPORT_RATE_HEADROOM`` (0.9): the share of Klaviyo's published
  rate limits the workers use, leaving room for network jitter and for other
  clients of the same account.
- ``KLAVIYO_EXPORT_WATCHDOG_SECONDS`` (60): how often beat runs the watchdog.
- ``KLAVIYO_EXPORT_STALL_SECONDS`` (900): a run with no batch finished for
  this long has its missing batches sent again (see ``worker.watchdog``).
- ``KLAVIYO_EXPORT_REFRESH_CRON`` (``0 3 * * *``): the system refresh
  schedule, five cron fields in UTC as Celery beat reads them: every enabled
  export with a bound segment runs then (besides its own ``--schedule``).
  Empty disables the system refresh. Needs ``celery -A worker beat`` and
  ``klaviyo-export listen`` running (see ``worker.schedules``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_REFRESH_CRON = "0 3 * * *"


@dataclass(frozen=True, slots=True)
class Settings:
    broker_url: str
    result_backend: str
    store_url: str
    secret_key: str | None
    max_profiles_per_run: int
    batch_profiles: int
    visibility_timeout: int
    rate_headroom: float
    watchdog_seconds: float
    stall_seconds: float
    refresh_cron: str | None = DEFAULT_REFRESH_CRON  # None: no system refresh

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        redis_url = env.get("REDIS_URL") or DEFAULT_REDIS_URL
        settings = cls(
            broker_url=env.get("CELERY_BROKER_URL") or redis_url,
            result_backend=env.get("CELERY_RESULT_BACKEND") or redis_url,
            store_url=env.get("KLAVIYO_EXPORT_STORE_URL") or redis_url,
            secret_key=env.get("KLAVIYO_EXPORT_SECRET_KEY") or None,
            max_profiles_per_run=int(env.get("KLAVIYO_EXPORT_MAX_PROFILES_PER_RUN", "0")),
            batch_profiles=int(env.get("KLAVIYO_EXPORT_BATCH_PROFILES", "10000")),
            visibility_timeout=int(env.get("KLAVIYO_EXPORT_VISIBILITY_TIMEOUT", "1800")),
            rate_headroom=float(env.get("KLAVIYO_EXPORT_RATE_HEADROOM", "0.9")),
            watchdog_seconds=float(env.get("KLAVIYO_EXPORT_WATCHDOG_SECONDS", "60")),
            stall_seconds=float(env.get("KLAVIYO_EXPORT_STALL_SECONDS", "900")),
            refresh_cron=_cron(env.get("KLAVIYO_EXPORT_REFRESH_CRON", DEFAULT_REFRESH_CRON)),
        )
        if not 1 <= settings.batch_profiles <= 10_000:
            raise ValueError("KLAVIYO_EXPORT_BATCH_PROFILES must be 1..10000 (Klaviyo's job limit)")
        if settings.watchdog_seconds <= 0 or settings.stall_seconds <= 0:
            raise ValueError("the watchdog's interval and stall time must be positive")
        if not 0 < settings.rate_headroom <= 1:
            raise ValueError("KLAVIYO_EXPORT_RATE_HEADROOM must be in (0, 1]")
        if settings.visibility_timeout < 10:
            raise ValueError("KLAVIYO_EXPORT_VISIBILITY_TIMEOUT must be at least 10 seconds")
        if settings.max_profiles_per_run < 0:
            raise ValueError("KLAVIYO_EXPORT_MAX_PROFILES_PER_RUN must be 0 (no cap) or more")
        return settings


def _cron(value: str) -> str | None:
    """Five cron fields, checked as Celery's ``crontab`` reads them; blank is None."""
    expression = " ".join(value.split())
    if not expression:
        return None
    from celery.schedules import crontab

    parts = expression.split(" ")
    if len(parts) != 5:
        raise ValueError(
            f"KLAVIYO_EXPORT_REFRESH_CRON {value!r}: a cron expression has five fields "
            "(minute hour day-of-month month day-of-week); empty disables the refresh"
        )
    minute, hour, day_of_month, month_of_year, day_of_week = parts
    try:
        crontab(minute, hour, day_of_week, day_of_month, month_of_year)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"KLAVIYO_EXPORT_REFRESH_CRON {value!r}: {exc}") from None
    return expression
