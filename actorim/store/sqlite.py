"""The message store in one SQLite file: the default backend, durable with no server to run.

Durability comes from WAL mode: a commit appends to the write-ahead log, and with
``synchronous=FULL`` (the default) the log is synced to disk before ``append_batch`` returns, so a
committed batch survives the process being killed and the machine losing power.
``synchronous=NORMAL`` syncs at checkpoints only: still safe when the process is killed, faster,
but the last commits can be lost if the machine itself goes down.

A store is used by one thread at a time (the store actor's worker thread); it may be created on
another. Throughput comes from group commit: the caller hands a whole batch of sends to
``append_batch``, which stores it in one transaction with one sync.

>>> import tempfile, os
>>> store = SqliteStore(os.path.join(tempfile.mkdtemp(), "im", "messages.db"))
>>> send = NewMessage("r:lobby", "alice", "text", b"hi", ts=1_000, cid="c1", room="lobby")
>>> [first] = store.append_batch([send])
>>> [again] = store.append_batch([send])
>>> first.seq, again.duplicate, again.mid == first.mid
(1, True, True)
>>> store.close()
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

from actorim.store.base import (
    DEFAULT_MAX_AGE_MS,
    DEFAULT_MAX_COUNT,
    DEFAULT_PRUNE_BUDGET,
    REACT,
    REACTION_KINDS,
    RECEIPT_LEVELS,
    Counts,
    NewMessage,
    Reaction,
    Receipt,
    ReceiptStatus,
    Store,
    StoredMessage,
    StoreError,
    advanced,
    applied,
    bounded_page,
    change_refusal,
    check_cap,
    check_limit,
    check_new_message,
    check_prune,
    check_statuses,
    mid_ms,
    new_mid,
    reaction_refusal,
    refused,
    unchanged,
)

__all__ = ["DEFAULT_BUSY_TIMEOUT_MS", "SCHEMA_VERSION", "SYNCHRONOUS_MODES", "SqliteStore"]

# How long a write waits for another connection's lock (a backup, an operator's sqlite3 shell)
# before the batch fails with StoreError. Long enough to ride out a checkpoint, short enough
# that senders get an error instead of hanging.
DEFAULT_BUSY_TIMEOUT_MS = 5_000

# FULL syncs every commit (survives power loss); NORMAL syncs at checkpoints (survives the
# process being killed). OFF would lose committed messages, so it is not offered.
SYNCHRONOUS_MODES = ("FULL", "NORMAL")

# The WAL file is truncated back to this size after a checkpoint, so one burst of traffic does
# not leave a huge log on disk for ever.
_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024

# Page cache per connection, in KiB (negative: SQLite's unit for "KiB, not pages"). Keeps the
# hot end of the indexes in memory.
_CACHE_SIZE_KIB = 16 * 1024

# Conversations whose last seq is kept in memory, so an append does not read it back. Past
# this, the oldest entries are dropped and re-read on their next append (about 100 bytes each).
_SEQ_CACHE_MAX = 100_000

# Distinct SQL strings whose prepared statements the connection keeps.
_STATEMENT_CACHE = 64

SCHEMA_VERSION = 5

# _MIGRATIONS[n] brings a database from schema version n to n + 1 (version 0: empty file).
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
        # last_seq survives the conversation's messages being pruned, so seq never restarts
        # within an epoch. Every message with seq < first_seq is gone (a lower bound: age
        # pruning may have removed more); the span index finds conversations over their count.
        """CREATE TABLE convs (
            conv TEXT PRIMARY KEY,
            last_seq INTEGER NOT NULL,
            first_seq INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX convs_span ON convs (last_seq - first_seq)",
        # receipt: NULL for room messages; for direct ones 0 pending, 1 delivered, 2 read.
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            mid TEXT NOT NULL UNIQUE,
            conv TEXT NOT NULL,
            seq INTEGER NOT NULL,
            ts INTEGER NOT NULL,
            sender TEXT NOT NULL,
            kind TEXT NOT NULL,
            body BLOB NOT NULL,
            cid TEXT,
            room TEXT,
            recipient TEXT,
            receipt INTEGER,
            UNIQUE (conv, seq)
        )""",
        "CREATE UNIQUE INDEX messages_cid ON messages (sender, cid) WHERE cid IS NOT NULL",
        "CREATE INDEX messages_pending ON messages (recipient, ts, seq) WHERE receipt = 0",
        "CREATE INDEX messages_ts ON messages (ts)",
    ),
    # Version 2: a cid is unique per sender and conversation, as in every store (the same cid
    # sent to two conversations is two messages). The old index was stricter, so every
    # existing database satisfies the new one.
    (
        "DROP INDEX messages_cid",
        "CREATE UNIQUE INDEX messages_cid ON messages (sender, conv, cid) WHERE cid IS NOT NULL",
    ),
    # Version 3: edits and deletes. A change is a row of its own (``target``: the mid of the
    # message it changes) in the conversation's seq order; the message row holds the current
    # truth (``edited``: time of the latest edit; ``deleted``: a tombstone). Existing rows are
    # messages, neither edited nor deleted, which is what the defaults say.
    (
        "ALTER TABLE messages ADD COLUMN target TEXT",
        "ALTER TABLE messages ADD COLUMN edited INTEGER",
        "ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX messages_target ON messages (target) WHERE target IS NOT NULL",
    ),
    # Version 4: reactions. The events are change rows (kinds react and unreact, the key as
    # body); who holds which key of a message now is a row each here, ``id`` keeping the order
    # keys were first chosen. A message's reactions go with it: erased by a delete, and by the
    # trigger when retention removes the message.
    (
        """CREATE TABLE reactions (
            id INTEGER PRIMARY KEY,
            mid TEXT NOT NULL,
            key TEXT NOT NULL,
            user TEXT NOT NULL,
            UNIQUE (mid, key, user)
        )""",
        """CREATE TRIGGER messages_reactions AFTER DELETE ON messages
            WHEN old.target IS NULL
            BEGIN DELETE FROM reactions WHERE mid = old.mid; END""",
    ),
    # Version 5: read markers and mentions. A user's marker in a conversation is a row of
    # ``markers``; a message's mentioned users are its ``mentions`` column (ids joined by
    # spaces) and a row each in ``mentions``, which counts them: a delete erases both, the
    # trigger takes the rows when retention removes the message. Unread counts read the
    # messages that can count through ``messages_unread``. A direct message the recipient
    # had read (receipt 2) sets their marker to the newest such message of each conversation,
    # so what was read before the upgrade is not unread after it; messages stored before it
    # count as unread (after the marker) but mention nobody.
    (
        """CREATE TABLE markers (
            user TEXT NOT NULL,
            conv TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (user, conv)
        ) WITHOUT ROWID""",
        """CREATE TABLE mentions (
            user TEXT NOT NULL,
            conv TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (user, conv, seq)
        ) WITHOUT ROWID""",
        "CREATE INDEX mentions_message ON mentions (conv, seq)",
        "ALTER TABLE messages ADD COLUMN mentions TEXT",
        "CREATE INDEX messages_unread ON messages (conv, seq) WHERE target IS NULL AND deleted = 0",
        """CREATE TRIGGER messages_mentions AFTER DELETE ON messages
            WHEN old.mentions IS NOT NULL
            BEGIN DELETE FROM mentions WHERE conv = old.conv AND seq = old.seq; END""",
        """INSERT INTO markers (user, conv, seq)
            SELECT recipient, conv, max(seq) FROM messages
            WHERE receipt = 2 AND target IS NULL GROUP BY recipient, conv""",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION

_PENDING, _DELIVERED, _READ = 0, 1, 2

# Selected in StoredMessage's field order (``duplicate`` aside): see _message.
_COLUMNS = (
    "mid, conv, seq, ts, sender, kind, body, cid, room, recipient, target, edited, deleted,"
    " mentions"
)

# A row whose (sender, conv, cid) is already stored is skipped, and the short row count tells
# append_batch to look the originals up.
_INSERT_NEW = (
    f"INSERT INTO messages ({_COLUMNS}, receipt)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (sender, conv, cid) WHERE cid IS NOT NULL DO NOTHING"
)
_UPSERT_CONV = (
    "INSERT INTO convs (conv, last_seq, first_seq) VALUES (?, ?, 1)"
    " ON CONFLICT (conv) DO UPDATE SET last_seq = excluded.last_seq"
)
_BY_CID = f"SELECT {_COLUMNS} FROM messages WHERE sender = ? AND conv = ? AND cid = ?"
_BY_MID = f"SELECT {_COLUMNS} FROM messages WHERE mid = ?"
_LAST_SEQ = "SELECT last_seq FROM convs WHERE conv = ?"
_SINCE = f"SELECT {_COLUMNS} FROM messages WHERE conv = ? AND seq > ? ORDER BY seq LIMIT ?"
# History pages messages only: the changes are already applied to them.
_MESSAGES = f"SELECT {_COLUMNS} FROM messages WHERE conv = ? AND target IS NULL"
_AFTER = f"{_MESSAGES} AND seq > ? ORDER BY seq LIMIT ?"
_LATEST = f"{_MESSAGES} ORDER BY seq DESC LIMIT ?"
_BEFORE = f"{_MESSAGES} AND seq < ? ORDER BY seq DESC LIMIT ?"
_BETWEEN = f"{_MESSAGES} AND seq > ? AND seq < ? ORDER BY seq LIMIT ?"
_APPLY = "UPDATE messages SET body = ?, edited = ?, deleted = ?, mentions = ? WHERE mid = ?"
_MENTION = "INSERT INTO mentions (user, conv, seq) VALUES (?, ?, ?)"
_UNMENTION = "DELETE FROM mentions WHERE conv = ? AND seq = ?"
_MARKER = "SELECT seq FROM markers WHERE user = ? AND conv = ?"
_MARKERS = "SELECT conv, seq FROM markers WHERE user = ?"
_SET_MARKER = (
    "INSERT INTO markers (user, conv, seq) VALUES (?, ?, ?)"
    " ON CONFLICT (user, conv) DO UPDATE SET seq = max(seq, excluded.seq)"
)
# Each count reads at most its cap of rows (the user's own messages aside, which are stepped
# over): the counts of a conversation with thousands unread cost what 999 cost.
_UNREAD = (
    "SELECT count(*) FROM (SELECT 1 FROM messages INDEXED BY messages_unread"
    " WHERE conv = ? AND seq > ? AND target IS NULL AND deleted = 0 AND sender <> ? LIMIT ?)"
)
_MENTIONS = (
    "SELECT count(*) FROM (SELECT 1 FROM mentions WHERE user = ? AND conv = ? AND seq > ? LIMIT ?)"
)
_ERASE_EDITS = (
    "UPDATE messages SET body = x'', deleted = 1 WHERE target = ? AND conv = ? AND kind = 'edit'"
)
_KEYS_OF = "SELECT key, count(*) FROM reactions WHERE mid = ? GROUP BY key"
_HAS_REACTED = "SELECT 1 FROM reactions WHERE mid = ? AND key = ? AND user = ?"
_REACT = "INSERT INTO reactions (mid, key, user) VALUES (?, ?, ?)"
_UNREACT = "DELETE FROM reactions WHERE mid = ? AND key = ? AND user = ?"
_ERASE_REACTIONS = "DELETE FROM reactions WHERE mid = ?"
# A page's reactions, each key once per message with its count and whether the reader holds it,
# in the order keys were first chosen.
_REACTIONS_OF = (
    "SELECT mid, key, count(*), max(user = ?) FROM reactions WHERE mid IN ({})"
    " GROUP BY mid, key ORDER BY min(id)"
)
_PENDING_FOR = (
    f"SELECT {_COLUMNS} FROM messages WHERE recipient = ? AND receipt = {_PENDING}"
    " ORDER BY ts, seq, id LIMIT ?"
)
_PENDING_AFTER = (
    f"SELECT {_COLUMNS} FROM messages WHERE recipient = ? AND receipt = {_PENDING}"
    " AND (ts, seq, id) > (?, ?, ?) ORDER BY ts, seq, id LIMIT ?"
)
_PLACE_OF = "SELECT ts, seq, id FROM messages WHERE mid = ?"
_RECEIPT_OF = "SELECT sender, recipient, receipt FROM messages WHERE mid = ?"
_SET_RECEIPT = "UPDATE messages SET receipt = ? WHERE mid = ?"
_PRUNE_AGE = (
    "DELETE FROM messages WHERE id IN"
    " (SELECT id FROM messages WHERE ts < ? ORDER BY ts, id LIMIT ?)"
)
_OVER_COUNT = "SELECT conv, last_seq FROM convs WHERE last_seq - first_seq >= ? LIMIT ?"
_OLDEST_SEQS = "SELECT seq FROM messages WHERE conv = ? AND seq <= ? ORDER BY seq LIMIT ?"
_DELETE_UP_TO = "DELETE FROM messages WHERE conv = ? AND seq <= ?"
_SET_FIRST_SEQ = "UPDATE convs SET first_seq = ? WHERE conv = ?"


def _message(row: Any) -> StoredMessage:
    """The message a row of _COLUMNS holds."""
    mid, conv, seq, ts, sender, kind, body, cid, room, to, target, edited, deleted, named = row
    return StoredMessage(
        mid,
        conv,
        seq,
        ts,
        sender,
        kind,
        body,
        cid,
        room,
        to,
        False,
        target,
        edited,
        bool(deleted),
        mentions=tuple(named.split(" ")) if named else (),
    )


def _fields(msg: StoredMessage) -> tuple[object, ...]:
    """The message's stored columns, in _COLUMNS order."""
    return (
        msg.mid,
        msg.conv,
        msg.seq,
        msg.ts,
        msg.sender,
        msg.kind,
        msg.body,
        msg.cid,
        msg.room,
        msg.to,
        msg.target,
        msg.edited,
        int(msg.deleted),
        " ".join(msg.mentions) or None,
    )


