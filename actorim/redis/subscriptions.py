"""``Subscriptions``: a node's subscribing connections to Redis, one per shard on a cluster.

On a single Redis (or the master Sentinel names) one connection ``SUBSCRIBE``s to every channel.
On a Redis Cluster a channel lives on the shard that serves its slot, so there is one connection
per master that serves a wanted channel, and it ``SSUBSCRIBE``s to those channels only. Each
connection has a reader greenlet that puts what it reads on one queue, so the listener reads
all shards as one stream; a reader that fails puts its error there instead, and the listener
starts over (``close``, then a new ``Subscriptions`` on a refreshed slot map).

A shard that gives up a slot (a migration, a failover) tells its subscribers with an
``sunsubscribe`` they did not ask for; ``moved`` says so, and the listener starts over too.

Not thread-safe: used by the listener actor and its reader greenlets, on one hub.
"""

from __future__ import annotations

import contextlib
from typing import Any

import gevent
import redis
from gevent.queue import Empty, Queue

from actorim.redis.topology import REDIS_ERRORS

__all__ = ["SlotMoved", "Subscriptions"]


class SlotMoved(redis.ConnectionError):
    """A shard dropped a subscription it did not own any more (a slot migrated or failed
    over): resubscribe on the new slot map."""


class Subscriptions:
    """See the module docstring."""

    def __init__(self, client: Any, *, sharded: bool, read_timeout: float = 1.0) -> None:
        self._client = client
        self._sharded = sharded
        self._read_timeout = read_timeout
        self._pubsubs: dict[str, Any] = {}
        self._readers: list[gevent.Greenlet] = []
        self._queue: Queue[Any] = Queue()
        self.confirm_kind = "ssubscribe" if sharded else "subscribe"
        self.message_kind = "smessage" if sharded else "message"
        self.drop_kind = "sunsubscribe" if sharded else "unsubscribe"
        if sharded:
            # The slot map as it is now (after a failover or a migration: the new masters).
            client.nodes_manager.initialize()

    def subscribe(self, channels: list[str]) -> None:
        """Subscribe to ``channels``; each is confirmed by a ``confirm_kind`` message."""
        if not channels:
            return
        if not self._sharded:
            self._pubsub("").subscribe(*channels)
            return
        # One SSUBSCRIBE per slot: Redis refuses channels of several slots in one.
        by_slot: dict[int, list[str]] = {}
        for channel in channels:
            by_slot.setdefault(self._client.keyslot(channel), []).append(channel)
        for some in by_slot.values():
            self._pubsub(self._shard_of(some[0])).ssubscribe(*some)

    def unsubscribe(self, channel: str) -> None:
        name = self._shard_of(channel)
        pubsub = self._pubsubs.get(name)
        if pubsub is None:
            return
        with contextlib.suppress(*REDIS_ERRORS):
            if self._sharded:
                pubsub.sunsubscribe(channel)
            else:
                pubsub.unsubscribe(channel)

    def get_message(self, timeout: float) -> dict[str, Any] | None:
        """The next message of any shard, None after ``timeout``; raises a reader's error."""
        try:
            item = self._queue.get(timeout=timeout)
        except Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return dict(item)

    def close(self) -> None:
        for reader in self._readers:
            reader.kill(block=False)
        self._readers = []
        pubsubs, self._pubsubs = self._pubsubs, {}
        for pubsub in pubsubs.values():
            with contextlib.suppress(Exception):
                pubsub.close()

    # -- shards ------------------------------------------------------------------------------

    def _shard_of(self, channel: str) -> str:
        if not self._sharded:
            return ""
        return str(self._client.get_node_from_key(channel).name)

    def _pubsub(self, name: str) -> Any:
        pubsub = self._pubsubs.get(name)
        if pubsub is not None:
            return pubsub
        if self._sharded:
            node = self._client.get_node(node_name=name)
            pubsub = self._client.get_redis_connection(node).pubsub()
        else:
            pubsub = self._client.pubsub()
        self._pubsubs[name] = pubsub
        self._readers.append(gevent.spawn(self._read, pubsub))
        return pubsub

    def _read(self, pubsub: Any) -> None:
        try:
            while True:
                message = pubsub.get_message(timeout=self._read_timeout)
                if message is not None:
                    self._queue.put(message)
        except gevent.GreenletExit:
            raise
        except BaseException as exc:  # to the listener, which starts over
            self._queue.put(exc)
