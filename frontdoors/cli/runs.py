"""``run``, ``resume``, ``approve``, ``reject``, ``reconcile``, ``status``, ``runs`` and
``rejected``: start runs, decide them, and see what became of every row."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from core import queries
from core.context import Context
from core.errors import InvalidInput
from core.reports import REPORT_COLUMNS
from frontdoors.cli.output import add_json_flag, emit_json, emit_table
from frontdoors.cli.progress import RunProgress
from frontdoors.cli.waiting import Waited, follow, print_status, report, summarize
from schemas.contracts import SOURCE_FORMATS

WAIT_HELP = (
    "wait for the end: exit 0 if the run succeeded, 1 if it did not, 3 if it needs a "
    "decision at the safety brake (approve or reject)"
)
TIMEOUT_HELP = "stop waiting after SECONDS (exit 4); the run goes on"


def _add_wait(parser: argparse.ArgumentParser, flag: str, helptext: str) -> None:
    parser.add_argument(flag, action="store_true", help=helptext)
    parser.add_argument("--timeout", type=_seconds, metavar="SECONDS", help=TIMEOUT_HELP)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {value}")
    return seconds


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = sub.add_parser("run", help="export a segment now; prints the run id")
    run.add_argument("export_id", metavar="EXPORT_ID")
    run.add_argument(
        "--source", required=True, metavar="PATH|-", help="segment file, or - for stdin"
    )
    run.add_argument("--format", choices=SOURCE_FORMATS, help="default: from the file name")
    _add_wait(run, "--wait", WAIT_HELP)
    run.add_argument(
        "--full",
        action="store_true",
        help="send every row, also those unchanged since they were last imported",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="read the segment and print the plan (adds, updates, unchanged, removals and the "
        "brake, calls per Klaviyo endpoint, expected duration) without sending or recording "
        "anything",
    )
    add_json_flag(run)
    run.set_defaults(_run=_run)

    resume = sub.add_parser(
        "resume", help="send again only the batches of a failed or partial run that did not succeed"
    )
    resume.add_argument("run_id", metavar="RUN_ID")
    _add_wait(resume, "--wait", WAIT_HELP)
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
    _add_wait(
        status,
        "--watch",
        "follow the run until it ends or needs a decision (exit codes as run --wait)",
    )
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
    add_json_flag(rejected)
    rejected.set_defaults(_run=_rejected)


def _source(value: str) -> str:
    """A segment path as the run records it: absolute, so that what the run
    read can be told later from any directory."""
    return value if value == "-" else str(Path(value).expanduser().absolute())


def _run(args: argparse.Namespace) -> int:
    from producer.runner import RunRequest, start_run

    if args.timeout is not None and not args.wait:
        raise InvalidInput("--timeout goes with --wait")
    ctx = Context.from_env()
    if args.dry_run:
        return _dry_run(ctx, args)
    progress = RunProgress(enabled=not args.json)
    began = time.monotonic()  # --timeout counts the reading too
    request = RunRequest(
        args.export_id, _source(args.source), args.actor, args.format, full=args.full
    )
    try:
        run_id = start_run(ctx, request, on_progress=progress.reading)
    finally:
        progress.close()
    if not args.wait:
        run = ctx.runs.get(run_id)
        if args.json:
            emit_json(summarize(run))
        else:
            print(run_id)
        return 0
    if not args.json:
        print(run_id, flush=True)
    timeout = None if args.timeout is None else max(0.0, args.timeout - (time.monotonic() - began))
    return report(follow(ctx, run_id, progress, timeout), args.json)


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

    run = reject(Context.from_env(), args.actor, args.run_id)
    report(Waited(run, "ended", 0.0), args.json)
    return 0  # the decision was taken; the run's own status is printed


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

    if args.timeout is not None and not args.wait:
        raise InvalidInput("--timeout goes with --wait")
    ctx = Context.from_env()
    numbers = resume_run(ctx, args.actor, args.run_id)
    if not args.json:
        print(f"run {args.run_id}: sending batches {numbers} again", flush=True)
    if not args.wait:
        if args.json:
            emit_json(summarize(ctx.runs.get(args.run_id)))
        return 0
    progress = RunProgress(enabled=not args.json)
    return report(follow(ctx, args.run_id, progress, args.timeout), args.json)


def _dry_run(ctx: Context, args: argparse.Namespace) -> int:
    """Print what a run would do, decided from the export's state as the run
    decides it (``producer.plan``); write, send and audit nothing."""
    from producer.plan import dry_run

    plan = dry_run(ctx, args.actor, args.export_id, args.source, args.format, full=args.full)
    if args.json:
        emit_json(plan.as_dict())
        return 0
    kind = "full run" if plan.full else "delta run" if plan.delta else "first run"
    print(
        f"dry run of export {plan.export_id} to list {plan.list_id} ({plan.mode} mode, {kind}): "
        "nothing sent"
    )
    if plan.blocker:
        print(f"  a run now would send nothing: {plan.blocker}")
    print(f"  rows read        {plan.rows_read:>10,}")
    print(f"  rejected         {plan.rejected:>10,}")
    for reason, n in sorted(plan.rejected_by_reason.items()):
        print(f"    {reason:<14} {n:>10,}")
    print(f"  adds             {plan.adds:>10,}  (new emails)")
    print(f"  updates          {plan.updates:>10,}  (imported before, profile changed)")
    print(f"  unchanged        {plan.unchanged:>10,}  (not sent)")
    print(f"  submitted        {plan.submitted:>10,}  in {plan.batches} bulk import jobs")
    if plan.mode == "mirror":
        print(f"  members          {plan.members:>10,}  (put in the list by this export)")
        print(f"  removals         {plan.removals:>10,}")
        if plan.brake_holds:
            print(f"  the safety brake holds the removals: {plan.brake_reason}")
        elif plan.removals:
            print("  the safety brake lets the removals go ahead")
    print("  Klaviyo calls (at least):")
    for operation, n in plan.calls.items():
        print(f"    {operation:<34} {n:>6,}")
    seconds = f"about {plan.expected_seconds:,.0f} s"
    if plan.brake_holds:
        seconds += " (removals after approval)"
    print(f"  expected duration under the rate limits: {seconds}")
    return 0


def _status(args: argparse.Namespace) -> int:
    if args.timeout is not None and not args.watch:
        raise InvalidInput("--timeout goes with --watch")
    ctx = Context.from_env()
    if args.watch:
        progress = RunProgress(enabled=not args.json)
        return report(follow(ctx, args.run_id, progress, args.timeout), args.json)
    run = queries.get_run(ctx, args.actor, args.run_id)
    if args.json:
        emit_json(summarize(run))
    else:
        print_status(run)
    return 0


def _runs(args: argparse.Namespace) -> int:
    rows = queries.recent_runs(Context.from_env(), args.actor, args.export, args.limit)
    if args.json:
        emit_json({"runs": [summarize(r) for r in rows]})
        return 0
    table = [
        {
            "run": r.run_id,
            "export": r.export_id,
            "status": r.status.value,
            "read": r.counts.rows_read,
            "rejected": r.counts.rejected,
            "imported": r.counts.imported,
            "failed": r.counts.failed,
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at)),
        }
        for r in rows
    ]
    emit_table(
        table, ["run", "export", "status", "read", "rejected", "imported", "failed", "created"]
    )
    return 0


def _rejected(args: argparse.Namespace) -> int:
    rows = list(queries.run_report(Context.from_env(), args.actor, args.run_id))
    if args.json:
        emit_json({"run_id": args.run_id, "rows": rows})
        return 0
    writer = csv.DictWriter(sys.stdout, fieldnames=REPORT_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return 0
