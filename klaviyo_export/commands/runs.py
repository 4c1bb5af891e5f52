"""``run``, ``status``, ``runs`` and ``rejected``: start runs and see what became of rows."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from typing import Any

from klaviyo_export.actors import require_use
from klaviyo_export.commands.output import add_json_flag, emit_json, emit_table
from klaviyo_export.context import Context
from schemas.contracts import FINAL_RUN_STATUSES, SOURCE_FORMATS


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = sub.add_parser("run", help="export a segment now; prints the run id")
    run.add_argument("export_id", metavar="EXPORT_ID")
    run.add_argument(
        "--source", required=True, metavar="PATH|-", help="segment file, or - for stdin"
    )
    run.add_argument("--format", choices=SOURCE_FORMATS, help="default: from the file name")
    run.add_argument(
        "--wait", action="store_true", help="wait for the end; exit 1 unless the run succeeded"
    )
    run.add_argument(
        "--full",
        action="store_true",
        help="send every row, also those unchanged since they were last imported",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="read the segment and print the plan (adds, rejects, calls per Klaviyo endpoint, "
        "expected duration) without sending or recording anything",
    )
    add_json_flag(run)
    run.set_defaults(_run=_run)

    resume = sub.add_parser(
        "resume", help="send again only the batches of a failed or partial run that did not succeed"
    )
    resume.add_argument("run_id", metavar="RUN_ID")
    resume.add_argument(
        "--wait", action="store_true", help="wait for the end; exit 1 unless the run succeeded"
    )
    add_json_flag(resume)
    resume.set_defaults(_run=_resume)

    for name, helptext, handler in (
        ("approve", "let a mirror run held at the safety brake remove its members", _approve),
        ("reject", "end a mirror run held at the safety brake without removing anything", _reject),
    ):
        decide = sub.add_parser(name, help=helptext, description=helptext)
        decide.add_argument("run_id", metavar="RUN_ID")
        add_json_flag(decide)
        decide.set_defaults(_run=handler)

    reconcile = sub.add_parser(
        "reconcile", help="compare the Klaviyo list with what the export put in it"
    )
    reconcile.add_argument("export_id", metavar="EXPORT_ID")
    reconcile.add_argument(
        "--show-emails", action="store_true", help="list the emails that differ (personal data)"
    )
    add_json_flag(reconcile)
    reconcile.set_defaults(_run=_reconcile)

    status = sub.add_parser("status", help="a run's status and counts")
    status.add_argument("run_id", metavar="RUN_ID")
    status.add_argument("--watch", action="store_true", help="follow the run until it ends")
    add_json_flag(status)
    status.set_defaults(_run=_status)

    runs = sub.add_parser("runs", help="recent runs, newest first")
    runs.add_argument("--export", metavar="ID", help="only this export's runs")
    runs.add_argument("--limit", type=int, default=20)
    add_json_flag(runs)
    runs.set_defaults(_run=_runs)

    rejected = sub.add_parser(
        "rejected", help="rows rejected before upload and rows Klaviyo failed, as CSV"
    )
    rejected.add_argument("run_id", metavar="RUN_ID")
    rejected.set_defaults(_run=_rejected)


def _run(args: argparse.Namespace) -> int:
    from producer.runner import RunRequest, start_run

    ctx = Context.from_env()
    if args.dry_run:
        return _dry_run(ctx, args)
    progress = _Progress(enabled=not args.json)
    request = RunRequest(args.export_id, args.source, args.actor, args.format, full=args.full)
    run_id = start_run(ctx, request, on_progress=progress.reading)
    progress.done()
    if not args.wait:
        status = ctx.runs.status(run_id)
        if args.json:
            emit_json(_summary(status))
        else:
            print(run_id)
        return 0
    if not args.json:
        print(run_id)
    status = _follow(ctx, run_id, quiet=args.json)
    _print_status(status, as_json=args.json)
    return 0 if status["status"] == "succeeded" else 1


def _approve(args: argparse.Namespace) -> int:
    from producer.approval import approve

    count = approve(Context.from_env(), args.actor, args.run_id)
    if args.json:
        emit_json({"run_id": args.run_id, "approved": True, "to_remove": count})
    else:
        print(f"run {args.run_id}: removing {count:,} members")
    return 0


def _reject(args: argparse.Namespace) -> int:
    from producer.approval import reject

    status = reject(Context.from_env(), args.actor, args.run_id)
    _print_status(status, as_json=args.json)
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from producer.reconcile import reconcile

    drift = reconcile(Context.from_env(), args.actor, args.export_id)
    report = drift.summary(show_emails=args.show_emails)
    if args.json:
        emit_json(report)
        return 0
    print(f"export {args.export_id}, list {drift.list_id}:")
    print(f"  in the list              {drift.list_members:>10,}")
    print(f"  exported by this export  {drift.exported:>10,}")
    print(
        f"  added by hand            {len(drift.added_by_hand):>10,}  (in the list, not exported)"
    )
    print(f"  missing                  {len(drift.missing):>10,}  (exported, not in the list)")
    if args.show_emails:
        for title, emails in (("added by hand", drift.added_by_hand), ("missing", drift.missing)):
            for email in sorted(emails):
                print(f"  {title}: {email}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    from producer.resume import resume_run

    ctx = Context.from_env()
    numbers = resume_run(ctx, args.actor, args.run_id)
    if not args.json:
        print(f"run {args.run_id}: sending batches {numbers} again")
    if not args.wait:
        if args.json:
            emit_json(_summary(ctx.runs.status(args.run_id)))
        return 0
    status = _follow(ctx, args.run_id, quiet=args.json)
    _print_status(status, as_json=args.json)
    return 0 if status["status"] == "succeeded" else 1


def _dry_run(ctx: Context, args: argparse.Namespace) -> int:
    """Print what a run would do; send, record and audit nothing."""
    from producer.plan import plan_run

    export = ctx.store.get_export(args.export_id)
    require_use(args.actor, ctx.store.get_connection(export.connection_id))
    plan = plan_run(
        export, args.source, args.format, ctx.settings.batch_profiles, ctx.settings.rate_headroom
    )
    if args.json:
        emit_json(plan.as_dict())
        return 0
    print(
        f"dry run of export {plan.export_id} to list {plan.list_id} ({plan.mode} mode): "
        "nothing sent"
    )
    print(f"  rows read        {plan.rows_read:>10,}")
    print(f"  rejected         {plan.rejected:>10,}")
    for reason, n in sorted(plan.rejected_by_reason.items()):
        print(f"    {reason:<14} {n:>10,}")
    print(f"  adds             {plan.adds:>10,}  in {plan.batches} bulk import jobs")
    print(f"  updates          {plan.updates:>10,}")
    print(f"  unchanged        {plan.unchanged:>10,}")
    print(f"  removals         {plan.removals:>10,}")
    print("  Klaviyo calls (at least):")
    for operation, n in plan.calls.items():
        print(f"    {operation:<34} {n:>6,}")
    print(f"  expected duration under the rate limits: about {plan.expected_seconds:,.0f} s")
    return 0


def _status(args: argparse.Namespace) -> int:
    ctx = Context.from_env()
    status = (
        _follow(ctx, args.run_id, quiet=args.json) if args.watch else ctx.runs.status(args.run_id)
    )
    _print_status(status, as_json=args.json)
    return 0


def _runs(args: argparse.Namespace) -> int:
    rows = Context.from_env().runs.recent(args.export, args.limit)
    if args.json:
        emit_json({"runs": [_summary(r) for r in rows]})
        return 0
    table = [
        {
            "run": r["run_id"],
            "export": r["export_id"],
            "status": r["status"],
            "read": r["counts"]["rows_read"],
            "rejected": r["counts"]["rejected"],
            "imported": r["counts"]["imported"],
            "failed": r["counts"]["failed"],
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created_at"])),
        }
        for r in rows
    ]
    emit_table(
        table, ["run", "export", "status", "read", "rejected", "imported", "failed", "created"]
    )
    return 0


def _rejected(args: argparse.Namespace) -> int:
    runs = Context.from_env().runs
    runs.status(args.run_id)  # a clear error for an unknown run
    writer = csv.writer(sys.stdout)
    writer.writerow(["row", "stage", "field", "code", "reason"])
    for item in runs.rejected_rows(args.run_id):
        writer.writerow(
            [item["row"], "checks", item.get("field") or "", item["code"], item["reason"]]
        )
    for item in runs.failed_rows(args.run_id):
        writer.writerow(
            [
                item.get("row") or "",
                "klaviyo",
                item.get("field") or "",
                item["code"],
                item["detail"],
            ]
        )
    return 0


def _follow(ctx: Context, run_id: str, quiet: bool) -> dict[str, Any]:
    progress = _Progress(enabled=not quiet)
    delay = 0.2
    while True:
        status = ctx.runs.status(run_id)
        if status["status"] in FINAL_RUN_STATUSES:
            progress.done()
            return status
        progress.batches(status)
        time.sleep(delay)
        delay = min(2.0, delay * 1.5)


def _summary(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": status["run_id"],
        "export_id": status["export_id"],
        "status": status["status"],
        "message": status["message"],
        "counts": status["counts"],
        "batches": status["batches"],
        "attempt": status.get("attempt", 1),
        "duration_s": (
            round(status["finished_at"] - status["created_at"], 3)
            if status["finished_at"]
            else None
        ),
    }


def _print_status(status: dict[str, Any], as_json: bool) -> None:
    summary = _summary(status)
    if as_json:
        emit_json(summary)
        return
    counts = summary["counts"]
    print(f"run {summary['run_id']} (export {summary['export_id']}): {summary['status']}")
    if summary["message"]:
        print(f"  {summary['message']}")
    print(f"  rows read        {counts['rows_read']:>10,}")
    print(f"  rejected         {counts['rejected']:>10,}")
    for reason, n in sorted(counts["rejected_by_reason"].items()):
        print(f"    {reason:<14} {n:>10,}")
    if counts.get("unchanged"):
        print(f"  unchanged        {counts['unchanged']:>10,}")
    print(f"  submitted        {counts['submitted']:>10,}")
    print(f"  imported         {counts['imported']:>10,}")
    print(f"  failed (Klaviyo) {counts['failed']:>10,}")
    if counts.get("to_remove"):
        print(f"  to remove        {counts['to_remove']:>10,}")
        print(f"  removed          {counts['removed']:>10,}")
        print(f"  removal failed   {counts['removal_failed']:>10,}")
    batches = summary["batches"]
    print(f"  batches          {batches['done']}/{batches['total']} done")
    if summary["duration_s"] is not None:
        print(f"  duration         {summary['duration_s']:.1f} s")


class _Progress:
    """A one-line progress display on a terminal's stderr; silent elsewhere."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._shown = False

    def reading(self, rows: int) -> None:
        self._line(f"reading segment: {rows:,} rows")

    def batches(self, status: dict[str, Any]) -> None:
        total = status["batches"]["total"] or 1
        done = status["batches"]["done"]
        width = 30
        filled = int(width * done / total)
        self._line(
            f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} batches, "
            f"{status['counts']['imported']:,} imported"
        )

    def _line(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()
            self._shown = True

    def done(self) -> None:
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._shown = False
