"""The SQLite message store keeps the promises the server makes to clients: durable messages,
one message per client send, gap-free sequence numbers, and direct messages that wait."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest

from actorim.store import (
    DEFAULT_MAX_AGE_MS,
    DEFAULT_MAX_COUNT,
    NewMessage,
    Receipt,
    ReceiptStatus,
    SqliteStore,
    StoredMessage,
    StoreError,
    dm_conv,
    mid_ms,
    new_mid,
    room_conv,
)

REPO = Path(__file__).resolve().parents[1]
FAR_FUTURE_AGE_MS = 10**12  # a max_age_ms under which nothing in these tests is old


def room_msg(
    text: str = "hi",
    *,
    room: str = "lobby",
    sender: str = "alice",
    ts: int = 1_000,
    cid: str | None = None,
) -> NewMessage:
    return NewMessage(room_conv(room), sender, "text", text.encode(), ts, cid=cid, room=room)


def direct(sender: str, to: str, *, ts: int = 1_000, cid: str | None = None) -> NewMessage:
    return NewMessage(dm_conv(sender, to), sender, "text", b"psst", ts, cid=cid, to=to)


def seqs(messages: list[StoredMessage]) -> list[int]:
    return [m.seq for m in messages]


def retained(store: SqliteStore, room: str = "lobby") -> list[int]:
    return seqs(store.history(room_conv(room), before=None, after=None, limit=1_000)[0])


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "messages.db"


@pytest.fixture
def store(path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(path)
    yield store
    store.close()


def fill(store: SqliteStore, count: int, *, room: str = "lobby", ts: int = 1_000) -> None:
    store.append_batch([room_msg(f"m{i}", room=room, ts=ts + i) for i in range(count)])


# -- durability -----------------------------------------------------------------------------


def test_committed_messages_are_found_after_reopening(path: Path) -> None:
    store = SqliteStore(path)
    stored = store.append_batch([room_msg("one"), direct("alice", "bob")])
    store.close()

    reopened = SqliteStore(path)
    try:
        assert [reopened.get(m.mid) for m in stored] == stored
        assert reopened.since(room_conv("lobby"), 0, limit=10) == ([stored[0]], True)
    finally:
        reopened.close()


def test_store_made_on_one_thread_serves_a_worker_thread(store: SqliteStore) -> None:
    threadpool = gevent.get_hub().threadpool  # real OS threads, as the store actor uses
    [msg] = threadpool.apply(store.append_batch, ([room_msg()],))
    assert threadpool.apply(store.get, (msg.mid,)) == store.get(msg.mid) == msg


def test_store_creates_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "messages.db"
    SqliteStore(path).close()
    assert path.is_file()


def test_normal_synchronous_mode_is_accepted(path: Path) -> None:
    store = SqliteStore(path, synchronous="normal")
    try:
        assert store.append_batch([room_msg()])[0].seq == 1
    finally:
        store.close()


def test_unsafe_synchronous_mode_is_refused(path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore(path, synchronous="OFF")


CHILD = """
import sys
from actorim.store import NewMessage, SqliteStore, room_conv

store = SqliteStore(sys.argv[1])
for i in range(1, 100_000):
    batch = [
        NewMessage(room_conv("lobby"), "alice", "text", b"%d" % i, i, cid=f"c{i}.{k}", room="lobby")
        for k in range(3)
    ]
    print(" ".join(f"{m.mid}:{m.seq}" for m in store.append_batch(batch)), flush=True)
