"""Publishing into a cluster from a service that is not a node (a Django or Flask app, a worker).

The publisher appends through the same Redis store as the nodes: one script stores the message,
gives it its ``seq`` and publishes it, so every node with a member of the room (or a connection
of the user) delivers it, and it is in ``history`` and offline delivery like any other message.
It needs only ``redis`` and ``msgpack``, and blocks like any Redis client (no gevent needed)::

    from actorim.tools.publisher import Publisher

    publisher = Publisher("redis://localhost:6379/0")
    publisher.publish({"text": "build 812 passed"}, room="team:ci", sender="ci-bot")
    publisher.publish("your export is ready", to="alice", sender="exports", cid="export-991")
"""

from __future__ import annotations

from typing import Any

from actorim.domain.messages import StoredMessage
from actorim.protocol.events import published_message
from actorim.redis.store import RedisStore

__all__ = ["Publisher"]


class Publisher:
    """Sends messages into an actorim cluster through its Redis; see the module docstring."""

    def __init__(self, redis_url: str, *, namespace: str = "actorim") -> None:
        self._store = RedisStore.from_url(redis_url, namespace=namespace)

    def publish(
        self,
        body: Any,
        *,
        room: str | None = None,
        to: str | None = None,
        sender: str = "system",
        kind: str = "text",
        cid: str | None = None,
    ) -> StoredMessage:
        """Store and deliver ``body`` as ``sender``, to ``room`` or to user ``to``.

        Returns the stored message (``mid``, ``seq``, ``ts``) once it is durable in Redis.
        Resending with the same ``cid`` returns the original and delivers nothing again.
        Raises ``actorim.store.StoreError`` when Redis cannot be reached.
        """
        message = published_message(body, room=room, to=to, sender=sender, kind=kind, cid=cid)
        return self._store.append_batch([message])[0]

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
