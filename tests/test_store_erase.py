"""Erasing a user's messages everywhere (``actorim.store.erase``) on every store: SQLite,
memory and Redis plan the same deletes, rooms the user left included, a bounded number of
conversations and messages a call, converging to ``more`` False."""

from __future__ import annotations

import pytest

from actorim.store import NewMessage, Store, dm_conv, room_conv
from actorim.store.erase import conversations_of, erase_plan
from tests.test_store_conformance import (
    StoreFactory,
    direct,
    room_msg,
    store_factory,  # noqa: F401 (the fixture)
)

pytest_plugins = ["tests.redis_server"]


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:  # noqa: F811
    """A new, empty store of each backend (closed after the test)."""
    return store_factory()


def erased_everywhere(store: Store, user: str, *, limit: int) -> list[tuple[int, bool]]:
    """Erase ``user``'s messages everywhere as the Publisher does, call after call until
    ``more`` is false (at most 100 calls); each call's (deletes stored, more)."""
    calls = []
    for _ in range(100):
        deletes, more = erase_plan(store, user, limit=limit, now_ms=9_000)
        stored = store.append_batch(deletes)
        calls.append((sum(m.refused is None and not m.duplicate for m in stored), more))
        if not more:
            return calls
    raise AssertionError(f"the erase of {user} did not converge: {calls[-5:]}")


def live_of(store: Store, user: str, convs: list[str]) -> list[str]:
    """The conversations among ``convs`` where ``user`` has live messages, from their history."""
    found = []
    for conv in convs:
        page, _ = store.history(conv, limit=1_000)
        if any(m.sender == user and not m.deleted for m in page):
            found.append(conv)
    return found


def test_erasing_everywhere_reaches_the_rooms_the_user_left(store: Store) -> None:
    store.join_room("mallory", "left", max_rooms=10)
    store.join_room("mallory", "kept", max_rooms=10)
    store.append_batch([room_msg(f"l{i}", room="left", sender="mallory") for i in range(3)])
    store.append_batch([room_msg("bob's", room="left", sender="bob")])
    assert store.leave_room("mallory", "left")
    store.append_batch([room_msg("k", room="kept", sender="mallory")])
    store.append_batch([direct("mallory", "bob")])
    convs = [room_conv("left"), room_conv("kept"), dm_conv("mallory", "bob")]
    assert store.rooms_of("mallory") == ["kept"]

    assert erased_everywhere(store, "mallory", limit=2) == [(2, True), (2, True), (1, False)]
    assert live_of(store, "mallory", convs) == []
    assert live_of(store, "bob", convs) == [room_conv("left")]  # only hers were erased
    # Repeated: nothing left, nothing stored.
    assert erased_everywhere(store, "mallory", limit=2) == [(0, False)]


def test_erasing_everywhere_reads_a_bounded_number_of_conversations_a_call(store: Store) -> None:
    # 30 rooms written in and left: each call looks at limit + 1 of them, and the calls go on
    # until every one is erased.
    for n in range(30):
        room = f"room-{n:02d}"
        store.join_room("mallory", room, max_rooms=100)
        store.append_batch([room_msg(f"m{n}", room=room, sender="mallory", ts=1_000 + n)])
        store.leave_room("mallory", room)
    assert len(conversations_of(store, "mallory", limit=4)) == 5
    calls = erased_everywhere(store, "mallory", limit=4)
    assert calls == [(4, True)] * 7 + [(2, False)]
    assert live_of(store, "mallory", [room_conv(f"room-{n:02d}") for n in range(30)]) == []
    assert store.authored_conversations("mallory", limit=100) == []


def test_erasing_in_a_named_place_stays_there(store: Store) -> None:
    store.append_batch([room_msg("here", room="here", sender="mallory")])
    store.append_batch([room_msg("there", room="there", sender="mallory")])
    deletes, more = erase_plan(store, "mallory", room="here", limit=10, now_ms=9_000)
    assert ([d.conv for d in deletes], more) == ([room_conv("here")], False)
    with pytest.raises(ValueError, match="at most one"):
        erase_plan(store, "mallory", room="here", with_="bob", limit=10, now_ms=9_000)


def test_an_erase_delete_is_the_authors_own_delete_resent_by_its_cid(store: Store) -> None:
    [mine] = store.append_batch([room_msg("mine", room="lobby", sender="mallory")])
    [delete], _ = erase_plan(store, "mallory", limit=10, now_ms=9_000)
    assert delete == NewMessage(
        mine.conv,
        "mallory",
        "delete",
        b"",
        9_000,
        cid=f"erase:{mine.mid}",
        room="lobby",
        target=mine.mid,
    )
    [first] = store.append_batch([delete])
    [again] = store.append_batch([delete])
    assert (first.duplicate, again.duplicate, again.mid) == (False, True, first.mid)
