"""Every message store keeps the promises the server makes to clients: one message per client
send, gap-free sequence numbers, paging, retention, and direct messages that wait.

The suite runs once per backend in BACKENDS; a new backend joins it by adding its factory.
The Redis backend runs against a private redis-server (tests/redis_server.py).
"""

from __future__ import annotations

import random
import sqlite3
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import pytest

from actorim.domain.markers import Counts
from actorim.domain.rooms import RoomInfo
from actorim.redis.store import RedisStore
from actorim.store import (
    DEFAULT_MAX_AGE_MS,
    DEFAULT_MAX_COUNT,
    MemoryStore,
    NewMessage,
    Receipt,
    ReceiptStatus,
    SqliteStore,
    Store,
    StoredMessage,
    StoreError,
    dm_conv,
    mid_ms,
    new_mid,
    room_conv,
)
from actorim.store.base import inbox, join_checked, private_to

pytest_plugins = ["tests.redis_server"]

FAR_FUTURE_AGE_MS = 10**12  # a max_age_ms under which nothing in these tests is old


def open_sqlite(data_dir: Path, request: pytest.FixtureRequest) -> Store:
    return SqliteStore(data_dir / "messages.db")


def open_memory(data_dir: Path, request: pytest.FixtureRequest) -> Store:
    return MemoryStore()


def open_redis(data_dir: Path, request: pytest.FixtureRequest) -> Store:
    # One Redis per session, wiped per test; each store of a test gets a namespace of its own.
    return RedisStore(request.getfixturevalue("redis_client"), namespace=data_dir.name)


def open_redis_cluster(data_dir: Path, request: pytest.FixtureRequest) -> Store:
    # One Redis Cluster of three masters per session, wiped per test (tests/redis_topologies.py).
    return RedisStore(request.getfixturevalue("redis_cluster_client"), namespace=data_dir.name)


# Each factory opens a new, empty store keeping its files (if any) in the empty directory given
# (and taking what else it needs, such as a Redis server, from the test's fixtures).
BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], Store]] = {
    "sqlite": open_sqlite,
    "memory": open_memory,
    "redis": open_redis,
    "redis-cluster": open_redis_cluster,
}

# Backends that start a process (the session's redis-server) leave the fast tier.
PROCESS_BACKENDS = frozenset({"redis", "redis-cluster"})


def backend_params(names: list[str]) -> list[Any]:
    """``names`` as parameters, the ones in PROCESS_BACKENDS marked ``process``."""
    return [
        pytest.param(name, marks=pytest.mark.process if name in PROCESS_BACKENDS else ())
        for name in names
    ]


@dataclass(frozen=True)
class Leeway:
    """What a backend's design leaves open that the in-memory model decides.

    ``age_order_across_convs``:
    when a small prune budget runs out, which conversation's old messages went first is the
    backend's choice (each conversation still loses its own oldest first). The comparison with
    the model steers clear of exactly these, for the backends listed, and no more.
    """

    age_order_across_convs: bool = False


# Redis keeps each conversation on one shard: a global age order would span shards (see
# actorim/redis/store.py).
LEEWAY: dict[str, Leeway] = {
    "redis": Leeway(age_order_across_convs=True),
    "redis-cluster": Leeway(age_order_across_convs=True),
}

StoreFactory = Callable[[], Store]


@pytest.fixture(params=backend_params(list(BACKENDS)))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    opened: list[Store] = []

    def open_store() -> Store:
        data_dir = tmp_path / f"store-{len(opened)}"
        data_dir.mkdir()
        store = BACKENDS[request.param](data_dir, request)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    return store_factory()


def room_msg(
    text: str = "hi",
    *,
    room: str = "lobby",
    sender: str = "alice",
    ts: int = 1_000,
    cid: str | None = None,
    mentions: tuple[str, ...] = (),
) -> NewMessage:
    return NewMessage(
        room_conv(room), sender, "text", text.encode(), ts, cid=cid, room=room, mentions=mentions
    )


def direct(sender: str, to: str, *, ts: int = 1_000, cid: str | None = None) -> NewMessage:
    return NewMessage(dm_conv(sender, to), sender, "text", b"psst", ts, cid=cid, to=to)


def seqs(messages: list[StoredMessage]) -> list[int]:
    return [m.seq for m in messages]


def retained(store: Store, room: str = "lobby") -> list[int]:
    return seqs(store.history(room_conv(room), before=None, after=None, limit=100_000)[0])


def fill(store: Store, count: int, *, room: str = "lobby", ts: int = 1_000) -> None:
    store.append_batch([room_msg(f"m{i}", room=room, ts=ts + i) for i in range(count)])


# -- conversation keys and mids -------------------------------------------------------------


def test_direct_conversation_is_the_same_whichever_user_sends() -> None:
    assert dm_conv("bob", "alice") == dm_conv("alice", "bob") == "d:alice|bob"
    assert room_conv("lobby") == "r:lobby"


def test_direct_conversation_refuses_the_separator_in_a_user_id() -> None:
    with pytest.raises(ValueError):
        dm_conv("a|b", "c")


def test_mids_are_short_unique_and_sort_by_time() -> None:
    mids = [new_mid(ts) for ts in range(1_700_000_000_000, 1_700_000_000_000 + 500) for _ in "ab"]
    assert len(set(mids)) == len(mids)
    assert all(len(mid) == 18 for mid in mids)
    assert [mid_ms(mid) for mid in sorted(mids)] == sorted(mid_ms(mid) for mid in mids)
    assert mid_ms(mids[0]) == 1_700_000_000_000


# -- sequence numbers and conversations -----------------------------------------------------


def test_each_conversation_numbers_its_messages_from_one_without_gaps(store: Store) -> None:
    first = store.append_batch(
        [room_msg(room="a"), room_msg(room="b"), room_msg(room="a"), direct("alice", "bob")]
    )
    second = store.append_batch([direct("bob", "alice"), room_msg(room="a"), room_msg(room="b")])

    assert [(m.conv, m.seq) for m in first + second] == [
        ("r:a", 1),
        ("r:b", 1),
        ("r:a", 2),
        ("d:alice|bob", 1),
        ("d:alice|bob", 2),
        ("r:a", 3),
        ("r:b", 2),
    ]
    assert store.last_seq("r:a") == 3
    assert store.last_seq("r:nobody-spoke") == 0


def test_message_whose_conversation_contradicts_its_recipient_is_refused(store: Store) -> None:
    wrong = NewMessage(dm_conv("alice", "carol"), "alice", "text", b"", 1, to="bob")
    with pytest.raises(ValueError, match="conv"):
        store.append_batch([room_msg(), wrong])
    assert store.last_seq(room_conv("lobby")) == 0


def test_stored_message_is_found_by_its_mid(store: Store) -> None:
    stored = store.append_batch([room_msg("one"), direct("alice", "bob")])
    assert [store.get(m.mid) for m in stored] == stored
    assert store.since(room_conv("lobby"), 0, limit=10) == ([stored[0]], True)


# -- de-duplication -------------------------------------------------------------------------


def test_resend_with_same_cid_returns_the_original_flagged_duplicate(store: Store) -> None:
    [original] = store.append_batch([room_msg("hello", cid="c1", ts=1_000)])
    [again] = store.append_batch([room_msg("hello again", cid="c1", ts=2_000)])

    assert again.duplicate and not original.duplicate
    assert (again.mid, again.seq, again.ts, again.body) == (
        original.mid,
        original.seq,
        original.ts,
        original.body,
    )
    assert store.last_seq(room_conv("lobby")) == 1


def test_same_cid_twice_in_one_batch_stores_one_message(store: Store) -> None:
    first, other, second = store.append_batch(
        [room_msg(cid="c1"), room_msg(cid="c2"), room_msg(cid="c1")]
    )
    assert second.duplicate and second.mid == first.mid and second.seq == first.seq == 1
    assert other.seq == 2 and not other.duplicate
    assert store.last_seq(room_conv("lobby")) == 2


def test_batch_mixing_resends_and_new_messages_keeps_seq_gap_free(store: Store) -> None:
    [old] = store.append_batch([room_msg(cid="c1")])
    results = store.append_batch([room_msg(cid="c2"), room_msg(cid="c1"), room_msg(cid="c3")])

    assert [(m.seq, m.duplicate) for m in results] == [(2, False), (1, True), (3, False)]
    assert results[1].mid == old.mid
    page, complete = store.since(room_conv("lobby"), 0, limit=10)
    assert complete and seqs(page) == [1, 2, 3]


def test_same_cid_from_different_senders_are_different_messages(store: Store) -> None:
    a, b = store.append_batch(
        [room_msg(sender="alice", cid="c1"), room_msg(sender="bob", cid="c1")]
    )
    assert not b.duplicate and a.mid != b.mid and (a.seq, b.seq) == (1, 2)


def test_same_cid_in_another_conversation_is_another_message(store: Store) -> None:
    [first] = store.append_batch([room_msg("one", room="a", cid="c1")])
    [second, dm] = store.append_batch(
        [room_msg("two", room="b", cid="c1"), direct("alice", "bob", cid="c1")]
    )
    assert not second.duplicate and not dm.duplicate
    assert len({first.mid, second.mid, dm.mid}) == 3
    assert (second.conv, second.seq, second.body) == (room_conv("b"), 1, b"two")
    [again] = store.append_batch([room_msg("two again", room="b", cid="c1")])
    assert again.duplicate and again.mid == second.mid


def test_sends_and_receipts_commit_together(store: Store) -> None:
    [dm] = store.append_batch([direct("alice", "bob")])
    stored, receipts = store.write_batch(
        [room_msg(cid="c1")], [(dm.mid, "bob", "read"), (dm.mid, "bob", "delivered")]
    )
    assert seqs(stored) == [1] and not stored[0].duplicate
    assert receipts == [Receipt(dm.mid, "alice", "bob", "read"), None]
    assert store.write_batch([], []) == ([], [])
    assert store.pending_for("bob", limit=10) == []


def test_resend_after_retention_removed_the_original_is_a_new_message(store: Store) -> None:
    [original] = store.append_batch([room_msg(cid="c1", ts=1_000)])
    assert store.prune(now_ms=10_000, max_age_ms=1_000) == 1

    [again] = store.append_batch([room_msg(cid="c1", ts=10_000)])
    assert not again.duplicate and again.mid != original.mid and again.seq == 2


# -- epoch ----------------------------------------------------------------------------------


def test_each_new_store_has_its_own_epoch_that_stays_put(store_factory: StoreFactory) -> None:
    first, second = store_factory(), store_factory()
    epoch = first.epoch()
    first.append_batch([room_msg()])
    assert first.epoch() == epoch
    assert second.epoch() != epoch


# -- catching up: since ---------------------------------------------------------------------


def test_since_returns_the_missed_messages_in_order(store: Store) -> None:
    fill(store, 10)
    conv = room_conv("lobby")
    page, complete = store.since(conv, 7, limit=100)
    assert seqs(page) == [8, 9, 10] and complete
    assert store.since(conv, 10, limit=100) == ([], True)
    assert store.since(room_conv("empty"), 0, limit=100) == ([], True)


