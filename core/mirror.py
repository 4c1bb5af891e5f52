"""Mirror exports: the list ends up equal to the segment.

After a mirror run's adds, the members the export put in the list earlier and
that are no longer in the segment are removed (``remove_profiles_from_list``:
membership only, no unsubscribe, no suppression). A broken upstream query must
never wipe a list, so a **safety brake** holds the removals when they would
take more than ``Export.brake_share`` of the members (default 20%) or more
than ``Export.brake_count``, or when the segment has no valid row at all: the
run then waits in ``awaiting_approval`` until ``approve RUN_ID`` or
``reject RUN_ID`` (``core.lifecycle``).
"""

from __future__ import annotations

from core.store import Export


def brake_reason(export: Export, to_remove: int, members: int, in_segment: int) -> str | None:
    """Why the removals must wait for approval, or None to go ahead."""
    if to_remove == 0:
        return None
    if in_segment == 0:
        return f"the segment has no valid row: removing all {to_remove:,} members needs approval"
    share = to_remove / members if members else 1.0
    if share > export.brake_share:
        return (
            f"{to_remove:,} of {members:,} members ({share:.0%}) would be removed, over the "
            f"brake at {export.brake_share:.0%}: approve or reject the run"
        )
    if export.brake_count and to_remove > export.brake_count:
        return (
            f"{to_remove:,} members would be removed, over the brake at "
            f"{export.brake_count:,}: approve or reject the run"
        )
    return None
