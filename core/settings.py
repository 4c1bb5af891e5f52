"""Configuration from the environment, read and checked once, into a frozen dataclass.

Every variable is checked here, and a bad value is one ``ConfigurationError``
that names the variable, what is wrong with the value and what is allowed.
A secret-bearing variable (the secret key and the Redis/broker URLs, which may
hold passwords) may instead name a file: ``NAME_FILE=/run/secrets/x`` reads
NAME's value from that file (Docker secrets); setting both is an error.

Options (environment variable, default):

- ``REDIS_URL`` (``redis://127.0.0.1:6379/0``): broker, result backend and
  store, unless one of the next three overrides it.
- ``CELERY_BROKER_URL``: the broker alone (Redis or RabbitMQ ``amqp://``).
- ``CELERY_RESULT_BACKEND``: the chord's result backend (Redis).
- ``KLAVIYO_EXPORT_STORE_URL``: where connections, exports, runs and batch
  payloads live (Redis).
- ``KLAVIYO_BASE_URL`` (``https://a.klaviyo.com``): the Klaviyo that *new*
  connections are checked against and recorded with; every process then talks
  to the base URL the connection recorded, whatever its own environment says.
- ``KLAVIYO_CONNECT_TIMEOUT`` (5 s), ``KLAVIYO_READ_TIMEOUT`` (60 s),
  ``KLAVIYO_POOL_SIZE`` (16): the HTTP client (``klaviyo_client``).
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
- ``KLAVIYO_EXPORT_SOURCE_ROOTS`` (none): the folders, separated by ``:``,
  under which a segment path named over HTTP (a run's ``source``, an
  export's bound ``segment``) may lie. With none, the HTTP API reads only
  the segments bound with the CLI: a caller of the API never chooses a file
  of the server's to read.
- ``KLAVIYO_EXPORT_API_READERS`` (2): segments the HTTP server reads at once
  for the runs it started (each in a process of its own), and dry runs it
  answers at once; further runs wait their turn, further dry runs get 429.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from core.cron import parse_cron
from core.errors import ConfigurationError
from klaviyo_client import ClientSettings
from klaviyo_client.constants import DEFAULT_BASE_URL

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
BROKER_SCHEMES = (*REDIS_SCHEMES, "amqp://", "amqps://", "pyamqp://")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_REFRESH_CRON = "0 3 * * *"
FILE_SUFFIX = "_FILE"

N = TypeVar("N", int, float)


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
    source_roots: tuple[Path, ...] = ()  # where paths named over HTTP may lie
    api_readers: int = 2
    klaviyo: ClientSettings = field(default_factory=ClientSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings in ``env`` (default: the process environment), all checked."""
        read = _Reader(os.environ if env is None else env)
        redis_url = read.service_url("REDIS_URL", REDIS_SCHEMES) or DEFAULT_REDIS_URL
        visibility = read.number("KLAVIYO_EXPORT_VISIBILITY_TIMEOUT", int, 1800, 10, None, "s")
        return cls(
            broker_url=read.service_url("CELERY_BROKER_URL", BROKER_SCHEMES) or redis_url,
            result_backend=read.service_url("CELERY_RESULT_BACKEND", REDIS_SCHEMES) or redis_url,
            store_url=read.service_url("KLAVIYO_EXPORT_STORE_URL", REDIS_SCHEMES) or redis_url,
            secret_key=read.secret("KLAVIYO_EXPORT_SECRET_KEY"),
            max_profiles_per_run=read.number(
                "KLAVIYO_EXPORT_MAX_PROFILES_PER_RUN", int, 0, 0, None, "profiles (0: no cap)"
            ),
            batch_profiles=read.number(
                "KLAVIYO_EXPORT_BATCH_PROFILES", int, 10_000, 1, 10_000, "(Klaviyo's job limit)"
            ),
            visibility_timeout=visibility,
            rate_headroom=read.number("KLAVIYO_EXPORT_RATE_HEADROOM", float, 0.9, 0.01, 1.0, ""),
            watchdog_seconds=read.number(
                "KLAVIYO_EXPORT_WATCHDOG_SECONDS", float, 60.0, 1.0, None, "s"
            ),
            stall_seconds=read.number("KLAVIYO_EXPORT_STALL_SECONDS", float, 900.0, 1.0, None, "s"),
            refresh_cron=read.cron("KLAVIYO_EXPORT_REFRESH_CRON", DEFAULT_REFRESH_CRON),
            source_roots=read.folders("KLAVIYO_EXPORT_SOURCE_ROOTS"),
            api_readers=read.number("KLAVIYO_EXPORT_API_READERS", int, 2, 1, 64, "threads"),
            klaviyo=ClientSettings(
                base_url=read.url("KLAVIYO_BASE_URL", DEFAULT_BASE_URL),
                connect_timeout=read.number("KLAVIYO_CONNECT_TIMEOUT", float, 5.0, 0.1, 600, "s"),
                read_timeout=read.number("KLAVIYO_READ_TIMEOUT", float, 60.0, 0.1, 3600, "s"),
                pool_size=read.number("KLAVIYO_POOL_SIZE", int, 16, 1, 1000, "connections"),
            ),
        )


