"""The domain without Celery or HTTP, for unit tests.

fakeredis holds the stores; a ``RecordingDispatcher`` stands in for the
Celery chords (it records what would have been sent); ``ScriptedKlaviyo``
answers each client method from a script the test writes, in order, and
raises the errors put in it. ``ScriptedContext`` is a ``Context`` whose
Klaviyo clients (the workers' and the commands') are that script.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import fakeredis

from core.batch_store import StoredBatch
from core.context import Context
from core.records import Connection, Export, ExportSpec
from core.secrets import SecretBox, generate_key
from core.settings import Settings
from core.state import digest
from klaviyo_client import (
    ErrorDetail,
    ImportErrorItem,
    ImportJob,
    KeyCheck,
    KlaviyoError,
    KlaviyoList,
    Profile,
)
from klaviyo_client.client import BeforeRequest

API_KEY = "pk_" + "a" * 34
LIST_ID = "L1"
E = TypeVar("E", bound=KlaviyoError)


@dataclass
class RecordingDispatcher:
    """What the lifecycle and the producer would have sent to the workers."""

    uploads: list[tuple[str, list[int]]] = field(default_factory=list)
    removals: list[tuple[str, int]] = field(default_factory=list)

    def launch_uploads(self, run_id: str, batches: Iterable[int]) -> None:
        self.uploads.append((run_id, list(batches)))

    def launch_removals(self, run_id: str, chunks: int) -> None:
        self.removals.append((run_id, chunks))


class ScriptedKlaviyo:
    """Each method answers from its own script, first answer first; an
    exception in a script is raised. A call with nothing scripted fails the
    test: every call to Klaviyo is one the test expected."""

    def __init__(self) -> None:
        self.scripts: defaultdict[str, deque[object]] = defaultdict(deque)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def script(self, method: str, *answers: object) -> None:
        self.scripts[method].extend(answers)

    def called(self, method: str) -> list[tuple[Any, ...]]:
        """The arguments of each call to ``method``, in order."""
        return [args for name, args in self.calls if name == method]

    def _answer(self, method: str, *args: Any) -> Any:
        self.calls.append((method, args))
        script = self.scripts[method]
        if not script:
            raise AssertionError(f"unscripted call to Klaviyo: {method}{args!r}")
        answer = script.popleft()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    # -- the KlaviyoClient methods the domain calls --------------------------------

    def verify_key(self) -> KeyCheck:
        answer: KeyCheck = self._answer("verify_key")
        return answer

    def get_list(self, list_id: str) -> KlaviyoList:
        answer: KlaviyoList = self._answer("get_list", list_id)
        return answer

    def create_bulk_import_job(self, profiles: bytes, list_id: str) -> ImportJob:
        answer: ImportJob = self._answer("create_bulk_import_job", profiles, list_id)
        return answer

    def get_bulk_import_job(self, job_id: str) -> ImportJob:
        answer: ImportJob = self._answer("get_bulk_import_job", job_id)
        return answer

    def import_errors_page(
        self, job_id: str, next_url: str | None = None
    ) -> tuple[list[ImportErrorItem], str | None]:
        answer: tuple[list[ImportErrorItem], str | None]
        answer = self._answer("import_errors_page", job_id, next_url)
        return answer

    def iter_profiles_by_email(self, emails: Iterable[str]) -> Iterator[Profile]:
        yield from self._answer("iter_profiles_by_email", list(emails))

    def iter_list_members(self, list_id: str) -> Iterator[Profile]:
        yield from self._answer("iter_list_members", list_id)

    def remove_profiles_from_list(self, list_id: str, profile_ids: Sequence[str]) -> None:
        self._answer("remove_profiles_from_list", list_id, list(profile_ids))


@dataclass(frozen=True)
class ScriptedContext(Context):
    """A ``Context`` whose Klaviyo is ``fake``; as with the real clients, the
    connection must exist (a removed one raises ``NotFound``)."""

    fake: ScriptedKlaviyo = field(default_factory=ScriptedKlaviyo)

    def klaviyo(  # type: ignore[override]
        self, connection_id: str, before_request: BeforeRequest | None = None
    ) -> ScriptedKlaviyo:
        self.store.get_connection(connection_id)
        return self.fake

    def patient_klaviyo(self, connection_id: str) -> ScriptedKlaviyo:  # type: ignore[override]
        self.store.get_connection(connection_id)
        return self.fake


def scripted_context(dispatcher: RecordingDispatcher | None = None, **env: str) -> ScriptedContext:
    """A context on a fresh fakeredis; ``env`` as ``Settings.from_env`` reads it."""
    settings = Settings.from_env(env)
    box = SecretBox(generate_key())
    ctx = ScriptedContext.build(
        settings, fakeredis.FakeRedis(), box, dispatcher or RecordingDispatcher()
    )
    assert isinstance(ctx, ScriptedContext)
    return ctx


def dispatched(ctx: Context) -> RecordingDispatcher:
    dispatcher = ctx.lifecycle.dispatcher
    assert isinstance(dispatcher, RecordingDispatcher)
    return dispatcher


def add_connection(ctx: Context, allow: str = "contributors", contract_cap: int = 0) -> Connection:
    return ctx.store.add_connection(
        name="c", api_key=API_KEY, allow=allow, created_by="ann", account_id="A1",
        verified_via="accounts", accepted_terms=True, contract_cap=contract_cap,
    )  # fmt: skip


def add_export(ctx: Context, connection: Connection, **options: Any) -> Export:
    fields: dict[str, Any] = {
        "name": "e",
        "connection_id": connection.id,
        "list_id": LIST_ID,
        "email_field": "Email",
        "properties": {"Tier": "tier"},
        **options,
    }
    return ctx.store.add_export(ExportSpec(**fields), created_by="ann")


def running_run(ctx: Context, export: Export, batches: Sequence[Sequence[str]]) -> str:
    """A run past its segment: each batch's emails stored as the producer
    stores them (data rows numbered from 1), now ``running``."""
    run_id = ctx.lifecycle.create(export.id, "seg.csv", "ann", export.connection_id, LIST_ID)
    ctx.locks.take(export.id, run_id)
    row = 1
    for number, emails in enumerate(batches):
        profiles = [{"type": "profile", "attributes": {"email": e}} for e in emails]
        rows = list(range(row, row + len(emails)))
        row += len(emails)
        digests = [digest(json.dumps(p).encode()) for p in profiles]
        payload = json.dumps(profiles).encode()
        ctx.batches.store(StoredBatch(run_id, number, payload, rows, list(emails), digests))
    submitted = sum(len(b) for b in batches)
    assert ctx.lifecycle.begin_upload(
        run_id, rows_read=submitted, submitted=submitted, batches=len(batches)
    )
    return run_id


def job(
    job_id: str, status: str = "complete", total: int = 3, completed: int = 3, failed: int = 0
) -> ImportJob:
    return ImportJob(job_id, status, total, completed, failed)


def klaviyo_error(kind: type[E], status: int, code: str | None, message: str = "no") -> E:
    """A client error as ``klaviyo_client.classify`` makes it (Klaviyo's code, if any)."""
    details = (ErrorDetail(code, message, message),) if code else ()
    return kind(message, status=status, operation="test", errors=details)
