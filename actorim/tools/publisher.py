"""Publishing into a cluster from a service that is not a node (a Django or Flask app, a worker).

The publisher appends through the same Redis store as the nodes: one script stores the message,
gives it its ``seq`` and publishes it, so every node with a member of the room (or a connection
of the user) delivers it, and it is in ``history`` and offline delivery like any other message.
It needs only ``redis`` and ``msgpack``, and blocks like any Redis client (no gevent needed)::

    from actorim.tools.publisher import Publisher

    publisher = Publisher("redis://localhost:6379/0")
    publisher.publish({"text": "build 812 passed"}, room="team:ci", sender="ci-bot")
    publisher.publish("your export is ready", to="alice", sender="exports", cid="export-991")

It also revokes tokens, as ``Node.revoke_token`` and ``Node.revoke_user`` do (the same
revocations, kept in the same Redis hash and announced on the same channel): every node closes
the connections holding a revoked token within a second and refuses it at ``connect``::

    publisher.revoke_token("2f1c9a", expires_at=1767225600)
    publisher.revoke_user("mallory")  # every token of mallory issued until now
"""

from __future__ import annotations

import time
from typing import Any

import redis

from actorim.domain.messages import StoredMessage
from actorim.domain.tokens import DEFAULT_REVOCATION_KEEP_S, token_revocation, user_revocation
from actorim.protocol.events import published_message
from actorim.redis.revocations import RedisRevocations
from actorim.redis.store import RedisStore

__all__ = ["Publisher"]


class Publisher:
    """Sends messages into an actorim cluster through its Redis; see the module docstring."""

    def __init__(
        self,
        redis_url: str,
        *,
        namespace: str = "actorim",
        revocation_keep: float = DEFAULT_REVOCATION_KEEP_S,
    ) -> None:
        self._store = RedisStore.from_url(redis_url, namespace=namespace)
        self._revocations = RedisRevocations(redis.Redis.from_url(redis_url), namespace=namespace)
        self._keep = revocation_keep

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

    def revoke_token(self, token_id: str, *, expires_at: float | None = None) -> None:
        """Revoke the token whose ``jti`` is ``token_id`` on every node (closed 4003, refused at
        ``connect``); kept until ``expires_at`` (its ``exp``) or for ``revocation_keep``."""
        now = time.time()
        self._revocations.add(
            token_revocation(token_id, expires_at=expires_at, now=now, keep_s=self._keep)
        )

    def revoke_user(
        self, user: str, *, before: float | None = None, until: float | None = None
    ) -> None:
        """Revoke every token of ``user`` issued at or before ``before`` (default now) on every
        node; kept until ``until`` (when the last of them expires) or for ``revocation_keep``."""
        now = time.time()
        self._revocations.add(
            user_revocation(user, before=before, until=until, now=now, keep_s=self._keep)
        )

    def close(self) -> None:
        self._store.close()
        self._revocations.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
