"""Seeded fault decisions."""

from __future__ import annotations

from sandbox.faults import KINDS, FaultInjector


def draws(rate: float, seed: int, count: int, is_write: bool = False) -> list[str | None]:
    injector = FaultInjector(rate, seed)
    return [
        fault.label if (fault := injector.draw(is_write)) is not None else None
        for _ in range(count)
    ]


def test_same_seed_same_faults() -> None:
    assert draws(0.3, seed=11, count=300) == draws(0.3, seed=11, count=300)
    assert draws(0.3, seed=11, count=300) != draws(0.3, seed=12, count=300)


def test_share_of_faults_follows_the_rate() -> None:
    outcomes = draws(0.25, seed=3, count=4000)
    share = sum(outcome is not None for outcome in outcomes) / len(outcomes)
    assert 0.21 < share < 0.29
    assert {outcome for outcome in outcomes if outcome} == set(KINDS)


def test_zero_rate_never_faults_and_full_rate_always_does() -> None:
    assert draws(0.0, seed=1, count=100) == [None] * 100
    assert None not in draws(1.0, seed=1, count=100)


def test_only_writes_fault_after_being_applied() -> None:
    reads = draws(1.0, seed=5, count=200, is_write=False)
    writes = draws(1.0, seed=5, count=200, is_write=True)
    assert not any(label.endswith("_after_apply") for label in reads if label)
    after = sum(label.endswith("_after_apply") for label in writes if label)
    assert 60 < after < 140


def test_rate_changes_which_requests_fault_but_not_the_kinds_drawn() -> None:
    # The same numbers are drawn whatever the rate, so a lower rate faults a subset.
    low = draws(0.2, seed=9, count=500)
    high = draws(0.6, seed=9, count=500)
    assert all(h == lo for lo, h in zip(low, high, strict=True) if lo is not None)
