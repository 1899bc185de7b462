"""``Heard``: each member or presence change is announced once, and the ones missed during an
outage are found by comparing with the cluster's state."""

from __future__ import annotations

from actorim.domain.heard import Heard


def members(*users: str) -> dict[str, str]:
    return dict.fromkeys(users, "joined")


def room_view(*users: str) -> Heard[str, str]:
    heard = Heard[str, str](absent="left")
    heard.reset(members(*users))
    return heard


def test_an_event_heard_twice_is_announced_once() -> None:
    heard = room_view("alice")
    assert heard.hear("bob", "joined") is True
    assert heard.hear("bob", "joined") is False
    assert heard.hear("bob", "left") is True
    assert heard.hear("bob", "joined") is True


def test_the_members_list_a_join_reply_gave_is_not_announced_again() -> None:
    heard = room_view("alice", "bob")
    assert heard.hear("alice", "joined") is False
    assert heard.reconcile(members("alice", "bob")) == []


def test_reconciling_a_room_announces_who_arrived_and_who_left_while_the_node_was_deaf() -> None:
    heard = room_view("alice", "bob")
    changes = heard.reconcile(members("bob", "carol"))
    assert changes == [("alice", "left"), ("carol", "joined")]
    # Told once: the live events that follow change nothing.
    assert heard.hear("carol", "joined") is False
    assert heard.hear("alice", "left") is False
    assert heard.reconcile(members("bob", "carol")) == []


def test_someone_who_came_and_went_unheard_is_not_announced_leaving() -> None:
    heard = room_view("alice")
    assert heard.reconcile(members("alice")) == []
    assert heard.hear("dave", "left") is False  # nobody here was told Dave had joined


def test_reconciling_statuses_announces_only_changes_of_users_already_told_about() -> None:
    heard = Heard[str, str]()
    heard.seed({"alice": "online", "bob": "offline"})
    changes = heard.reconcile({"alice": "offline", "bob": "online", "carol": "online"})
    assert changes == [("alice", "offline"), ("bob", "online")]
    assert heard.hear("carol", "online") is False


def test_seeding_keeps_what_was_already_heard() -> None:
    heard = Heard[str, str]()
    heard.hear("alice", "online")
    heard.seed({"alice": "offline", "bob": "offline"})
    assert heard.hear("alice", "online") is False
    assert heard.hear("bob", "offline") is False


def test_a_forgotten_user_is_announced_afresh() -> None:
    heard = Heard[str, str]()
    heard.hear("alice", "online")
    heard.forget(["alice"])
    assert "alice" not in heard
    assert heard.hear("alice", "online") is True
