"""Per-process handles the tasks share: one Redis pool, the store, the runs.

Created on first use in each process (a prefork child gets its own), never at
import, so that importing the worker package needs no Redis.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import redis

from klaviyo_client import ClientSettings, KlaviyoClient
from klaviyo_export.runs import Runs
from klaviyo_export.secrets import SecretBox
from klaviyo_export.settings import Settings
from klaviyo_export.store import Store


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    redis: redis.Redis
    store: Store
    runs: Runs
    client_settings: ClientSettings

    def klaviyo(self, connection_id: str) -> KlaviyoClient:
        return KlaviyoClient(self.store.connection_api_key(connection_id), self.client_settings)


@lru_cache(maxsize=4)
def _context(pid: int) -> WorkerContext:
    settings = Settings.from_env()
    client = redis.Redis.from_url(settings.store_url)
    box = SecretBox(settings.secret_key) if settings.secret_key else None
    return WorkerContext(
        settings=settings,
        redis=client,
        store=Store(client, box),
        runs=Runs(client),
        client_settings=ClientSettings.from_env(),
    )


def context() -> WorkerContext:
    return _context(os.getpid())
