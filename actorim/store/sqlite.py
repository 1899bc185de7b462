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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

from actorim.domain.moderation import AuditEntry, Standing
from actorim.domain.rooms import JoinOutcome, RoomInfo
from actorim.store import sqlite_moderation as moderation
from actorim.store import sqlite_outbox as outbox
from actorim.store import sqlite_rooms as rooms
from actorim.store.base import (
    DEFAULT_MAX_AGE_MS,
    DEFAULT_MAX_COUNT,
    DEFAULT_PRUNE_BUDGET,
    REACT,
    REACTION_KINDS,
    RECEIPT_LEVELS,
    THREAD_USERS_SHOWN,
    Counts,
    NewMessage,
    OutboxEntry,
    OutboxFor,
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
    reply_refusal,
    thread_of,
    thread_summary,
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

SCHEMA_VERSION = 11

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
    # Version 5: the webhook outbox and its dead-letter queue (actorim/store/sqlite_outbox.py).
    # One row per event and endpoint, written in the transaction of the message it tells of;
    # ``dead`` is NULL while the entry is live, else when it was given up (ms).
    (
        """CREATE TABLE webhook_outbox (
            key TEXT PRIMARY KEY,
            event TEXT NOT NULL,
            type TEXT NOT NULL,
            ts INTEGER NOT NULL,
            endpoint TEXT NOT NULL,
            data BLOB NOT NULL,
            attempts INTEGER NOT NULL,
            due INTEGER NOT NULL,
            error TEXT NOT NULL,
            dead INTEGER
        ) WITHOUT ROWID""",
        "CREATE INDEX webhook_outbox_due ON webhook_outbox (endpoint, due) WHERE dead IS NULL",
        "CREATE INDEX webhook_outbox_dead ON webhook_outbox (key) WHERE dead IS NOT NULL",
    ),
)

# What a reply leaving its root's summary (deleted, or removed by retention) does to it: one
# reply fewer from its author, and the latest reply still counted gives the time.
_UNCOUNT_REPLY = """
    UPDATE thread_authors SET n = n - 1 WHERE root = old.thread AND user = old.sender;
    DELETE FROM thread_authors WHERE root = old.thread AND user = old.sender AND n = 0;
    UPDATE threads SET count = count - 1, last_ts = coalesce((SELECT ts FROM messages
        WHERE thread = old.thread AND deleted = 0 ORDER BY seq DESC LIMIT 1), last_ts)
        WHERE root = old.thread;
    DELETE FROM threads WHERE root = old.thread AND count = 0;
"""

# Version 6: replies and threads. A reply is a message row with ``reply_to`` (what it answers)
# and ``thread`` (its root's mid), paged by the thread index. A root's summary is kept by the
# triggers as replies come and go: ``threads`` counts the replies neither deleted nor pruned,
# ``thread_authors`` each author's share of them (``id`` the order authors joined). A root that
# retention removes takes its summary with it. Existing rows are neither replies nor roots with
# replies, which is what the defaults say.
_THREADS_STEP: tuple[str, ...] = (
    "ALTER TABLE messages ADD COLUMN reply_to TEXT",
    "ALTER TABLE messages ADD COLUMN thread TEXT",
    "CREATE INDEX messages_thread ON messages (thread, seq) WHERE thread IS NOT NULL",
    """CREATE TABLE threads (
        root TEXT PRIMARY KEY,
        count INTEGER NOT NULL,
        last_ts INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE thread_authors (
        id INTEGER PRIMARY KEY,
        root TEXT NOT NULL,
        user TEXT NOT NULL,
        n INTEGER NOT NULL,
        UNIQUE (root, user)
    )""",
    """CREATE TRIGGER messages_reply_added AFTER INSERT ON messages
        WHEN new.thread IS NOT NULL AND EXISTS (SELECT 1 FROM messages WHERE mid = new.thread)
        BEGIN
            INSERT INTO threads (root, count, last_ts) VALUES (new.thread, 1, new.ts)
                ON CONFLICT (root) DO UPDATE SET count = count + 1, last_ts = excluded.last_ts;
            INSERT INTO thread_authors (root, user, n) VALUES (new.thread, new.sender, 1)
                ON CONFLICT (root, user) DO UPDATE SET n = n + 1;
        END""",
    f"""CREATE TRIGGER messages_reply_deleted AFTER UPDATE OF deleted ON messages
        WHEN new.deleted = 1 AND old.deleted = 0 AND old.thread IS NOT NULL
        BEGIN {_UNCOUNT_REPLY} END""",
    f"""CREATE TRIGGER messages_reply_pruned AFTER DELETE ON messages
        WHEN old.thread IS NOT NULL AND old.deleted = 0
        BEGIN {_UNCOUNT_REPLY} END""",
    """CREATE TRIGGER messages_root_pruned AFTER DELETE ON messages
        WHEN old.thread IS NULL AND old.target IS NULL
        BEGIN
            DELETE FROM threads WHERE root = old.mid;
            DELETE FROM thread_authors WHERE root = old.mid;
        END""",
)
# Version 8: read markers and mentions. A user's marker in a conversation is a row of
# ``markers``; a message's mentioned users are its ``mentions`` column (ids joined by
# spaces) and a row each in ``mentions``, which counts them: a delete erases both, the
# trigger takes the rows when retention removes the message. Unread counts read the
# messages that can count through ``messages_unread``. A direct message the recipient
# had read (receipt 2) sets their marker to the newest such message of each conversation,
# so what was read before the upgrade is not unread after it; messages stored before it
# count as unread (after the marker) but mention nobody.
_MARKERS_STEP: tuple[str, ...] = (
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
)

