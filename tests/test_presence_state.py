"""Presence: online once per user, offline only after the grace period, told to watchers."""

from __future__ import annotations

import pytest

from actorim.domain.presence import (
    OFFLINE,
    ONLINE,
    Announcement,
    PresenceBook,
    WatchLimitError,
)


def on(user: str, t: float) -> Announcement:
    return Announcement(user, ONLINE, round(t * 1000))


def off(user: str, t: float) -> Announcement:
    return Announcement(user, OFFLINE, round(t * 1000))


# Each step: (time, event, user, conn) -> the announcements that step must produce.
# Events: "+" connected, "-" disconnected, "expire" (user and conn unused). Grace is 5 s.
Step = tuple[float, str, str, str, list[Announcement]]

SCENARIOS: dict[str, list[Step]] = {
    "online once per user, not per connection": [
        (0, "+", "alice", "a1", [on("alice", 0)]),
        (1, "+", "alice", "a2", []),
        (2, "+", "alice", "a3", []),
    ],
    "closing one of several connections changes nothing": [
        (0, "+", "alice", "a1", [on("alice", 0)]),
        (0, "+", "alice", "a2", []),
        (1, "-", "alice", "a1", []),
        (100, "expire", "", "", []),
    ],
    "offline only when the grace period has passed": [
        (0, "+", "alice", "a1", [on("alice", 0)]),
        (10, "-", "alice", "a1", []),
        (14.999, "expire", "", "", []),
        (15, "expire", "", "", [off("alice", 15)]),
        (16, "expire", "", "", []),
    ],
    "reconnect within grace announces nothing": [
        (0, "+", "alice", "a1", [on("alice", 0)]),
        (1, "-", "alice", "a1", []),
        (3, "+", "alice", "a2", []),
        (100, "expire", "", "", []),
    ],
    "reconnect after grace announces offline then online": [
        (0, "+", "alice", "a1", [on("alice", 0)]),
        (1, "-", "alice", "a1", []),
        (6, "expire", "", "", [off("alice", 6)]),
        (7, "+", "alice", "a2", [on("alice", 7)]),
    ],
    "a late timer still yields the offline at the end of grace": [
        (0, "+", "alice", "a1", [on("alice", 0)]),
        (1, "-", "alice", "a1", []),
        (30, "expire", "", "", [off("alice", 6)]),
    ],
    "an event after a missed deadline settles it first": [
        (0, "+", "alice", "a1", [on("alice", 0)]),
        (1, "-", "alice", "a1", []),
        (8, "+", "alice", "a2", [off("alice", 6), on("alice", 8)]),
    ],
    "flapping within grace keeps the latest deadline": [
        (0, "+", "alice", "a1", [on("alice", 0)]),
        (1, "-", "alice", "a1", []),
        (2, "+", "alice", "a2", []),
        (4, "-", "alice", "a2", []),
        (6, "expire", "", "", []),  # the first deadline (6) is stale
        (9, "expire", "", "", [off("alice", 9)]),
    ],
    "a repeated or unknown close is ignored": [
        (0, "+", "alice", "a1", [on("alice", 0)]),
        (1, "-", "alice", "a1", []),
        (2, "-", "alice", "a1", []),
        (2, "-", "bob", "b1", []),
        (6, "expire", "", "", [off("alice", 6)]),
    ],
    "users expire in deadline order": [
        (0, "+", "alice", "a1", [on("alice", 0)]),
        (0, "+", "bob", "b1", [on("bob", 0)]),
        (0, "+", "carol", "c1", [on("carol", 0)]),
        (2, "-", "carol", "c1", []),
        (1, "-", "bob", "b1", []),
        (3, "-", "alice", "a1", []),
        (10, "expire", "", "", [off("bob", 6), off("carol", 7), off("alice", 8)]),
    ],
}


def run(book: PresenceBook, now: float, event: str, user: str, conn: str) -> list[Announcement]:
    if event == "+":
        return book.connected(user, conn, now)
    if event == "-":
        return book.disconnected(user, conn, now)
    return book.expire(now)