def _mention_rows(stored: Sequence[StoredMessage]) -> list[tuple[str, str, int]]:
    """The ``mentions`` rows of newly stored messages."""
    return [(user, m.conv, m.seq) for m in stored if not m.duplicate for user in m.mentions]


class SqliteStore(Store):
    """The message store in the SQLite file at ``path`` (its directory is created).

    ``synchronous`` is "FULL" (default: every commit synced) or "NORMAL" (see the module
    docstring for what NORMAL risks). A write waits up to ``busy_timeout_ms`` for another
    connection's lock, then fails with StoreError.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> None:
        mode = synchronous.upper()
        if mode not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
        if busy_timeout_ms < 0:
            raise ValueError(f"busy_timeout_ms must not be negative, got {busy_timeout_ms}")
        self._path = os.fspath(path)
        self._seq_cache: dict[str, int] = {}
        # A delete was committed whose old pages the write-ahead log may still hold.
        self._erased = False
        self._closed = False
        try:
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self._path,
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=_STATEMENT_CACHE,
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the message store {self._path}: {exc}") from exc
        try:
            self._configure(mode, busy_timeout_ms)
            self._epoch = self._migrate()
        except BaseException as exc:
            self._closed = True
            self._conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open the message store {self._path}: {exc}") from exc
            raise

    def _configure(self, mode: str, busy_timeout_ms: int) -> None:
        conn = self._conn
        (journal,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if journal.lower() != "wal":
            raise StoreError(
                f"the message store {self._path} cannot use write-ahead logging (got"
                f" journal_mode={journal}); put it on a local file system"
            )
        conn.execute(f"PRAGMA synchronous = {mode}")
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT}")
        conn.execute(f"PRAGMA cache_size = -{_CACHE_SIZE_KIB}")
        conn.execute("PRAGMA temp_store = MEMORY")
        # A delete overwrites the erased body with zeros, in the table and on free pages.
        conn.execute("PRAGMA secure_delete = ON")

    def _migrate(self) -> str:
        """Bring the schema to SCHEMA_VERSION (creating it and the epoch in a new file)."""
        conn = self._conn
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the message store {self._path} was written by a newer actorim (schema"
                f" {version}, this one knows {SCHEMA_VERSION}); upgrade actorim or use a"
                " different file"
            )
        if version < SCHEMA_VERSION:
            with self._write("create the store schema") as conn:
                # Another process may have migrated while this one waited for the lock.
                (version,) = conn.execute("PRAGMA user_version").fetchone()
                for step in _MIGRATIONS[version:]:
                    for statement in step:
                        conn.execute(statement)
                if version == 0:
                    conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('epoch', ?)",
                        (secrets.token_hex(8),),
                    )
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        row = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        if row is None:
            raise StoreError(f"the message store {self._path} has no epoch; it is damaged")
        return str(row[0])

    # -- transactions -----------------------------------------------------------------------

    def _live(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"the message store {self._path} is closed")
        return self._conn

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises.

        Any failure also forgets the cached seqs, which are re-read from the database: the
        cache then never runs ahead of what was committed.
        """
        conn = self._live()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            self._seq_cache.clear()
            if conn.in_transaction:
                # SQLite may have rolled back already (e.g. after a disk-full error).
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"could not {what} in {self._path}: {exc}; nothing was stored"
                ) from exc
            raise

    @contextmanager
    def _read(self, what: str) -> Iterator[sqlite3.Connection]:
        conn = self._live()
        try:
            yield conn
        except sqlite3.Error as exc:
            raise StoreError(f"could not {what} from {self._path}: {exc}") from exc

    def _cached_last_seq(self, conn: sqlite3.Connection, conv: str) -> int:
        seq = self._seq_cache.get(conv)
        if seq is None:
            row = conn.execute(_LAST_SEQ, (conv,)).fetchone()
            seq = 0 if row is None else int(row[0])
            self._remember_seq(conv, seq)
        return seq

    def _remember_seq(self, conv: str, seq: int) -> None:
        cache = self._seq_cache
        if conv not in cache and len(cache) >= _SEQ_CACHE_MAX:
            del cache[next(iter(cache))]
        cache[conv] = seq

    # -- the Store interface ----------------------------------------------------------------

    def epoch(self) -> str:
        self._live()
        return self._epoch

    def append_batch(self, msgs: Sequence[NewMessage]) -> list[StoredMessage]:
        return self.write_batch(msgs, ())[0]

    def write_batch(
        self,
        msgs: Sequence[NewMessage],
        marks: Sequence[tuple[str, str, ReceiptStatus]],
    ) -> tuple[list[StoredMessage], list[Receipt | None]]:
        for msg in msgs:
            check_new_message(msg)
        check_statuses(marks)
        if not msgs and not marks:
            return [], []
        what = f"store {len(msgs)} messages and {len(marks)} receipts"
        with self._write(what) as conn:
            results, assigned = self._append_in(conn, msgs) if msgs else ([], {})
            receipts = self._mark_in(conn, marks)
        for conv, seq in assigned.items():
            self._remember_seq(conv, seq)
        if self._erased:
            self._checkpoint()
        return results, receipts

    def _checkpoint(self) -> None:
        """Copy the log into the database and truncate it, so that the pages a delete
        overwrote survive in neither file.

        A reader in another process (a backup, an operator's shell) can hold the log; the
        checkpoint is then tried again after the next write. It does not fail the write: the
        delete is committed, and its body is gone from every read already.
        """
        try:
            (busy, _, _) = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error:
            return
        self._erased = bool(busy)

    def _append_in(
        self, conn: sqlite3.Connection, msgs: Sequence[NewMessage]
    ) -> tuple[list[StoredMessage], dict[str, int]]:
        """Insert ``msgs`` within the open transaction; the results and the seqs given."""
        # Resends of messages stored by an earlier batch are rare: number the batch as if
        # there were none, and look the cids up only when the insert finds one.
        if any(msg.target is not None for msg in msgs):
            return self._append_one_by_one(conn, msgs)
        results, rows, assigned = self._number(conn, msgs, look_up_cids=False)
        conn.execute("SAVEPOINT append")
        if conn.executemany(_INSERT_NEW, rows).rowcount != len(rows):
            conn.execute("ROLLBACK TO append")
            results, rows, assigned = self._number(conn, msgs, look_up_cids=True)
            conn.executemany(_INSERT_NEW, rows)
        conn.execute("RELEASE append")
        conn.executemany(_MENTION, _mention_rows(results))
        conn.executemany(_UPSERT_CONV, assigned.items())
        return results, assigned

    def _append_one_by_one(
        self, conn: sqlite3.Connection, msgs: Sequence[NewMessage]
    ) -> tuple[list[StoredMessage], dict[str, int]]:
        """Insert ``msgs`` in order, each seeing the ones before it: a batch with changes,
        whose messages may be sent, edited and deleted within the batch."""
        results: list[StoredMessage] = []
        assigned: dict[str, int] = {}
        for msg in msgs:
            if msg.cid is not None:
                row = conn.execute(_BY_CID, (msg.sender, msg.conv, msg.cid)).fetchone()
                if row is not None:
                    results.append(replace(_message(row), duplicate=True))
                    continue
            target = None
            if msg.target is not None:
                row = conn.execute(_BY_MID, (msg.target,)).fetchone()
                target = None if row is None else _message(row)
                reason = change_refusal(msg, target)
                if reason is None and msg.kind in REACTION_KINDS:
                    keys = dict(conn.execute(_KEYS_OF, (msg.target,)).fetchall())
                    reason = reaction_refusal(msg, keys)
                    reacted = (msg.target, msg.body.decode(), msg.sender)
                    held = conn.execute(_HAS_REACTED, reacted).fetchone() is not None
                    if reason is None and held == (msg.kind == REACT):
                        last = assigned.get(msg.conv)
                        if last is None:
                            last = self._cached_last_seq(conn, msg.conv)
                        results.append(unchanged(msg, last))
                        continue
                    if reason is None:
                        conn.execute(_REACT if msg.kind == REACT else _UNREACT, reacted)
                        target = None  # the message itself is unchanged
                if reason is not None:
                    results.append(refused(msg, reason))
                    continue
            seq = assigned.get(msg.conv)
            if seq is None:
                seq = self._cached_last_seq(conn, msg.conv)
            assigned[msg.conv] = seq = seq + 1
            stored = StoredMessage(
                new_mid(msg.ts),
                msg.conv,
                seq,
                msg.ts,
                msg.sender,
                msg.kind,
                msg.body,
                msg.cid,
                msg.room,
                msg.to,
                target=msg.target,
                mentions=msg.mentions,
            )
            receipt = None if msg.to is None or msg.target is not None else _PENDING
            conn.execute(_INSERT_NEW, (*_fields(stored), receipt))
            conn.executemany(_MENTION, _mention_rows([stored]))
            if target is not None:
                now = applied(msg, target)
                named = " ".join(now.mentions) or None
                conn.execute(_APPLY, (now.body, now.edited, int(now.deleted), named, now.mid))
                if now.deleted:
                    conn.execute(_UNMENTION, (now.conv, now.seq))
                    conn.execute(_ERASE_EDITS, (now.mid, now.conv))
                    conn.execute(_ERASE_REACTIONS, (now.mid,))
                    self._erased = True
            results.append(stored)
        conn.executemany(_UPSERT_CONV, assigned.items())
        return results, assigned

    def _number(
        self, conn: sqlite3.Connection, msgs: Sequence[NewMessage], *, look_up_cids: bool
    ) -> tuple[list[StoredMessage], list[tuple[object, ...]], dict[str, int]]:
        """Give each new message its mid and seq; resolve resends to their originals.

        Returns the per-message results, the rows to insert and the last seq given per
        conversation. Resends within the batch are always resolved; resends of earlier
        batches only with ``look_up_cids``.
        """
        results: list[StoredMessage] = []
        rows: list[tuple[object, ...]] = []
        assigned: dict[str, int] = {}
        originals: dict[tuple[str, str, str], StoredMessage] = {}
        for msg in msgs:
            if msg.cid is not None:
                key = (msg.sender, msg.conv, msg.cid)
                original = originals.get(key)
                if original is None and look_up_cids:
                    row = conn.execute(_BY_CID, key).fetchone()
                    if row is not None:
                        original = originals[key] = _message(row)
                if original is not None:
                    results.append(replace(original, duplicate=True))
                    continue
            seq = assigned.get(msg.conv)
            if seq is None:
                seq = self._cached_last_seq(conn, msg.conv)
            seq += 1
            assigned[msg.conv] = seq
            mid = new_mid(msg.ts)
            stored = StoredMessage(
                mid,
                msg.conv,
                seq,
                msg.ts,
                msg.sender,
                msg.kind,
                msg.body,
                msg.cid,
                msg.room,
                msg.to,
                mentions=msg.mentions,
            )
            if msg.cid is not None:
                originals[(msg.sender, msg.conv, msg.cid)] = stored
            results.append(stored)
            receipt = None if msg.to is None else _PENDING
            rows.append((*_fields(stored), receipt))
        return results, rows, assigned

    def last_seq(self, conv: str) -> int:
        with self._read("read the last seq") as conn:
            return self._cached_last_seq(conn, conv)

    def since(
        self, conv: str, seq: int, *, limit: int, max_bytes: int | None = None
    ) -> tuple[list[StoredMessage], bool]:
        check_limit(limit)
        with self._read("read missed messages") as conn:
            # The cursor steps a row at a time: reading stops at the bounds, not at LIMIT.
            rows = conn.execute(_SINCE, (conv, seq, limit + 1))
            page, cut = bounded_page(
                (_message(row) for row in rows), limit=limit, max_bytes=max_bytes
            )
            rows.close()
            last = self._cached_last_seq(conn, conv)
        # Seqs are unique and were given without gaps, so the page is everything after `seq`
        # exactly when it holds as many messages as were ever given after it.
        return page, not cut and len(page) == max(0, last - seq)

    def history(
        self,
        conv: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int,
        reader: str | None = None,
    ) -> tuple[list[StoredMessage], bool]:
        check_limit(limit)
        args: tuple[str | int, ...]
        if after is not None and before is not None:
            sql, args, newest_first = _BETWEEN, (conv, after, before, limit + 1), False
        elif after is not None:
            sql, args, newest_first = _AFTER, (conv, after, limit + 1), False
        elif before is not None:
            sql, args, newest_first = _BEFORE, (conv, before, limit + 1), True
        else:
            sql, args, newest_first = _LATEST, (conv, limit + 1), True
        with self._read("read history") as conn:
            page = [_message(row) for row in conn.execute(sql, args)]
            more = len(page) > limit
            del page[limit:]
            page = self._with_reactions(conn, page, reader)
        if newest_first:
            page.reverse()
        return page, more

    @staticmethod
    def _with_reactions(
        conn: sqlite3.Connection, page: list[StoredMessage], reader: str | None
    ) -> list[StoredMessage]:
        """``page`` with each message's reactions as ``reader`` sees them."""
        if not page:
            return page
        found: dict[str, list[Reaction]] = {}
        sql = _REACTIONS_OF.format(", ".join("?" * len(page)))
        for mid, key, count, mine in conn.execute(sql, (reader, *(m.mid for m in page))):
            found.setdefault(mid, []).append(Reaction(key, count, bool(mine)))
        return [replace(m, reactions=tuple(found[m.mid])) if m.mid in found else m for m in page]

    def get(self, mid: str) -> StoredMessage | None:
        with self._read("read a message") as conn:
            row = conn.execute(_BY_MID, (mid,)).fetchone()
        return None if row is None else _message(row)

    def pending_for(
        self, user: str, *, limit: int, after: str | None = None
    ) -> list[StoredMessage]:
        check_limit(limit)
        with self._read("read pending messages") as conn:
            if after is None:
                rows = conn.execute(_PENDING_FOR, (user, limit))
            else:
                place = conn.execute(_PLACE_OF, (after,)).fetchone()
                # A cursor message that retention removed: resume at its millisecond.
                ts, seq, row_id = place if place is not None else (mid_ms(after), -1, -1)
                rows = conn.execute(_PENDING_AFTER, (user, ts, seq, row_id, limit))
            return [_message(row) for row in rows]

    def mark(self, mid: str, user: str, status: ReceiptStatus) -> Receipt | None:
        return self.mark_batch([(mid, user, status)])[0]

    def mark_batch(self, marks: Sequence[tuple[str, str, ReceiptStatus]]) -> list[Receipt | None]:
        return self.write_batch((), marks)[1]

    def _mark_in(
        self, conn: sqlite3.Connection, marks: Sequence[tuple[str, str, ReceiptStatus]]
    ) -> list[Receipt | None]:
        """Record ``marks`` within the open transaction; the receipts to send, in order."""
        receipts: list[Receipt | None] = []
        for mid, user, status in marks:
            level = RECEIPT_LEVELS[status]
            row = conn.execute(_RECEIPT_OF, (mid,)).fetchone()
            if row is None or row[1] != user or row[2] is None or row[2] >= level:
                receipts.append(None)
                continue
            conn.execute(_SET_RECEIPT, (level, mid))
            receipts.append(Receipt(mid, row[0], user, status))
        return receipts

    def move_marker(self, user: str, conv: str, seq: int, *, cap: int) -> tuple[Counts, bool]:
        check_cap(cap)
        with self._write("move a read marker") as conn:
            row = conn.execute(_MARKER, (user, conv)).fetchone()
            old = 0 if row is None else int(row[0])
            new = advanced(old, seq, self._cached_last_seq(conn, conv))
            if new != old:
                conn.execute(_SET_MARKER, (user, conv, new))
            counts = self._counts_in(conn, user, conv, new, cap)
        return counts, new != old

    def counts(self, user: str, convs: Sequence[str], *, cap: int) -> dict[str, Counts]:
        check_cap(cap)
        with self._read("read unread counts") as conn:
            # All the user's markers in one read: a user has a few thousand at most.
            markers = dict(conn.execute(_MARKERS, (user,)).fetchall())
            return {
                conv: self._counts_in(conn, user, conv, markers.get(conv, 0), cap) for conv in convs
            }

    def _counts_in(
        self, conn: sqlite3.Connection, user: str, conv: str, marker: int, cap: int
    ) -> Counts:
        last = self._cached_last_seq(conn, conv)
        if last <= marker:
            return Counts(last, marker, 0, 0)
        (unread,) = conn.execute(_UNREAD, (conv, marker, user, cap)).fetchone()
        (mentions,) = conn.execute(_MENTIONS, (user, conv, marker, cap)).fetchone()
        return Counts(last, marker, unread, mentions)

    def prune(
        self,
        *,
        now_ms: int,
        max_count: int = DEFAULT_MAX_COUNT,
        max_age_ms: int = DEFAULT_MAX_AGE_MS,
        budget: int = DEFAULT_PRUNE_BUDGET,
    ) -> int:
        check_prune(max_count=max_count, max_age_ms=max_age_ms, budget=budget)
        with self._write("prune old messages") as conn:
            deleted = conn.execute(_PRUNE_AGE, (now_ms - max_age_ms, budget)).rowcount
            left = budget - deleted
            if left > 0:
                for conv, last in conn.execute(_OVER_COUNT, (max_count, left)).fetchall():
                    if left == 0:
                        break
                    cutoff = last - max_count  # the newest seq beyond the count
                    seqs = [s for (s,) in conn.execute(_OLDEST_SEQS, (conv, cutoff, left))]
                    if seqs:
                        conn.execute(_DELETE_UP_TO, (conv, seqs[-1]))
                    first = seqs[-1] + 1 if len(seqs) == left else cutoff + 1
                    conn.execute(_SET_FIRST_SEQ, (first, conv))
                    left -= len(seqs)
        return budget - left

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._seq_cache.clear()
        try:
            self._conn.close()
        except sqlite3.Error as exc:
            raise StoreError(f"could not close the message store {self._path}: {exc}") from exc
