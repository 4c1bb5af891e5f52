"""Who is acting, and what their role lets them do.

Every command and API call runs as an ``Actor``: a user name and a role,
``admin`` or ``contributor``, from ``--as USER:ROLE`` or from
``KLAVIYO_EXPORT_USER`` and ``KLAVIYO_EXPORT_ROLE``. With neither, the
operating-system user acts as a *contributor*: the least privilege is the
default, and administration is asked for explicitly.

The rules, as the reference product has them:

- admins add, change and remove connections, accept their privacy terms and
  remove exports;
- a connection is usable by admins only, or by admins and contributors
  (``allow``); using it means adding an export to it or running one of its
  exports;
- no export can use a connection whose data-privacy terms nobody accepted.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import Forbidden, InvalidInput
from core.records import Connection

ROLES = ("admin", "contributor")


@dataclass(frozen=True, slots=True)
class Actor:
    user: str
    role: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidInput(f"role must be admin or contributor, not {self.role!r}")
        if not self.user.strip():
            raise InvalidInput("the acting user's name is empty")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"

    @classmethod
    def parse(cls, value: str) -> Actor:
        """``USER:ROLE``, as ``--as`` takes it."""
        user, sep, role = value.rpartition(":")
        if not sep or not user:
            raise InvalidInput(f"--as takes USER:ROLE (admin or contributor), not {value!r}")
        return cls(user, role)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Actor:
        env = os.environ if env is None else env
        return cls(
            env.get("KLAVIYO_EXPORT_USER") or getpass.getuser(),
            env.get("KLAVIYO_EXPORT_ROLE") or "contributor",
        )


def require_admin(actor: Actor, action: str) -> None:
    if not actor.is_admin:
        raise Forbidden(f"{actor} may not {action}: only admins may")


def require_use(actor: Actor, connection: Connection) -> None:
    """The actor may use the connection, and its privacy terms are accepted."""
    if connection.allow == "admins" and not actor.is_admin:
        raise Forbidden(
            f"{actor} may not use connection {connection.id} ({connection.name}): "
            "it is for admins only"
        )
    if not connection.terms_accepted:
        raise Forbidden(
            f"connection {connection.id} ({connection.name}): the data-privacy terms have not "
            "been accepted; an admin can accept them with "
            f"`klaviyo-export connection accept-terms {connection.id}`"
        )