class _Reader:
    """Reads one variable at a time; each problem names the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        return value.strip() if value is not None and value.strip() else None

    def secret(self, name: str) -> str | None:
        """``name``, or the content of the file ``name_FILE`` names."""
        value, path = self.raw(name), self.raw(name + FILE_SUFFIX)
        if path is None:
            return value
        if value is not None:
            raise ConfigurationError(f"{name} and {name}{FILE_SUFFIX} are both set: set one")
        try:
            content = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
            raise ConfigurationError(f"{name}{FILE_SUFFIX}: cannot read {path}: {reason}") from None
        if not content:
            raise ConfigurationError(f"{name}{FILE_SUFFIX}: {path} is empty")
        return content

    def service_url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        """A Redis or broker URL. It may hold a password, so a bad one is
        described, never shown."""
        value = self.secret(name)
        if value is not None and not value.startswith(schemes):
            raise ConfigurationError(
                f"{name} is not a URL this setting takes: it must start with {', '.join(schemes)}"
            )
        return value

    def number(
        self,
        name: str,
        kind: Callable[[str], N],
        default: N,
        low: N,
        high: N | None,
        unit: str,
    ) -> N:
        value = self.raw(name)
        if value is None:
            return default
        allowed = f"{low} to {high}" if high is not None else f"{low} or more"
        allowed = f"{allowed} {unit}".rstrip()
        noun = "a whole number" if kind is int else "a number"
        try:
            number = kind(value)
        except ValueError:
            raise ConfigurationError(f"{name}={value!r} is not {noun}: allowed {allowed}") from None
        finite = math.isfinite(number)
        if not finite or number < low or (high is not None and number > high):
            raise ConfigurationError(f"{name}={value!r} is out of range: allowed {allowed}")
        return number

    def url(self, name: str, default: str) -> str:
        value = self.raw(name) or default
        if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1]) == 0:
            raise ConfigurationError(f"{name}={value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    def folders(self, name: str) -> tuple[Path, ...]:
        """Absolute folders separated by ``:``, each resolved (symlinks followed)."""
        value = self.raw(name)
        if value is None:
            return ()
        roots = []
        for part in (p.strip() for p in value.split(":")):
            if not part:
                continue
            if not part.startswith("/"):
                raise ConfigurationError(f"{name}: {part!r} is not an absolute path")
            roots.append(Path(part).resolve())
        return tuple(roots)

    def cron(self, name: str, default: str) -> str | None:
        """Five cron fields, checked as Celery's ``crontab`` reads them; blank is None."""
        value = self.env.get(name, default)
        expression = " ".join(value.split())
        if not expression:
            return None
        try:
            parse_cron(expression)
        except ValueError as exc:
            raise ConfigurationError(
                f"{name}: {exc} (minute hour day-of-month month day-of-week; "
                "empty disables the refresh)"
            ) from None
        return expression


def log_level(env: Mapping[str, str] | None = None) -> str:
    """``KLAVIYO_EXPORT_LOG_LEVEL`` (WARNING), checked: read before anything logs."""
    value = (os.environ if env is None else env).get("KLAVIYO_EXPORT_LOG_LEVEL") or "WARNING"
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigurationError(
            f"KLAVIYO_EXPORT_LOG_LEVEL={value!r} is not a log level: "
            f"allowed {', '.join(LOG_LEVELS)}"
        )
    return level
