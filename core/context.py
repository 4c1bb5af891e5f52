"""The handles a process needs: settings, one Redis pool, the stores, the run
lifecycle, Klaviyo clients. Built once per process (``Context.from_env``), or
by a unit test from fakeredis and a recording dispatcher (``Context.build``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import redis
from redis import Redis

from core.batch_store import BatchStore
from core.dispatch import CeleryDispatcher, Dispatcher
from core.lifecycle import Lifecycle
from core.locks import ExportLocks
from core.policy import UNVERIFIED_ACCOUNT, PatientClient, Quota, account_key
from core.ratelimit import RateLimiter
from core.removal_store import RemovalStore
from core.reports import Reports
from core.run_record import RunRecords
from core.secrets import SecretBox
from core.settings import Settings
from core.store import Connection, Store
from klaviyo_client import ClientSettings, KlaviyoClient
from klaviyo_client.client import BeforeRequest

REDIS_CONNECT_TIMEOUT = 5.0
REDIS_TIMEOUT = 30.0
"""Longer than any one command of ours takes (a 10,000-field HSET, a Lua script)."""


@dataclass(frozen=True)
class Context:
    settings: Settings
    redis: redis.Redis
    store: Store  # connections and exports
    runs: RunRecords  # run records (read them here; change status through lifecycle)
    batches: BatchStore
    removals: RemovalStore
    reports: Reports
    locks: ExportLocks
    lifecycle: Lifecycle
    client_settings: ClientSettings  # the defaults; a connection's own base URL wins

    @classmethod
    def build(
        cls,
        settings: Settings,
        client: Redis,
        box: SecretBox | None = None,
        dispatcher: Dispatcher | None = None,
    ) -> Context:
        """Every store on one Redis client; parts go out through ``dispatcher``
        (default: Celery chords on the configured broker)."""
        records, batches = RunRecords(client), BatchStore(client)
        removals, reports, locks = RemovalStore(client), Reports(client), ExportLocks(client)
        lifecycle = Lifecycle(
            records,
            batches,
            removals,
            reports,
            locks,
            dispatcher or CeleryDispatcher(settings),
        )
        return cls(
            settings=settings,
            redis=client,
            store=Store(client, box),
            runs=records,
            batches=batches,
            removals=removals,
            reports=reports,
            locks=locks,
            lifecycle=lifecycle,
            client_settings=settings.klaviyo,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Context:
        """Everything from ``env`` (default: the process environment)."""
        settings = Settings.from_env(env)
        # Timeouts: a Redis that vanishes without a reset (a partition, a paused
        # VM) must fail a call, not hang it, so that waits end at --timeout.
        client = redis.Redis.from_url(
            settings.store_url,
            socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
            socket_timeout=REDIS_TIMEOUT,
            health_check_interval=30,
        )
        box = SecretBox(settings.secret_key) if settings.secret_key else None
        return cls.build(settings, client, box)

    def client_settings_for(self, connection: Connection) -> ClientSettings:
        """The connection's Klaviyo: the base URL its key was verified against.

        A connection recorded before base URLs were kept falls back to
        ``KLAVIYO_BASE_URL``.
        """
        if connection.base_url:
            return replace(self.client_settings, base_url=connection.base_url)
        return self.client_settings

    def klaviyo(
        self, connection_id: str, before_request: BeforeRequest | None = None
    ) -> KlaviyoClient:
        """A client with the connection's key (decrypted here, held nowhere else)."""
        connection = self.store.get_connection(connection_id)
        return KlaviyoClient(
            self.store.connection_api_key(connection_id),
            self.client_settings_for(connection),
            before_request=before_request,
        )

    def patient_klaviyo(self, connection_id: str) -> PatientClient:
        """A client for commands: every call takes its turn in the shared rate
        limit, as the workers' do, and is retried by ``core.policy``."""
        connection = self.store.get_connection(connection_id)
        return PatientClient(
            self.store.connection_api_key(connection_id),
            self.client_settings_for(connection),
            Quota(self.limiter(), account_key(connection)),
        )

    def patient_klaviyo_for_key(self, api_key: str, base_url: str | None = None) -> PatientClient:
        """The same, for a key not stored yet (its first check)."""
        settings = replace(self.client_settings, base_url=base_url or self.client_settings.base_url)
        return PatientClient(api_key, settings, Quota(self.limiter(), UNVERIFIED_ACCOUNT))

    def limiter(self) -> RateLimiter:
        return RateLimiter(self.redis, self.settings.rate_headroom)
