"""Bulk profile import: accept, validate, and process jobs in the background.

Limits (spec text of ``bulk_import_profiles``): up to 10,000 profiles per job,
a 5 MB payload and 100 KB per profile. The spec gives no status for breaking
them, so the sandbox chooses:

* payload over 5 MiB (5,242,880 bytes, after gzip decoding): **413**
  ``payload_too_large`` (checked by the server for every body);
* more than 10,000 profiles: **400** ``invalid``, pointer
  ``/data/attributes/profiles/data``;
* one profile over 100 KiB (its compact JSON, UTF-8): **400** ``invalid``,
  pointer ``/data/attributes/profiles/data/<i>``.

A body that breaks the request schema (``ProfileImportJobCreateQuery``) is
refused whole with a 400 whose ``source.pointer`` names the first offending
place: not an object, wrong ``data.type``, missing
``attributes.profiles.data``, a profile that is not an object, lacks
``type: "profile"`` or ``attributes``, an attribute of the wrong JSON type, or
an attribute the profile resource does not have. A related list that does not
exist is refused the same way (400, pointer to its id) - a choice, since
Klaviyo's answer for it is not documented.

Rows that pass the schema but are unusable fail one by one, as in Klaviyo:
they count in ``failed_count`` and appear under ``/import-errors`` with the
submitted profile object as ``original_payload``. A row fails when its email
does not pass :data:`EMAIL` (one compiled regex, at most 254 characters), its
phone number is not E.164 (``+`` then 7 to 15 digits; Klaviyo also checks the
number plan, the sandbox does not), its email matches ``--fail-email``, it has
no identifier (email, phone number, external id or id), its ``id`` is
unknown, or one of its identifiers belongs to another profile.

Progress follows a clock model rather than a timer: a job is ``queued`` for
``job_queue_seconds`` after creation, then rows become due at
``job_profiles_per_second``. Every request first runs the rows due by now
(under the store lock), and :class:`JobRunner` does the same in the
background, so a job read as ``complete`` always has its effects visible
everywhere. ``completed_at`` is the model's finishing time. ``expires_at`` is
left null (Klaviyo does not document when job results expire).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

from sandbox.config import SandboxConfig
from sandbox.errors import invalid_pointer
from sandbox.pagination import Chunked
from sandbox.store import Account, ListRecord, RowError, Store

MAX_PROFILES_PER_JOB = 10_000
MAX_PAYLOAD_BYTES = 5 * 1024 * 1024
MAX_PROFILE_BYTES = 100 * 1024

EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]"
)
E164 = re.compile(r"\+[1-9][0-9]{6,14}")

_ROWS = "/data/attributes/profiles/data"
# Attribute name -> the JSON type it must have when not null.
_ATTRIBUTE_TYPES: dict[str, type] = {
    "email": str,
    "phone_number": str,
    "external_id": str,
    "_kx": str,
    "first_name": str,
    "last_name": str,
    "organization": str,
    "locale": str,
    "title": str,
    "image": str,
    "location": dict,
    "properties": dict,
}
_TYPE_NAMES: dict[type, str] = {str: "a string", dict: "an object"}
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@dataclass
class ImportErrorRecord:
    """One failed row."""

    id: str
    detail: str
    pointer: str
    payload: dict[str, Any]


@dataclass
class Job:
    """A bulk import job and its progress."""

    id: str
    created: float
    start: float
    total: int
    lists: list[ListRecord]
    rows: list[dict[str, Any]] | None
    processed: int = 0
    completed: int = 0
    failed: int = 0
    completed_at: float | None = None
    profile_ids: Chunked[str] = field(default_factory=Chunked)
    errors: list[ImportErrorRecord] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def status(self, now: float) -> str:
        """Strictly after ``start`` it is processing, so a job is queued when created."""
        if self.completed_at is not None:
            return "complete"
        return "processing" if now > self.start else "queued"


@dataclass(frozen=True)
class ImportRequest:
    """A schema-valid bulk import body."""

    rows: list[dict[str, Any]]
    list_ids: list[str]


def validate_import_body(document: Any, body_size: int) -> ImportRequest:
    """Check a parsed body against the request schema and the documented limits."""
    if not isinstance(document, dict):
        raise invalid_pointer("The request body must be a JSON object.", "/")
    data = _object(document.get("data"), "/data")
    if data.get("type") != "profile-bulk-import-job":
        raise invalid_pointer("'type' must be 'profile-bulk-import-job'.", "/data/type")
    attributes = _object(data.get("attributes"), "/data/attributes")
    profiles = _object(attributes.get("profiles"), "/data/attributes/profiles")
    rows = profiles.get("data")
    if not isinstance(rows, list):
        raise invalid_pointer("'data' is required and must be an array.", _ROWS)
    if len(rows) > MAX_PROFILES_PER_JOB:
        raise invalid_pointer(
            f"A job accepts at most {MAX_PROFILES_PER_JOB} profiles; {len(rows)} were sent.", _ROWS
        )
    for index, row in enumerate(rows):
        _check_row_schema(row, index)
    if body_size > MAX_PROFILE_BYTES:  # else no single profile can be too large
        _check_profile_sizes(rows, body_size)
    return ImportRequest(rows=rows, list_ids=_related_lists(data.get("relationships")))


def _check_profile_sizes(rows: list[Any], body_size: int) -> None:
    """Refuse the first profile over :data:`MAX_PROFILE_BYTES` (compact JSON, UTF-8).

    Encoding 10,000 profiles one by one costs more than the rest of the
    validation, so rows are encoded in chunks expected to be well under the
    limit; only a chunk that is over it is looked at row by row.
    """
    encode = _COMPACT.encode
    chunk = max(1, MAX_PROFILE_BYTES * len(rows) // (2 * body_size))
    for first in range(0, len(rows), chunk):
        part = rows[first : first + chunk]
        if len(part) > 1 and _utf8_size(encode(part)) <= MAX_PROFILE_BYTES:
            continue
        for offset, row in enumerate(part):
            size = _utf8_size(encode(row))
            if size > MAX_PROFILE_BYTES:
                raise invalid_pointer(
                    f"A profile may be at most {MAX_PROFILE_BYTES} bytes; this one is {size}.",
                    f"{_ROWS}/{first + offset}",
                )


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _object(value: Any, pointer: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        name = pointer.rsplit("/", 1)[-1]
        raise invalid_pointer(f"'{name}' is required and must be an object.", pointer)
    return value


def _check_row_schema(row: Any, index: int) -> None:
    """Raise a 400 pointing into the first schema problem of one profile.

    The fast path is a handful of type checks; messages are built only on failure.
    """
    get = row.get if type(row) is dict else None
    if (
        get is None
        or get("type") != "profile"
        or type(get("attributes")) is not dict
        or (get("id") is not None and type(get("id")) is not str)
        or (get("meta") is not None and type(get("meta")) is not dict)
    ):
        _row_schema_error(row, f"{_ROWS}/{index}")
    for name, value in row["attributes"].items():
        expected = _ATTRIBUTE_TYPES.get(name)
        if expected is None:
            raise invalid_pointer(
                f"'{name}' is not a valid field for the resource 'profile'.",
                f"{_ROWS}/{index}/attributes/{name}",
            )
        if value is not None and type(value) is not expected:
            raise invalid_pointer(
                f"'{name}' must be {_TYPE_NAMES[expected]}.",
                f"{_ROWS}/{index}/attributes/{name}",
            )


def _row_schema_error(row: Any, pointer: str) -> NoReturn:
    if not isinstance(row, dict):
        raise invalid_pointer("Each profile must be an object.", pointer)
    if row.get("type") != "profile":
        raise invalid_pointer("'type' must be 'profile'.", f"{pointer}/type")
    if not isinstance(row.get("attributes"), dict):
        raise invalid_pointer(
            "'attributes' is required and must be an object.", f"{pointer}/attributes"
        )
    if row.get("meta") is not None and not isinstance(row.get("meta"), dict):
        raise invalid_pointer("'meta' must be an object.", f"{pointer}/meta")
    raise invalid_pointer("'id' must be a string.", f"{pointer}/id")


def _related_lists(relationships: Any) -> list[str]:
    if relationships is None:
        return []
    relationships = _object(relationships, "/data/relationships")
    lists = relationships.get("lists")
    if lists is None:
        return []
    items = _object(lists, "/data/relationships/lists").get("data")
    if not isinstance(items, list):
        raise invalid_pointer("'data' must be an array.", "/data/relationships/lists/data")
    found: list[str] = []
    for index, item in enumerate(items):
        pointer = f"/data/relationships/lists/data/{index}"
        if not isinstance(item, dict) or item.get("type") != "list":
            raise invalid_pointer("Each related list must be {type: 'list', id}.", pointer)
        if not isinstance(item.get("id"), str):
            raise invalid_pointer("'id' is required and must be a string.", f"{pointer}/id")
        if item["id"] not in found:
            found.append(item["id"])
    return found


class JobProcessor:
    """Creates jobs and runs their due rows; call everything under ``store.lock``."""

    def __init__(self, store: Store, config: SandboxConfig) -> None:
        self.store = store
        self.queue_seconds = config.job_queue_seconds
        self.per_second = config.job_profiles_per_second
        self.fail_email = re.compile(config.fail_email) if config.fail_email else None
        self.wake = threading.Event()
        self.behind = False
        """After a budgeted :meth:`advance`: due rows were left for later."""

    def create(self, account: Account, request: ImportRequest) -> Job:
        """Register a job (raises a 400 for an unknown related list)."""
        lists: list[ListRecord] = []
        for index, list_id in enumerate(request.list_ids):
            record = account.lists.get(list_id)
            if record is None:
                raise invalid_pointer(
                    f"A list with id {list_id} does not exist.",
                    f"/data/relationships/lists/data/{index}/id",
                )
            lists.append(record)
        now = self.store.clock.now()
        job = Job(
            id=self.store.ids.ulid(),
            created=now,
            start=now + self.queue_seconds,
            total=len(request.rows),
            lists=lists,
            rows=request.rows,
        )
        account.jobs[job.id] = job
        account.job_order.append(job)
        account.active_jobs.append(job)
        self.wake.set()
        return job

    def advance(self, now: float, budget: int | None = None) -> bool:
        """Run the rows due by ``now``; True while some job is unfinished.

        With a ``budget``, stop once about that many rows ran (jobs are taken
        in creation order, so no job overtakes an older one); :attr:`behind`
        then says that due rows are left. Readers never pass a budget: what
        they see has every due row applied.
        """
        busy = False
        self.behind = False
        for account in self.store.accounts.values():
            if not account.active_jobs:
                continue
            for job in account.active_jobs:
                if budget is not None and budget <= 0:
                    self.behind = True
                    break
                ran = self._advance_job(account, job, now, budget)
                if budget is not None:
                    budget -= ran
            account.active_jobs = [job for job in account.active_jobs if job.completed_at is None]
            busy = busy or bool(account.active_jobs)
        return busy

    def _advance_job(self, account: Account, job: Job, now: float, budget: int | None) -> int:
        """Run the job's due rows (at most ``budget``); returns how many ran."""
        if now < job.start:
            return 0
        # The epsilon keeps float error (0.3 s * 10/s = 2.9999...) from losing a row.
        due = min(job.total, int((now - job.start) * self.per_second + 1e-6))
        ran = 0
        if budget is not None and due - job.processed > budget:
            due = job.processed + budget
            self.behind = True
        if job.rows is not None and due > job.processed:
            ran = due - job.processed
            self._run_rows(account, job, job.rows, due, now)
        if job.processed >= job.total:
            job.completed_at = job.start + job.total / self.per_second
            job.rows = None  # a finished job keeps only ids and failed rows
            job._seen = set()
        return ran

    def _run_rows(
        self, account: Account, job: Job, rows: list[dict[str, Any]], due: int, now: float
    ) -> None:
        """Apply rows ``job.processed`` to ``due``; the per-profile hot loop."""
        upsert = self.store.upsert
        row_problem = self._row_problem
        # Ids of the applied rows, in order: the job's profiles and list
        # memberships are added from it in bulk after the loop (nothing in the
        # loop reads them).
        done: list[str] = []
        for index in range(job.processed, due):
            row = rows[index]
            attributes: dict[str, Any] = row["attributes"]
            profile_id = row.get("id")
            problem = row_problem(attributes, profile_id is not None)
            if problem is not None:
                detail, name = problem
                where = f"{_ROWS}/{index}/attributes/{name}" if name else f"{_ROWS}/{index}"
                self._fail(job, detail, where, row)
                continue
            try:
                pid = upsert(account, attributes, profile_id, now)
            except RowError as exc:
                self._fail(job, str(exc), f"{_ROWS}/{index}", row)
                continue
            done.append(pid)
        job.completed += len(done)
        job.processed = due
        seen = job._seen
        fresh = [pid for pid in dict.fromkeys(done) if pid not in seen]
        seen.update(fresh)
        job.profile_ids.extend(fresh)
        added = False
        for record in job.lists:
            if record.members.add_many(done, now):
                added = True
        if added:
            for record in job.lists:
                record.updated = now

    def _row_problem(self, attributes: dict[str, Any], has_id: bool) -> tuple[str, str] | None:
        """(detail, attribute name or "") of the first reason the row fails, if any."""
        email = attributes.get("email")
        phone = attributes.get("phone_number")
        if email is not None:
            if len(email) > 254 or EMAIL.fullmatch(email) is None:
                return "Invalid email address.", "email"
            if self.fail_email is not None and self.fail_email.search(email):
                return "The email address was rejected (sandbox --fail-email).", "email"
        if phone is not None and E164.fullmatch(phone) is None:
            return "Invalid phone number; use E.164 format, e.g. +15005550006.", "phone_number"
        if email is None and phone is None and attributes.get("external_id") is None and not has_id:
            return "A profile needs an email, phone_number, external_id or id.", ""
        return None

    def _fail(self, job: Job, detail: str, pointer: str, row: dict[str, Any]) -> None:
        job.failed += 1
        job.errors.append(ImportErrorRecord(self.store.ids.uuid(), detail, pointer, row))


class JobRunner:
    """Background thread that keeps jobs moving when nobody is asking."""

    def __init__(
        self, processor: JobProcessor, tick_seconds: float = 0.02, slice_rows: int = 2_000
    ) -> None:
        self.processor = processor
        self.tick = tick_seconds
        self.slice_rows = slice_rows
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.processor.wake.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        # Rows run in slices of ``slice_rows`` (about 15 ms), the lock released
        # in between: a request waits for one slice at most, not for every row
        # due across all jobs.
        store = self.processor.store
        while not self._stop.is_set():
            with store.lock:
                busy = self.processor.advance(store.clock.now(), self.slice_rows)
                behind = self.processor.behind
            if behind:
                time.sleep(0.001)  # let a thread waiting for the lock have it
                continue
            self.processor.wake.wait(self.tick if busy else None)
            self.processor.wake.clear()
