"""The store thread's batches (actorim.runtime.storecalls): order, isolation, bounds."""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import actorim.runtime.storecalls
from actorim.runtime.storecalls import CallQueue, StoreCall, run_calls
from actorim.store.base import StoreError
from actorim.store.sqlite import SqliteStore


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


def test_a_call_marked_alone_goes_in_a_batch_of_its_own() -> None:
    # Every answer of a batch waits for its last call: a commit or a page is never batched.
    queue = CallQueue()
    for value, alone in [(1, False), (2, False), (3, True), (4, False), (5, True), (6, True)]:
        queue.add(StoreCall(lambda v=value: v, (), {}, print, alone))
    batches = []
    while (batch := queue.next_batch()) is not None:
        batches.append([value for value, _ in run_calls(batch)])
        queue.finished()
    assert batches == [[1, 2], [3], [4], [5], [6]]


def test_a_call_marked_first_goes_before_the_calls_waiting_and_keeps_its_own_order() -> None:
    # The group commit waits for the batch running, not for every history page queued before
    # it: a bystander's send is not held up by an attacker's pages.
    queue = CallQueue()
    queue.add(StoreCall(lambda: "running", (), {}, print, True))
    running = queue.next_batch()
    for value, first in [("page 1", False), ("page 2", False), ("commit 1", True)]:
        queue.add(StoreCall(lambda v=value: v, (), {}, print, True, first))
    queue.add(StoreCall(lambda: "commit 2", (), {}, print, True, True))
    assert queue.next_batch() is None  # one batch at a time
    assert running is not None and len(queue) == 4
    queue.finished()
    order = []
    while (batch := queue.next_batch()) is not None:
        order += [value for value, _ in run_calls(batch)]
        queue.finished()
    assert order == ["commit 1", "commit 2", "page 1", "page 2"]


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


def test_a_batch_in_one_transaction_keeps_each_call_apart(tmp_path: Path) -> None:
    # SQLite runs a batch as one transaction: a write that fails is undone alone, as its own
    # transaction would have been, and what the others wrote is there after the batch, for good
    # (a store opened again).
    path = tmp_path / "store.db"
    store = SqliteStore(path)

    def join_then_fail(user: str) -> None:
        with store._write(f"add {user}") as conn:
            conn.execute("INSERT INTO members (room, user) VALUES ('lobby', ?)", (user,))
            conn.execute("SELECT no_such_column FROM members")

    calls = [
        StoreCall(store.join_room, ("ann", "lobby"), {"max_rooms": 10}, print),
        StoreCall(join_then_fail, ("bob",), {}, print),
        StoreCall(store.join_room, ("cid", "lobby"), {"max_rooms": 10}, print),
    ]
    outcomes = run_calls(calls, store.together)
    assert [value for value, _ in outcomes] == ["joined", None, "joined"]
    assert isinstance(outcomes[1][1], StoreError)
    store.close()
    reopened = SqliteStore(path)
    assert [r for r in ("ann", "bob", "cid") if reopened.rooms_of(r)] == ["ann", "cid"]
    reopened.close()


def test_a_batch_whose_commit_fails_fails_every_call() -> None:
    @contextmanager
    def failing_commit() -> Iterator[None]:
        yield
        raise StoreError("disk full")

    outcomes = run_calls([_call(1), _call(2)], failing_commit)
    assert [value for value, _ in outcomes] == [None, None]
    assert all(isinstance(error, StoreError) for _, error in outcomes)
