"""The safety brake of mirror exports: when removals wait for a person."""

from __future__ import annotations

import pytest

from core.mirror import brake_reason
from core.records import Export


def _export(share: float = 0.2, count: int = 0) -> Export:
    return Export(
        id="e_1",
        connection_id="c_1",
        list_id="L1",
        email_field="email",
        mode="mirror",
        brake_share=share,
        brake_count=count,
    )


def test_nothing_to_remove_never_brakes() -> None:
    assert brake_reason(_export(), to_remove=0, members=0, in_segment=0) is None


def test_an_empty_segment_always_needs_approval() -> None:
    reason = brake_reason(_export(share=1.0), to_remove=3, members=3, in_segment=0)
    assert reason is not None
    assert "no valid row" in reason
    assert "3 members" in reason


@pytest.mark.parametrize(
    ("to_remove", "members", "held"),
    [(20, 100, False), (21, 100, True), (1, 1000, False), (5, 5, True)],
)
def test_a_share_over_the_brake_waits(to_remove: int, members: int, held: bool) -> None:
    reason = brake_reason(_export(share=0.2), to_remove, members, in_segment=members)
    assert (reason is not None) == held
    if held:
        assert reason is not None
        assert f"{to_remove:,} of {members:,} members" in reason
        assert "brake at 20%" in reason


def test_a_count_over_the_brake_waits_even_under_the_share() -> None:
    export = _export(share=0.5, count=10)
    assert brake_reason(export, to_remove=10, members=100, in_segment=90) is None
    reason = brake_reason(export, to_remove=11, members=100, in_segment=89)
    assert reason is not None
    assert "over the brake at 10" in reason


def test_no_members_known_counts_as_removing_everything() -> None:
    assert brake_reason(_export(share=0.99), to_remove=1, members=0, in_segment=5) is not None
