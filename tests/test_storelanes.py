"""Store calls waiting on Redis run side by side (actorim.runtime.storelanes): one asker's in
the order it asked, no asker's slow call holding up another's, at most ``store_concurrency``
at once."""

from __future__ import annotations

import doctest
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import pytest
from gevent.event import AsyncResult, Event

import actorim.runtime.storelanes
from actorim.runtime.messages import RoomsRequest
from actorim.runtime.storelanes import Lanes
from tests.support import RunningNode

WAIT = 10.0


def test_doctests() -> None:
    assert doctest.testmod(actorim.runtime.storelanes).failed == 0


class Calls:
    """Calls that each wait for the test to let them finish, and the order they started in."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self._release: dict[str, Event] = {}
        self._start: dict[str, Event] = {}

    def run(self, name: str) -> None:
        self.started.append(name)
        self._started(name).set()
        self._released(name).wait()

    def wait_started(self, name: str) -> None:
        assert self._started(name).wait(WAIT), f"{name} never started; started: {self.started}"

    def release(self, name: str) -> None:
        self._released(name).set()

    def _started(self, name: str) -> Event:
        return self._start.setdefault(name, Event())

    def _released(self, name: str) -> Event:
        return self._release.setdefault(name, Event())


def settle() -> None:
    """Let every greenlet ready to run take its turn (spawned greenlets start on the next pass
    of the loop; a few passes let those they made ready run too)."""
    for _ in range(5):
        gevent.sleep(0)


def test_one_lanes_calls_run_one_after_the_other_in_order_beside_other_lanes() -> None:
    calls = Calls()
    lanes: Lanes[str] = Lanes(8, calls.run)
    for name in ("a1", "a2", "a3"):
        lanes.submit("a", name)
    lanes.submit("b", "b1")
    calls.wait_started("a1")
    calls.wait_started("b1")  # another lane runs beside a1
    settle()
    assert calls.started == ["a1", "b1"]
    calls.release("a1")
    calls.wait_started("a2")
    settle()
    assert calls.started == ["a1", "b1", "a2"]
    calls.release("a2")
    calls.release("b1")
    calls.wait_started("a3")
    calls.release("a3")
    lanes.join(WAIT)
    assert lanes.running == 0 and lanes.waiting == 0


def test_past_the_limit_calls_wait_in_the_order_they_became_ready() -> None:
    calls = Calls()
    lanes: Lanes[str] = Lanes(2, calls.run)
    lanes.submit("a", "a1")
    lanes.submit(None, "n1")
    lanes.submit("a", "a2")  # waits for a1
    lanes.submit("b", "b1")  # ready, waits for a slot
    lanes.submit(None, "n2")  # ready after b1
    calls.wait_started("a1")
    calls.wait_started("n1")
    settle()
    assert lanes.running == 2 and lanes.waiting == 3
    calls.release("a1")  # a2 becomes ready behind b1 and n2, which take the free slot first
    calls.wait_started("b1")
    settle()
    assert calls.started == ["a1", "n1", "b1"]
    calls.release("n1")
    calls.wait_started("n2")
    calls.release("b1")
    calls.wait_started("a2")
    assert calls.started == ["a1", "n1", "b1", "n2", "a2"]
    calls.release("n2")
    calls.release("a2")
    lanes.join(WAIT)


def test_drop_hands_back_what_never_started_and_the_lanes_are_free_again() -> None:
    calls = Calls()
    lanes: Lanes[str] = Lanes(1, calls.run)
    lanes.submit("a", "a1")
    lanes.submit("a", "a2")
    lanes.submit("b", "b1")
    calls.wait_started("a1")
    assert sorted(lanes.drop()) == ["a2", "b1"]
    calls.release("a1")
    lanes.join(WAIT)
    lanes.submit("a", "a3")  # the lane is not held by what was dropped
    calls.wait_started("a3")
    calls.release("a3")
    lanes.join(WAIT)
    assert calls.started == ["a1", "a3"]


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Lanes(0, print)


class Asker:
    """A ``ReplyTo`` whose answers run where they arrive, in a lane of its own choosing."""

    def __init__(self, lane: Any) -> None:
        self.lane = lane

    def tell(self, message: Any) -> None:
        message.func(*message.args)


def blocked_request(lane: Any, started: Event, release: Event) -> tuple[RoomsRequest, AsyncResult]:
    """A store request whose call waits (as a slow Redis round trip would) until ``release``."""
    answer: AsyncResult = AsyncResult()

    def run(_store: Any) -> str:
        started.set()
        release.wait()
        return "done"

    return RoomsRequest(run, Asker(lane), lambda v, e: answer.set((v, e))), answer


def test_in_a_cluster_a_store_call_waiting_on_redis_holds_up_no_other_askers_calls(
    start_node: Callable[..., RunningNode], redis_session: Any, tmp_path: Path
) -> None:
    url = f"redis://127.0.0.1:{redis_session.port}/0"
    node = start_node(redis_url=url, redis_namespace=f"lanes-{tmp_path.name}")
    bob = node.client("bob")
    bob.ok("join", room="r")
    bob.ok("send", room="r", body="one")
    refs = node.node.ctx.refs

    first_started, release = Event(), Event()
    first, first_answer = blocked_request("lane-x", first_started, release)
    second_started, second_release = Event(), Event()
    second, second_answer = blocked_request("lane-x", second_started, second_release)
    refs.tell_store(first)
    try:
        assert first_started.wait(WAIT)
        refs.tell_store(second)

        # Another connection's reads and writes go on while lane-x's call waits.
        assert [m["body"] for m in bob.ok("history", room="r")["messages"]] == ["one"]
        assert bob.ok("send", room="r", body="two")["seq"] == 2
        assert not second_started.is_set(), "a lane's second call started before its first ended"

        release.set()
        assert first_answer.get(timeout=WAIT) == ("done", None)
        assert second_started.wait(WAIT)
        second_release.set()
        assert second_answer.get(timeout=WAIT) == ("done", None)
    finally:  # a failed test leaves no call waiting for the node's stop
        release.set()
        second_release.set()
