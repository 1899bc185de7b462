"""The offline backlog's pager, fed pages, drains and live messages directly: what it sends,
when it reads on, and what it holds back."""

from __future__ import annotations

import doctest
import random

import pytest

import actorim.domain.backlog
from actorim.domain.backlog import BacklogPager, PagerState

READING, SENDING, DONE = PagerState.READING, PagerState.SENDING, PagerState.DONE


def pager(**bounds: int) -> BacklogPager[str]:
    settings = {"page_messages": 3, "page_bytes": 100, "max_held": 5, "max_held_bytes": 1000}
    return BacklogPager(**{**settings, **bounds})


def test_the_example_in_the_docstring_holds() -> None:
    assert doctest.testmod(actorim.domain.backlog).failed == 0


def test_a_full_page_waits_for_the_drain_and_a_short_one_ends_the_paging() -> None:
    p = pager()
    assert p.next_read() == (None, 3)
    assert p.page_read([("a", 1), ("b", 1), ("c", 1)]) == ["a", "b", "c"]
    assert p.state is SENDING
    assert p.drained() is True and p.state is READING
    assert p.drained() is False, "a drain while reading asks for nothing"
    assert p.next_read() == ("c", 3)
    assert p.page_read([]) == [] and p.state is DONE
    assert p.drained() is False


def test_a_page_over_its_bytes_is_cut_and_the_next_read_asks_for_what_fitted() -> None:
    p = pager(page_messages=10, page_bytes=100)
    p.next_read()
    page = [(f"m{i}", 40) for i in range(10)]
    assert p.page_read(page) == ["m0", "m1"]
    assert (p.state, p.cursor) == (SENDING, "m1")
    p.drained()
    assert p.next_read() == ("m1", 2)
    # A page the size asked for is not the last one, even though smaller than page_messages.
    assert p.page_read([("m2", 40), ("m3", 40)]) == ["m2", "m3"] and p.state is SENDING
    p.drained()
    assert p.next_read() == ("m3", 4), "reads grow back once pages fit"


def test_one_message_larger_than_a_page_still_goes_out_alone() -> None:
    p = pager(page_bytes=10)
    p.next_read()
    assert p.page_read([("big", 500), ("next", 1)]) == ["big"]
    assert p.cursor == "big" and p.state is SENDING


def test_live_messages_are_held_and_follow_the_backlog_once() -> None:
    p = pager()
    p.next_read()
    assert p.hold("x", "live x", size=1) and p.hold("y", "live y", size=1)
    assert p.hold("x", "live x again", size=1), "a second copy is taken and dropped"
    assert p.page_read([("a", 1), ("x", 1), ("b", 1)]) == ["a", "x", "b"]
    p.drained()
    p.next_read()
    assert p.hold("a", "late copy of a", size=1), "a copy of a message a page sent is dropped"
    assert p.page_read([("c", 1)]) == ["c"]
    assert p.state is DONE
    assert p.release() == ["live y"]
    assert p.hold("z", "live z", size=1) is False, "after the backlog, live goes straight out"


def test_a_page_never_sends_a_message_twice() -> None:
    p = pager()
    p.next_read()
    p.page_read([("a", 1), ("b", 1), ("c", 1)])
    p.drained()
    p.next_read()
    # After a cursor that retention removed, the store starts at its millisecond again.
    assert p.page_read([("b", 1), ("c", 1), ("d", 1)]) == ["d"]
    assert p.cursor == "d"


@pytest.mark.parametrize(("max_held", "max_held_bytes"), [(2, 1000), (100, 25)])
def test_holding_more_than_the_outbox_would_take_overflows(
    max_held: int, max_held_bytes: int
) -> None:
    p = pager(max_held=max_held, max_held_bytes=max_held_bytes)
    p.next_read()
    assert p.hold("x", "x", size=10) and p.hold("y", "y", size=10) and not p.overflowed
    assert p.hold("z", "z", size=10) and p.overflowed


def test_a_failed_read_ends_the_paging_and_releases_what_was_held() -> None:
    p = pager()
    p.next_read()
    p.hold("x", "live x", size=1)
    p.failed()
    assert p.state is DONE and p.release() == ["live x"]
    with pytest.raises(RuntimeError, match="done"):
        p.page_read([("a", 1)])


def test_random_pages_deliver_every_message_once_in_order() -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    backlog = [(f"m{i:04d}", rng.randint(1, 120)) for i in range(rng.randint(0, 300))]
    live = [f"m{i:04d}" for i in range(len(backlog), len(backlog) + 20)]
    p = BacklogPager[str](
        page_messages=rng.randint(1, 20),
        page_bytes=rng.randint(1, 400),
        max_held=50,
        max_held_bytes=10_000,
    )
    sent: list[str] = []
    arrived = 0
    while p.state is not DONE:
        after, limit = p.next_read()
        start = 0 if after is None else [m for m, _ in backlog].index(after) + 1
        sent += p.page_read(backlog[start : start + limit])
        if p.state is DONE:
            sent += p.release()  # at once, as the shell does: nothing can arrive in between
            break
        if arrived < len(live) and rng.random() < 0.5:
            assert p.hold(live[arrived], live[arrived], size=1)
            arrived += 1
        if p.state is SENDING:
            assert p.drained()
    assert sent == [m for m, _ in backlog] + live[:arrived]
