"""This node's sessions in Redis: one record per connection, for operators (who is where)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import cast

import msgpack

from actorim.redis.link import ClusterLink

__all__ = ["close_session", "open_session", "prune_sessions"]


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
