"""Connections and exports, kept in Redis under ``schemas.keys``: persistence only.

The records and the checks of what a user chose are ``core.records``. The API
key is kept encrypted in its own hash field, never in the record. Saving an
export never runs it.

Each record is one JSON document in the hash field ``record``, so adding a
field needs no migration: a field missing from an older record takes its
dataclass default.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, fields, replace
from typing import TypeVar

import redis

from core.errors import NotFound
from core.records import Connection, Export, ExportSpec
from core.secrets import SecretBox
from schemas import keys

__all__ = ["Connection", "Export", "Store", "new_id", "text"]


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(5)}"


def text(value: bytes | str) -> str:
    """Redis answers bytes or str depending on the client; records are text."""
    return value.decode() if isinstance(value, bytes) else value


R = TypeVar("R", Connection, Export)


def _load(cls: type[R], raw: bytes | str) -> R:
    data = json.loads(raw)
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


class Store:
    """Reads and writes connection and export records."""

    def __init__(self, client: redis.Redis, box: SecretBox | None = None) -> None:
        self.redis = client
        self._box = box

    def _secret_box(self) -> SecretBox:
        if self._box is None:
            self._box = SecretBox(None)  # raises ConfigurationError with the fix
        return self._box

    # -- connections ---------------------------------------------------------------

    def add_connection(
        self,
        *,
        name: str,
        api_key: str,
        allow: str,
        created_by: str,
        account_id: str | None,
        verified_via: str | None,
        accepted_terms: bool,
        contract_cap: int = 0,
        base_url: str | None = None,
    ) -> Connection:
        now = time.time()
        connection = Connection(
            id=new_id("c_"),
            name=name.strip(),
            allow=allow,
            created_by=created_by,
            created_at=now,
            account_id=account_id,
            verified_via=verified_via,
            verified_at=now if verified_via else None,
            privacy_terms_accepted_by=created_by if accepted_terms else None,
            privacy_terms_accepted_at=now if accepted_terms else None,
            contract_cap=contract_cap,
            base_url=base_url,
        )
        connection.check()
        pipe = self.redis.pipeline()
        pipe.hset(
            keys.connection(connection.id),
            mapping={
                "record": json.dumps(asdict(connection)),
                "api_key": self._secret_box().encrypt(api_key),
            },
        )
        pipe.sadd(keys.CONNECTIONS, connection.id)
        pipe.execute()
        return connection

    def get_connection(self, connection_id: str) -> Connection:
        raw = self.redis.hget(keys.connection(connection_id), "record")
        if raw is None:
            raise NotFound(f"no connection {connection_id!r}")
        return _load(Connection, raw)

    def save_connection(self, connection: Connection) -> None:
        self.get_connection(connection.id)
        self.redis.hset(keys.connection(connection.id), "record", json.dumps(asdict(connection)))

    def accept_terms(self, connection_id: str, user: str) -> Connection:
        now = time.time()
        updated = replace(
            self.get_connection(connection_id),
            privacy_terms_accepted_by=user,
            privacy_terms_accepted_at=now,
        )
        self.save_connection(updated)
        return updated

    def mark_verified(
        self, connection_id: str, verified_via: str, account_id: str | None
    ) -> Connection:
        current = self.get_connection(connection_id)
        updated = replace(
            current,
            verified_via=verified_via,
            verified_at=time.time(),
            account_id=account_id or current.account_id,
        )
        self.save_connection(updated)
        return updated

    def rotate_key(
        self, connection_id: str, api_key: str, verified_via: str, account_id: str | None
    ) -> Connection:
        """Replace the key in place: exports keep pointing at the connection."""
        current = self.get_connection(connection_id)
        now = time.time()
        updated = replace(
            current,
            verified_via=verified_via,
            verified_at=now,
            account_id=account_id or current.account_id,
            key_rotated_at=now,
        )
        pipe = self.redis.pipeline()
        pipe.hset(
            keys.connection(connection_id),
            mapping={
                "record": json.dumps(asdict(updated)),
                "api_key": self._secret_box().encrypt(api_key),
            },
        )
        pipe.execute()
        return updated

    def connection_api_key(self, connection_id: str) -> str:
        token = self.redis.hget(keys.connection(connection_id), "api_key")
        if token is None:
            raise NotFound(f"no connection {connection_id!r}")
        return self._secret_box().decrypt(text(token), f"connection {connection_id}")

    def list_connections(self) -> list[Connection]:
        ids = sorted(text(m) for m in self.redis.smembers(keys.CONNECTIONS))
        return [self.get_connection(i) for i in ids]

    def remove_connection(self, connection_id: str) -> list[str]:
        """Remove the connection and its exports; returns the removed export ids."""
        self.get_connection(connection_id)
        exports = [e.id for e in self.list_exports() if e.connection_id == connection_id]
        pipe = self.redis.pipeline()
        for export_id in exports:
            pipe.delete(keys.export(export_id))
            pipe.srem(keys.EXPORTS, export_id)
        pipe.delete(keys.connection(connection_id))
        pipe.srem(keys.CONNECTIONS, connection_id)
        pipe.execute()
        return exports

    # -- exports -------------------------------------------------------------------

    def add_export(self, spec: ExportSpec, *, created_by: str) -> Export:
        """Save ``spec`` as a new export (checked; its name defaults to the list id)."""
        self.get_connection(spec.connection_id)
        spec.check()
        export = Export.from_spec(
            spec, id=new_id("e_"), created_by=created_by, created_at=time.time()
        )
        pipe = self.redis.pipeline()
        pipe.hset(keys.export(export.id), "record", json.dumps(asdict(export)))
        pipe.sadd(keys.EXPORTS, export.id)
        pipe.execute()
        return export

    def get_export(self, export_id: str) -> Export:
        raw = self.redis.hget(keys.export(export_id), "record")
        if raw is None:
            raise NotFound(f"no export {export_id!r}")
        return _load(Export, raw)

    def save_export(self, export: Export) -> None:
        self.get_export(export.id)
        self.redis.hset(keys.export(export.id), "record", json.dumps(asdict(export)))

    def export_ids(self) -> list[str]:
        return sorted(text(m) for m in self.redis.smembers(keys.EXPORTS))

    def list_exports(self) -> list[Export]:
        return [self.get_export(i) for i in self.export_ids()]

    def remove_export(self, export_id: str) -> None:
        self.get_export(export_id)
        pipe = self.redis.pipeline()
        pipe.delete(keys.export(export_id))
        pipe.srem(keys.EXPORTS, export_id)
        pipe.execute()
