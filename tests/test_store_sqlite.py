"""What the SQLite message store adds to the promises every store keeps (those are proved in
test_store_conformance.py): messages, seqs, de-duplication, the epoch and receipts survive
reopening and the process being killed; and a failing or locked database stores nothing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import gevent
import pytest

from actorim import node
from actorim.domain.markers import Counts
from actorim.store import (
    NewMessage,
    SqliteStore,
    StoredMessage,
    StoreError,
    dm_conv,
    room_conv,
)
from actorim.store.base import inbox
from actorim.store.sqlite import _AUTHORED_CONVS, SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[1]


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


@pytest.mark.process
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


# -- reopening ------------------------------------------------------------------------------


def test_seq_continues_after_reopening(path: Path) -> None:
    store = SqliteStore(path)
    fill(store, 3)
    store.close()
    store = SqliteStore(path)
    try:
        assert store.append_batch([room_msg()])[0].seq == 4
    finally:
        store.close()


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


def _version_1_database(path: Path) -> None:
    """A database as the first schema wrote it: (sender, cid) unique across conversations."""
    from actorim.store.sqlite import _MIGRATIONS

    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in _MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO meta (key, value) VALUES ('epoch', 'old-epoch')")
    conn.execute(
        "INSERT INTO messages (mid, conv, seq, ts, sender, kind, body, cid, room)"
        " VALUES ('065svpb80000000000', 'r:a', 1, 1000, 'alice', 'text', x'00', 'c1', 'a')"
    )
    conn.execute("INSERT INTO convs (conv, last_seq, first_seq) VALUES ('r:a', 1, 1)")
    conn.execute("PRAGMA user_version = 1")
    conn.close()


def test_database_of_schema_1_is_migrated_to_cids_per_conversation(path: Path) -> None:
    _version_1_database(path)
    store = SqliteStore(path)
    try:
        assert store.epoch() == "old-epoch"
        again, other = store.append_batch(
            [room_msg(room="a", cid="c1"), room_msg(room="b", cid="c1")]
        )
        assert again.duplicate and again.mid == "065svpb80000000000"
        assert not other.duplicate and (other.conv, other.seq) == (room_conv("b"), 1)
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


# tests/data/messages-v2.db was written by actorim at schema 2 (before edits and deletes), with
#   SqliteStore(path).append_batch([...]) of five messages to room lobby (bodies b"old lobby 1"
#   to b"old lobby 5", senders alice and bob alternating, cids c1-c5, ts 1_700_000_000_001-005),
#   a direct message alice -> bob (b"old dm 1", cid d1, marked read by bob) and one bob -> alice
#   (b"old dm 2", no cid, pending), then closed (which checkpoints the log into the one file).
SCHEMA_2_FIXTURE = REPO / "tests" / "data" / "messages-v2.db"


def test_data_directory_of_schema_2_is_migrated_in_place_and_keeps_every_message(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / "messages.db"
    path.parent.mkdir()
    path.write_bytes(SCHEMA_2_FIXTURE.read_bytes())
    store = SqliteStore(path)
    try:
        lobby, more = store.history(room_conv("lobby"), limit=100)
        assert not more
        assert [(m.seq, m.sender, m.body, m.cid) for m in lobby] == [
            (i, "alice" if i % 2 else "bob", f"old lobby {i}".encode(), f"c{i}")
            for i in range(1, 6)
        ]
        assert all(m.edited is None and not m.deleted and m.target is None for m in lobby)
        dms, _ = store.history(dm_conv("alice", "bob"), limit=100)
        assert [(m.sender, m.to, m.body) for m in dms] == [
            ("alice", "bob", b"old dm 1"),
            ("bob", "alice", b"old dm 2"),
        ]
        assert [m.body for m in store.pending_for("alice", limit=10)] == [b"old dm 2"]
        assert store.pending_for("bob", limit=10) == []
        [again] = store.append_batch([room_msg("old lobby 1", ts=1_700_000_000_001, cid="c1")])
        assert again.duplicate and again.mid == lobby[0].mid
        edit = NewMessage(
            room_conv("lobby"),
            "alice",
            "edit",
            b"new",
            1_700_000_001_000,
            room="lobby",
            target=lobby[0].mid,
        )
        [event] = store.append_batch([edit])
        assert (event.seq, store.get(lobby[0].mid).body) == (6, b"new")  # type: ignore[union-attr]
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


# tests/data/messages-v3.db was written by actorim at schema 3 (edits and deletes, before
#   reactions), with SqliteStore(path).append_batch of three messages to room lobby (bodies
#   b"v3 lobby 1" to b"v3 lobby 3", senders alice, bob, alice, cids c1-c3, ts
#   1_700_000_000_001-003), an edit of the first by alice (b"v3 lobby 1 edited") and a delete of
#   the second by bob, then closed.
SCHEMA_3_FIXTURE = REPO / "tests" / "data" / "messages-v3.db"


def test_data_directory_of_schema_3_is_migrated_in_place_and_takes_reactions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / "messages.db"
    path.parent.mkdir()
    path.write_bytes(SCHEMA_3_FIXTURE.read_bytes())
    store = SqliteStore(path)
    try:
        lobby, _ = store.history(room_conv("lobby"), limit=100, reader="bob")
        assert [(m.seq, m.body, m.deleted, m.reactions) for m in lobby] == [
            (1, b"v3 lobby 1 edited", False, ()),
            (2, b"", True, ()),
            (3, b"v3 lobby 3", False, ()),
        ]
        assert [m.kind for m in store.since(room_conv("lobby"), 3, limit=9)[0]] == [
            "edit",
            "delete",
        ]

        def react(target: str, key: str) -> NewMessage:
            conv, ts = room_conv("lobby"), 1_700_000_001_000
            return NewMessage(conv, "bob", "react", key.encode(), ts, room="lobby", target=target)

        on, deleted = store.append_batch([react(lobby[0].mid, "+1"), react(lobby[1].mid, "x")])
        assert (on.seq, deleted.refused) == (6, "deleted")
        page, _ = store.history(room_conv("lobby"), limit=1, before=2, reader="bob")
        assert [(r.key, r.count, r.me) for r in page[0].reactions] == [("+1", 1, True)]
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


@pytest.mark.parametrize("size", [40, 20_000], ids=["in-page", "overflow-pages"])
def test_deleted_body_is_gone_from_every_file_of_the_data_directory(
    tmp_path: Path, size: int
) -> None:
    data = tmp_path / "data"
    store = SqliteStore(data / "messages.db")
    original = b"ORIGINAL-7f3a9c" * (size // 15)
    edited = b"EDITED-b81e22d0" * (size // 15)
    try:
        [msg] = store.append_batch([room_msg("before"), room_msg(ts=1_001)])[1:]
        msg = store.append_batch(
            [NewMessage(msg.conv, "alice", "text", original, 1_002, room="lobby")]
        )[0]
        store.append_batch(
            [NewMessage(msg.conv, "alice", "edit", edited, 1_003, room="lobby", target=msg.mid)]
        )
        store.append_batch([room_msg("after", ts=1_004)])
        assert any(original[:15] in f.read_bytes() for f in data.iterdir())  # it was there
        store.append_batch(
            [NewMessage(msg.conv, "alice", "delete", b"", 1_005, room="lobby", target=msg.mid)]
        )
        # While the store is open, as a backup taken now would copy them, and after closing.
        for when in ("open", "closed"):
            for file in data.iterdir():
                content = file.read_bytes()
                assert original[:15] not in content, (when, file.name)
                assert edited[:15] not in content, (when, file.name)
            store.close()
    finally:
        store.close()


def test_pending_survives_reopening(path: Path) -> None:
    store = SqliteStore(path)
    [msg] = store.append_batch([direct("alice", "bob")])
    store.close()
    store = SqliteStore(path)
    try:
        assert store.pending_for("bob", limit=10) == [msg]
    finally:
        store.close()


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


# tests/data/messages-v4.db was written by actorim at schema 4 (reactions), with
#   SqliteStore(path).append_batch of three messages to room lobby (bodies b"v4 lobby 1" to
#   b"v4 lobby 3", senders alice, bob, alice, cids c1-c3, ts 1_700_000_000_001-003), an edit of
#   the first by alice (b"v4 lobby 1 edited"), a delete of the second by bob, a reaction "+1" by
#   bob on the third, then two direct messages (alice to bob b"v4 dm 1", cid d1; bob to alice
#   b"v4 dm 2", cid d2), the first marked read by bob, then closed.
SCHEMA_4_FIXTURE = REPO / "tests" / "data" / "messages-v4.db"


def schema_4_data_directory(tmp_path: Path) -> Path:
    """A data directory holding a copy of SCHEMA_4_FIXTURE; the path of its store."""
    path = tmp_path / "data" / "messages.db"
    path.parent.mkdir()
    path.write_bytes(SCHEMA_4_FIXTURE.read_bytes())
    return path


def test_data_directory_of_schema_4_keeps_every_message_after_migration(tmp_path: Path) -> None:
    path = schema_4_data_directory(tmp_path)
    store = SqliteStore(path)
    try:
        lobby, _ = store.history(room_conv("lobby"), limit=100, reader="bob")
        assert [(m.seq, m.body, m.deleted, [r.key for r in m.reactions]) for m in lobby] == [
            (1, b"v4 lobby 1 edited", False, []),
            (2, b"", True, []),
            (3, b"v4 lobby 3", False, ["+1"]),
        ]
        dms, _ = store.history(dm_conv("alice", "bob"), limit=100)
        assert [(m.seq, m.sender, m.body) for m in dms] == [
            (1, "alice", b"v4 dm 1"),
            (2, "bob", b"v4 dm 2"),
        ]
        assert [m.body for m in store.pending_for("alice", limit=10)] == [b"v4 dm 2"]
        assert store.pending_for("bob", limit=10) == []
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


def test_data_directory_of_schema_4_takes_replies_to_its_old_messages(tmp_path: Path) -> None:
    store = SqliteStore(schema_4_data_directory(tmp_path))
    try:
        lobby, _ = store.history(room_conv("lobby"), limit=100)
        assert all(m.reply_to is None and m.thread_summary is None for m in lobby)
        [old, deleted, reacted] = lobby

        def reply(parent: str, by: str, ts: int) -> NewMessage:
            conv = room_conv("lobby")
            return NewMessage(conv, by, "text", b"re", ts, room="lobby", reply_to=parent)

        first, refused = store.append_batch(
            [reply(old.mid, "bob", 1_700_000_001_000), reply(deleted.mid, "bob", 1_700_000_001_001)]
        )
        [second] = store.append_batch([reply(first.mid, "carol", 1_700_000_001_002)])
        assert (first.seq, first.thread, refused.refused) == (7, old.mid, "deleted")
        assert (second.reply_to, second.thread) == (first.mid, old.mid)
        root, replies, more = store.thread(old.mid, limit=10, reader="bob")
        assert root is not None and root.body == b"v4 lobby 1 edited"
        summary = root.thread_summary
        assert summary is not None
        assert (summary.count, summary.last_ts, summary.users) == (
            2,
            1_700_000_001_002,
            ("bob", "carol"),
        )
        assert ([m.seq for m in replies], more) == ([7, 8], False)
        # The old message with its reaction is a root like any other.
        [answer] = store.append_batch([reply(reacted.mid, "alice", 1_700_000_001_003)])
        page, _ = store.history(room_conv("lobby"), limit=1, before=4, reader="bob")
        assert [r.key for r in page[0].reactions] == ["+1"]
        assert page[0].thread_summary is not None and page[0].thread_summary.count == 1
        assert answer.thread == reacted.mid
    finally:
        store.close()


def test_data_directory_of_schema_4_gains_membership_and_its_direct_partners(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / "messages.db"
    path.parent.mkdir()
    path.write_bytes(SCHEMA_4_FIXTURE.read_bytes())
    store = SqliteStore(path)
    try:
        assert store.dm_partners("alice") == ["bob"]
        assert store.dm_partners("bob") == ["alice"]
        assert store.rooms_of("alice") == []
        assert store.join_room("alice", "lobby", max_rooms=10) == "joined"
        entries = inbox(store, "alice", lambda room: True)
        assert [(c.room, c.with_, c.seq) for c in entries] == [
            (None, "bob", 2),
            ("lobby", None, 6),
        ]
    finally:
        store.close()
    reopened = SqliteStore(path)
    try:
        assert reopened.rooms_of("alice") == ["lobby"]
    finally:
        reopened.close()


def test_schema_4_data_directory_counts_old_messages_unread_and_keeps_read_direct_messages_read(
    tmp_path: Path,
) -> None:
    """Schema 8 adds read markers: messages stored before count as unread (no marker yet) but
    mention nobody; a direct message its recipient had read sets their marker there."""
    path = tmp_path / "data" / "messages.db"
    path.parent.mkdir()
    path.write_bytes(SCHEMA_4_FIXTURE.read_bytes())
    store = SqliteStore(path)
    lobby, dm = room_conv("lobby"), dm_conv("alice", "bob")
    try:
        # Message 2 was deleted; 4 to 6 are changes. Bob sent 2, so alice counts 1 and 3.
        assert store.counts("bob", [lobby, dm], cap=999) == {
            lobby: Counts(6, 0, 2, 0),
            dm: Counts(2, 1, 0, 0),
        }
        assert store.counts("alice", [lobby, dm], cap=999) == {
            lobby: Counts(6, 0, 0, 0),
            dm: Counts(2, 0, 1, 0),
        }
        assert store.move_marker("bob", lobby, 1, cap=999)[0] == Counts(6, 1, 1, 0)
        [new] = store.append_batch(
            [
                NewMessage(
                    lobby,
                    "alice",
                    "text",
                    b"@bob",
                    1_700_000_002_000,
                    room="lobby",
                    mentions=("bob",),
                )
            ]
        )
        assert store.counts("bob", [lobby], cap=999)[lobby] == Counts(7, 1, 2, 1)
        assert store.get(new.mid).mentions == ("bob",)  # type: ignore[union-attr]
    finally:
        store.close()


def test_schema_4_data_directory_gains_the_index_that_erasing_a_users_messages_reads(
    tmp_path: Path,
) -> None:
    """Schema 9 indexes each sender's live messages per conversation, schema 11 by sender first
    (where each user wrote); the old messages are in it."""
    path = schema_4_data_directory(tmp_path)
    store = SqliteStore(path)
    try:
        lobby = room_conv("lobby")
        found = store.authored(lobby, "alice", limit=10)
        assert [(m.seq, m.body) for m in found] == [(1, b"v4 lobby 1 edited"), (3, b"v4 lobby 3")]
        assert store.authored(lobby, "bob", limit=10) == []  # bob's one message was deleted
        assert [m.body for m in store.authored(dm_conv("alice", "bob"), "bob", limit=10)] == [
            b"v4 dm 2"
        ]
        # Schema 11: where each user wrote, from the same index (bob's lobby message is deleted).
        assert store.authored_conversations("alice", limit=10) == [dm_conv("alice", "bob"), lobby]
        assert store.authored_conversations("bob", limit=10) == [dm_conv("alice", "bob")]
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT mid FROM messages WHERE conv = 'r:lobby' AND sender = 'x'"
            " AND target IS NULL AND deleted = 0 ORDER BY seq"
        ).fetchall()
        steps = conn.execute(f"EXPLAIN QUERY PLAN {_AUTHORED_CONVS}", ("x", 10)).fetchall()
    conn.close()
    assert any("messages_authored" in str(row) for row in plan), plan
    # Each step of the skip scan is a seek in the index, never a scan of the messages.
    searches = [row[3] for row in steps if "messages" in row[3]]
    assert len(searches) == 2 and all("USING INDEX messages_authored" in s for s in searches)


# -- a reconnect's join writes nothing ------------------------------------------------------------


@pytest.fixture
def opened_stores(monkeypatch: pytest.MonkeyPatch) -> list[SqliteStore]:
    """Every SQLite store the nodes of a test open, to read what they wrote."""
    opened: list[SqliteStore] = []
    adapter = node.STORES["sqlite"]

    def recording(config: Any) -> Any:
        store = adapter.open(config)
        opened.append(store)
        return store

    monkeypatch.setitem(node.STORES, "sqlite", replace(adapter, open=recording))
    return opened


def test_a_reconnect_joining_its_stored_room_writes_nothing_and_a_rejoin_after_leave_does(
    start_node: Any, opened_stores: list[SqliteStore]
) -> None:
    # Every client of a node comes back after a deploy and joins its rooms again: those joins
    # must cost no write (no row, hence no sync of the batch's transaction: SQLite commits a
    # transaction that changed nothing without writing its log).
    server = start_node(store="sqlite")
    [store] = opened_stores

    def rows_written() -> int:
        return store._live().total_changes

    first = server.client("ann")
    first.ok("join", room="lobby")
    first.ok("ping")  # the join's writes are done before its reply
    after_first_join = rows_written()
    assert after_first_join > 0
    first.close()

    again = server.client("ann")
    again.ok("join", room="lobby")
    again.ok("ping")
    assert rows_written() == after_first_join

    again.ok("leave", room="lobby")
    after_leave = rows_written()
    assert after_leave > after_first_join
    again.ok("join", room="lobby")
    assert rows_written() > after_leave
