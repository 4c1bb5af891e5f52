"""What a remote caller (the HTTP API, the console) may read and start.

- ``core.queries``: contributors see the connections allowed to contributors
  and the exports on them; a trigger token reads exports and runs, never
  connections, reports or the audit log; a hidden record is ``NotFound``.
- ``producer.remote``: a run asked for over HTTP reads the export's bound
  segment, or a path under ``KLAVIYO_EXPORT_SOURCE_ROOTS``, nothing else.
- ``Idempotency-Key``: a retried request gets the first request's run; a key
  reused for another request is refused; a refused request frees its key.
- ``open_run`` refuses at once (busy, disabled); ``read_opened`` then reads.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from core import queries
from core.actors import Actor
from core.errors import ExportBusy, ExportError, Forbidden, InvalidInput, NotFound
from producer.remote import allowed_path, open_remote_run, request_run
from producer.runner import read_opened
from schemas.contracts import RunStatus
from tests.support.domain import (
    ScriptedContext,
    add_connection,
    add_export,
    dispatched,
    scripted_context,
)

ADMIN = Actor("ann", "admin")
CONTRIBUTOR = Actor("bob", "contributor")
TRIGGER = Actor("airflow", "trigger", via="token t_0000000000")


@pytest.fixture
def ctx(tmp_path: Path) -> ScriptedContext:
    return scripted_context(KLAVIYO_EXPORT_SOURCE_ROOTS=str(tmp_path / "segments"))


def _segment(folder: Path, name: str = "s.csv", rows: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    lines = ["Email,Tier"] + [f"user{i}@example.com,gold" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_contributors_see_only_connections_allowed_to_contributors(ctx: ScriptedContext) -> None:
    shared = add_connection(ctx, allow="contributors")
    private = add_connection(ctx, allow="admins")
    on_private = add_export(ctx, private)
    on_shared = add_export(ctx, shared)

    assert {c.id for c in queries.list_connections(ctx, ADMIN)} == {shared.id, private.id}
    assert [c.id for c in queries.list_connections(ctx, CONTRIBUTOR)] == [shared.id]
    with pytest.raises(NotFound):
        queries.get_connection(ctx, CONTRIBUTOR, private.id)
    assert [e.id for e in queries.list_exports(ctx, CONTRIBUTOR)] == [on_shared.id]
    with pytest.raises(NotFound):
        queries.get_export(ctx, CONTRIBUTOR, on_private.id)
    with pytest.raises(NotFound):
        queries.recent_runs(ctx, CONTRIBUTOR, on_private.id, 10)


def test_a_trigger_reads_exports_and_runs_but_nothing_else(ctx: ScriptedContext) -> None:
    connection = add_connection(ctx, allow="admins")
    export = add_export(ctx, connection)
    run_id = ctx.lifecycle.create(export.id, "s.csv", "ann", connection.id, export.list_id)

    assert [e.id for e in queries.list_exports(ctx, TRIGGER)] == [export.id]
    assert queries.get_run(ctx, TRIGGER, run_id).run_id == run_id
    for refused in (
        lambda: queries.list_connections(ctx, TRIGGER),
        lambda: queries.get_connection(ctx, TRIGGER, connection.id),
        lambda: queries.run_report(ctx, TRIGGER, run_id),
        lambda: queries.audit_entries(ctx, TRIGGER, 10),
    ):
        with pytest.raises(Forbidden, match="a trigger token may only start runs and read them"):
            refused()


def test_a_report_is_refused_before_its_first_row(ctx: ScriptedContext) -> None:
    with pytest.raises(NotFound):
        queries.run_report(ctx, ADMIN, "r_missing")  # not at the first next()


def test_a_remote_run_reads_the_bound_segment(ctx: ScriptedContext, tmp_path: Path) -> None:
    bound = _segment(tmp_path / "elsewhere")
    export = add_export(ctx, add_connection(ctx), segment=str(bound), segment_format="csv")

    request = request_run(ctx, ADMIN, export.id)

    assert (request.source, request.format, request.trigger) == (str(bound), "csv", "api")


def test_a_named_path_must_lie_under_a_source_root(ctx: ScriptedContext, tmp_path: Path) -> None:
    export = add_export(ctx, add_connection(ctx))
    inside = _segment(tmp_path / "segments")
    outside = _segment(tmp_path / "private")

    assert request_run(ctx, ADMIN, export.id, source=str(inside)).source == str(inside)
    assert allowed_path(ctx, "s.csv") == str(inside)  # relative: under the first root
    for path in (str(outside), str(tmp_path / "segments" / ".." / "private" / "s.csv"), "-"):
        with pytest.raises(InvalidInput) as refused:
            request_run(ctx, ADMIN, export.id, source=path)
        assert refused.value.field == "source"
    (tmp_path / "segments" / "link.csv").symlink_to(outside)
    with pytest.raises(InvalidInput, match="outside the server's source roots"):
        allowed_path(ctx, str(tmp_path / "segments" / "link.csv"))


def test_without_roots_only_the_bound_segment_is_read(tmp_path: Path) -> None:
    ctx = scripted_context()
    export = add_export(ctx, add_connection(ctx))
    with pytest.raises(InvalidInput, match="KLAVIYO_EXPORT_SOURCE_ROOTS is not set"):
        request_run(ctx, ADMIN, export.id, source=str(_segment(tmp_path)))
    with pytest.raises(InvalidInput, match="has no segment bound"):
        request_run(ctx, ADMIN, export.id)


def test_a_retried_request_gets_the_first_run(ctx: ScriptedContext, tmp_path: Path) -> None:
    segment = _segment(tmp_path / "segments")
    export = add_export(ctx, add_connection(ctx), segment=str(segment))

    first = open_remote_run(ctx, TRIGGER, export.id, idempotency_key="nightly-2026-12-03")
    again = open_remote_run(ctx, TRIGGER, export.id, idempotency_key="nightly-2026-12-03")

    assert not first.replayed
    assert again.replayed
    assert again.run_id == first.run_id
    assert ctx.runs.get(first.run_id).status is RunStatus.PENDING
    with pytest.raises(InvalidInput, match="used for another request") as reused:
        open_remote_run(ctx, TRIGGER, export.id, full=True, idempotency_key="nightly-2026-12-03")
    assert reused.value.field == "idempotency_key"
    with pytest.raises(ExportBusy):  # another key: the export has a run in progress
        open_remote_run(ctx, TRIGGER, export.id, idempotency_key="another")


def test_a_refused_request_frees_its_key(ctx: ScriptedContext, tmp_path: Path) -> None:
    export = add_export(ctx, add_connection(ctx), segment=str(_segment(tmp_path)))
    ctx.store.save_export(replace(export, enabled=False))
    with pytest.raises(ExportError, match="disabled"):
        open_remote_run(ctx, ADMIN, export.id, idempotency_key="k1")
    ctx.store.save_export(replace(export, enabled=True))

    assert not open_remote_run(ctx, ADMIN, export.id, idempotency_key="k1").replayed


def test_keys_are_per_caller(ctx: ScriptedContext, tmp_path: Path) -> None:
    export = add_export(ctx, add_connection(ctx), segment=str(_segment(tmp_path)))
    open_remote_run(ctx, ADMIN, export.id, idempotency_key="k")
    with pytest.raises(ExportBusy):  # bob's "k" is not ann's: a new run, refused as busy
        open_remote_run(ctx, CONTRIBUTOR, export.id, idempotency_key="k")


def test_an_opened_run_is_read_and_launched(ctx: ScriptedContext, tmp_path: Path) -> None:
    from klaviyo_client import KlaviyoList

    segment = _segment(tmp_path / "segments", rows=5)
    export = add_export(ctx, add_connection(ctx), segment=str(segment))
    ctx.fake.script("get_list", KlaviyoList(export.list_id, "Newsletter"))
    opened = open_remote_run(ctx, ADMIN, export.id)
    assert opened.request is not None

    read_opened(ctx, opened.run_id, opened.request)

    run = ctx.runs.get(opened.run_id)
    assert run.status is RunStatus.RUNNING
    assert run.counts.rows_read == run.counts.submitted == 5
    assert dispatched(ctx).uploads == [(opened.run_id, [0])]


def test_a_run_whose_export_went_before_reading_ends_cancelled(
    ctx: ScriptedContext, tmp_path: Path
) -> None:
    from core import operations

    export = add_export(ctx, add_connection(ctx), segment=str(_segment(tmp_path)))
    opened = open_remote_run(ctx, ADMIN, export.id)
    assert opened.request is not None
    operations.remove_export(ctx, ADMIN, export.id)

    read_opened(ctx, opened.run_id, opened.request)

    run = ctx.runs.get(opened.run_id)
    assert run.status is RunStatus.CANCELLED
    assert ctx.locks.holder(export.id) is None


def test_a_contributor_neither_reads_nor_uses_what_is_hidden(ctx: ScriptedContext) -> None:
    from core import operations
    from core.records import ExportSpec

    private = add_connection(ctx, allow="admins")
    export = add_export(ctx, private)
    run_id = ctx.lifecycle.create(export.id, "s.csv", "ann", private.id, export.list_id)

    assert queries.get_run(ctx, ADMIN, run_id).run_id == run_id
    assert queries.recent_runs(ctx, CONTRIBUTOR, None, 10) == []
    for hidden in (
        lambda: queries.get_run(ctx, CONTRIBUTOR, run_id),
        lambda: queries.run_report(ctx, CONTRIBUTOR, run_id),
        lambda: operations.verify_connection(ctx, CONTRIBUTOR, private.id),
        lambda: operations.set_enabled(ctx, CONTRIBUTOR, export.id, False),
        lambda: operations.add_export(
            ctx, CONTRIBUTOR, ExportSpec(connection_id=private.id, list_id="L1", email_field="e")
        ),
    ):
        with pytest.raises(NotFound, match=r"^no (run|connection|export) '"):
            hidden()


def test_a_trigger_changes_nothing(ctx: ScriptedContext) -> None:
    from core import operations
    from producer.approval import approve, reject
    from producer.resume import resume_run

    connection = add_connection(ctx)
    export = add_export(ctx, connection)
    run_id = ctx.lifecycle.create(export.id, "s.csv", "ann", connection.id, export.list_id)
    for refused in (
        lambda: operations.verify_connection(ctx, TRIGGER, connection.id),
        lambda: operations.set_enabled(ctx, TRIGGER, export.id, False),
        lambda: approve(ctx, TRIGGER, run_id),
        lambda: reject(ctx, TRIGGER, run_id),
        lambda: resume_run(ctx, TRIGGER, run_id),
    ):
        with pytest.raises(Forbidden, match="a trigger token may only start runs"):
            refused()


def test_the_audit_log_shows_contributors_only_what_they_may_see(ctx: ScriptedContext) -> None:
    from core import audit

    shared, private = add_connection(ctx, allow="contributors"), add_connection(ctx, allow="admins")
    on_private = add_export(ctx, private)
    run_id = ctx.lifecycle.create(on_private.id, "s.csv", "ann", private.id, "L1")
    for target, detail in (
        (shared.id, {}),
        (private.id, {"name": "Hidden"}),
        (on_private.id, {"connection": private.id}),
        (run_id, {"export": on_private.id}),
        ("t_0000000000", {"role": "trigger"}),
    ):
        audit.record(ctx.redis, ADMIN, "thing.done", target, **detail)

    assert {e["target"] for e in queries.audit_entries(ctx, CONTRIBUTOR, 50)} == {shared.id}
    assert len(queries.audit_entries(ctx, ADMIN, 50)) == 5


def test_a_run_stays_hidden_once_its_export_is_gone(ctx: ScriptedContext) -> None:
    from core import operations

    private = add_connection(ctx, allow="admins")
    export = add_export(ctx, private)
    run_id = ctx.lifecycle.create(export.id, "s.csv", "ann", private.id, export.list_id)
    operations.remove_export(ctx, ADMIN, export.id)

    with pytest.raises(NotFound):
        queries.get_run(ctx, CONTRIBUTOR, run_id)
    assert queries.recent_runs(ctx, CONTRIBUTOR, None, 10) == []
    assert queries.get_run(ctx, ADMIN, run_id).run_id == run_id


def test_a_path_with_a_nul_byte_is_refused_not_a_crash(ctx: ScriptedContext) -> None:
    for path in ("segments/s.csv\x00x", "s\x1b.csv"):
        with pytest.raises(InvalidInput) as refused:
            allowed_path(ctx, path)
        assert refused.value.field == "source"


def test_a_key_names_what_is_read_not_how_it_was_named(
    ctx: ScriptedContext, tmp_path: Path
) -> None:
    bound = _segment(tmp_path / "segments")
    export = add_export(ctx, add_connection(ctx), segment=str(bound))

    first = open_remote_run(ctx, ADMIN, export.id, idempotency_key="k")
    again = open_remote_run(ctx, ADMIN, export.id, source=str(bound), idempotency_key="k")

    assert again.replayed
    assert again.run_id == first.run_id


def test_a_claim_left_pending_frees_its_key_within_a_minute(ctx: ScriptedContext) -> None:
    from core.idempotency import PENDING_TTL, TTL, Idempotency

    keys = Idempotency(ctx.redis)
    assert keys.claim("ann", "crash", "x").run_id is None  # and the server died here
    (name,) = ctx.redis.keys("kx:idem:*")
    assert 0 < ctx.redis.ttl(name) <= PENDING_TTL
    keys.settle("ann", "crash", "x", "r_1")
    assert PENDING_TTL < ctx.redis.ttl(name) <= TTL
