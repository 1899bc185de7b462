"""The SQLite store's lasting membership, room metadata and direct-conversation partners.

Functions over an open connection, each run by ``SqliteStore`` inside one of its transactions
(writes) or reads; the tables are schema version 5 (``actorim.store.sqlite``): ``rooms``
(title, topic, public, and the member count kept beside them so a directory page never
counts), ``members`` (one row per room and user, with an index by user) and ``dm_partners``
(both directions of every pair that exchanged a direct message).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from actorim.domain.rooms import JoinOutcome, RoomInfo, matches

__all__ = [
    "MIGRATION",
    "create_room",
    "delete_room",
    "directory",
    "dm_partners",
    "join_room",
    "leave_room",
    "members_of",
    "met",
    "room_info",
    "rooms_of",
    "set_public",
    "set_room",
    "update_room",
]

# Schema version 5, self-contained: it creates its tables and fills dm_partners from the
# direct messages already stored.
MIGRATION: tuple[str, ...] = (
    """CREATE TABLE rooms (
        room TEXT PRIMARY KEY,
        title TEXT NOT NULL DEFAULT '',
        topic TEXT NOT NULL DEFAULT '',
        public INTEGER NOT NULL DEFAULT 1,
        members INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID""",
    """CREATE TABLE members (
        room TEXT NOT NULL,
        user TEXT NOT NULL,
        PRIMARY KEY (room, user)
    ) WITHOUT ROWID""",
    "CREATE INDEX members_user ON members (user, room)",
    """CREATE TABLE dm_partners (
        user TEXT NOT NULL,
        other TEXT NOT NULL,
        PRIMARY KEY (user, other)
    ) WITHOUT ROWID""",
    """INSERT OR IGNORE INTO dm_partners (user, other)
        SELECT sender, recipient FROM messages WHERE recipient IS NOT NULL AND target IS NULL
        UNION SELECT recipient, sender FROM messages WHERE recipient IS NOT NULL
            AND target IS NULL""",
)

_INFO = "SELECT room, title, topic, public, members FROM rooms"

# Rows read per step of a directory page: most rooms match, so a page is one or two steps.
_DIRECTORY_STEP = 200


def _info(row: tuple[str, str, str, int, int]) -> RoomInfo:
    return RoomInfo(row[0], row[1], row[2], bool(row[3]), row[4])


_IS_MEMBER = "SELECT 1 FROM members WHERE room = ? AND user = ?"


def join_room(conn: sqlite3.Connection, user: str, room: str, max_rooms: int) -> JoinOutcome:
    if conn.execute(_IS_MEMBER, (room, user)).fetchone():
        return "member"
    (count,) = conn.execute("SELECT count(*) FROM members WHERE user = ?", (user,)).fetchone()
    if count >= max_rooms:
        return "full"
    conn.execute("INSERT INTO members (room, user) VALUES (?, ?)", (room, user))
    conn.execute(
        "INSERT INTO rooms (room, members) VALUES (?, 1)"
        " ON CONFLICT (room) DO UPDATE SET members = members + 1",
        (room,),
    )
    return "joined"


def leave_room(conn: sqlite3.Connection, user: str, room: str) -> bool:
    gone = conn.execute("DELETE FROM members WHERE room = ? AND user = ?", (room, user)).rowcount
    if gone:
        conn.execute("UPDATE rooms SET members = members - 1 WHERE room = ?", (room,))
    return bool(gone)


def rooms_of(conn: sqlite3.Connection, user: str) -> list[str]:
    rows = conn.execute("SELECT room FROM members WHERE user = ? ORDER BY room", (user,))
    return [row[0] for row in rows]


def members_of(
    conn: sqlite3.Connection, room: str, after: str | None, limit: int
) -> tuple[list[str], bool]:
    rows = conn.execute(
        "SELECT user FROM members WHERE room = ? AND user > ? ORDER BY user LIMIT ?",
        (room, "" if after is None else after, limit + 1),
    ).fetchall()
    return [row[0] for row in rows[:limit]], len(rows) > limit


def room_info(conn: sqlite3.Connection, rooms: Sequence[str]) -> dict[str, RoomInfo]:
    found: dict[str, RoomInfo] = {}
    for start in range(0, len(rooms), 500):
        chunk = rooms[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(f"{_INFO} WHERE room IN ({marks})", tuple(chunk)):
            found[row[0]] = _info(row)
    return found


def update_room(
    conn: sqlite3.Connection, user: str, room: str, title: str | None, topic: str | None
) -> RoomInfo | None:
    if not conn.execute(
        "SELECT 1 FROM members WHERE room = ? AND user = ?", (room, user)
    ).fetchone():
        return None
    conn.execute(
        "UPDATE rooms SET title = coalesce(?, title), topic = coalesce(?, topic) WHERE room = ?",
        (title, topic, room),
    )
    return _info(conn.execute(f"{_INFO} WHERE room = ?", (room,)).fetchone())


def set_public(conn: sqlite3.Connection, room: str, public: bool) -> None:
    conn.execute(
        "INSERT INTO rooms (room, public) VALUES (?, ?)"
        " ON CONFLICT (room) DO UPDATE SET public = excluded.public",
        (room, int(public)),
    )


def create_room(
    conn: sqlite3.Connection, room: str, title: str, topic: str, public: bool
) -> RoomInfo | None:
    made = conn.execute(
        "INSERT INTO rooms (room, title, topic, public) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (room) DO NOTHING",
        (room, title, topic, int(public)),
    ).rowcount
    return RoomInfo(room, title, topic, public, 0) if made else None


def set_room(
    conn: sqlite3.Connection,
    room: str,
    title: str | None,
    topic: str | None,
    public: bool | None,
) -> RoomInfo | None:
    changed = conn.execute(
        "UPDATE rooms SET title = coalesce(?, title), topic = coalesce(?, topic),"
        " public = coalesce(?, public) WHERE room = ?",
        (title, topic, None if public is None else int(public), room),
    ).rowcount
    if not changed:
        return None
    return _info(conn.execute(f"{_INFO} WHERE room = ?", (room,)).fetchone())


def delete_room(conn: sqlite3.Connection, room: str) -> list[str] | None:
    if not conn.execute("DELETE FROM rooms WHERE room = ?", (room,)).rowcount:
        return None
    rows = conn.execute("SELECT user FROM members WHERE room = ? ORDER BY user", (room,))
    users = [row[0] for row in rows]
    conn.execute("DELETE FROM members WHERE room = ?", (room,))
    return users


def directory(
    conn: sqlite3.Connection,
    query: str | None,
    after: str | None,
    limit: int,
    allowed: Callable[[str], bool],
) -> tuple[list[RoomInfo], bool]:
    page: list[RoomInfo] = []
    cursor = "" if after is None else after
    while True:
        rows = conn.execute(
            f"{_INFO} WHERE public = 1 AND room > ? ORDER BY room LIMIT ?",
            (cursor, _DIRECTORY_STEP),
        ).fetchall()
        for row in rows:
            info = _info(row)
            if allowed(info.room) and matches(info, query):
                if len(page) == limit:
                    return page, True
                page.append(info)
        if len(rows) < _DIRECTORY_STEP:
            return page, False
        cursor = rows[-1][0]


def dm_partners(conn: sqlite3.Connection, user: str) -> list[str]:
    rows = conn.execute("SELECT other FROM dm_partners WHERE user = ? ORDER BY other", (user,))
    return [row[0] for row in rows]


def met(conn: sqlite3.Connection, pairs: set[tuple[str, str]]) -> None:
    """Record the partners of the direct messages just stored (both directions)."""
    both = pairs | {(to, sender) for sender, to in pairs}
    conn.executemany("INSERT OR IGNORE INTO dm_partners (user, other) VALUES (?, ?)", both)