def test_since_is_incomplete_when_more_than_limit_were_missed(store: Store) -> None:
    fill(store, 10)
    page, complete = store.since(room_conv("lobby"), 5, limit=2)
    assert seqs(page) == [6, 7] and not complete
    page, complete = store.since(room_conv("lobby"), 5, limit=5)
    assert seqs(page) == [6, 7, 8, 9, 10] and complete


def test_since_is_incomplete_when_retention_removed_missed_messages(store: Store) -> None:
    fill(store, 10)
    store.prune(now_ms=2_000, max_count=5, max_age_ms=FAR_FUTURE_AGE_MS)
    conv = room_conv("lobby")

    page, complete = store.since(conv, 3, limit=100)
    assert seqs(page) == [6, 7, 8, 9, 10] and not complete
    page, complete = store.since(conv, 5, limit=100)
    assert seqs(page) == [6, 7, 8, 9, 10] and complete


def test_since_is_incomplete_when_retention_removed_a_message_between_others(
    store: Store,
) -> None:
    # The server's clock stepped back: seq 2 is older than seq 1 and ages out first.
    store.append_batch([room_msg(ts=5_000), room_msg(ts=1_000), room_msg(ts=5_000)])
    assert store.prune(now_ms=5_000, max_age_ms=1_000) == 1
    conv = room_conv("lobby")

    page, complete = store.since(conv, 0, limit=100)
    assert seqs(page) == [1, 3] and not complete
    assert seqs(store.since(conv, 2, limit=100)[0]) == [3]
    assert store.since(conv, 2, limit=100)[1]
    assert store.history(conv, before=3, limit=1) == ([page[0]], False)
    assert store.history(conv, after=1, limit=1) == ([page[1]], False)


def test_since_stops_at_max_bytes_of_bodies_and_is_then_incomplete(store: Store) -> None:
    # Bodies "m0".."m9" and "m10".."m39": two bytes each, then three; more than one read of a
    # paging backend.
    fill(store, 40)
    conv = room_conv("lobby")
    page, complete = store.since(conv, 0, limit=100, max_bytes=20)
    assert seqs(page) == list(range(1, 11)) and not complete
    page, complete = store.since(conv, 0, limit=100, max_bytes=21)
    assert seqs(page) == list(range(1, 11)) and not complete  # the next body is 3 bytes
    page, complete = store.since(conv, 5, limit=100, max_bytes=10 + 30 * 3)
    assert seqs(page) == list(range(6, 41)) and complete
    page, complete = store.since(conv, 5, limit=20, max_bytes=10 + 30 * 3)
    assert seqs(page) == list(range(6, 26)) and not complete
    assert store.since(conv, 0, limit=100, max_bytes=1) == ([], False)
    assert store.since(conv, 40, limit=100, max_bytes=1) == ([], True)
    with pytest.raises(ValueError):
        store.since(conv, 0, limit=100, max_bytes=0)


# Large enough that reading all of them at once is unmistakable next to the byte bound.
LARGE_BODIES = 200
LARGE_BODY = 60_000
SINCE_MAX_BYTES = 256 * 1024


def test_since_with_max_bytes_reads_little_more_than_the_bound(store: Store) -> None:
    conv = room_conv("lobby")
    for _ in range(LARGE_BODIES // 20):
        store.append_batch([room_msg("x" * LARGE_BODY) for _ in range(20)])
    tracemalloc.start()
    try:
        page, complete = store.since(conv, 0, limit=1_000, max_bytes=SINCE_MAX_BYTES)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(page) == SINCE_MAX_BYTES // LARGE_BODY and not complete
    # Everything would be 12 MB; the bound, one paging read past it and the decoding's copies
    # stay well under a third of that.
    print(f"peak {peak} bytes while reading a page of {SINCE_MAX_BYTES} bytes of bodies")
    assert peak < LARGE_BODIES * LARGE_BODY // 3, peak


def test_seq_does_not_restart_when_a_conversation_is_pruned_empty(store: Store) -> None:
    fill(store, 4, ts=1_000)
    assert store.prune(now_ms=10_000, max_age_ms=1_000) == 4
    conv = room_conv("lobby")

    assert store.last_seq(conv) == 4
    assert store.since(conv, 2, limit=10) == ([], False)
    assert store.append_batch([room_msg(ts=10_000)])[0].seq == 5


# -- history --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "limit", "page"),
    [
        (None, None, 3, ([8, 9, 10], True)),
        (None, None, 10, (list(range(1, 11)), False)),
        (4, None, 2, ([2, 3], True)),
        (3, None, 2, ([1, 2], False)),
        (None, 7, 2, ([8, 9], True)),
        (None, 8, 2, ([9, 10], False)),
        (8, 2, 3, ([3, 4, 5], True)),
        (8, 2, 5, ([3, 4, 5, 6, 7], False)),
    ],
)
def test_history_pages_in_every_cursor_mode(
    store: Store,
    before: int | None,
    after: int | None,
    limit: int,
    page: tuple[list[int], bool],
) -> None:
    fill(store, 10)
    fill(store, 3, room="elsewhere")
    messages, more = store.history(room_conv("lobby"), before=before, after=after, limit=limit)
    assert (seqs(messages), more) == page


def test_history_of_an_empty_conversation_is_empty(store: Store) -> None:
    assert store.history(room_conv("lobby"), before=None, after=None, limit=5) == ([], False)


def test_history_between_cursors_that_leave_no_room_is_empty(store: Store) -> None:
    fill(store, 10)
    assert store.history(room_conv("lobby"), before=5, after=4, limit=5) == ([], False)
    assert store.history(room_conv("lobby"), before=3, after=7, limit=5) == ([], False)


def test_limit_below_one_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.history(room_conv("lobby"), before=None, after=None, limit=0)


# -- direct messages: pending and receipts --------------------------------------------------


def test_pending_direct_messages_come_oldest_first(store: Store) -> None:
    late, early, same_ts_1, same_ts_2, _room, _other = store.append_batch(
        [
            direct("alice", "bob", ts=3_000),
            direct("carol", "bob", ts=1_000),
            direct("alice", "bob", ts=2_000),
            direct("alice", "bob", ts=2_000),
            room_msg(sender="alice"),
            direct("bob", "alice", ts=500),
        ]
    )
    pending = store.pending_for("bob", limit=10)
    assert [m.mid for m in pending] == [early.mid, same_ts_1.mid, same_ts_2.mid, late.mid]
    assert [m.mid for m in store.pending_for("bob", limit=2)] == [early.mid, same_ts_1.mid]
    assert store.pending_for("carol", limit=10) == []


def test_pending_stays_oldest_first_as_older_messages_keep_arriving(store: Store) -> None:
    [at_2000] = store.append_batch([direct("alice", "bob", ts=2_000)])
    [at_1000] = store.append_batch([direct("carol", "bob", ts=1_000)])
    assert store.pending_for("bob", limit=10) == [at_1000, at_2000]

    [at_3000, at_1500] = store.append_batch(
        [direct("alice", "bob", ts=3_000), direct("carol", "bob", ts=1_500)]
    )
    store.mark(at_1000.mid, "bob", "delivered")
    assert store.pending_for("bob", limit=10) == [at_1500, at_2000, at_3000]