# Version 6 is the threads step, version 8 the markers step above. Version 7: lasting room
# membership, room metadata (title, topic, public) and each user's direct-conversation
# partners, filled from the direct messages already stored (actorim/store/sqlite_rooms.py).
# Version 9: each sender's live messages per conversation, so that erasing a user's messages
# reads only theirs (``authored``).
_AUTHORED_STEP: tuple[str, ...] = (
    "CREATE INDEX messages_authored ON messages (conv, sender, seq)"
    " WHERE target IS NULL AND deleted = 0",
)

_MIGRATIONS += (_THREADS_STEP, rooms.MIGRATION, _MARKERS_STEP, _AUTHORED_STEP)

# Version 10: room roles, bans, mutes and audit logs (actorim/store/sqlite_moderation.py).
# Version 11: the authored index by sender first, so that it also finds the conversations where
# a user has live messages (``authored_conversations``: a room they left too); one conversation's
# messages of a sender are read through it as before. Rebuilt from the messages already stored.
_AUTHORED_BY_SENDER_STEP: tuple[str, ...] = (
    "DROP INDEX messages_authored",
    "CREATE INDEX messages_authored ON messages (sender, conv, seq)"
    " WHERE target IS NULL AND deleted = 0",
)
_MIGRATIONS += (moderation.MIGRATION, _AUTHORED_BY_SENDER_STEP)
assert len(_MIGRATIONS) == SCHEMA_VERSION

_PENDING, _DELIVERED, _READ = 0, 1, 2

# Selected in StoredMessage's field order (``duplicate`` aside): see _message.
_COLUMNS = (
    "mid, conv, seq, ts, sender, kind, body, cid, room, recipient, target, edited, deleted,"
    " reply_to, thread, mentions"
)

# A row whose (sender, conv, cid) is already stored is skipped, and the short row count tells
# append_batch to look the originals up.
_INSERT_NEW = (
    f"INSERT INTO messages ({_COLUMNS}, receipt)"
    f" VALUES ({', '.join('?' * (_COLUMNS.count(',') + 2))})"
    " ON CONFLICT (sender, conv, cid) WHERE cid IS NOT NULL DO NOTHING"
)
_UPSERT_CONV = (
    "INSERT INTO convs (conv, last_seq, first_seq) VALUES (?, ?, 1)"
    " ON CONFLICT (conv) DO UPDATE SET last_seq = excluded.last_seq"
)
_BY_CID = f"SELECT {_COLUMNS} FROM messages WHERE sender = ? AND conv = ? AND cid = ?"
_BY_MID = f"SELECT {_COLUMNS} FROM messages WHERE mid = ?"
_AUTHORED = (
    f"SELECT {_COLUMNS} FROM messages INDEXED BY messages_authored"
    " WHERE conv = ? AND sender = ? AND target IS NULL AND deleted = 0 ORDER BY seq LIMIT ?"
)
# A skip scan of the authored index: each step is one seek to the sender's next conversation,
# so reading k conversations costs k seeks however many messages each holds.
_AUTHORED_CONVS = """
    WITH RECURSIVE found (conv) AS (
        SELECT min(conv) FROM messages INDEXED BY messages_authored
            WHERE sender = ?1 AND target IS NULL AND deleted = 0
        UNION ALL
        SELECT (SELECT min(conv) FROM messages INDEXED BY messages_authored
            WHERE sender = ?1 AND target IS NULL AND deleted = 0 AND conv > found.conv)
        FROM found WHERE found.conv IS NOT NULL
    )
    SELECT conv FROM found WHERE conv IS NOT NULL LIMIT ?2
"""
_LAST_SEQ = "SELECT last_seq FROM convs WHERE conv = ?"
_SINCE = f"SELECT {_COLUMNS} FROM messages WHERE conv = ? AND seq > ? ORDER BY seq LIMIT ?"


