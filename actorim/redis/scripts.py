"""The cluster's Lua scripts: each change counted and, when it is a transition, announced once.

A user's presence is a count of connections cluster-wide plus an announced state; a room's
membership is a count of connections per user. A script changes a count and publishes an event
only when the change is a transition, atomically, so that N nodes seeing the same user come and go
still produce one ``online`` and one ``offline``, and one ``joined`` and one ``left``.
Events are MessagePack maps with a ``t`` key, exactly as clients receive them.

The scripts are Lua files in ``lua/`` beside this module (each says its KEYS and ARGV), read
once at import so that they are edited, highlighted and linted as Lua.
"""

from __future__ import annotations

from importlib.resources import files

__all__ = [
    "MEMBER_ADJUST",
    "NODE_TAKE",
    "PRESENCE_ADJUST",
    "PRESENCE_SETTLE",
    "ROOM_CREATE",
    "ROOM_DELETE",
    "ROOM_SET",
]


def _lua(name: str) -> str:
    """The source of ``lua/<name>.lua``, a file of this package."""
    return (files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


PRESENCE_ADJUST = _lua("presence_adjust")
"""Count a user's connection up or down; announce ``online`` on the first one cluster-wide."""

PRESENCE_SETTLE = _lua("presence_settle")
"""Announce ``offline`` once the grace is over and no node has a connection of the user."""

MEMBER_ADJUST = _lua("member_adjust")
"""Count a user's connections to a room; announce ``joined`` and ``left`` on the transitions."""

NODE_TAKE = _lua("node_take")
"""Read a node's connection counts and remove its records at once (reaping it)."""

ROOM_CREATE = _lua("room_create")
"""Make a room's metadata unless it exists (the application's create)."""

ROOM_SET = _lua("room_set")
"""Change an existing room's title, topic and public flag (the application's update)."""

ROOM_DELETE = _lua("room_delete")
"""Forget a room's metadata and roster, answering its members (the application's delete)."""