"""


def test_messages_committed_before_sigkill_survive(path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    assert child.stdout is not None
    committed: dict[str, int] = {}
    try:
        for _ in range(30):
            line = child.stdout.readline()
            assert line, "the child process stopped before committing"
            committed.update((mid, int(seq)) for mid, seq in (p.split(":") for p in line.split()))
    finally:
        child.kill()  # SIGKILL: no clean-up, possibly in the middle of the next commit
        child.wait(timeout=10)
        child.stdout.close()
    assert child.returncode == -9

    store = SqliteStore(path)
    try:
        for mid, seq in committed.items():
            found = store.get(mid)
            assert found is not None and found.seq == seq
        last = store.last_seq(room_conv("lobby"))
        assert len(committed) == 90
        assert last >= len(committed)
        assert last % 3 == 0, "a batch was partly stored"
        page, complete = store.since(room_conv("lobby"), 0, limit=last)
        assert complete and seqs(page) == list(range(1, last + 1))
    finally:
        store.close()


# -- sequence numbers and conversations -----------------------------------------------------


def test_each_conversation_numbers_its_messages_from_one_without_gaps(store: SqliteStore) -> None:
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


def test_seq_continues_after_reopening(path: Path) -> None:
    store = SqliteStore(path)
    fill(store, 3)
    store.close()
    store = SqliteStore(path)
    try:
        assert store.append_batch([room_msg()])[0].seq == 4
    finally:
        store.close()


def test_direct_conversation_is_the_same_whichever_user_sends() -> None:
    assert dm_conv("bob", "alice") == dm_conv("alice", "bob") == "d:alice|bob"
    assert room_conv("lobby") == "r:lobby"


def test_direct_conversation_refuses_the_separator_in_a_user_id() -> None:
    with pytest.raises(ValueError):
        dm_conv("a|b", "c")


def test_message_whose_conversation_contradicts_its_recipient_is_refused(
    store: SqliteStore,
) -> None:
    wrong = NewMessage(dm_conv("alice", "carol"), "alice", "text", b"", 1, to="bob")
    with pytest.raises(ValueError, match="conv"):
        store.append_batch([room_msg(), wrong])
    assert store.last_seq(room_conv("lobby")) == 0


def test_mids_are_short_unique_and_sort_by_time() -> None:
    mids = [new_mid(ts) for ts in range(1_700_000_000_000, 1_700_000_000_000 + 500) for _ in "ab"]
    assert len(set(mids)) == len(mids)
    assert all(len(mid) == 18 for mid in mids)
    assert [mid_ms(mid) for mid in sorted(mids)] == sorted(mid_ms(mid) for mid in mids)
    assert mid_ms(mids[0]) == 1_700_000_000_000


# -- de-duplication -------------------------------------------------------------------------


def test_resend_with_same_cid_returns_the_original_flagged_duplicate(store: SqliteStore) -> None:
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


def test_resend_is_recognised_after_reopening(path: Path) -> None:
    store = SqliteStore(path)
    [original] = store.append_batch([direct("alice", "bob", cid="c1")])
    store.close()
    store = SqliteStore(path)
    try:
        [again] = store.append_batch([direct("alice", "bob", cid="c1")])
        assert again.duplicate and again.mid == original.mid
    finally:
        store.close()


def test_same_cid_twice_in_one_batch_stores_one_message(store: SqliteStore) -> None:
    first, other, second = store.append_batch(
        [room_msg(cid="c1"), room_msg(cid="c2"), room_msg(cid="c1")]
    )
    assert second.duplicate and second.mid == first.mid and second.seq == first.seq == 1
    assert other.seq == 2 and not other.duplicate
    assert store.last_seq(room_conv("lobby")) == 2


def test_batch_mixing_resends_and_new_messages_keeps_seq_gap_free(store: SqliteStore) -> None:
    [old] = store.append_batch([room_msg(cid="c1")])
    results = store.append_batch([room_msg(cid="c2"), room_msg(cid="c1"), room_msg(cid="c3")])

    assert [(m.seq, m.duplicate) for m in results] == [(2, False), (1, True), (3, False)]
    assert results[1].mid == old.mid
    page, complete = store.since(room_conv("lobby"), 0, limit=10)
    assert complete and seqs(page) == [1, 2, 3]


def test_same_cid_from_different_senders_are_different_messages(store: SqliteStore) -> None:
    a, b = store.append_batch(
        [room_msg(sender="alice", cid="c1"), room_msg(sender="bob", cid="c1")]
    )
    assert not b.duplicate and a.mid != b.mid and (a.seq, b.seq) == (1, 2)


# -- epoch ----------------------------------------------------------------------------------


def test_epoch_is_stable_across_reopening_and_new_for_a_new_database(
    path: Path, tmp_path: Path
) -> None:
    store = SqliteStore(path)
    epoch = store.epoch()
    store.close()
    store = SqliteStore(path)
    assert store.epoch() == epoch
    store.close()

    other = SqliteStore(tmp_path / "other.db")
    assert other.epoch() != epoch
    other.close()

    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    wiped = SqliteStore(path)
    assert wiped.epoch() != epoch
    wiped.close()


def test_database_from_a_newer_version_is_refused(path: Path) -> None:
    SqliteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        SqliteStore(path)


# -- catching up: since ---------------------------------------------------------------------


def test_since_returns_the_missed_messages_in_order(store: SqliteStore) -> None:
    fill(store, 10)
    conv = room_conv("lobby")
    page, complete = store.since(conv, 7, limit=100)
    assert seqs(page) == [8, 9, 10] and complete
    assert store.since(conv, 10, limit=100) == ([], True)
    assert store.since(room_conv("empty"), 0, limit=100) == ([], True)


def test_since_is_incomplete_when_more_than_limit_were_missed(store: SqliteStore) -> None:
    fill(store, 10)
    page, complete = store.since(room_conv("lobby"), 5, limit=2)
    assert seqs(page) == [6, 7] and not complete
    page, complete = store.since(room_conv("lobby"), 5, limit=5)
    assert seqs(page) == [6, 7, 8, 9, 10] and complete


def test_since_is_incomplete_when_retention_removed_missed_messages(store: SqliteStore) -> None:
    fill(store, 10)
    store.prune(now_ms=2_000, max_count=5, max_age_ms=FAR_FUTURE_AGE_MS)
    conv = room_conv("lobby")

    page, complete = store.since(conv, 3, limit=100)
    assert seqs(page) == [6, 7, 8, 9, 10] and not complete
    page, complete = store.since(conv, 5, limit=100)
    assert seqs(page) == [6, 7, 8, 9, 10] and complete


def test_seq_does_not_restart_when_a_conversation_is_pruned_empty(store: SqliteStore) -> None:
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
    store: SqliteStore,
    before: int | None,
    after: int | None,
    limit: int,
    page: tuple[list[int], bool],
) -> None:
    fill(store, 10)
    fill(store, 3, room="elsewhere")
    messages, more = store.history(room_conv("lobby"), before=before, after=after, limit=limit)
    assert (seqs(messages), more) == page


def test_history_of_an_empty_conversation_is_empty(store: SqliteStore) -> None:
    assert store.history(room_conv("lobby"), before=None, after=None, limit=5) == ([], False)


def test_limit_below_one_is_refused(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.history(room_conv("lobby"), before=None, after=None, limit=0)


# -- direct messages: pending and receipts --------------------------------------------------


def test_pending_direct_messages_come_oldest_first(store: SqliteStore) -> None:
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


@pytest.mark.parametrize("status", ["delivered", "read"])
def test_ack_or_read_ends_pending(store: SqliteStore, status: ReceiptStatus) -> None:
    first, second = store.append_batch([direct("alice", "bob"), direct("alice", "bob")])
    store.mark(first.mid, "bob", status)
    assert store.pending_for("bob", limit=10) == [second]


def test_pending_survives_reopening(path: Path) -> None:
    store = SqliteStore(path)
    [msg] = store.append_batch([direct("alice", "bob")])
    store.close()
    store = SqliteStore(path)
    try:
        assert store.pending_for("bob", limit=10) == [msg]
    finally:
        store.close()


def test_receipt_is_returned_on_first_delivered_and_first_read_only(store: SqliteStore) -> None:
    [msg] = store.append_batch([direct("alice", "bob")])
    assert store.mark(msg.mid, "bob", "delivered") == Receipt(msg.mid, "alice", "bob", "delivered")
    assert store.mark(msg.mid, "bob", "delivered") is None
    assert store.mark(msg.mid, "bob", "read") == Receipt(msg.mid, "alice", "bob", "read")
    assert store.mark(msg.mid, "bob", "read") is None
    assert store.mark(msg.mid, "bob", "delivered") is None


def test_read_without_delivered_gives_one_read_receipt(store: SqliteStore) -> None:
    [msg] = store.append_batch([direct("alice", "bob")])
    assert store.mark(msg.mid, "bob", "read") == Receipt(msg.mid, "alice", "bob", "read")
    assert store.mark(msg.mid, "bob", "delivered") is None


def test_receipts_are_remembered_across_reopening(path: Path) -> None:
    store = SqliteStore(path)
    [msg] = store.append_batch([direct("alice", "bob")])
    store.mark(msg.mid, "bob", "read")
    store.close()
    store = SqliteStore(path)
    try:
        assert store.mark(msg.mid, "bob", "read") is None
    finally:
        store.close()


@pytest.mark.parametrize("user", ["alice", "carol"])
def test_only_the_recipient_can_mark_a_direct_message(store: SqliteStore, user: str) -> None:
    [msg] = store.append_batch([direct("alice", "bob")])
    assert store.mark(msg.mid, user, "read") is None
    assert store.pending_for("bob", limit=10) == [msg]


def test_unknown_messages_and_room_messages_give_no_receipt(store: SqliteStore) -> None:
    [msg] = store.append_batch([room_msg()])
    assert store.mark(msg.mid, "bob", "read") is None
    assert store.mark("00000000000000000x", "bob", "read") is None


def test_mark_batch_records_receipts_in_order(store: SqliteStore) -> None:
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


def test_get_unknown_message_is_none(store: SqliteStore) -> None:
    assert store.get("nope") is None


# -- retention ------------------------------------------------------------------------------


def test_retention_defaults_are_ten_thousand_messages_and_thirty_days() -> None:
    assert DEFAULT_MAX_COUNT == 10_000
    assert DEFAULT_MAX_AGE_MS == 30 * 24 * 3600 * 1000


def test_prune_by_count_keeps_the_newest_and_stays_within_budget(store: SqliteStore) -> None:
    fill(store, 10, room="busy")
    fill(store, 3, room="quiet")

    def prune() -> int:
        return store.prune(now_ms=2_000, max_count=4, max_age_ms=FAR_FUTURE_AGE_MS, budget=4)

    assert [prune(), prune(), prune()] == [4, 2, 0]
    assert retained(store, "busy") == [7, 8, 9, 10]
    assert retained(store, "quiet") == [1, 2, 3]


def test_prune_by_age_removes_the_oldest_within_budget(store: SqliteStore) -> None:
    fill(store, 10, ts=1_000)  # ts 1000 .. 1009

    def prune() -> int:
        return store.prune(now_ms=2_005, max_age_ms=1_000, budget=3)

    assert [prune(), prune(), prune()] == [3, 2, 0]
    assert retained(store) == [6, 7, 8, 9, 10]


def test_prune_by_count_after_prune_by_age_counts_what_is_left(store: SqliteStore) -> None:
    fill(store, 10, ts=1_000)
    assert store.prune(now_ms=2_003, max_count=100, max_age_ms=1_000) == 3
    assert store.prune(now_ms=2_003, max_count=5, max_age_ms=FAR_FUTURE_AGE_MS) == 2
    assert retained(store) == [6, 7, 8, 9, 10]


def test_pruned_direct_message_is_no_longer_pending(store: SqliteStore) -> None:
    store.append_batch([direct("alice", "bob", ts=1_000), direct("alice", "bob", ts=5_000)])
    store.prune(now_ms=5_000, max_age_ms=1_000)
    assert [m.ts for m in store.pending_for("bob", limit=10)] == [5_000]


# -- failures -------------------------------------------------------------------------------

POISON = b"\xde\xad"


def fail_inserts_of_poison(path: Path) -> None:
    """Make the database itself refuse a message mid-batch, as a full disk would."""
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON messages WHEN NEW.body = x'dead'"
        " BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END"
    )
    conn.commit()
    conn.close()


def test_failed_batch_stores_nothing_and_seq_stays_gap_free(store: SqliteStore, path: Path) -> None:
    fill(store, 2)
    fail_inserts_of_poison(path)
    poison = NewMessage(room_conv("lobby"), "alice", "text", POISON, 5, room="lobby")

    with pytest.raises(StoreError, match="nothing was stored"):
        store.append_batch([room_msg(cid="c1"), room_msg(room="other"), poison])

    assert store.last_seq(room_conv("lobby")) == 2
    assert store.last_seq(room_conv("other")) == 0
    [retry] = store.append_batch([room_msg(cid="c1")])
    assert (retry.seq, retry.duplicate) == (3, False)
    page, complete = store.since(room_conv("lobby"), 0, limit=10)
    assert complete and seqs(page) == [1, 2, 3]


def test_write_blocked_by_another_connection_raises_store_error(path: Path) -> None:
    store = SqliteStore(path, busy_timeout_ms=10)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked"):
            store.append_batch([room_msg()])
        blocker.execute("ROLLBACK")
        assert store.append_batch([room_msg()])[0].seq == 1
    finally:
        blocker.close()
        store.close()


def test_closed_store_raises_store_error(store: SqliteStore) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.append_batch([room_msg()])
    with pytest.raises(StoreError, match="closed"):
        store.since(room_conv("lobby"), 0, limit=1)
    store.close()