def _pages(rows: str) -> tuple[str, str, str, str]:
    """The four page queries (after, latest, before, between) over the messages ``rows``
    selects, by one ``?``: a conversation's or a thread's."""
    return (
        f"{rows} AND seq > ? ORDER BY seq LIMIT ?",
        f"{rows} ORDER BY seq DESC LIMIT ?",
        f"{rows} AND seq < ? ORDER BY seq DESC LIMIT ?",
        f"{rows} AND seq > ? AND seq < ? ORDER BY seq LIMIT ?",
    )


# History pages messages only: the changes are already applied to them.
_HISTORY = _pages(f"SELECT {_COLUMNS} FROM messages WHERE conv = ? AND target IS NULL")
_THREAD = _pages(f"SELECT {_COLUMNS} FROM messages WHERE thread = ?")
# The summaries of a page's roots: each thread's count and time, then its first authors (in
# the order they joined) with how many there are.
_THREADS_OF = "SELECT root, count, last_ts FROM threads WHERE root IN ({})"
_AUTHORS_OF = (
    "SELECT root, user, total FROM (SELECT root, user, row_number() OVER byroot AS nth,"
    " count(*) OVER (PARTITION BY root) AS total FROM thread_authors WHERE root IN ({})"
    " WINDOW byroot AS (PARTITION BY root ORDER BY id)) WHERE nth <= ? ORDER BY root, nth"
)
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
    mid, conv, seq, ts, sender, kind, body, cid, room, to, target, edited, deleted = row[:13]
    return StoredMessage(
        *(mid, conv, seq, ts, sender, kind, body, cid, room, to, False, target, edited),
        bool(deleted),
        reply_to=row[13],
        thread=row[14],
        mentions=tuple(row[15].split(" ")) if row[15] else (),
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
        msg.reply_to,
        msg.thread,
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
        outbox: OutboxFor | None = None,
    ) -> None:
        mode = synchronous.upper()
        self._outbox_for = outbox
        if mode not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
        if busy_timeout_ms < 0:
            raise ValueError(f"busy_timeout_ms must not be negative, got {busy_timeout_ms}")
        self._path = os.fspath(path)
        self._seq_cache: dict[str, int] = {}
        # Nesting of ``atomically`` blocks: while above 0, ``_write`` joins their transaction.
        self._atomic_depth = 0
        # A delete was committed whose old pages the write-ahead log may still hold.
        self._erased = False
        self._closed = False
        # Inside ``together``: each write is a savepoint of the batch's one transaction.
        self._batching = False
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
        if self._atomic_depth:
            yield conn  # inside ``atomically``: its transaction commits or rolls back
            return
        # In a batch whose transaction is still open (SQLite ends it itself after some
        # errors), the write is a savepoint of it, committed with the batch.
        nested = self._batching and conn.in_transaction
        try:
            conn.execute("SAVEPOINT write" if nested else "BEGIN IMMEDIATE")
            yield conn
            conn.execute("RELEASE write" if nested else "COMMIT")
        except BaseException as exc:
            self._seq_cache.clear()
            if conn.in_transaction:
                # SQLite may have rolled back already (e.g. after a disk-full error).
                with suppress(sqlite3.Error):
                    if nested:
                        conn.execute("ROLLBACK TO write")
                        conn.execute("RELEASE write")
                    else:
                        conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"could not {what} in {self._path}: {exc}; nothing was stored"
                ) from exc
            raise

    @contextmanager
    def atomically(self) -> Iterator[None]:
        """One transaction for every write of the block (see ``Store.atomically``); inside a
        batch (``together``), one savepoint of the batch's transaction, undone alone if the
        block raises and committed with the batch."""
        if self._atomic_depth:
            self._atomic_depth += 1
            try:
                yield
            finally:
                self._atomic_depth -= 1
            return
        with self._write("make one change"):
            self._atomic_depth = 1
            try:
                yield
            finally:
                self._atomic_depth = 0

    @contextmanager
    def together(self) -> Iterator[None]:
        """Run the block's calls in one transaction, committed (and synced) once at its end;
        see ``Batching``. Raises StoreError, with nothing of the block stored, if that commit
        fails."""
        conn = self._live()
        if self._batching:
            yield
            return
        conn.execute("BEGIN IMMEDIATE")
        self._batching = True
        try:
            yield
            if conn.in_transaction:
                conn.execute("COMMIT")
        except BaseException as exc:
            self._seq_cache.clear()
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"could not commit a batch of writes in {self._path}: {exc}; nothing of it "
                    "was stored"
                ) from exc
            raise
        finally:
            self._batching = False
        if self._erased:
            self._checkpoint()

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
            if self._outbox_for is not None:
                made = (r for r in results if r.refused is None and not r.duplicate)
                outbox.add(conn, [e for r in made for e in self._outbox_for(r)])
            pairs = {(m.sender, m.to) for m in msgs if m.to is not None and m.target is None}
            if pairs:
                rooms.met(conn, pairs)
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
        if any(msg.target is not None or msg.reply_to is not None for msg in msgs):
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
        """Insert ``msgs`` in order, each seeing the ones before it: a batch with changes or
        replies, whose messages may be sent, answered, edited and deleted within the batch."""
        results: list[StoredMessage] = []
        assigned: dict[str, int] = {}
        for msg in msgs:
            if msg.cid is not None:
                row = conn.execute(_BY_CID, (msg.sender, msg.conv, msg.cid)).fetchone()
                if row is not None:
                    results.append(replace(_message(row), duplicate=True))
                    continue
            target = None
            thread, reason = self._thread_in(conn, msg)
            if reason is not None:
                results.append(refused(msg, reason))
                continue
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
                reply_to=msg.reply_to,
                thread=thread,
                mentions=msg.mentions,
            )
            receipt = None if msg.to is None or msg.target is not None else _PENDING
            conn.execute(_INSERT_NEW, (*_fields(stored), receipt))
            conn.executemany(_MENTION, _mention_rows([stored]))
            if target is not None:
                self._apply(conn, applied(msg, target))
            results.append(stored)
        conn.executemany(_UPSERT_CONV, assigned.items())
        return results, assigned

    def _apply(self, conn: sqlite3.Connection, now: StoredMessage) -> None:
        """Write a message as an edit or delete left it; a delete erases its mentions, the
        bodies of its earlier edits and its reactions."""
        named = " ".join(now.mentions) or None
        conn.execute(_APPLY, (now.body, now.edited, int(now.deleted), named, now.mid))
        if now.deleted:
            conn.execute(_UNMENTION, (now.conv, now.seq))
            conn.execute(_ERASE_EDITS, (now.mid, now.conv))
            conn.execute(_ERASE_REACTIONS, (now.mid,))
            self._erased = True

    @staticmethod
    def _thread_in(conn: sqlite3.Connection, msg: NewMessage) -> tuple[str | None, str | None]:
        """The thread a reply joins, or why the store refuses it: (None, None) for a message
        that answers none."""
        if msg.reply_to is None:
            return None, None
        row = conn.execute(_BY_MID, (msg.reply_to,)).fetchone()
        parent = None if row is None else _message(row)
        reason = reply_refusal(msg, parent)
        if reason is not None or parent is None:
            return None, reason
        return thread_of(parent), None

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
        with self._read("read history") as conn:
            return self._page(
                conn, _HISTORY, conv, before=before, after=after, limit=limit, reader=reader
            )

    def _page(
        self,
        conn: sqlite3.Connection,
        queries: tuple[str, str, str, str],
        key: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
        reader: str | None,
    ) -> tuple[list[StoredMessage], bool]:
        """A page of the messages ``queries`` select by ``key`` (see ``Store.history``), each
        as ``reader`` sees it."""
        after_sql, latest_sql, before_sql, between_sql = queries
        args: tuple[str | int, ...]
        if after is not None and before is not None:
            sql, args, newest_first = between_sql, (key, after, before, limit + 1), False
        elif after is not None:
            sql, args, newest_first = after_sql, (key, after, limit + 1), False
        elif before is not None:
            sql, args, newest_first = before_sql, (key, before, limit + 1), True
        else:
            sql, args, newest_first = latest_sql, (key, limit + 1), True
        page = [_message(row) for row in conn.execute(sql, args)]
        more = len(page) > limit
        del page[limit:]
        page = self._with_threads(conn, self._with_reactions(conn, page, reader))
        if newest_first:
            page.reverse()
        return page, more

    def thread(
        self,
        root: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int,
        reader: str | None = None,
    ) -> tuple[StoredMessage | None, list[StoredMessage], bool]:
        check_limit(limit)
        with self._read("read a thread") as conn:
            row = conn.execute(_BY_MID, (root,)).fetchone()
            found = None if row is None else _message(row)
            if found is None or found.target is not None or found.thread is not None:
                return None, [], False
            [found] = self._with_threads(conn, self._with_reactions(conn, [found], reader))
            page, more = self._page(
                conn, _THREAD, root, before=before, after=after, limit=limit, reader=reader
            )
        return found, page, more

    @staticmethod
    def _with_threads(conn: sqlite3.Connection, page: list[StoredMessage]) -> list[StoredMessage]:
        """``page`` with each root's thread summary."""
        roots = [m.mid for m in page if m.thread is None]
        if not roots:
            return page
        marks = ", ".join("?" * len(roots))
        threads = {
            root: (count, last_ts)
            for root, count, last_ts in conn.execute(_THREADS_OF.format(marks), roots)
        }
        if not threads:
            return page
        authors: dict[str, tuple[list[str], int]] = {}
        sql = _AUTHORS_OF.format(marks)
        for root, user, total in conn.execute(sql, (*roots, THREAD_USERS_SHOWN)):
            authors.setdefault(root, ([], total))[0].append(user)
        summaries = {}
        for root, (count, last_ts) in threads.items():
            users, total = authors.get(root, ([], 0))
            summary = thread_summary(count, last_ts, users)
            if summary is not None:
                summaries[root] = replace(summary, participants=total)
        return [
            replace(m, thread_summary=summaries[m.mid]) if m.mid in summaries else m for m in page
        ]

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
            return None if row is None else self._with_threads(conn, [_message(row)])[0]

    def authored(self, conv: str, sender: str, *, limit: int) -> list[StoredMessage]:
        check_limit(limit)
        with self._read(f"read the messages of {sender!r}") as conn:
            return [_message(row) for row in conn.execute(_AUTHORED, (conv, sender, limit))]

    def authored_conversations(self, user: str, *, limit: int) -> list[str]:
        check_limit(limit)
        with self._read(f"read where {user!r} wrote") as conn:
            return [conv for (conv,) in conn.execute(_AUTHORED_CONVS, (user, limit))]

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

    # -- the webhook outbox (sqlite_outbox.py) -------------------------------------------------

    def outbox_add(self, entries: Sequence[OutboxEntry]) -> None:
        with self._write(f"add {len(entries)} webhook events") as conn:
            outbox.add(conn, entries)

    def outbox_due(
        self, endpoint: str, *, now_ms: int, limit: int, lease_ms: int
    ) -> list[OutboxEntry]:
        check_limit(limit)
        with self._write("claim webhook deliveries") as conn:
            return outbox.due(conn, endpoint, now_ms=now_ms, limit=limit, lease_ms=lease_ms)

    def outbox_done(self, entry: OutboxEntry) -> None:
        with self._write("forget a delivered webhook event") as conn:
            outbox.done(conn, entry.key)

    def outbox_retry(self, entry: OutboxEntry) -> None:
        with self._write("reschedule a webhook delivery") as conn:
            outbox.keep(conn, entry)

    def outbox_bury(self, entry: OutboxEntry) -> None:
        with self._write("move a webhook event to the dead-letter queue") as conn:
            outbox.keep(conn, entry)

    def dead_list(self, *, limit: int, after: str | None = None) -> list[OutboxEntry]:
        check_limit(limit)
        with self._read("list the dead-letter queue") as conn:
            return outbox.dead(conn, limit=limit, after=after)

    def dead_retry(self, key: str, *, now_ms: int) -> bool:
        with self._write("retry a dead webhook event") as conn:
            return outbox.revive(conn, key, now_ms=now_ms)

    def dead_delete(self, key: str) -> bool:
        with self._write("delete a dead webhook event") as conn:
            return outbox.delete_dead(conn, key)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._seq_cache.clear()
        try:
            self._conn.close()
        except sqlite3.Error as exc:
            raise StoreError(f"could not close the message store {self._path}: {exc}") from exc

    # -- membership and rooms (actorim.store.sqlite_rooms) ----------------------------------

    def join_room(self, user: str, room: str, *, max_rooms: int) -> JoinOutcome:
        with self._write(f"add {user!r} to room {room!r}") as conn:
            return rooms.join_room(conn, user, room, max_rooms)

    def leave_room(self, user: str, room: str) -> bool:
        with self._write(f"remove {user!r} from room {room!r}") as conn:
            return rooms.leave_room(conn, user, room)

    def rooms_of(self, user: str) -> list[str]:
        with self._read(f"read the rooms of {user!r}") as conn:
            return rooms.rooms_of(conn, user)

    def members_of(
        self, room: str, *, after: str | None = None, limit: int
    ) -> tuple[list[str], bool]:
        check_limit(limit)
        with self._read(f"read the members of {room!r}") as conn:
            return rooms.members_of(conn, room, after, limit)

    def room_info(self, names: Sequence[str]) -> dict[str, RoomInfo]:
        with self._read("read rooms") as conn:
            return rooms.room_info(conn, names)

    def update_room(
        self, user: str, room: str, *, title: str | None = None, topic: str | None = None
    ) -> RoomInfo | None:
        with self._write(f"update room {room!r}") as conn:
            return rooms.update_room(conn, user, room, title, topic)

    def set_public(self, room: str, public: bool) -> None:
        with self._write(f"update room {room!r}") as conn:
            rooms.set_public(conn, room, public)

    def create_room(
        self, room: str, *, title: str = "", topic: str = "", public: bool = True
    ) -> RoomInfo | None:
        with self._write(f"create room {room!r}") as conn:
            return rooms.create_room(conn, room, title, topic, public)

    def set_room(
        self,
        room: str,
        *,
        title: str | None = None,
        topic: str | None = None,
        public: bool | None = None,
    ) -> RoomInfo | None:
        with self._write(f"update room {room!r}") as conn:
            return rooms.set_room(conn, room, title, topic, public)

    def delete_room(self, room: str) -> list[str] | None:
        with self._write(f"delete room {room!r}") as conn:
            return rooms.delete_room(conn, room)

    def directory(
        self,
        *,
        query: str | None = None,
        after: str | None = None,
        limit: int,
        allowed: Callable[[str], bool] = lambda _room: True,
    ) -> tuple[list[RoomInfo], bool]:
        check_limit(limit)
        with self._read("read the room directory") as conn:
            return rooms.directory(conn, query, after, limit, allowed)

    # -- moderation (actorim/store/sqlite_moderation.py) ---------------------------------------

    def standings(self, room: str, users: Sequence[str]) -> dict[str, Standing]:
        with self._read(f"read standings in room {room!r}") as conn:
            return moderation.standings(conn, room, users)

    def mutes_of(self, user: str) -> dict[str, int]:
        with self._read(f"read the mutes of {user!r}") as conn:
            return moderation.mutes_of(conn, user)

    def moderate(
        self,
        room: str,
        user: str,
        standing: Standing,
        entry: AuditEntry,
        events: Sequence[OutboxEntry] = (),
    ) -> None:
        with self._write(f"{entry.action} {user!r} in room {room!r}") as conn:
            moderation.moderate(conn, room, user, standing, entry)
            if events:
                outbox.add(conn, events)

    def audit(self, room: str, *, before: str | None = None, limit: int) -> list[AuditEntry]:
        check_limit(limit)
        with self._read(f"read the audit log of room {room!r}") as conn:
            return moderation.audit(conn, room, before, limit)

    def dm_partners(self, user: str) -> list[str]:
        with self._read(f"read the conversations of {user!r}") as conn:
            return rooms.dm_partners(conn, user)
