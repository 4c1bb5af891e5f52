"""Connections and exports, kept in Redis hashes under ``schemas.keys``.

A *connection* is a Klaviyo account reached with one private API key (stored
encrypted); an *export* sends a segment to one list of one connection. Saving
an export never runs it. Removing either is immediate; runs of a removed
export are cancelled by ``klaviyo_export.runs``.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from klaviyo_export.errors import InvalidInput, NotFound
from klaviyo_export.secrets import SecretBox
from schemas import keys

ALLOW_VALUES = ("admins", "contributors")


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(5)}"


@dataclass(frozen=True, slots=True)
class Connection:
    id: str
    name: str
    allow: str
    account_id: str | None
    verified_via: str | None
    verified_at: float | None
    created_by: str
    created_at: float
    privacy_terms_accepted_by: str | None = None
    privacy_terms_accepted_at: float | None = None

    def public(self) -> dict[str, Any]:
        """What ``connection list`` shows: everything but the key."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Export:
    id: str
    name: str
    connection_id: str
    list_id: str
    email_field: str
    properties: dict[str, str] = field(default_factory=dict)
    enabled: bool = True
    created_by: str = "cli"
    created_at: float = 0.0

    def public(self) -> dict[str, Any]:
        return asdict(self)


def text(value: bytes | str) -> str:
    """Redis answers bytes or str depending on the client; records are text."""
    return value.decode() if isinstance(value, bytes) else value


def _decode(raw: dict[bytes | str, bytes | str]) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}


def _opt_float(value: str | None) -> float | None:
    return float(value) if value else None


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
    ) -> Connection:
        if allow not in ALLOW_VALUES:
            raise InvalidInput(f"allow must be one of {', '.join(ALLOW_VALUES)}, not {allow!r}")
        if not name.strip():
            raise InvalidInput("a connection needs a display name")
        now = time.time()
        connection = Connection(
            id=new_id("c_"),
            name=name.strip(),
            allow=allow,
            account_id=account_id,
            verified_via=verified_via,
            verified_at=now if verified_via else None,
            created_by=created_by,
            created_at=now,
            privacy_terms_accepted_by=created_by if accepted_terms else None,
            privacy_terms_accepted_at=now if accepted_terms else None,
        )
        record: dict[Any, Any] = {
            k: ("" if v is None else str(v)) for k, v in asdict(connection).items()
        }
        record["api_key"] = self._secret_box().encrypt(api_key)
        pipe = self.redis.pipeline()
        pipe.hset(keys.connection(connection.id), mapping=record)
        pipe.sadd(keys.CONNECTIONS, connection.id)
        pipe.execute()
        return connection

    def get_connection(self, connection_id: str) -> Connection:
        raw = _decode(self.redis.hgetall(keys.connection(connection_id)))
        if not raw:
            raise NotFound(f"no connection {connection_id!r}")
        return Connection(
            id=raw["id"],
            name=raw["name"],
            allow=raw["allow"],
            account_id=raw.get("account_id") or None,
            verified_via=raw.get("verified_via") or None,
            verified_at=_opt_float(raw.get("verified_at")),
            created_by=raw["created_by"],
            created_at=float(raw["created_at"]),
            privacy_terms_accepted_by=raw.get("privacy_terms_accepted_by") or None,
            privacy_terms_accepted_at=_opt_float(raw.get("privacy_terms_accepted_at")),
        )

    def connection_api_key(self, connection_id: str) -> str:
        token = self.redis.hget(keys.connection(connection_id), "api_key")
        if token is None:
            raise NotFound(f"no connection {connection_id!r}")
        return self._secret_box().decrypt(text(token), f"connection {connection_id}")

    def list_connections(self) -> list[Connection]:
        ids = sorted(text(m) for m in self.redis.smembers(keys.CONNECTIONS))
        return [self.get_connection(i) for i in ids]

    def remove_connection(self, connection_id: str) -> None:
        self.get_connection(connection_id)
        in_use = [e.id for e in self.list_exports() if e.connection_id == connection_id]
        if in_use:
            raise InvalidInput(
                f"connection {connection_id} is used by exports {', '.join(in_use)}: "
                "remove them first"
            )
        pipe = self.redis.pipeline()
        pipe.delete(keys.connection(connection_id))
        pipe.srem(keys.CONNECTIONS, connection_id)
        pipe.execute()

    # -- exports -------------------------------------------------------------------

    def add_export(
        self,
        *,
        name: str,
        connection_id: str,
        list_id: str,
        email_field: str,
        properties: dict[str, str] | None,
        created_by: str,
    ) -> Export:
        self.get_connection(connection_id)
        if not email_field.strip():
            raise InvalidInput("email field must not be empty")
        export = Export(
            id=new_id("e_"),
            name=name.strip() or list_id,
            connection_id=connection_id,
            list_id=list_id,
            email_field=email_field,
            properties=dict(properties or {}),
            created_by=created_by,
            created_at=time.time(),
        )
        record = asdict(export)
        record["properties"] = json.dumps(export.properties)
        record["enabled"] = "1" if export.enabled else "0"
        pipe = self.redis.pipeline()
        pipe.hset(keys.export(export.id), mapping={k: str(v) for k, v in record.items()})
        pipe.sadd(keys.EXPORTS, export.id)
        pipe.execute()
        return export

    def get_export(self, export_id: str) -> Export:
        raw = _decode(self.redis.hgetall(keys.export(export_id)))
        if not raw:
            raise NotFound(f"no export {export_id!r}")
        return Export(
            id=raw["id"],
            name=raw["name"],
            connection_id=raw["connection_id"],
            list_id=raw["list_id"],
            email_field=raw["email_field"],
            properties=json.loads(raw.get("properties") or "{}"),
            enabled=raw.get("enabled", "1") == "1",
            created_by=raw.get("created_by", ""),
            created_at=float(raw.get("created_at") or 0),
        )

    def list_exports(self) -> list[Export]:
        ids = sorted(text(m) for m in self.redis.smembers(keys.EXPORTS))
        return [self.get_export(i) for i in ids]

    def remove_export(self, export_id: str) -> None:
        self.get_export(export_id)
        pipe = self.redis.pipeline()
        pipe.delete(keys.export(export_id))
        pipe.srem(keys.EXPORTS, export_id)
        pipe.execute()
