"""``NodeRegistryActor``: this node's liveness and sessions in Redis, and the reaper of dead nodes.

Every ``node_timeout / 5`` the node refreshes a liveness key whose TTL is ``0.6 * node_timeout``
and looks for nodes whose liveness key is gone. The first survivor to claim a dead node (``SREM``
answers 1 only once) takes its connections out of the cluster's presence and room membership
and announces them offline and gone: a node that crashed has its users announced offline within
``node_timeout``, and no ghost stays online.

A node's records (its connections per user and per room, its sessions) carry no TTL: the
cluster-wide counts are sums of them, so they must last exactly as long as those counts hold
their share, until the node leaves or is reaped, however long Redis was away. A node that finds
itself no longer listed (reaped while it was cut off, or stalled) registers everything again.
A node whose link has just recovered reaps nobody for ``node_timeout``: after an outage every
liveness key has lapsed, and the others need a moment to renew theirs.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import gevent
import msgpack
from pykka import ActorDeadError

from actorim.redis.keys import ClusterKeys
from actorim.redis.link import ClusterLink, make_client
from actorim.redis.replies import answer
from actorim.redis.topology import REDIS_ERRORS
from supervisors import GeventActor

__all__ = ["NodeRegistryActor", "list_sessions"]

logger = logging.getLogger("actorim.cluster")


@dataclass(frozen=True, slots=True)
class _Sweep:
    """Tell, from the actor's timer: refresh this node's liveness and reap the dead."""


class NodeRegistryActor(GeventActor):
    """See the module docstring."""

    def __init__(self, link: ClusterLink, node_timeout: float) -> None:
        super().__init__()
        self.link = link
        self.interval = node_timeout / 5
        self.alive_ttl_ms = int(node_timeout * 600)
        self.timeout = node_timeout
        self._listed = False
        self._timer: Any = None

    def on_start(self) -> None:
        self._refresh()
        self._arm()

    def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.kill(block=False)
        self._leave()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Sweep):
            self._sweep()
            return None
        return super().on_receive(message)

    def _arm(self) -> None:
        ref = self.actor_ref

        def fire() -> None:
            with contextlib.suppress(ActorDeadError):  # stopped meanwhile
                ref.tell(_Sweep())

        self._timer = gevent.spawn_later(self.interval, fire)

    def _sweep(self) -> None:
        self._refresh()
        self.link.guarded("reaper", self._reap, None)
        self._arm()

    def _refresh(self) -> None:
        keys, me = self.link.keys, self.link.node_id

        def call() -> int:
            pipe = self.link.client.pipeline(transaction=False)
            pipe.set(keys.node_alive(me), str(time.time()), px=self.alive_ttl_ms)
            pipe.sadd(keys.nodes, me)
            return int(pipe.execute()[1])

        added = self.link.guarded("liveness", call, None)
        if added is None:
            return
        if added and self._listed:
            logger.warning("node %s was reaped by another node: registering again", me)
            self.link.recovered()
        self._listed = True

    def _reap(self) -> None:
        since = self.link.healthy_since
        if since is None or time.monotonic() - since < self.timeout:
            return  # every liveness key lapsed during the outage: let the others renew theirs
        keys, client = self.link.keys, self.link.client
        others = [
            n.decode()
            for n in answer(client.smembers(keys.nodes))
            if n.decode() != self.link.node_id
        ]
        if not others:
            return
        pipe = client.pipeline(transaction=False)
        for node in others:
            pipe.exists(keys.node_alive(node))
        for node, alive in zip(others, pipe.execute(), strict=True):
            if not alive and client.srem(keys.nodes, node) == 1:
                logger.warning("node %s stopped refreshing its liveness: reaping it", node)
                reap_node(self.link, node)

    def _leave(self) -> None:
        """A node that stops cleanly takes what is left of its own records out at once."""
        keys, me = self.link.keys, self.link.node_id

        def call() -> None:
            self.link.client.srem(keys.nodes, me)
            reap_node(self.link, me)

        self.link.guarded("leave", call, None)


def reap_node(link: ClusterLink, node: str) -> None:
    """Take ``node``'s connections out of presence and membership, announcing the changes."""
    # Read and removed at once (one hash slot): a node that registers again meanwhile adds
    # records that this reaping leaves alone.
    users, members = link.node_take(node)
    link.release(members, users)


def list_sessions(redis_url: str, *, namespace: str = "actorim") -> list[dict[str, Any]]:
    """Every connection of the cluster (``session``, ``user``, ``node``, ``since``, ``address``),
    for operators: who is connected where."""
    keys = ClusterKeys(namespace)
    client = make_client(redis_url)
    try:
        sessions = []
        for node in sorted(n.decode() for n in answer(client.smembers(keys.nodes))):
            records: dict[bytes, bytes] = answer(client.hgetall(keys.node_sessions(node)))
            for sid, record in records.items():
                sessions.append({"session": sid.decode(), **msgpack.unpackb(record, raw=False)})
        return sessions
    except REDIS_ERRORS as exc:
        msg = f"could not read the sessions from Redis at {redis_url}: {exc}"
        raise RuntimeError(msg) from exc
    finally:
        client.close()
