"""The store thread's batches (actorim.runtime.storecalls): order, isolation, bounds."""

from __future__ import annotations

import doctest

import pytest

import actorim.runtime.storecalls
from actorim.runtime.storecalls import CallQueue, StoreCall, run_calls


def test_doctests() -> None:
    assert doctest.testmod(actorim.runtime.storecalls).failed == 0


def _call(value: object) -> StoreCall:
    return StoreCall(lambda: value, (), {}, lambda result, error: None)


def test_calls_go_in_the_order_they_came_at_most_limit_a_hop() -> None:
    queue = CallQueue(limit=3)
    for i in range(7):
        queue.add(_call(i))
    seen: list[object] = []
    while (batch := queue.next_batch()) is not None:
        assert len(batch) <= 3
        seen += [value for value, _ in run_calls(batch)]
        queue.finished()
    assert seen == list(range(7))


def test_a_failing_call_fails_alone() -> None:
    def boom() -> None:
        raise ValueError("bad row")

    outcomes = run_calls([_call(1), StoreCall(boom, (), {}, print), _call(3)])
    assert outcomes[0] == (1, None)
    assert isinstance(outcomes[1][1], ValueError)
    assert outcomes[2] == (3, None)


def test_dropped_calls_leave_the_queue_empty() -> None:
    queue = CallQueue()
    queue.add(_call(1))
    assert len(queue.drop()) == 1
    assert len(queue) == 0
    assert queue.next_batch() is None


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="1 or more"):
        CallQueue(limit=0)
