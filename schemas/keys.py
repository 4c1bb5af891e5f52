"""Every Redis key the project writes, in one place.

All keys start with ``PREFIX`` so that one deployment can share a Redis with
others and an operator can find (or scan) everything of ours. Celery's own
broker and result keys are not listed: Celery names those.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "kx:"

CONNECTIONS: Final = PREFIX + "connections"  # set of connection ids
EXPORTS: Final = PREFIX + "exports"  # set of export ids
RUNS: Final = PREFIX + "runs"  # zset run id -> created (epoch s)
RUNS_ACTIVE: Final = PREFIX + "runs:active"  # set of runs uploading (for the watchdog)
AUDIT: Final = PREFIX + "audit"  # stream of audit records
STORE_MARK: Final = PREFIX + "store:mark"  # a token set once; gone: Redis lost its data


def connection(connection_id: str) -> str:
    """Hash: the connection record (API key encrypted)."""
    return f"{PREFIX}connection:{connection_id}"


def export(export_id: str) -> str:
    """Hash: the export record."""
    return f"{PREFIX}export:{export_id}"


def export_lock(export_id: str) -> str:
    """String: the id of the export's run in progress (runs never overlap)."""
    return f"{PREFIX}export:{export_id}:lock"


EXPORT_LOCK_PATTERN: Final = f"{PREFIX}export:*:lock"  # SCAN pattern of every export_lock


def export_of_lock(lock_key: str) -> str:
    """The export id in an ``export_lock`` key."""
    return lock_key.removeprefix(f"{PREFIX}export:").removesuffix(":lock")


def export_runs(export_id: str) -> str:
    """Zset: this export's run ids by creation time."""
    return f"{PREFIX}export:{export_id}:runs"


def run(run_id: str) -> str:
    """Hash: the run record, its counters and its final status (fields: ``RunField``)."""
    return f"{PREFIX}run:{run_id}"


class RunField:
    """The fields of the run hash (``run``). ``core.run_record`` reads and writes
    them; the Lua scripts of ``core.scripts`` name the counters they change."""

    # Who, what and where, set when the run is created.
    RUN_ID: Final = "run_id"
    EXPORT_ID: Final = "export_id"
    CONNECTION_ID: Final = "connection_id"  # snapshot: where the run sends
    LIST_ID: Final = "list_id"
    SOURCE: Final = "source"
    REQUESTED_BY: Final = "requested_by"
    # The lifecycle (written by core.lifecycle only).
    STATUS: Final = "status"  # a schemas.contracts.RunStatus
    MESSAGE: Final = "message"  # why it is where it is
    ATTEMPT: Final = "attempt"  # 1, then one more per resume
    # Times, epoch seconds as repr(float).
    CREATED_AT: Final = "created_at"
    UPDATED_AT: Final = "updated_at"  # last progress: the watchdog's clock
    STARTED_AT: Final = "started_at"
    ATTEMPT_STARTED_AT: Final = "attempt_started_at"
    FINISHED_AT: Final = "finished_at"
    # Row counters: rows_read = rejected + submitted + unchanged; submitted = imported + failed.
    ROWS_READ: Final = "rows_read"
    REJECTED: Final = "rejected"
    SUBMITTED: Final = "submitted"
    IMPORTED: Final = "imported"
    FAILED: Final = "failed"
    UNCHANGED: Final = "unchanged"
    # Batch counters: batches_<BatchStatus> for each final batch status.
    BATCHES_TOTAL: Final = "batches_total"
    BATCHES_DONE: Final = "batches_done"
    BATCHES_PREFIX: Final = "batches_"
    # Mirror runs.
    TO_REMOVE: Final = "to_remove"
    REMOVED: Final = "removed"
    REMOVAL_FAILED: Final = "removal_failed"
    REMOVAL_CHUNKS: Final = "removal_chunks"
    REMOVAL_CHUNKS_DONE: Final = "removal_chunks_done"
    REMOVAL_ATTEMPTS_PREFIX: Final = "removal_attempts:"  # + chunk: transient failures
    BRAKE_REASON: Final = "brake_reason"  # why the removals wait for approval
    REMOVALS_REJECTED: Final = "removals_rejected"  # who rejected them at the brake
    # Stopping: the first reason wins; ``cancelled`` makes the end "cancelled".
    ABORT_REASON: Final = "abort_reason"
    CANCELLED: Final = "cancelled"
    WATCHDOG_RESENDS_PREFIX: Final = "watchdog_resends:"  # + stage: resend rounds so far