@pytest.mark.parametrize("steps", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_presence_announcements(steps: list[Step]) -> None:
    book = PresenceBook(grace_s=5.0)
    for now, event, user, conn, expected in steps:
        assert run(book, now, event, user, conn) == expected, (now, event, user, conn)


def test_user_in_grace_is_still_online_but_has_no_connections() -> None:
    book = PresenceBook(grace_s=5.0)
    book.connected("alice", "a1", 0)
    book.disconnected("alice", "a1", 1)
    assert book.status("alice") == ONLINE
    assert book.connections_of("alice") == frozenset()
    assert book.online_users() == {"alice"}
    book.expire(6)
    assert book.status("alice") == OFFLINE
    assert book.online_users() == set()


def test_zero_grace_announces_offline_at_once() -> None:
    book = PresenceBook(grace_s=0)
    book.connected("alice", "a1", 0)
    assert book.disconnected("alice", "a1", 1.5) == [off("alice", 1.5)]
    assert book.status("alice") == OFFLINE
    assert book.next_deadline() is None


def test_statuses_and_connections_reflect_the_book() -> None:
    book = PresenceBook()
    book.connected("alice", "a1", 0)
    book.connected("alice", "a2", 0)
    book.connected("bob", "b1", 0)
    assert book.statuses(["alice", "bob", "zed"]) == {
        "alice": ONLINE,
        "bob": ONLINE,
        "zed": OFFLINE,
    }
    assert book.connections_of("alice") == frozenset({"a1", "a2"})
    assert book.connections_of("zed") == frozenset()
    assert book.online_users() == {"alice", "bob"}


def test_next_deadline_skips_stale_deadlines() -> None:
    book = PresenceBook(grace_s=5.0)
    assert book.next_deadline() is None
    book.connected("alice", "a1", 0)
    book.connected("bob", "b1", 0)
    book.disconnected("alice", "a1", 1)  # deadline 6
    book.disconnected("bob", "b1", 2)  # deadline 7
    assert book.next_deadline() == 6
    book.connected("alice", "a2", 3)  # alice's deadline is now stale
    assert book.next_deadline() == 7
    book.connected("bob", "b2", 3)
    assert book.next_deadline() is None
    assert book.expire(100) == []


def test_flapping_user_does_not_grow_the_deadline_heap_without_bound() -> None:
    book = PresenceBook(grace_s=1000.0)
    for i in range(10_000):
        book.connected("alice", f"a{i}", i)
        book.disconnected("alice", f"a{i}", i)
    assert len(book._deadlines) < 200
    assert book.next_deadline() == 9_999 + 1000
    assert book.expire(20_000) == [off("alice", 10_999)]


# -- watchers ------------------------------------------------------------------------------


def deliveries(book: PresenceBook, announcements: list[Announcement]) -> set[tuple[str, str, str]]:
    """(watcher, user, status) for every announcement as the presence actor would send it."""
    return {(w, a.user, a.status) for a in announcements for w in book.watchers_of(a.user)}


def test_watchers_receive_exactly_the_announcements_of_users_they_watch() -> None:
    book = PresenceBook(grace_s=5.0)
    book.watch("w1", ["alice", "bob"])
    book.watch("w2", ["bob"])
    book.watch("w3", ["carol"])
    assert deliveries(book, book.connected("alice", "a1", 0)) == {("w1", "alice", ONLINE)}
    assert deliveries(book, book.connected("bob", "b1", 0)) == {
        ("w1", "bob", ONLINE),
        ("w2", "bob", ONLINE),
    }
    assert deliveries(book, book.connected("dave", "d1", 0)) == set()
    assert deliveries(book, book.connected("bob", "b2", 1)) == set()
    book.disconnected("bob", "b1", 2)
    book.disconnected("bob", "b2", 2)
    assert deliveries(book, book.expire(7)) == {("w1", "bob", OFFLINE), ("w2", "bob", OFFLINE)}


def test_unwatch_and_drop_watcher_stop_the_announcements() -> None:
    book = PresenceBook()
    book.watch("w1", ["alice", "bob"])
    book.watch("w2", ["alice"])
    book.unwatch("w1", ["alice", "never-watched"])
    assert book.watchers_of("alice") == {"w2"}
    assert book.watchers_of("bob") == {"w1"}
    book.drop_watcher("w1")
    book.drop_watcher("w1")
    assert book.watchers_of("bob") == set()
    assert book.watched_by("w1") == frozenset()
    book.unwatch("w2", ["alice"])
    assert book._watched_by == {}
    assert book._watching == {}


def test_a_closed_connection_stops_watching() -> None:
    book = PresenceBook()
    book.connected("alice", "a1", 0)
    book.watch("a1", ["bob"])
    book.disconnected("alice", "a1", 1)
    assert book.watchers_of("bob") == set()


def test_watchers_of_is_a_copy_the_caller_may_keep() -> None:
    book = PresenceBook()
    book.watch("w1", ["alice"])
    watchers = book.watchers_of("alice")
    watchers.add("intruder")
    assert book.watchers_of("alice") == {"w1"}


def test_watching_too_many_users_is_refused_and_changes_nothing() -> None:
    book = PresenceBook(max_watches_per_conn=3)
    book.watch("w1", ["a", "b"])
    book.watch("w1", ["a", "b", "c"])  # re-watching counts once
    with pytest.raises(WatchLimitError, match="at most 3"):
        book.watch("w1", ["d"])
    assert book.watched_by("w1") == frozenset({"a", "b", "c"})
    assert book.watchers_of("d") == set()


# -- rebuild -------------------------------------------------------------------------------


def test_rebuild_does_not_announce_users_who_are_still_online() -> None:
    book = PresenceBook(grace_s=5.0)
    book.watch("w1", ["alice", "bob"])
    assert book.rebuild([("alice", "a1"), ("alice", "a2"), ("bob", "b1")], now=100) == []
    assert book.statuses(["alice", "bob"]) == {"alice": ONLINE, "bob": ONLINE}
    assert book.connections_of("alice") == frozenset({"a1", "a2"})
    assert book.connected("alice", "a3", 101) == []
    assert book.disconnected("bob", "b1", 102) == []
    assert book.expire(107) == [off("bob", 107)]


def test_rebuild_puts_users_without_live_connections_into_grace() -> None:
    book = PresenceBook(grace_s=5.0)
    book.connected("alice", "a1", 0)
    book.connected("bob", "b1", 0)
    assert book.rebuild([("alice", "a1")], now=10) == []
    assert book.status("bob") == ONLINE
    assert book.expire(15) == [off("bob", 15)]


def test_rebuild_ends_the_grace_of_users_who_came_back() -> None:
    book = PresenceBook(grace_s=5.0)
    book.connected("alice", "a1", 0)
    book.disconnected("alice", "a1", 1)
    assert book.rebuild([("alice", "a9")], now=2) == []
    assert book.expire(100) == []
    assert book.connections_of("alice") == frozenset({"a9"})


def test_rebuild_drops_watches_of_connections_that_are_gone() -> None:
    book = PresenceBook()
    book.watch("a1", ["carol"])
    book.watch("gone", ["carol"])
    book.rebuild([("alice", "a1")], now=0)
    assert book.watchers_of("carol") == {"a1"}


def test_ten_thousand_users_online_are_cheap() -> None:
    book = PresenceBook()
    for i in range(10_000):
        assert len(book.connected(f"user{i}", i, 0)) == 1
    assert len(book.online_users()) == 10_000
    for i in range(10_000):
        book.disconnected(f"user{i}", i, 1)
    assert len(book.expire(6)) == 10_000
    assert not book._conns and not book._grace and not book._deadlines


def test_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="grace_s"):
        PresenceBook(grace_s=-1)
