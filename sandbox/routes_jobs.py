"""Handlers for ``/api/profile-bulk-import-jobs`` and its sub-resources.

Creating a job parses and validates the body *outside* the store lock (a
1 MB body takes milliseconds to parse, and other requests should not wait for
it) and takes the lock only to register the job, without running other jobs'
due rows first. Reading a job, its lists,
profiles or import errors first runs the rows due by now (see
:meth:`sandbox.context.Context.locked`), so what a reader sees is always the
job's state at that instant.

``get_bulk_import_profiles_jobs`` filters on ``status`` (``equals``/``any``)
and sorts by ``created_at`` either way; jobs are listed oldest first by
default. A job's profiles are listed once each, in the order their rows were
processed; failed rows are only under ``import-errors``.
"""

from __future__ import annotations

from sandbox.context import Answer, Context, Handler, document, registrar
from sandbox.errors import not_found
from sandbox.filters import string_values
from sandbox.jobs import Job, validate_import_body
from sandbox.pagination import page_list
from sandbox.resources import (
    identifier,
    import_error_resource,
    job_resource,
    list_resource,
    profile_resource,
)
from sandbox.store import Profile

HANDLERS: dict[str, Handler] = {}
handles = registrar(HANDLERS)


def _job_or_404(ctx: Context, param: str) -> Job:
    job: Job | None = ctx.account.jobs.get(ctx.path_params[param])
    if job is None:
        raise not_found(f"A bulk import job with id {ctx.path_params[param]} does not exist.")
    return job


@handles("bulk_import_profiles")
def bulk_import_profiles(ctx: Context) -> Answer:
    request = validate_import_body(ctx.json_body(), len(ctx.body))
    # The lock only to register the job: rows due for other jobs are left to
    # the job thread or the next reader, which run them in creation order as
    # before, so no answer changes; a POST just stops waiting for them.
    with ctx.app.store.lock:
        now = ctx.app.clock.now()
        job = ctx.app.processor.create(ctx.account, request)
        data = job_resource(job, ctx.base_url, ctx.app.clock, now)
    answer = document(ctx, data, {"self": data["links"]["self"]})
    answer.status = 202
    return answer


@handles("get_bulk_import_profiles_jobs")
def get_bulk_import_profiles_jobs(ctx: Context) -> Answer:
    statuses = string_values(ctx.conditions(frozenset({"status"})), "status")
    start, size = ctx.page()
    with ctx.locked() as now:
        jobs = [
            job for job in ctx.account.job_order if statuses is None or job.status(now) in statuses
        ]
        if ctx.value("sort") == "-created_at":
            jobs.reverse()
        chunk, next_seq = page_list(jobs, start, size)
        data = [job_resource(job, ctx.base_url, ctx.app.clock, now) for job in chunk]
    return document(ctx, data, ctx.links(next_seq))


@handles("get_bulk_import_profiles_job")
def get_bulk_import_profiles_job(ctx: Context) -> Answer:
    with ctx.locked() as now:
        job = _job_or_404(ctx, "job_id")
        data = job_resource(job, ctx.base_url, ctx.app.clock, now)
        included = None
        if "lists" in ctx.values("include"):
            included = [list_resource(record, ctx.base_url, ctx.app.clock) for record in job.lists]
    if included is None:
        return document(ctx, data, {"self": ctx.self_link()})
    return document(ctx, data, {"self": ctx.self_link()}, included=included)


@handles("get_list_for_bulk_import_profiles_job")
def get_list_for_bulk_import_profiles_job(ctx: Context) -> Answer:
    with ctx.locked():
        job = _job_or_404(ctx, "id")
        data = [list_resource(record, ctx.base_url, ctx.app.clock) for record in job.lists]
    return document(ctx, data, {"self": ctx.self_link()})


@handles("get_list_ids_for_bulk_import_profiles_job")
def get_list_ids_for_bulk_import_profiles_job(ctx: Context) -> Answer:
    with ctx.locked():
        job = _job_or_404(ctx, "id")
        data = [identifier("list", record.id) for record in job.lists]
    return document(ctx, data, {"self": ctx.self_link()})


@handles("get_profiles_for_bulk_import_profiles_job")
def get_profiles_for_bulk_import_profiles_job(ctx: Context) -> Answer:
    start, size = ctx.page()
    additional = ctx.values("additional-fields[profile]")
    with ctx.locked():
        job = _job_or_404(ctx, "id")
        chunk, next_seq = page_list(job.profile_ids, start, size)
        data = [
            profile_resource(
                Profile._make(ctx.account.profiles[pid]),
                ctx.base_url,
                ctx.app.clock,
                additional=additional,
            )
            for pid in chunk
        ]
    return document(ctx, data, ctx.links(next_seq))


@handles("get_profile_ids_for_bulk_import_profiles_job")
def get_profile_ids_for_bulk_import_profiles_job(ctx: Context) -> Answer:
    start, size = ctx.page()
    with ctx.locked():
        job = _job_or_404(ctx, "id")
        chunk, next_seq = page_list(job.profile_ids, start, size)
    return document(ctx, [identifier("profile", pid) for pid in chunk], ctx.links(next_seq))


@handles("get_errors_for_bulk_import_profiles_job")
def get_errors_for_bulk_import_profiles_job(ctx: Context) -> Answer:
    start, size = ctx.page()
    with ctx.locked():
        job = _job_or_404(ctx, "id")
        chunk, next_seq = page_list(job.errors, start, size)
        data = [import_error_resource(error) for error in chunk]
    return document(ctx, data, ctx.links(next_seq))
