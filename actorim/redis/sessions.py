"""This node's sessions in Redis: one record per connection, for operators (who is where)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, cast

import msgpack

from actorim.redis.link import ClusterLink

__all__ = ["DISCONNECT_EVENT", "close_session", "open_session", "prune_sessions", "user_sessions"]

DISCONNECT_EVENT = "disconnect"
"""The ``t`` of a disconnect order published on a user's channel (the server API's)."""


def open_session(link: ClusterLink, user: str, session: str, address: str | None) -> None:
    """Record a connection in the cluster: user, node, connected since, address."""
    record = msgpack.packb(
        {
            "user": user,
            "node": link.node_id,
            "since": int(time.time() * 1000),
            "address": address,
        }
    )
    link.guarded(
        "sessions",
        lambda: link.client.hset(link.keys.node_sessions(link.node_id), session, record),
        None,
    )


def close_session(link: ClusterLink, session: str) -> None:
    link.guarded(
        "sessions",
        lambda: link.client.hdel(link.keys.node_sessions(link.node_id), session),
        None,
    )


def prune_sessions(link: ClusterLink, live: Iterable[str]) -> None:
    """Forget this node's recorded sessions that are not ``live``: those that closed while
    Redis was away."""
    keep = set(live)
    key = link.keys.node_sessions(link.node_id)

    def call() -> None:
        recorded = cast("list[bytes]", link.client.hkeys(key))  # redis-py types it Awaitable too
        stale = [sid for sid in (s.decode() for s in recorded) if sid not in keep]
        if stale:
            link.client.hdel(key, *stale)

    link.guarded("sessions", call, None)


def user_sessions(link: ClusterLink, user: str) -> list[dict[str, Any]] | None:
    """Every recorded session of ``user`` in the cluster, or None when Redis cannot say.

    Reads each live node's session hash: a cost in the cluster's connection count, for an
    operator's call, not for a hot path."""

    def call() -> list[dict[str, Any]]:
        client = link.client
        found: list[dict[str, Any]] = []
        nodes = cast("set[bytes]", client.smembers(link.keys.nodes))
        for node in sorted(n.decode() for n in nodes):
            records = cast("dict[bytes, bytes]", client.hgetall(link.keys.node_sessions(node)))
            for sid, record in records.items():
                data = msgpack.unpackb(record, raw=False)
                if data.get("user") == user:
                    found.append({"session": sid.decode(), **data})
        return found

    return link.guarded("sessions", call, None)
