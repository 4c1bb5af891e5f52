"""Who is acting, and what their role lets them do.

Every command and API call runs as an ``Actor``: a user name and a role,
``admin`` or ``contributor``, from ``--as USER:ROLE`` or from
``KLAVIYO_EXPORT_USER`` and ``KLAVIYO_EXPORT_ROLE``. With neither, the
operating-system user acts as a *contributor*: the least privilege is the
default, and administration is asked for explicitly. Over HTTP the actor is
the user of the bearer token or the console session (``via`` says which), and
an upstream system's token has the role ``trigger``.

The rules, as the reference product has them:

- admins add, change and remove connections, accept their privacy terms and
  remove exports;
- a connection is usable by admins only, or by admins and contributors
  (``allow``); using it means adding an export to it or running one of its
  exports;
- no export can use a connection whose data-privacy terms nobody accepted;
- a *trigger* (an upstream system or orchestrator) may start runs of any
  export and read runs and their status, nothing else: it uses the export an
  admin or contributor set up, on that person's connection.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import Forbidden, InvalidInput
from core.records import Connection

ROLES = ("admin", "contributor", "trigger")
PERSON_ROLES = ("admin", "contributor")


@dataclass(frozen=True, slots=True)
class Actor:
    user: str
    role: str
    via: str | None = None  # how the actor came in: "token t_...", "console"; None: the CLI

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}, not {self.role!r}")
        if not self.user.strip():
            raise InvalidInput("the acting user's name is empty")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_trigger(self) -> bool:
        return self.role == "trigger"

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"

    @classmethod
    def parse(cls, value: str) -> Actor:
        """``USER:ROLE``, as ``--as`` takes it."""
        user, sep, role = value.rpartition(":")
        if not sep or not user:
            raise InvalidInput(f"--as takes USER:ROLE ({', '.join(ROLES)}), not {value!r}")
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


def require_person(actor: Actor, action: str) -> None:
    """Admins and contributors; an upstream system's trigger token may not."""
    if actor.is_trigger:
        raise Forbidden(
            f"{actor} may not {action}: a trigger token may only start runs and read them"
        )


def may_see(actor: Actor, connection: Connection) -> bool:
    """Whether the connection is shown to the actor at all: admins see every
    connection, contributors those allowed to contributors."""
    return actor.is_admin or (actor.role == "contributor" and connection.allow == "contributors")


def require_use(actor: Actor, connection: Connection) -> None:
    """The actor may use the connection, and its privacy terms are accepted.

    A trigger acts for the export's owner: only the terms are checked.
    """
    if connection.allow == "admins" and actor.role == "contributor":
        raise Forbidden(  # no name: the connection is hidden from contributors
            f"{actor} may not use connection {connection.id}: it is for admins only"
        )
    if not connection.terms_accepted:
        raise Forbidden(
            f"connection {connection.id} ({connection.name}): the data-privacy terms have not "
            "been accepted; an admin can accept them with "
            f"`klaviyo-export connection accept-terms {connection.id}`"
        )
