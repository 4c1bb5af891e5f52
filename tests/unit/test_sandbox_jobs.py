"""Bulk import: body validation, row checks and clock-driven processing."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import pytest

from sandbox.clock import ManualClock
from sandbox.config import SandboxConfig
from sandbox.errors import ApiError
from sandbox.jobs import (
    MAX_PROFILE_BYTES,
    MAX_PROFILES_PER_JOB,
    ImportRequest,
    JobProcessor,
    validate_import_body,
)
from sandbox.store import Account, Profile, Store

LIST = "Y6nRLr"


def body(*profiles: Any, lists: tuple[str, ...] = (LIST,)) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "profile-bulk-import-job",
        "attributes": {"profiles": {"data": list(profiles)}},
    }
    if lists:
        data["relationships"] = {"lists": {"data": [{"type": "list", "id": i} for i in lists]}}
    return {"data": data}


def row(email: str | None = None, **attributes: Any) -> dict[str, Any]:
    if email is not None:
        attributes["email"] = email
    return {"type": "profile", "attributes": attributes}


def refusal(document: Any, size: int = 100) -> ApiError:
    with pytest.raises(ApiError) as caught:
        validate_import_body(document, size)
    assert caught.value.status == 400
    return caught.value


def test_a_valid_body_gives_rows_and_lists() -> None:
    request = validate_import_body(body(row("a@x.com"), row("b@x.com")), 200)
    assert [r["attributes"]["email"] for r in request.rows] == ["a@x.com", "b@x.com"]
    assert request.list_ids == [LIST]
    assert validate_import_body(body(row("a@x.com"), lists=()), 100).list_ids == []


def _mutations() -> list[tuple[str, Any, str]]:
    def change(path: Sequence[str | int], value: Any) -> dict[str, Any]:
        document = body(row("a@x.com"), row("b@x.com"))
        target: Any = document
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return document

    rows: list[str | int] = ["data", "attributes", "profiles", "data"]
    at = "/data/attributes/profiles/data"
    lists: list[str | int] = ["data", "relationships", "lists", "data", 0]
    return [
        ("not an object", [1, 2], "/"),
        ("no data", {"other": 1}, "/data"),
        ("wrong type", change(["data", "type"], "profile-import-job"), "/data/type"),
        ("no attributes", change(["data", "attributes"], KeyError), "/data/attributes"),
        ("no profiles", change(rows[:3], KeyError), "/data/attributes/profiles"),
        ("no profiles.data", change(rows, KeyError), at),
        ("profiles.data not a list", change(rows, {"a": 1}), at),
        ("profile not an object", change([*rows, 1], "b@x.com"), f"{at}/1"),
        ("profile without type", change([*rows, 1, "type"], KeyError), f"{at}/1/type"),
        ("profile of another type", change([*rows, 0, "type"], "list"), f"{at}/0/type"),
        ("no attributes", change([*rows, 1, "attributes"], KeyError), f"{at}/1/attributes"),
        ("numeric email", change([*rows, 0, "attributes", "email"], 5), f"{at}/0/attributes/email"),
        (
            "bad properties",
            change([*rows, 0, "attributes", "properties"], []),
            f"{at}/0/attributes/properties",
        ),
        (
            "unknown attribute",
            change([*rows, 1, "attributes", "shoe"], "x"),
            f"{at}/1/attributes/shoe",
        ),
        ("numeric id", change([*rows, 0, "id"], 7), f"{at}/0/id"),
        ("bad list", change(lists, {"id": "x"}), "/data/relationships/lists/data/0"),
    ]


@pytest.mark.parametrize(("case", "document", "pointer"), _mutations())
def test_schema_violations_are_refused_with_a_pointer(
    case: str, document: Any, pointer: str
) -> None:
    assert refusal(document).pointer == pointer, case


def test_at_most_ten_thousand_profiles() -> None:
    validate_import_body(body(*[row(f"u{i}@x.com") for i in range(MAX_PROFILES_PER_JOB)]), 10**6)
    too_many = body(*[row(f"u{i}@x.com") for i in range(MAX_PROFILES_PER_JOB + 1)])
    assert refusal(too_many, 10**6).pointer == "/data/attributes/profiles/data"


def test_a_profile_over_100_kb_is_refused_with_its_index() -> None:
    big = row("big@x.com", properties={"blob": "é" * (MAX_PROFILE_BYTES // 2)})  # 2 bytes each
    small = [row(f"u{i}@x.com") for i in range(3000)]
    error = refusal(body(*small, big, row("z@x.com")), 400_000)
    assert error.pointer == "/data/attributes/profiles/data/3000"
    just_fits = row("fit@x.com", properties={"blob": "a" * (MAX_PROFILE_BYTES - 200)})
    validate_import_body(body(*small, just_fits), 400_000)


class Harness:
    """A store and processor on a manual clock."""

    def __init__(self, **options: Any) -> None:
        settings: dict[str, Any] = {
            "api_keys": {"pk": None},
            "lists": {LIST: "Newsletter", "Other1": "Other"},
            "job_queue_seconds": 1.0,
            "job_profiles_per_second": 10.0,
        }
        settings.update(options)
        config = SandboxConfig(**settings)
        self.clock = ManualClock(100.0)
        self.store = Store(config, self.clock)
        self.processor = JobProcessor(self.store, config)
        self.account: Account = next(iter(self.store.accounts.values()))

    def submit(self, *rows: dict[str, Any], lists: tuple[str, ...] = (LIST,)) -> Any:
        request = ImportRequest(rows=[copy.deepcopy(r) for r in rows], list_ids=list(lists))
        return self.processor.create(self.account, request)

    def run(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.processor.advance(self.clock.now())

    def members(self, list_id: str = LIST) -> list[str | None]:
        record = self.account.lists[list_id]
        return [self.profile(pid).email for pid in record.members]

    def profile(self, profile_id: str) -> Profile:
        found = self.account.profile(profile_id)
        assert found is not None
        return found


def test_a_job_is_queued_then_processing_then_complete() -> None:
    h = Harness()
    job = h.submit(*[row(f"u{i}@x.com") for i in range(10)])
    assert (job.status(h.clock.now()), job.completed) == ("queued", 0)
    h.run(0.5)
    assert job.status(h.clock.now()) == "queued"
    h.run(0.8)  # 0.3 s into processing at 10 profiles/s
    assert job.status(h.clock.now()) == "processing"
    assert job.completed == 3
    assert len(h.members()) == 3
    h.run(0.75)
    assert job.status(h.clock.now()) == "complete"
    assert (job.completed, job.failed, job.total) == (10, 0, 10)
    assert job.completed_at == pytest.approx(102.0)
    assert job.rows is None
    assert len(h.members()) == 10


def test_bad_rows_fail_one_by_one_with_their_payload() -> None:
    h = Harness(fail_email=r"@blocked\.test$", job_profiles_per_second=1000.0)
    rows = [
        row("good@x.com"),
        row("not-an-email"),
        row("a@b"),
        row("dots..x@x.com"),
        row("someone@blocked.test"),
        row(None, phone_number="+15005550006"),
        row(None, phone_number="555-1234"),
        row(None, first_name="Nobody"),
        {"type": "profile", "id": "01NOSUCHPROFILE0000000000", "attributes": {}},
    ]
    job = h.submit(*rows)
    h.run(2.0)
    assert (job.completed, job.failed) == (2, 7)
    by_index = {e.pointer.split("/")[5]: e for e in job.errors}
    assert set(by_index) == {"1", "2", "3", "4", "6", "7", "8"}
    assert by_index["1"].pointer == "/data/attributes/profiles/data/1/attributes/email"
    assert by_index["1"].payload == rows[1]
    assert "fail-email" in by_index["4"].detail
    assert by_index["6"].pointer.endswith("/attributes/phone_number")
    assert by_index["7"].pointer == "/data/attributes/profiles/data/7"
    assert "does not exist" in by_index["8"].detail
    assert h.members() == ["good@x.com", None]


def test_upsert_keeps_the_id_and_merges_non_null_values() -> None:
    h = Harness(job_profiles_per_second=1000.0)
    h.submit(row("Ann@X.com", first_name="Ann", properties={"tier": "gold", "n": 1}))
    h.run(2.0)
    (first_id,) = h.account.profiles
    first = h.profile(first_id)
    h.submit(
        row("ann@x.com", first_name=None, last_name="Lee", properties={"n": 2, "tier": None}),
        lists=("Other1",),
    )
    h.run(2.0)
    assert list(h.account.profiles) == [first.id]
    updated = h.profile(first.id)
    assert updated.email == "ann@x.com"
    assert updated.extra_attributes() == {
        "first_name": "Ann",
        "last_name": "Lee",
        "properties": {"tier": "gold", "n": 2},
    }
    assert updated.created == first.created < updated.updated
    assert h.members() == ["ann@x.com"]
    assert h.members("Other1") == ["ann@x.com"]


def test_duplicates_in_one_job_are_one_profile_listed_once() -> None:
    h = Harness(job_profiles_per_second=1000.0)
    job = h.submit(row("a@x.com"), row("A@x.com", first_name="A"), row("b@x.com"))
    h.run(2.0)
    assert (job.completed, job.failed) == (3, 0)
    assert len(job.profile_ids) == 2
    assert len(h.account.profiles) == 2


def test_an_identifier_owned_by_another_profile_fails_the_row() -> None:
    h = Harness(job_profiles_per_second=1000.0)
    h.submit(row("a@x.com", phone_number="+15005550001"), row("b@x.com"))
    h.run(2.0)
    job = h.submit(row("b@x.com", phone_number="+15005550001"))
    h.run(2.0)
    assert job.failed == 1
    assert "phone_number is already used" in job.errors[0].detail


def test_an_unknown_list_is_refused_at_creation() -> None:
    h = Harness()
    with pytest.raises(ApiError) as caught:
        h.submit(row("a@x.com"), lists=(LIST, "Nope12"))
    assert caught.value.pointer == "/data/relationships/lists/data/1/id"
    assert h.account.jobs == {}


def test_an_empty_job_completes_after_the_queue() -> None:
    h = Harness()
    job = h.submit()
    h.run(1.0)
    assert job.status(h.clock.now()) == "complete"
    assert job.total == 0


def test_a_row_budget_runs_due_rows_in_slices_oldest_job_first() -> None:
    h = Harness(job_profiles_per_second=1000.0)
    first = h.submit(*[row(f"a{i}@x.com") for i in range(5)])
    second = h.submit(*[row(f"b{i}@x.com") for i in range(5)])
    h.clock.advance(2.0)  # every row of both jobs is due
    assert h.processor.advance(h.clock.now(), budget=3)
    assert h.processor.behind
    assert (first.completed, second.completed) == (3, 0)
    h.processor.advance(h.clock.now(), budget=3)
    assert (first.completed, second.completed) == (5, 1)
    assert first.status(h.clock.now()) == "complete"
    while h.processor.advance(h.clock.now(), budget=3):
        pass
    assert not h.processor.behind
    assert second.status(h.clock.now()) == "complete"
    assert h.members() == [f"a{i}@x.com" for i in range(5)] + [f"b{i}@x.com" for i in range(5)]