def test_pending_pages_after_a_cursor_reach_every_message_once_while_acks_remove_some(
    store: Store,
) -> None:
    # Several messages share a millisecond (and a seq, across conversations): the cursor must
    # order ties exactly as the first page does.
    sent = store.append_batch(
        [direct(sender, "bob", ts=1_000 + 10 * (i // 3)) for i in range(7) for sender in "acd"]
    )
    expected = store.pending_for("bob", limit=100)
    assert sorted(m.mid for m in expected) == sorted(m.mid for m in sent)
    got: list[StoredMessage] = []
    after = None
    while page := store.pending_for("bob", limit=4, after=after):
        got.extend(page)
        after = page[-1].mid
        # The reader acknowledges what it took: the cursor no longer names a pending message.
        store.mark_batch([(m.mid, "bob", "delivered") for m in page[:-1]])
        store.mark(page[-1].mid, "bob", "read")
    assert got == expected
    assert store.pending_for("bob", limit=100) == []


def test_pending_after_a_cursor_sees_messages_that_arrive_behind_it(store: Store) -> None:
    first, second = store.append_batch([direct("alice", "bob", ts=1_000)] * 2)
    [page_end] = store.pending_for("bob", limit=1)
    assert page_end == first
    [later] = store.append_batch([direct("carol", "bob", ts=2_000)])
    assert store.pending_for("bob", limit=10, after=first.mid) == [second, later]
    assert store.pending_for("bob", limit=10, after=later.mid) == []


@pytest.mark.parametrize("status", ["delivered", "read"])
def test_ack_or_read_ends_pending(store: Store, status: ReceiptStatus) -> None:
    first, second = store.append_batch([direct("alice", "bob"), direct("alice", "bob")])
    store.mark(first.mid, "bob", status)
    assert store.pending_for("bob", limit=10) == [second]


def test_receipt_is_returned_on_first_delivered_and_first_read_only(store: Store) -> None:
    [msg] = store.append_batch([direct("alice", "bob")])
    assert store.mark(msg.mid, "bob", "delivered") == Receipt(msg.mid, "alice", "bob", "delivered")
    assert store.mark(msg.mid, "bob", "delivered") is None
    assert store.mark(msg.mid, "bob", "read") == Receipt(msg.mid, "alice", "bob", "read")
    assert store.mark(msg.mid, "bob", "read") is None
    assert store.mark(msg.mid, "bob", "delivered") is None


def test_read_without_delivered_gives_one_read_receipt(store: Store) -> None:
    [msg] = store.append_batch([direct("alice", "bob")])
    assert store.mark(msg.mid, "bob", "read") == Receipt(msg.mid, "alice", "bob", "read")
    assert store.mark(msg.mid, "bob", "delivered") is None


@pytest.mark.parametrize("user", ["alice", "carol"])
def test_only_the_recipient_can_mark_a_direct_message(store: Store, user: str) -> None:
    [msg] = store.append_batch([direct("alice", "bob")])
    assert store.mark(msg.mid, user, "read") is None
    assert store.pending_for("bob", limit=10) == [msg]


def test_unknown_messages_and_room_messages_give_no_receipt(store: Store) -> None:
    [msg] = store.append_batch([room_msg()])
    assert store.mark(msg.mid, "bob", "read") is None
    assert store.mark("00000000000000000x", "bob", "read") is None


def test_mark_batch_records_receipts_in_order(store: Store) -> None:
    a, b = store.append_batch([direct("alice", "bob"), direct("carol", "bob")])
    receipts = store.mark_batch(
        [(a.mid, "bob", "delivered"), (b.mid, "alice", "read"), (a.mid, "bob", "read")]
    )
    assert receipts == [
        Receipt(a.mid, "alice", "bob", "delivered"),
        None,
        Receipt(a.mid, "alice", "bob", "read"),
    ]
    assert store.pending_for("bob", limit=10) == [b]


def test_unknown_receipt_status_is_refused(store: Store) -> None:
    [msg] = store.append_batch([direct("alice", "bob")])
    unknown = cast(ReceiptStatus, "seen")
    with pytest.raises(ValueError, match="status"):
        store.mark_batch([(msg.mid, "bob", "read"), (msg.mid, "bob", unknown)])
    assert store.mark(msg.mid, "bob", "read") is not None


def test_get_unknown_message_is_none(store: Store) -> None:
    assert store.get("nope") is None


# -- edits and deletes ----------------------------------------------------------------------


def change(
    target: StoredMessage,
    kind: str = "edit",
    body: bytes = b"changed",
    *,
    ts: int = 2_000,
    cid: str | None = None,
    by: str | None = None,
) -> NewMessage:
    """An edit (or delete) of ``target`` by its author (or ``by``), in its conversation."""
    return NewMessage(
        target.conv,
        by or target.sender,
        kind,
        body if kind == "edit" else b"",
        ts,
        cid=cid,
        room=target.room,
        to=target.to,
        target=target.mid,
    )


def test_edit_takes_the_next_seq_and_changes_the_message_in_place(store: Store) -> None:
    [first, _] = store.append_batch([room_msg("one"), room_msg("two", ts=1_001)])
    [edit] = store.append_batch([change(first, body=b"ONE", ts=1_500)])
    assert (edit.seq, edit.kind, edit.body, edit.target, edit.refused) == (
        3,
        "edit",
        b"ONE",
        first.mid,
        None,
    )
    now = store.get(first.mid)
    assert now is not None
    assert (now.seq, now.ts, now.body, now.edited, now.deleted) == (1, 1_000, b"ONE", 1_500, False)
    assert store.last_seq(first.conv) == 3
    page, more = store.history(first.conv, limit=10)
    assert [(m.seq, m.body, m.edited) for m in page] == [(1, b"ONE", 1_500), (2, b"two", None)]
    assert more is False


def test_delete_leaves_a_tombstone_and_erases_the_bodies_of_earlier_edits(store: Store) -> None:
    [msg] = store.append_batch([room_msg("secret")])
    store.append_batch([change(msg, body=b"secret 2"), change(msg, body=b"secret 3", ts=2_001)])
    [gone] = store.append_batch([change(msg, "delete", ts=3_000)])
    assert (gone.seq, gone.kind, gone.body, gone.target) == (4, "delete", b"", msg.mid)
    tomb = store.get(msg.mid)
    assert tomb is not None
    assert (tomb.seq, tomb.sender, tomb.ts, tomb.body, tomb.deleted) == (
        1,
        "alice",
        1_000,
        b"",
        True,
    )
    replay, complete = store.since(msg.conv, 0, limit=10)
    assert complete
    assert [(m.seq, m.kind, m.body, m.deleted) for m in replay] == [
        (1, "text", b"", True),
        (2, "edit", b"", True),
        (3, "edit", b"", True),
        (4, "delete", b"", False),
    ]
    assert [m.body for m in store.history(msg.conv, limit=10)[0]] == [b""]


def test_history_pages_messages_while_since_replays_changes_in_seq_order(store: Store) -> None:
    msgs = store.append_batch([room_msg(f"m{i}", ts=1_000 + i) for i in range(4)])
    store.append_batch([change(msgs[0]), change(msgs[2], "delete"), change(msgs[0], body=b"x")])
    store.append_batch([room_msg("m4", ts=3_000)])
    replay, complete = store.since(msgs[0].conv, 2, limit=10)
    assert complete
    assert [(m.seq, m.kind, m.target) for m in replay] == [
        (3, "text", None),
        (4, "text", None),
        (5, "edit", msgs[0].mid),
        (6, "delete", msgs[2].mid),
        (7, "edit", msgs[0].mid),
        (8, "text", None),
    ]
    conv = msgs[0].conv
    assert seqs(store.history(conv, limit=2)[0]) == [4, 8]
    assert store.history(conv, limit=2)[1] is True
    assert seqs(store.history(conv, before=8, limit=2)[0]) == [3, 4]
    assert seqs(store.history(conv, after=2, limit=2)[0]) == [3, 4]
    assert store.history(conv, after=4, limit=1) == (
        store.history(conv, after=7, limit=1)[0],
        False,
    )
    assert seqs(store.history(conv, after=1, before=8, limit=5)[0]) == [2, 3, 4]
    assert store.since(conv, 2, limit=5)[1] is False


def test_change_resent_with_the_same_cid_is_stored_once(store: Store) -> None:
    [msg] = store.append_batch([room_msg()])
    [edit] = store.append_batch([change(msg, body=b"v2", cid="e1")])
    [again, delete, delete_again] = store.append_batch(
        [
            change(msg, body=b"v2", cid="e1"),
            change(msg, "delete", cid="d1"),
            change(msg, "delete", cid="d1"),
        ]
    )
    assert (again.duplicate, again.mid, again.seq) == (True, edit.mid, edit.seq)
    assert (delete.seq, delete_again.duplicate, delete_again.seq) == (3, True, 3)
    assert store.last_seq(msg.conv) == 3


def test_change_of_an_unknown_or_deleted_message_or_another_conversations_is_refused(
    store: Store,
) -> None:
    [msg, other] = store.append_batch([room_msg(), room_msg(room="elsewhere")])
    store.append_batch([change(msg, "delete")])
    misplaced = replace(change(other), conv=msg.conv, room=msg.room)
    unknown = replace(change(msg), target="00000000000000000x")
    answers = store.append_batch(
        [change(msg), change(msg, "delete"), misplaced, unknown, change(other)]
    )
    assert [a.refused for a in answers] == ["deleted", "deleted", "unknown", "unknown", None]
    assert [a.seq for a in answers] == [0, 0, 0, 0, 2]
    assert store.last_seq(msg.conv) == 2
    [event] = store.since(msg.conv, 1, limit=5)[0]
    assert event.kind == "delete"
    # A change names a message, not another change.
    [edit] = store.append_batch([change(other, body=b"v2")])
    [refused] = store.append_batch([replace(change(other), target=edit.mid)])
    assert refused.refused == "unknown"


def test_a_change_within_the_batch_of_its_message_sees_it(store: Store) -> None:
    [msg] = store.append_batch([room_msg()])
    late = NewMessage(msg.conv, "bob", "text", b"new", 1_100, cid="n", room="lobby")
    [sent, _] = store.append_batch([late, room_msg(ts=1_200)])
    # Resent with its edit in one batch: the edit finds the original.
    [again, edit] = store.append_batch([late, change(sent, body=b"newer")])
    assert again.duplicate and edit.refused is None
    assert store.get(sent.mid).body == b"newer"  # type: ignore[union-attr]


def test_changes_of_a_direct_message_are_never_pending(store: Store) -> None:
    [dm] = store.append_batch([direct("alice", "bob")])
    store.append_batch([change(dm, body=b"psst!"), change(dm, "delete")])
    assert [m.mid for m in store.pending_for("bob", limit=10)] == [dm.mid]
    assert store.pending_for("bob", limit=10)[0].deleted
    [edit] = store.since(dm.conv, 1, limit=1)[0]
    assert store.mark(edit.mid, "bob", "read") is None
    assert store.mark(dm.mid, "bob", "read") is not None


def test_pruning_a_changed_message_removes_it_and_keeps_seq(store: Store) -> None:
    msgs = store.append_batch([room_msg(f"m{i}", ts=1_000 + i) for i in range(3)])
    store.append_batch([change(msgs[0], ts=5_000), change(msgs[1], "delete", ts=5_001)])
    assert store.prune(now_ms=5_002, max_count=3, max_age_ms=FAR_FUTURE_AGE_MS) == 2
    assert store.get(msgs[0].mid) is None and store.get(msgs[1].mid) is None
    assert [(m.seq, m.kind) for m in store.since(msgs[0].conv, 0, limit=9)[0]] == [
        (3, "text"),
        (4, "edit"),
        (5, "delete"),
    ]
    assert store.since(msgs[0].conv, 0, limit=9)[1] is False
    [late] = store.append_batch([change(msgs[0], ts=5_003)])
    assert late.refused == "unknown"


# -- reactions ------------------------------------------------------------------------------


def react(
    target: StoredMessage,
    by: str,
    key: str = "+1",
    *,
    on: bool = True,
    ts: int = 2_000,
    cid: str | None = None,
    max_reactions: int = 20,
) -> NewMessage:
    """``by`` adds (``on``) or removes their reaction ``key`` on ``target``; in a direct
    conversation the change goes to the other of its two users."""
    to = target.sender if target.to == by else target.to
    return NewMessage(
        target.conv,
        by,
        "react" if on else "unreact",
        key.encode(),
        ts,
        cid=cid,
        room=target.room,
        to=to,
        target=target.mid,
        max_reactions=max_reactions,
    )


def reactions_seen(
    store: Store, conv: str, reader: str | None
) -> list[list[tuple[str, int, bool]]]:
    page, _ = store.history(conv, limit=10, reader=reader)
    return [[(r.key, r.count, r.me) for r in m.reactions] for m in page]


def test_reactions_take_the_next_seq_and_history_counts_them_for_its_reader(
    store: Store,
) -> None:
    [msg, other] = store.append_batch([room_msg("one"), room_msg("two", ts=1_001)])
    made = store.append_batch(
        [react(msg, "ann"), react(msg, "bob"), react(msg, "bob", "🎉"), react(other, "cy", "x")]
    )
    assert [(m.seq, m.kind, m.body, m.target) for m in made] == [
        (3, "react", b"+1", msg.mid),
        (4, "react", b"+1", msg.mid),
        (5, "react", "🎉".encode(), msg.mid),
        (6, "react", b"x", other.mid),
    ]
    assert reactions_seen(store, msg.conv, "bob") == [
        [("+1", 2, True), ("🎉", 1, True)],
        [("x", 1, False)],
    ]
    assert reactions_seen(store, msg.conv, "ann") == [
        [("+1", 2, True), ("🎉", 1, False)],
        [("x", 1, False)],
    ]
    [off] = store.append_batch([react(msg, "ann", on=False, ts=3_000)])
    assert (off.seq, off.kind, off.body) == (7, "unreact", b"+1")
    [[gone]] = [store.append_batch([react(msg, "bob", "🎉", on=False)])]
    assert gone.seq == 8
    assert reactions_seen(store, msg.conv, "ann") == [[("+1", 1, False)], [("x", 1, False)]]
    assert [(m.seq, m.kind) for m in store.since(msg.conv, 6, limit=9)[0]] == [
        (7, "unreact"),
        (8, "unreact"),
    ]
    assert store.since(msg.conv, 0, limit=9)[1] is True
    assert store.get(msg.mid).body == b"one"  # type: ignore[union-attr]


def test_reacting_twice_or_removing_what_is_not_there_stores_nothing(store: Store) -> None:
    [msg] = store.append_batch([room_msg()])
    [first] = store.append_batch([react(msg, "ann")])
    again, never = store.append_batch([react(msg, "ann"), react(msg, "bob", "x", on=False)])
    for answer in (again, never):
        assert (answer.duplicate, answer.refused, answer.mid, answer.seq) == (
            True,
            None,
            msg.mid,
            first.seq,
        )
    assert store.last_seq(msg.conv) == first.seq
    assert [m.seq for m in store.since(msg.conv, 0, limit=9)[0]] == [1, 2]
    assert reactions_seen(store, msg.conv, "ann") == [[("+1", 1, True)]]


def test_reaction_resent_with_the_same_cid_is_stored_once(store: Store) -> None:
    [msg] = store.append_batch([room_msg()])
    [on, off, again] = store.append_batch(
        [
            react(msg, "ann", cid="r1"),
            react(msg, "ann", on=False, cid="r2"),
            react(msg, "ann", cid="r1"),
        ]
    )
    assert (again.duplicate, again.mid, again.seq) == (True, on.mid, on.seq)
    assert off.seq == 3 and store.last_seq(msg.conv) == 3
    assert reactions_seen(store, msg.conv, "ann") == [[]]


def test_a_new_key_beyond_max_reactions_is_refused_while_existing_keys_still_work(
    store: Store,
) -> None:
    [msg] = store.append_batch([room_msg()])
    store.append_batch([react(msg, "ann", key, max_reactions=2) for key in ("a", "b")])
    [third, joined] = store.append_batch(
        [react(msg, "bob", "c", max_reactions=2), react(msg, "bob", "a", max_reactions=2)]
    )
    assert (third.refused, third.seq) == ("too_many_reactions", 0)
    assert joined.refused is None and joined.seq == 4
    store.append_batch([react(msg, "ann", "b", on=False, max_reactions=2)])
    [now] = store.append_batch([react(msg, "bob", "c", max_reactions=2)])
    assert now.refused is None
    assert reactions_seen(store, msg.conv, "bob") == [[("a", 2, True), ("c", 1, True)]]


def test_a_delete_erases_the_reactions_and_later_ones_are_refused(store: Store) -> None:
    [msg] = store.append_batch([room_msg()])
    store.append_batch([react(msg, "ann"), react(msg, "bob", "x")])
    store.append_batch([change(msg, "delete", ts=3_000)])
    [late] = store.append_batch([react(msg, "cy")])
    assert late.refused == "deleted"
    assert reactions_seen(store, msg.conv, "ann") == [[]]
    [dm] = store.append_batch([direct("alice", "bob")])
    store.append_batch([react(dm, "bob")])
    assert reactions_seen(store, dm.conv, "alice") == [[("+1", 1, False)]]
    assert [m.mid for m in store.pending_for("bob", limit=10)] == [dm.mid]


def test_reactions_survive_an_edit_and_go_with_a_pruned_message(store: Store) -> None:
    [msg, keep] = store.append_batch([room_msg("a"), room_msg("b", ts=1_001)])
    store.append_batch([react(msg, "ann"), change(msg, body=b"A"), react(keep, "ann")])
    assert reactions_seen(store, msg.conv, "ann") == [[("+1", 1, True)], [("+1", 1, True)]]
    assert store.prune(now_ms=1_000_000, max_count=4, max_age_ms=FAR_FUTURE_AGE_MS) >= 1
    page, _ = store.history(msg.conv, limit=9, reader="ann")
    assert [(m.mid, [r.key for r in m.reactions]) for m in page] == [(keep.mid, ["+1"])]


# -- replies and threads --------------------------------------------------------------------


def reply(
    parent: StoredMessage,
    by: str,
    text: str = "re",
    *,
    ts: int = 2_000,
    cid: str | None = None,
) -> NewMessage:
    """``by`` answers ``parent`` in its conversation (a direct one goes to the other user)."""
    to = None if parent.to is None else (parent.sender if parent.to == by else parent.to)
    return NewMessage(
        parent.conv,
        by,
        "text",
        text.encode(),
        ts,
        cid=cid,
        room=parent.room,
        to=to,
        reply_to=parent.mid,
    )


def summary_of(message: StoredMessage | None) -> tuple[object, ...] | None:
    assert message is not None
    found = message.thread_summary
    return None if found is None else (found.count, found.last_ts, found.users, found.participants)


def test_a_reply_to_a_reply_joins_the_thread_of_its_root_which_counts_it(store: Store) -> None:
    [root, plain] = store.append_batch([room_msg("root"), room_msg("plain", ts=1_001)])
    [first] = store.append_batch([reply(root, "bob", "one", ts=2_000)])
    [second, third] = store.append_batch(
        [reply(first, "carol", "two", ts=2_100), reply(root, "bob", "three", ts=2_200)]
    )
    assert (first.seq, first.reply_to, first.thread) == (3, root.mid, root.mid)
    assert (second.seq, second.reply_to, second.thread) == (4, first.mid, root.mid)
    assert (third.reply_to, third.thread) == (root.mid, root.mid)
    page, _ = store.history(root.conv, limit=10)
    # Replies are messages of the conversation; only a root with replies carries a summary.
    assert [(m.seq, m.reply_to is not None, summary_of(m)) for m in page] == [
        (1, False, (3, 2_200, ("bob", "carol"), 2)),
        (2, False, None),
        (3, True, None),
        (4, True, None),
        (5, True, None),
    ]
    assert summary_of(store.get(root.mid)) == (3, 2_200, ("bob", "carol"), 2)
    assert summary_of(store.get(plain.mid)) is None
    assert store.get(second.mid).reply_to == first.mid  # type: ignore[union-attr]
    replay, complete = store.since(root.conv, 2, limit=9)
    assert complete
    assert [(m.seq, m.reply_to, m.thread) for m in replay] == [
        (3, root.mid, root.mid),
        (4, first.mid, root.mid),
        (5, root.mid, root.mid),
    ]
    [again] = store.append_batch([reply(root, "bob", "four", cid="r1")])
    [resent] = store.append_batch([reply(root, "bob", "four", cid="r1")])
    assert (resent.duplicate, resent.mid, resent.thread) == (True, again.mid, root.mid)
    assert summary_of(store.get(root.mid))[0] == 4  # type: ignore[index]


def test_thread_pages_its_replies_in_every_cursor_mode(store: Store) -> None:
    [root, other] = store.append_batch([room_msg("root"), room_msg("other", ts=1_001)])
    replies = [reply(root, "bob", f"r{i}", ts=2_000 + i) for i in range(5)]
    # Other messages between the replies: a thread's page holds its replies only.
    store.append_batch([m for r in replies for m in (r, room_msg("between", ts=3_000))])
    store.append_batch([reply(other, "carol")])
    thread_seqs = [3, 5, 7, 9, 11]

    def page(**cursors: int | None) -> tuple[list[int], bool]:
        found, messages, more = store.thread(root.mid, limit=2, reader="bob", **cursors)
        assert found is not None and found.mid == root.mid
        assert summary_of(found) == (5, 2_004, ("bob",), 1)
        return seqs(messages), more

    assert page() == (thread_seqs[-2:], True)
    assert page(before=9) == ([5, 7], True)
    assert page(before=5) == ([3], False)
    assert page(after=3) == ([5, 7], True)
    assert page(after=8) == ([9, 11], False)
    assert page(after=3, before=11) == ([5, 7], True)
    assert page(after=7, before=11) == ([9], False)
    assert page(after=11) == ([], False)
    assert page(after=2**63 - 1) == ([], False)
    assert page(before=0) == ([], False)
    assert store.thread(root.mid, limit=10)[1][0].thread == root.mid
    # A thread is read through its root: not a reply, a change or an unknown mid.
    [first] = store.thread(root.mid, limit=1, after=0)[1]
    assert store.thread(first.mid, limit=5) == (None, [], False)
    assert store.thread("00000000000000000x", limit=5) == (None, [], False)
    [edit] = store.append_batch([change(root, body=b"ROOT")])
    assert store.thread(edit.mid, limit=5) == (None, [], False)
    with pytest.raises(ValueError):
        store.thread(root.mid, limit=0)


def test_a_reply_to_an_unknown_deleted_or_changed_message_or_another_conversations_is_refused(
    store: Store,
) -> None:
    [msg, other, gone] = store.append_batch(
        [room_msg(), room_msg(room="elsewhere"), room_msg("bye", ts=1_001)]
    )
    [edit, _] = store.append_batch([change(msg), change(gone, "delete")])
    misplaced = replace(reply(other, "bob"), conv=msg.conv, room=msg.room)
    unknown = replace(reply(msg, "bob"), reply_to="00000000000000000x")
    answers = store.append_batch(
        [
            misplaced,
            unknown,
            replace(reply(msg, "bob"), reply_to=edit.mid),
            reply(gone, "bob", cid="late"),
            reply(msg, "bob"),
        ]
    )
    assert [a.refused for a in answers] == ["unknown", "unknown", "unknown", "deleted", None]
    assert [a.reply_to for a in answers[:2]] == [other.mid, "00000000000000000x"]
    assert [a.seq for a in answers] == [0, 0, 0, 0, 5]
    assert store.last_seq(msg.conv) == 5
    with pytest.raises(ValueError):
        store.append_batch([replace(change(msg), reply_to=msg.mid)])


def test_deleting_replies_updates_the_summary_and_a_deleted_root_keeps_its_thread(
    store: Store,
) -> None:
    [root] = store.append_batch([room_msg("root")])
    [one, two, three] = store.append_batch(
        [
            reply(root, "bob", ts=2_000),
            reply(root, "carol", ts=2_100),
            reply(root, "bob", ts=2_200),
        ]
    )
    store.append_batch([change(three, "delete", ts=3_000)])
    assert summary_of(store.get(root.mid)) == (2, 2_100, ("bob", "carol"), 2)
    store.append_batch([change(one, "delete", ts=3_001)])
    # bob's last counted reply went: he leaves the authors, and joins again at their end.
    assert summary_of(store.get(root.mid)) == (1, 2_100, ("carol",), 1)
    [four] = store.append_batch([reply(two, "bob", ts=2_300)])
    assert summary_of(store.get(root.mid)) == (2, 2_300, ("carol", "bob"), 2)
    store.append_batch([change(root, "delete", ts=3_002), change(two, body=b"edited")])
    found, page, more = store.thread(root.mid, limit=10)
    assert found is not None and found.deleted and found.body == b""
    assert summary_of(found) == (2, 2_300, ("carol", "bob"), 2)
    assert [(m.mid, m.deleted, m.body) for m in page] == [
        (one.mid, True, b""),
        (two.mid, False, b"edited"),
        (three.mid, True, b""),
        (four.mid, False, b"re"),
    ]
    assert more is False
    # The deleted root takes no new reply; its live replies still do.
    [refused, fine] = store.append_batch([reply(root, "bob"), reply(four, "carol", ts=2_400)])
    assert (refused.refused, fine.thread) == ("deleted", root.mid)
    store.append_batch([change(two, "delete"), change(four, "delete"), change(fine, "delete")])
    assert summary_of(store.get(root.mid)) is None
    assert len(store.thread(root.mid, limit=10)[1]) == 5


def test_a_summary_names_the_first_five_authors_and_counts_them_all(store: Store) -> None:
    [root] = store.append_batch([room_msg("root")])
    authors = [f"u{i}" for i in range(8)]
    store.append_batch([reply(root, user, ts=2_000 + i) for i, user in enumerate(authors)])
    assert summary_of(store.get(root.mid)) == (8, 2_007, tuple(authors[:5]), 8)


def test_replies_in_a_direct_conversation_wait_for_their_recipient(store: Store) -> None:
    [dm] = store.append_batch([direct("alice", "bob")])
    [answer] = store.append_batch([reply(dm, "bob", ts=1_500)])
    assert (answer.to, answer.thread) == ("alice", dm.mid)
    assert [m.mid for m in store.pending_for("alice", limit=5)] == [answer.mid]
    assert store.pending_for("alice", limit=5)[0].reply_to == dm.mid
    assert summary_of(store.thread(dm.mid, limit=5)[0]) == (1, 1_500, ("bob",), 1)


def test_retention_takes_pruned_replies_out_of_the_summary_and_a_pruned_root_ends_its_thread(
    store: Store,
) -> None:
    [root] = store.append_batch([room_msg("root", ts=5_000)])
    # Stamped earlier than their root (a clock that stepped back): age retention takes them first.
    old = store.append_batch([reply(root, "bob", ts=1_000), reply(root, "carol", ts=1_001)])
    [new] = store.append_batch([reply(root, "carol", ts=6_000)])
    assert store.prune(now_ms=7_000, max_age_ms=3_000) == 2
    assert summary_of(store.get(root.mid)) == (1, 6_000, ("carol",), 1)
    assert [m.mid for m in store.thread(root.mid, limit=5)[1]] == [new.mid]
    assert old[0].mid not in [m.mid for m in store.history(root.conv, limit=9)[0]]
    assert store.prune(now_ms=7_000, max_count=1, max_age_ms=FAR_FUTURE_AGE_MS) == 1
    assert store.get(root.mid) is None
    assert store.thread(root.mid, limit=5) == (None, [], False)
    # Its replies stay messages of the conversation, and still take replies.
    [late] = store.append_batch([reply(new, "bob", ts=6_500)])
    assert (late.refused, late.thread) == (None, root.mid)
    assert seqs(store.history(root.conv, limit=9)[0]) == [4, 5]


# -- retention ------------------------------------------------------------------------------


def test_retention_defaults_are_ten_thousand_messages_and_thirty_days() -> None:
    assert DEFAULT_MAX_COUNT == 10_000
    assert DEFAULT_MAX_AGE_MS == 30 * 24 * 3600 * 1000


def test_prune_by_count_keeps_the_newest_and_stays_within_budget(store: Store) -> None:
    fill(store, 10, room="busy")
    fill(store, 3, room="quiet")

    def prune() -> int:
        return store.prune(now_ms=2_000, max_count=4, max_age_ms=FAR_FUTURE_AGE_MS, budget=4)

    assert [prune(), prune(), prune()] == [4, 2, 0]
    assert retained(store, "busy") == [7, 8, 9, 10]
    assert retained(store, "quiet") == [1, 2, 3]


def test_prune_by_age_removes_the_oldest_within_budget(store: Store) -> None:
    fill(store, 10, ts=1_000)  # ts 1000 .. 1009

    def prune() -> int:
        return store.prune(now_ms=2_005, max_age_ms=1_000, budget=3)

    assert [prune(), prune(), prune()] == [3, 2, 0]
    assert retained(store) == [6, 7, 8, 9, 10]


def test_prune_by_count_after_prune_by_age_counts_what_is_left(store: Store) -> None:
    fill(store, 10, ts=1_000)
    assert store.prune(now_ms=2_003, max_count=100, max_age_ms=1_000) == 3
    assert store.prune(now_ms=2_003, max_count=5, max_age_ms=FAR_FUTURE_AGE_MS) == 2
    assert retained(store) == [6, 7, 8, 9, 10]


def test_prune_by_count_applies_to_messages_sent_after_an_earlier_prune(store: Store) -> None:
    fill(store, 3)
    assert store.prune(now_ms=2_000, max_count=4, max_age_ms=FAR_FUTURE_AGE_MS) == 0
    fill(store, 3, ts=1_003)
    assert store.prune(now_ms=2_000, max_count=4, max_age_ms=FAR_FUTURE_AGE_MS) == 2
    assert retained(store) == [3, 4, 5, 6]
    assert store.prune(now_ms=2_000, max_count=2, max_age_ms=FAR_FUTURE_AGE_MS) == 2
    assert retained(store) == [5, 6]


def test_prune_by_count_keeps_the_newest_seqs_even_where_age_left_a_gap(store: Store) -> None:
    # The clock stepped back for seq 5, so it ages out before its neighbours.
    store.append_batch([room_msg(ts=ts) for ts in (1_000, 1_000, 1_000, 1_000, 500, 1_000)])
    assert store.prune(now_ms=1_000, max_age_ms=400) == 1
    assert store.prune(now_ms=1_000, max_count=3, max_age_ms=FAR_FUTURE_AGE_MS) == 3
    assert retained(store) == [4, 6]


def test_repeated_pruning_of_a_busy_conversation_keeps_exactly_the_newest(store: Store) -> None:
    fill(store, 3_000, ts=1_000)
    conv = room_conv("lobby")

    def prune(now_ms: int, max_count: int) -> int:
        return store.prune(now_ms=now_ms, max_count=max_count, max_age_ms=10_000, budget=1_000)

    assert [prune(2_000, 100) for _ in range(4)] == [1_000, 1_000, 900, 0]
    assert retained(store) == list(range(2_901, 3_001))
    assert store.history(conv, before=2_950, limit=3) == (
        store.since(conv, 2_946, limit=3)[0],
        True,
    )
    assert prune(13_950, 100) == 50  # ts below 3950: seqs up to 2950
    assert retained(store) == list(range(2_951, 3_001))
    assert store.last_seq(conv) == 3_000


def test_pruned_message_is_gone_and_gives_no_receipt(store: Store) -> None:
    old, new = store.append_batch(
        [direct("alice", "bob", ts=1_000), direct("alice", "bob", ts=5_000)]
    )
    store.prune(now_ms=5_000, max_age_ms=1_000)
    assert store.get(old.mid) is None and store.get(new.mid) == new
    assert store.mark(old.mid, "bob", "read") is None


def test_pruned_direct_message_is_no_longer_pending(store: Store) -> None:
    store.append_batch([direct("alice", "bob", ts=1_000), direct("alice", "bob", ts=5_000)])
    store.prune(now_ms=5_000, max_age_ms=1_000)
    assert [m.ts for m in store.pending_for("bob", limit=10)] == [5_000]


@pytest.mark.parametrize(
    ("budget", "max_count", "max_age_ms"), [(0, 10, 10), (10, 0, 10), (10, 10, -1)]
)
def test_prune_refuses_limits_that_could_not_work(
    store: Store, budget: int, max_count: int, max_age_ms: int
) -> None:
    with pytest.raises(ValueError, match="prune"):
        store.prune(now_ms=0, max_count=max_count, max_age_ms=max_age_ms, budget=budget)


# -- failures -------------------------------------------------------------------------------

CALLS_ON_A_STORE: dict[str, Callable[[Store], object]] = {
    "epoch": lambda s: s.epoch(),
    "append_batch": lambda s: s.append_batch([room_msg()]),
    "last_seq": lambda s: s.last_seq(room_conv("lobby")),
    "since": lambda s: s.since(room_conv("lobby"), 0, limit=1),
    "history": lambda s: s.history(room_conv("lobby"), limit=1),
    "get": lambda s: s.get("nope"),
    "pending_for": lambda s: s.pending_for("bob", limit=1),
    "mark": lambda s: s.mark("nope", "bob", "read"),
    "mark_batch": lambda s: s.mark_batch([("nope", "bob", "read")]),
    "prune": lambda s: s.prune(now_ms=0),
    "join_room": lambda s: s.join_room("al", "lobby", max_rooms=5),
    "leave_room": lambda s: s.leave_room("al", "lobby"),
    "rooms_of": lambda s: s.rooms_of("al"),
    "members_of": lambda s: s.members_of("lobby", limit=5),
    "room_info": lambda s: s.room_info(["lobby"]),
    "update_room": lambda s: s.update_room("al", "lobby", title="t"),
    "set_public": lambda s: s.set_public("lobby", False),
    "create_room": lambda s: s.create_room("lobby"),
    "set_room": lambda s: s.set_room("lobby", title="t"),
    "delete_room": lambda s: s.delete_room("lobby"),
    "authored": lambda s: s.authored(room_conv("lobby"), "al", limit=5),
    "authored_conversations": lambda s: s.authored_conversations("al", limit=5),
    "directory": lambda s: s.directory(limit=5),
    "dm_partners": lambda s: s.dm_partners("al"),
    "latest": lambda s: s.latest([room_conv("lobby")], "al"),
    "move_marker": lambda s: s.move_marker("bob", room_conv("lobby"), 1, cap=10),
    "counts": lambda s: s.counts("bob", [room_conv("lobby")], cap=10),
    "standings": lambda s: s.standings("lobby", ["al"]),
    "mutes_of": lambda s: s.mutes_of("al"),
    "audit": lambda s: s.audit("lobby", limit=5),
}


# -- read markers, unread counts and mentions ------------------------------------------------

LOBBY = room_conv("lobby")


def test_unread_counts_messages_after_the_marker_from_others(store: Store) -> None:
    store.append_batch(
        [room_msg(sender=s, ts=1_000 + i) for i, s in enumerate(["alice", "bob", "alice", "cy"])]
    )
    assert store.counts("bob", [LOBBY], cap=999) == {LOBBY: Counts(4, 0, 3, 0)}
    counts, moved = store.move_marker("bob", LOBBY, 2, cap=999)
    assert (counts, moved) == (Counts(4, 2, 2, 0), True)
    assert store.counts("alice", [LOBBY], cap=999)[LOBBY] == Counts(4, 0, 2, 0)


def test_a_marker_never_moves_back_nor_beyond_the_last_seq(store: Store) -> None:
    fill(store, 5)
    assert store.move_marker("bob", LOBBY, 3, cap=9)[0].marker == 3
    assert store.move_marker("bob", LOBBY, 1, cap=9) == (Counts(5, 3, 2, 0), False)
    assert store.move_marker("bob", LOBBY, 3, cap=9)[1] is False
    assert store.move_marker("bob", LOBBY, 10**12, cap=9) == (Counts(5, 5, 0, 0), True)
    fill(store, 1, ts=3_000)
    assert store.counts("bob", [LOBBY], cap=9)[LOBBY] == Counts(6, 5, 1, 0)
    # Nothing to read: a marker in an empty conversation stays at 0.
    assert store.move_marker("bob", room_conv("empty"), 7, cap=9) == (Counts(0, 0, 0, 0), False)


def test_changes_never_count_and_a_delete_stops_a_message_counting(store: Store) -> None:
    [one, two, _] = store.append_batch(
        [room_msg("one", mentions=("bob",)), room_msg("two", ts=1_001), room_msg(ts=1_002)]
    )
    store.append_batch(
        [
            change(two, body=b"TWO", ts=1_500),
            react(one, "bob", ts=1_501),
            react(two, "cy", ts=1_502),
        ]
    )
    assert store.counts("bob", [LOBBY], cap=99)[LOBBY] == Counts(6, 0, 3, 1)
    store.append_batch([change(one, "delete", ts=1_600)])
    assert store.counts("bob", [LOBBY], cap=99)[LOBBY] == Counts(7, 0, 2, 0)
    assert store.get(one.mid).mentions == ()  # type: ignore[union-attr]


def test_mentions_count_while_unread_and_are_returned_with_the_message(store: Store) -> None:
    [first, _, third] = store.append_batch(
        [
            room_msg("a", mentions=("bob", "cy")),
            room_msg("b", ts=1_001, mentions=("cy",)),
            room_msg("c", ts=1_002, sender="cy", mentions=("bob",)),
        ]
    )
    assert first.mentions == ("bob", "cy")
    assert store.get(third.mid).mentions == ("bob",)  # type: ignore[union-attr]
    assert [m.mentions for m in store.history(LOBBY, limit=9)[0]] == [
        ("bob", "cy"),
        ("cy",),
        ("bob",),
    ]
    assert [m.mentions for m in store.since(LOBBY, 0, limit=9)[0]][1] == ("cy",)
    counts = store.counts("bob", [LOBBY], cap=99)[LOBBY]
    assert (counts.unread, counts.mentions) == (3, 2)
    assert store.counts("cy", [LOBBY], cap=99)[LOBBY] == Counts(3, 0, 2, 2)
    assert store.move_marker("bob", LOBBY, 1, cap=99)[0] == Counts(3, 1, 2, 1)


def test_counts_stop_at_the_cap(store: Store) -> None:
    store.append_batch(
        [room_msg(str(i), ts=1_000 + i, sender="alice", mentions=("bob",)) for i in range(30)]
    )
    assert store.counts("bob", [LOBBY], cap=7)[LOBBY] == Counts(30, 0, 7, 7)
    assert store.move_marker("bob", LOBBY, 25, cap=7)[0] == Counts(30, 25, 5, 5)
    with pytest.raises(ValueError, match="cap"):
        store.counts("bob", [LOBBY], cap=0)


def test_counts_of_many_conversations_at_once(store: Store) -> None:
    convs = [room_conv(f"r{i}") for i in range(40)]
    store.append_batch(
        [room_msg(room=f"r{i}", ts=1_000 + i) for i in range(40) for _ in range(i % 3)]
    )
    store.append_batch([direct("alice", "bob", ts=1_100)])
    store.move_marker("bob", convs[5], 1, cap=99)
    dm = dm_conv("alice", "bob")
    found = store.counts("bob", [*convs, dm, room_conv("never")], cap=99)
    assert found[convs[5]] == Counts(2, 1, 1, 0)
    assert found[convs[4]] == Counts(1, 0, 1, 0)
    assert found[convs[3]] == Counts(0, 0, 0, 0)
    assert found[dm] == Counts(1, 0, 1, 0)
    assert found[room_conv("never")] == Counts(0, 0, 0, 0)
    assert store.counts("alice", [dm], cap=99)[dm] == Counts(1, 0, 0, 0)
    assert store.counts("bob", [], cap=99) == {}


def test_pruned_messages_stop_counting_and_the_marker_stays(store: Store) -> None:
    store.append_batch([room_msg(str(i), ts=1_000 + i, mentions=("bob",)) for i in range(6)])
    store.move_marker("bob", LOBBY, 2, cap=99)
    store.prune(now_ms=10_000, max_count=2, max_age_ms=FAR_FUTURE_AGE_MS)
    assert store.counts("bob", [LOBBY], cap=99)[LOBBY] == Counts(6, 2, 2, 2)


def test_a_mention_of_the_sender_or_by_a_change_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="mentions"):
        store.append_batch([room_msg(mentions=("alice",))])
    [msg] = store.append_batch([room_msg()])
    with pytest.raises(ValueError, match="mentions"):
        store.append_batch([replace(change(msg), mentions=("bob",))])


def test_closed_store_raises_store_error(store: Store) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.append_batch([room_msg()])
    with pytest.raises(StoreError, match="closed"):
        store.since(room_conv("lobby"), 0, limit=1)
    store.close()


@pytest.mark.parametrize("call", list(CALLS_ON_A_STORE))
def test_every_call_on_a_closed_store_raises_store_error(store: Store, call: str) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        CALLS_ON_A_STORE[call](store)


# -- lasting membership, room metadata, direct-conversation partners --------------------------


def test_membership_lasts_until_leave_and_is_bounded_per_user(store: Store) -> None:
    assert store.join_room("alice", "b", max_rooms=2) == "joined"
    assert store.join_room("alice", "a", max_rooms=2) == "joined"
    assert store.join_room("alice", "a", max_rooms=2) == "member"
    assert store.join_room("alice", "c", max_rooms=2) == "full"
    assert store.rooms_of("alice") == ["a", "b"]
    assert store.rooms_of("nobody") == []
    assert store.leave_room("alice", "a") is True
    assert store.leave_room("alice", "a") is False
    assert store.join_room("alice", "c", max_rooms=2) == "joined"
    assert store.rooms_of("alice") == ["b", "c"]


def test_members_page_in_id_order(store: Store) -> None:
    for user in ("carol", "alice", "bob", "dave"):
        store.join_room(user, "lobby", max_rooms=10)
    assert store.members_of("lobby", limit=3) == (["alice", "bob", "carol"], True)
    assert store.members_of("lobby", after="carol", limit=3) == (["dave"], False)
    store.leave_room("bob", "lobby")
    assert store.members_of("lobby", limit=5) == (["alice", "carol", "dave"], False)
    assert store.members_of("empty", limit=5) == ([], False)


def test_room_title_and_topic_only_by_a_member(store: Store) -> None:
    store.join_room("alice", "lobby", max_rooms=10)
    assert store.room_info(["lobby", "never"]) == {"lobby": RoomInfo("lobby", members=1)}
    assert store.update_room("bob", "lobby", title="Hijack") is None
    info = store.update_room("alice", "lobby", title="The lobby")
    assert info == RoomInfo("lobby", "The lobby", "", True, 1)
    info = store.update_room("alice", "lobby", topic="Say hi")
    assert info == RoomInfo("lobby", "The lobby", "Say hi", True, 1)
    assert store.update_room("alice", "lobby", title="") == RoomInfo("lobby", "", "Say hi", True, 1)


def test_directory_lists_public_rooms_matching_by_name_or_title_in_pages(store: Store) -> None:
    for room in ("alpha", "beta", "gamma", "delta", "secret"):
        store.join_room("alice", room, max_rooms=10)
    store.update_room("alice", "gamma", title="Beta testers")
    store.set_public("secret", False)
    page, more = store.directory(limit=2)
    assert ([i.room for i in page], more) == (["alpha", "beta"], True)
    page, more = store.directory(after="beta", limit=5)
    assert ([i.room for i in page], more) == (["delta", "gamma"], False)
    page, _ = store.directory(query="BETA", limit=5)
    assert [i.room for i in page] == ["beta", "gamma"]
    page, _ = store.directory(limit=5, allowed=lambda room: room != "beta")
    assert [i.room for i in page] == ["alpha", "delta", "gamma"]
    assert page[0] == RoomInfo("alpha", members=1)


def test_the_application_creates_a_room_once_and_changes_it_whoever_belongs(store: Store) -> None:
    made = store.create_room("team", title="Team", topic="plans", public=False)
    assert made == RoomInfo("team", "Team", "plans", False, 0)
    assert store.create_room("team", title="Again") is None
    assert store.room_info(["team"]) == {"team": made}
    store.join_room("alice", "lobby", max_rooms=10)
    assert store.create_room("lobby") is None  # a join made it
    assert store.set_room("team", topic="dates", public=True) == RoomInfo(
        "team", "Team", "dates", True, 0
    )
    assert store.set_room("team", title="") == RoomInfo("team", "", "dates", True, 0)
    assert store.set_room("nowhere", title="x") is None
    assert store.room_info(["nowhere"]) == {}


def test_deleting_a_room_ends_every_membership_and_keeps_its_messages(store: Store) -> None:
    for user in ("carol", "alice", "bob"):
        store.join_room(user, "team", max_rooms=10)
    store.join_room("alice", "other", max_rooms=10)
    store.append_batch([room_msg("kept", room="team")])
    assert store.delete_room("team") == ["alice", "bob", "carol"]
    assert store.delete_room("team") is None
    assert store.room_info(["team"]) == {}
    assert store.members_of("team", limit=5) == ([], False)
    assert store.rooms_of("alice") == ["other"]
    assert store.rooms_of("bob") == []
    assert [i.room for i in store.directory(limit=5)[0]] == ["other"]
    assert [m.body for m in store.history(room_conv("team"), limit=5)[0]] == [b"kept"]
    assert store.join_room("bob", "team", max_rooms=10) == "joined"  # made afresh
    assert store.room_info(["team"])["team"] == RoomInfo("team", members=1)


def test_a_private_room_admits_only_members_the_application_added(store: Store) -> None:
    store.create_room("staff", public=False)
    assert private_to(store, "mallory", "staff") is True
    assert private_to(store, "mallory", "open") is False  # no such room yet: public on join
    assert join_checked(store, "mallory", "staff", max_rooms=10) == "private"
    assert store.members_of("staff", limit=5) == ([], False)
    store.join_room("alice", "staff", max_rooms=10)  # the application adds alice
    assert join_checked(store, "alice", "staff", max_rooms=10) == "member"
    assert private_to(store, "alice", "staff") is False
    assert join_checked(store, "bob", "open", max_rooms=10) == "joined"
    assert join_checked(store, "bob", "open", max_rooms=10) == "member"
    store.set_room("staff", public=True)
    assert join_checked(store, "mallory", "staff", max_rooms=10) == "joined"


def test_authored_lists_a_senders_live_messages_oldest_first(store: Store) -> None:
    senders = ["alice", "bob", "alice", "alice", "bob", "alice"]
    stored = store.append_batch(
        [room_msg(f"m{i}", sender=s, ts=1_000 + i) for i, s in enumerate(senders)]
    )
    lobby = room_conv("lobby")
    alice = [m for m in stored if m.sender == "alice"]
    store.append_batch([change(alice[1], "delete", ts=2_000)])
    store.append_batch([change(alice[2], "edit", b"m3 edited", ts=2_001)])
    found = store.authored(lobby, "alice", limit=2)
    assert [(m.mid, m.body) for m in found] == [(alice[0].mid, b"m0"), (alice[2].mid, b"m3 edited")]
    assert [m.mid for m in store.authored(lobby, "alice", limit=10)] == [
        alice[0].mid,
        alice[2].mid,
        alice[3].mid,
    ]
    assert [m.seq for m in store.authored(lobby, "bob", limit=10)] == [2, 5]
    assert store.authored(lobby, "carol", limit=10) == []
    assert store.authored(room_conv("empty"), "alice", limit=10) == []
    [dm] = store.append_batch([direct("alice", "bob")])
    assert [m.to for m in store.authored(dm.conv, "alice", limit=10)] == ["bob"]


def test_authored_conversations_are_where_a_user_has_live_messages_rooms_left_included(
    store: Store,
) -> None:
    store.join_room("alice", "left", max_rooms=10)
    store.join_room("alice", "kept", max_rooms=10)
    [left_1, _] = store.append_batch(
        [room_msg("l1", room="left", ts=1_000), room_msg("l2", room="left", ts=1_001)]
    )
    assert store.leave_room("alice", "left")
    [gone] = store.append_batch([room_msg("g", room="gone", ts=1_002)])
    [dm] = store.append_batch([direct("alice", "bob", ts=1_003)])
    [old] = store.append_batch([room_msg("o", room="old", ts=100)])
    [bobs] = store.append_batch([room_msg("b", room="kept", sender="bob", ts=1_004)])
    store.append_batch([react(bobs, "alice", ts=1_005)])  # a change is not a message of hers
    everywhere = {room_conv("left"), room_conv("gone"), dm.conv, old.conv}
    assert set(store.authored_conversations("alice", limit=10)) == everywhere
    some = store.authored_conversations("alice", limit=2)
    assert len(some) == 2 and set(some) <= everywhere
    assert store.authored_conversations("bob", limit=10) == [room_conv("kept")]
    assert store.authored_conversations("carol", limit=10) == []

    # Her last message in a conversation deleted, or removed by retention: it is off the list.
    store.append_batch([change(dm, "delete", ts=1_006), change(left_1, "delete", ts=1_007)])
    store.prune(now_ms=2_000, max_age_ms=1_500)  # takes `old` only
    assert store.get(old.mid) is None
    assert set(store.authored_conversations("alice", limit=10)) == {
        room_conv("left"),
        room_conv("gone"),
    }
    # Her last one deleted and a new one sent in one batch: the conversation stays.
    store.append_batch([change(gone, "delete", ts=1_008), room_msg("again", room="gone", ts=1_009)])
    assert set(store.authored_conversations("alice", limit=10)) == {
        room_conv("left"),
        room_conv("gone"),
    }
    # A new message puts a conversation back.
    store.append_batch([direct("alice", "bob", ts=1_010)])
    assert len(store.authored_conversations("alice", limit=10)) == 3
    with pytest.raises(ValueError, match="limit"):
        store.authored_conversations("alice", limit=0)


def test_direct_messages_record_partners_both_ways(store: Store) -> None:
    store.append_batch([direct("alice", "bob"), direct("carol", "alice")])
    assert store.dm_partners("alice") == ["bob", "carol"]
    assert store.dm_partners("bob") == ["alice"]
    assert store.dm_partners("dave") == []


def test_inbox_lists_rooms_and_direct_conversations_latest_first(store: Store) -> None:
    store.join_room("alice", "quiet", max_rooms=10)
    store.join_room("alice", "busy", max_rooms=10)
    store.join_room("alice", "hidden", max_rooms=10)
    store.update_room("alice", "busy", title="Busy", topic="lots")
    store.append_batch([room_msg("first", room="busy", ts=1_000)])
    store.append_batch([direct("bob", "alice", ts=2_000)])
    store.append_batch([room_msg("second", room="busy", ts=3_000)])
    entries = inbox(store, "alice", lambda room: room != "hidden")
    assert [(c.room, c.with_, c.seq, c.activity) for c in entries] == [
        ("busy", None, 2, 3_000),
        (None, "bob", 1, 2_000),
        ("quiet", None, 0, 0),
    ]
    assert entries[0].last is not None and entries[0].last.body == b"second"
    assert (entries[0].title, entries[0].topic) == ("Busy", "lots")
    assert entries[2].last is None


# -- a failed write: each message whole or absent, and a resend completes the batch ---------


@contextmanager
def failing_sqlite(
    store: Store, data_dir: Path, conv: str, request: pytest.FixtureRequest
) -> Iterator[None]:
    """A trigger aborts every insert into ``conv``, as a full disk would abort the commit."""
    with closing(sqlite3.connect(data_dir / "messages.db")) as db:
        db.execute(
            f"CREATE TRIGGER fail_conv BEFORE INSERT ON messages WHEN NEW.conv = '{conv}'"
            " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
        db.commit()
        yield
        db.execute("DROP TRIGGER fail_conv")
        db.commit()


@contextmanager
def failing_redis(
    store: Store, data_dir: Path, conv: str, request: pytest.FixtureRequest
) -> Iterator[None]:
    """``conv``'s cid index holds a string: Redis refuses that message's script (WRONGTYPE) at
    its first command, before it writes anything, as it refuses a script when out of memory."""
    cids = cast(RedisStore, store).keys.conversation(conv)[2]
    # The client the store was opened on.
    client = request.getfixturevalue(
        "redis_cluster_client"
        if request.node.callspec.params.get("backend") == "redis-cluster"
        else "redis_client"
    )
    client.set(cids, b"not a hash")
    yield
    client.delete(cids)


@contextmanager
def failing_memory(
    store: Store, data_dir: Path, conv: str, request: pytest.FixtureRequest
) -> Iterator[None]:
    """The memory store cannot fail once a batch is checked; this stands in for a failure at
    ``conv``'s first message, to show what the store keeps of the messages before it."""
    memory = cast(MemoryStore, store)
    append = memory._append

    def failing_append(msg: NewMessage) -> StoredMessage:
        if msg.conv == conv:
            raise StoreError("injected failure")
        return append(msg)

    memory._append = failing_append  # type: ignore[method-assign]
    yield
    memory._append = append  # type: ignore[method-assign]


# Makes every append to one conversation of a backend fail with StoreError while it is active.
FailureFactory = Callable[[Store, Path, str, pytest.FixtureRequest], AbstractContextManager[None]]
FAILURES: dict[str, FailureFactory] = {
    "sqlite": failing_sqlite,
    "memory": failing_memory,
    "redis": failing_redis,
    "redis-cluster": failing_redis,
}


@pytest.mark.parametrize("backend", backend_params(list(BACKENDS)))
def test_failed_batch_leaves_each_message_whole_or_absent_and_a_resend_completes_it(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # The Store contract: a write that raises may have stored some of its messages, each
    # whole; resending the batch with the same cids stores every message exactly once.
    batch = [
        room_msg("a1", room="a", cid="a1"),
        room_msg("b1", room="b", cid="b1"),
        direct("alice", "bob", cid="d1"),
        room_msg("a2", room="a", cid="a2"),
        room_msg("c1", room="c", cid="c1"),
    ]
    convs = list(dict.fromkeys(m.conv for m in batch))
    store = BACKENDS[backend](tmp_path, request)
    try:
        with FAILURES[backend](store, tmp_path, room_conv("b"), request):
            with pytest.raises(StoreError):
                store.append_batch(batch)
            kept: dict[str | None, StoredMessage] = {}
            for conv in convs:
                page, _ = store.history(conv, limit=100)
                sent = [m for m in batch if m.conv == conv]
                # Numbered from 1 without gaps, whole, in the batch's order, each once.
                assert seqs(page) == list(range(1, len(page) + 1))
                assert [(m.sender, m.cid, m.body, m.room, m.to) for m in page] == [
                    (m.sender, m.cid, m.body, m.room, m.to) for m in sent[: len(page)]
                ]
                kept.update((m.cid, m) for m in page)
            assert "b1" not in kept
            print(f"{backend}: a failed batch kept {sorted(map(str, kept))}")

        results = store.append_batch(batch)
        assert [r.cid for r in results] == [m.cid for m in batch]
        for result in results:
            assert result.duplicate == (result.cid in kept)
            if result.duplicate:
                assert (result.mid, result.seq) == (kept[result.cid].mid, kept[result.cid].seq)
            assert store.get(result.mid) == replace(result, duplicate=False)
        for conv in convs:
            page, _ = store.history(conv, limit=100)
            assert [m.cid for m in page] == [m.cid for m in batch if m.conv == conv]
            assert seqs(page) == list(range(1, len(page) + 1))
        assert [m.cid for m in store.pending_for("bob", limit=10)] == ["d1"]
    finally:
        store.close()


# -- every backend answers as the in-memory reference model does ----------------------------

USERS = ("alice", "bob", "carol")
ROOMS = ("a", "b")
CONVERSATIONS = [room_conv("a"), room_conv("b"), dm_conv("alice", "bob"), dm_conv("bob", "carol")]
STATUSES: tuple[ReceiptStatus, ...] = ("delivered", "read")
WALK_ROOMS = ["a", "b", "beta", "c"]


def random_batch(rng: random.Random, clock: int) -> list[NewMessage]:
    """One to four sends: rooms and direct messages, some resends (to the same conversation or
    another), the clock sometimes stepping back."""
    batch = []
    for _ in range(rng.randint(1, 4)):
        sender = rng.choice(USERS)
        cid = rng.choice([None, *(f"c{i}" for i in range(40))])
        ts = clock - rng.choice([0, 0, 0, 300, 1_500])
        others = [u for u in USERS if u != sender]
        mentions = tuple(u for u in others if rng.random() < 0.3)
        if rng.random() < 0.5:
            room = rng.choice(ROOMS)
            batch.append(room_msg(room=room, sender=sender, ts=ts, cid=cid, mentions=mentions))
        else:
            to = rng.choice(others)
            batch.append(replace(direct(sender, to, ts=ts, cid=cid), mentions=mentions))
    return batch


def recount(store: Store, user: str, conv: str, marker: int, cap: int) -> Counts:
    """The counts as their definition says, from every message after the marker."""
    after, _ = store.since(conv, marker, limit=100_000)
    unread = [m for m in after if m.target is None and not m.deleted and m.sender != user]
    named = [m for m in unread if user in m.mentions]
    return Counts(store.last_seq(conv), marker, min(len(unread), cap), min(len(named), cap))


def wrote_in(store: Store, user: str) -> list[str]:
    """The conversations where ``user`` has live messages, as their definition says, from
    every message of every conversation the walk writes to."""
    pairs = [dm_conv(a, b) for i, a in enumerate(USERS) for b in USERS[i + 1 :]]
    found = []
    for conv in [room_conv(room) for room in ROOMS] + pairs:
        messages, _ = store.since(conv, 0, limit=100_000)
        if any(m.sender == user and m.target is None and not m.deleted for m in messages):
            found.append(conv)
    return sorted(found)


class Observer:
    """Makes calls on one store and writes each answer down, naming mids by (conv, seq)."""

    def __init__(self, store: Store, leeway: Leeway) -> None:
        self.store = store
        self.leeway = leeway
        self.sent: list[str] = []  # every mid seen, in the order first seen
        self.names: dict[str, tuple[str, int]] = {}
        self.recipients: dict[str, str | None] = {}
        self.first_seen: dict[str, StoredMessage] = {}

    def message(self, msg: StoredMessage) -> tuple[object, ...]:
        if msg.refused is not None:
            named = self.names.get(msg.target or msg.reply_to or "")
            return (msg.conv, msg.kind, msg.cid, msg.refused, named)
        if msg.mid not in self.names:
            self.names[msg.mid] = (msg.conv, msg.seq)
            # A change has a recipient but is never pending: no cursor nor receipt for it.
            self.recipients[msg.mid] = msg.to if msg.target is None else None
            self.first_seen[msg.mid] = msg
            self.sent.append(msg.mid)
        target = None if msg.target is None else self.names.get(msg.target, "?")
        reply_to = None if msg.reply_to is None else self.names.get(msg.reply_to, "?")
        thread = None if msg.thread is None else self.names.get(msg.thread, "?")
        summary = msg.thread_summary
        return (
            *(msg.conv, msg.seq, msg.ts, msg.sender, msg.kind, msg.body, msg.cid, msg.to),
            *(msg.duplicate, target, msg.edited, msg.deleted),
            tuple((r.key, r.count, r.me) for r in msg.reactions),
            *(reply_to, thread),
            None if summary is None else (summary.count, summary.last_ts, summary.users),
            None if summary is None else summary.participants,
            msg.mentions,
        )

    def any_change(self, rng: random.Random, clock: int) -> NewMessage:
        """An edit or delete of a recent message (now and then of a change, or of a message
        that was deleted or pruned), by its author, or a reaction to it by one of its
        conversation's users (one of four keys, at most three on a message), sometimes resent."""
        mid = self.any_mid(rng)
        kind = rng.choice(["edit", "edit", "delete", "react", "react", "unreact"])
        cid = rng.choice([None, *(f"x{i}" for i in range(10))])
        known = self.first_seen.get(mid)
        if known is None:
            known = StoredMessage(mid, room_conv("a"), 0, 0, "alice", "text", b"", None, "a", None)
        if kind in ("react", "unreact"):
            users = USERS if known.to is None else (known.sender, known.to)
            key = rng.choice(["+1", "a", "b", "🎉"])
            by = rng.choice(users)
            on = kind == "react"
            return react(known, by, key, on=on, ts=clock, cid=cid, max_reactions=3)
        return change(known, kind, f"v{rng.randint(0, 99)}".encode(), ts=clock, cid=cid)

    def any_reply(self, rng: random.Random, clock: int) -> NewMessage:
        """A reply to a recent message by one of its conversation's users (now and then to a
        change, a message deleted or pruned, or one of another conversation), sometimes
        resent."""
        mid = self.any_mid(rng)
        known = self.first_seen.get(mid)
        if known is None:
            known = StoredMessage(mid, room_conv("a"), 0, 0, "alice", "text", b"", None, "a", None)
        users = USERS if known.to is None else (known.sender, known.to)
        cid = rng.choice([None, *(f"y{i}" for i in range(10))])
        ts = max(0, clock - rng.choice([0, 0, 1_500]))
        answer = reply(known, rng.choice(users), f"r{rng.randint(0, 99)}", ts=ts, cid=cid)
        if rng.random() < 0.1:
            answer = replace(answer, conv=room_conv("b"), room="b", to=None)
        return answer

    def thread_page(
        self, answer: tuple[StoredMessage | None, list[StoredMessage], bool]
    ) -> tuple[object, ...]:
        root, messages, more = answer
        return (None if root is None else self.message(root), self.page((messages, more)))

    def page(self, answer: tuple[list[StoredMessage], bool]) -> tuple[object, ...]:
        return ([self.message(m) for m in answer[0]], answer[1])

    def receipt(self, receipt: Receipt | None) -> tuple[object, ...] | None:
        if receipt is None:
            return None
        return (self.names[receipt.mid], receipt.sender, receipt.by, receipt.status)

    def any_mid(self, rng: random.Random) -> str:
        """A recent mid, now and then an older one or one the store never gave."""
        index = len(self.sent) - 1 - min(int(rng.expovariate(0.2)), len(self.sent))
        return self.sent[index] if index >= 0 else "00000000000000000x"

    def any_mark(self, rng: random.Random) -> tuple[str, str, ReceiptStatus]:
        """Mostly the recipient marking a message, now and then someone else."""
        mid = self.any_mid(rng)
        user = self.recipients.get(mid) if rng.random() < 0.8 else None
        return (mid, user or rng.choice(USERS), rng.choice(STATUSES))

    def step(self, rng: random.Random, clock: int) -> list[object]:
        """One random write, then every kind of read; both stores get an rng in the same state."""
        store = self.store
        seen: list[object] = []
        action = rng.random()
        if action < 0.4:
            batch = random_batch(rng, clock)
            if self.sent:
                batch += [self.any_change(rng, clock) for _ in range(rng.choice([0, 0, 1, 2]))]
                batch += [self.any_reply(rng, clock) for _ in range(rng.choice([0, 1, 1, 2]))]
                rng.shuffle(batch)
            seen.append([self.message(m) for m in store.append_batch(batch)])
        elif action < 0.5:
            # The store actor's group commit: sends and receipts together.
            batch = random_batch(rng, clock)
            marks = [self.any_mark(rng) for _ in range(rng.randint(0, 3))]
            stored, receipts = store.write_batch(batch, marks)
            seen.append([self.message(m) for m in stored])
            seen.append([self.receipt(r) for r in receipts])
        elif action < 0.8:
            marks = [self.any_mark(rng) for _ in range(rng.randint(1, 3))]
            seen.append([self.receipt(r) for r in store.mark_batch(marks)])
        elif action < 0.9:
            # Small budgets for age pruning only: which conversation count pruning visits first
            # when the budget runs out is left to each backend.
            age, budget = rng.choice([500, 2_000]), rng.randint(1, 5)
            if self.leeway.age_order_across_convs:
                budget = 1_000
            seen.append(store.prune(now_ms=clock, max_age_ms=age, budget=budget))
        else:
            count, age = rng.randint(3, 12), rng.choice([2_000, FAR_FUTURE_AGE_MS])
            seen.append(store.prune(now_ms=clock, max_count=count, max_age_ms=age, budget=1_000))
        for conv in CONVERSATIONS:
            last = store.last_seq(conv)
            seen.append(last)
            since = rng.randint(-1, last + 1)
            limit, max_bytes = rng.randint(1, 6), rng.choice([None, rng.randint(1, 12)])
            seen.append(self.page(store.since(conv, since, limit=limit, max_bytes=max_bytes)))
            before = rng.choice([None, rng.randint(0, last + 2)])
            after = rng.choice([None, rng.randint(-1, last + 1)])
            reader = rng.choice(USERS)
            page = store.history(
                conv, before=before, after=after, limit=rng.randint(1, 6), reader=reader
            )
            seen.append(self.page(page))
        for user in USERS:
            seen.append([self.message(m) for m in store.pending_for(user, limit=rng.randint(1, 6))])
            theirs = [mid for mid in self.sent if self.recipients.get(mid) == user]
            if theirs:
                # A cursor is a message to the reader, recent or older, pending or not.
                after = theirs[max(0, len(theirs) - 1 - int(rng.expovariate(0.2)))]
                page = store.pending_for(user, limit=rng.randint(1, 6), after=after)
                seen.append([self.message(m) for m in page])
        found = store.get(self.any_mid(rng))
        seen.append(None if found is None else self.message(found))
        threads = {m.thread for m in self.first_seen.values() if m.thread is not None}
        roots = sorted(threads, key=lambda mid: self.names.get(mid, ("", 0)))
        for _ in range(2):
            # Mostly the root of a thread seen, now and then any mid.
            root = rng.choice(roots) if roots and rng.random() < 0.8 else self.any_mid(rng)
            last = self.names.get(root, ("", 0))[1] + 12
            before = rng.choice([None, rng.randint(0, last)])
            after = rng.choice([None, rng.randint(-1, last)])
            page = store.thread(
                root, before=before, after=after, limit=rng.randint(1, 4), reader=rng.choice(USERS)
            )
            seen.append(self.thread_page(page))
        seen.extend(self.membership(rng))
        seen.extend(self.markers(rng))
        return seen

    def membership(self, rng: random.Random) -> list[object]:
        """A join, leave, title change or visibility change now and then; then every read of
        membership, room metadata and partners."""
        store = self.store
        seen: list[object] = []
        user, room = rng.choice(USERS), rng.choice(WALK_ROOMS)
        action = rng.random()
        if action < 0.3:
            seen.append(store.join_room(user, room, max_rooms=3))
        elif action < 0.4:
            seen.append(store.leave_room(user, room))
        elif action < 0.5:
            seen.append(store.update_room(user, room, title=rng.choice([None, "T", "Tea"])))
        elif action < 0.55:
            store.set_public(room, rng.random() < 0.7)
        for user in USERS:
            seen.append((store.rooms_of(user), store.dm_partners(user)))
            wrote = sorted(store.authored_conversations(user, limit=10))
            assert wrote == wrote_in(store, user), user
            seen.append(wrote)
            latest = store.latest(CONVERSATIONS, user)
            seen.append({c: (n, m and self.message(m)) for c, (n, m) in latest.items()})
        for room in WALK_ROOMS:
            seen.append(store.members_of(room, after=rng.choice([None, *USERS]), limit=2))
        seen.append(store.room_info(WALK_ROOMS))
        query = rng.choice([None, "t", "b"])
        after = rng.choice([None, *WALK_ROOMS])
        seen.append(store.directory(query=query, after=after, limit=rng.randint(1, 3)))
        return seen

    def markers(self, rng: random.Random) -> list[object]:
        """Move a marker or two, forward, back or beyond the end; then every user's counts
        in every conversation, each checked against its definition."""
        store = self.store
        seen: list[object] = []
        cap = rng.choice([2, 5, 999])
        for _ in range(rng.randint(0, 2)):
            conv, user = rng.choice(CONVERSATIONS), rng.choice(USERS)
            seq = rng.randint(0, store.last_seq(conv) + 2)
            seen.append(store.move_marker(user, conv, seq, cap=cap))
        for user in USERS:
            counts = store.counts(user, CONVERSATIONS, cap=cap)
            for conv, found in counts.items():
                assert found == recount(store, user, conv, found.marker, cap), (user, conv)
            seen.append(counts)
        return seen


# Not on the Redis Cluster: its scripts are the single Redis's, and the tests above run every
# operation on it (a key of another slot would fail there); the walk would add half a minute.
@pytest.mark.slow  # bulk: a 400-step random walk
@pytest.mark.parametrize(
    "backend",
    backend_params([name for name in BACKENDS if name not in ("memory", "redis-cluster")]),
)
def test_backend_answers_every_call_as_the_memory_store_does(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    leeway = LEEWAY.get(backend, Leeway())
    model = Observer(MemoryStore(), leeway)
    checked = Observer(BACKENDS[backend](tmp_path, request), leeway)
    try:
        clock = 1_000
        for step in range(400):
            clock += random.Random(step).choice([0, 10, 50, 200])
            expected = model.step(random.Random(step), clock)
            assert checked.step(random.Random(step), clock) == expected, f"step {step}"
    finally:
        model.store.close()
        checked.store.close()