def run_rejected_reasons(run_id: str) -> str:
    """Hash: reason code -> rows rejected before upload for it."""
    return f"{PREFIX}run:{run_id}:rejected-by-reason"


def run_rejected(run_id: str) -> str:
    """List of JSON rows rejected before upload (row, field, reason, value)."""
    return f"{PREFIX}run:{run_id}:rejected"


def run_failed(run_id: str) -> str:
    """List of JSON rows Klaviyo failed (row, email, code, detail)."""
    return f"{PREFIX}run:{run_id}:failed"


def run_batch_results(run_id: str) -> str:
    """Hash: batch number -> its final BatchResult JSON (written once)."""
    return f"{PREFIX}run:{run_id}:batch-results"


def batch(run_id: str, number: int) -> str:
    """Hash: a batch payload (``profiles`` JSON array, aligned ``rows``)."""
    return f"{PREFIX}run:{run_id}:batch:{number}"


def batch_state(run_id: str, number: int) -> str:
    """Hash: a batch's progress (Klaviyo job id, attempts) for idempotent redelivery."""
    return f"{PREFIX}run:{run_id}:batch:{number}:state"


def batch_errors(run_id: str, number: int) -> str:
    """List of JSON rows Klaviyo failed in a batch's job, gathered page by page:
    a task handed back mid-way (rate limit) goes on from the page it reached."""
    return f"{PREFIX}run:{run_id}:batch:{number}:errors"


def rate_log(account: str, operation: str) -> str:
    """Zset: admission times of recent requests (the shared rate limiter's log)."""
    return f"{PREFIX}rl:{account}:{operation}"


def rate_cooldown(account: str, operation: str) -> str:
    """String with a TTL: while it exists, nobody calls ``operation`` (after a 429)."""
    return f"{PREFIX}rl:{account}:{operation}:cooldown"


def schedule_fired(export_id: str, minute: str) -> str:
    """String with a TTL: the export's run for this due minute (``YYYYmmddHHMM``,
    UTC) was requested already; ``SET NX`` on it makes a due minute fire once,
    however many beats or late ticks see it."""
    return f"{PREFIX}schedule:{export_id}:{minute}"


def export_state(export_id: str) -> str:
    """Hash: normalised email -> digest of the profile last imported for it.

    What the export has put in its list: mirror runs remove what is here but
    no longer in the segment, delta runs skip rows whose digest is unchanged,
    and ``reconcile`` compares the list with it.
    """
    return f"{PREFIX}export:{export_id}:state"


def run_removals(run_id: str, chunk: int) -> str:
    """List: one chunk (at most 1,000) of emails a mirror run removes."""
    return f"{PREFIX}run:{run_id}:removals:{chunk}"


def run_removal_results(run_id: str) -> str:
    """Hash: removal chunk number -> its result JSON (written once)."""
    return f"{PREFIX}run:{run_id}:removal-results"


# -- who may call the HTTP API and sign in to the console ------------------------------

TOKENS: Final = PREFIX + "tokens"  # hash: sha256 hex of a token's secret -> {id, user, role}
USERS: Final = PREFIX + "users"  # set of console user names


def token(token_id: str) -> str:
    """Hash: an API token's record (field ``record``, JSON); its secret is never stored."""
    return f"{PREFIX}token:{token_id}"


def user(name: str) -> str:
    """Hash: a console user (fields ``record``, JSON, and ``password``, a scrypt hash)."""
    return f"{PREFIX}user:{name}"


def session(digest: str) -> str:
    """Hash with a TTL: a console session, under the sha256 hex of its cookie value
    (a copy of Redis holds no usable session id)."""
    return f"{PREFIX}session:{digest}"


def idempotency(scope: str, digest: str) -> str:
    """String with a TTL: the run an ``Idempotency-Key`` started, under the sha256 hex
    of the key, per caller (``scope``): a retried POST gets the same run."""
    return f"{PREFIX}idem:{scope}:{digest}"


def signin_failures(digest: str) -> str:
    """String with a TTL: failed console sign-ins for one user name (under its
    sha256), counted to slow down guessing a password."""
    return f"{PREFIX}signin-failures:{digest}"
