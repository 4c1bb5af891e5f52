"""The handles a process needs: settings, one Redis pool, store, runs, client settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import redis

from klaviyo_client import ClientSettings, KlaviyoClient
from klaviyo_client.client import BeforeRequest
from klaviyo_export.runs import Runs
from klaviyo_export.secrets import SecretBox
from klaviyo_export.settings import Settings
from klaviyo_export.store import Store


@dataclass(frozen=True)
class Context:
    settings: Settings
    redis: redis.Redis
    store: Store
    runs: Runs
    client_settings: ClientSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Context:
        """Everything from ``env`` (default: the process environment)."""
        settings = Settings.from_env(env)
        client = redis.Redis.from_url(settings.store_url)
        box = SecretBox(settings.secret_key) if settings.secret_key else None
        return cls(
            settings=settings,
            redis=client,
            store=Store(client, box),
            runs=Runs(client),
            client_settings=ClientSettings.from_env(env),
        )

    def klaviyo(
        self, connection_id: str, before_request: BeforeRequest | None = None
    ) -> KlaviyoClient:
        """A client with the connection's key (decrypted here, held nowhere else)."""
        return KlaviyoClient(
            self.store.connection_api_key(connection_id),
            self.client_settings,
            before_request=before_request,
        )
