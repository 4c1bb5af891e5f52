"""The handles a process needs: settings, one Redis pool, store, runs, Klaviyo clients."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import redis

from core.policy import UNVERIFIED_ACCOUNT, PatientClient, Quota, account_key
from core.ratelimit import RateLimiter
from core.runs import Runs
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
    store: Store
    runs: Runs
    client_settings: ClientSettings  # the defaults; a connection's own base URL wins

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
        return cls(
            settings=settings,
            redis=client,
            store=Store(client, box),
            runs=Runs(client),
            client_settings=settings.klaviyo,
        )

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
