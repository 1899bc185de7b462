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

It manages rooms and membership as ``Node`` and the server API do, through the same code
(``actorim.store.roomadmin``) on the same Redis store and broker: create, update and delete a
room, add and remove members; each member's connections on every node join or leave at once::

    publisher.create_room("ops", title="Ops", public=False, members=["alice"])
    publisher.add_member("ops", "bob")
    publisher.remove_member("ops", "alice")
    publisher.delete_room("ops")

What it cannot do needs a node: presence, sessions and disconnects are what the nodes' live
connections are, and history pages and the webhook dead-letter queue are read through a node's
API. Its changes make webhook events when it is given the nodes' ``webhooks`` setting.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

from actorim.config import Config
from actorim.domain.messages import StoredMessage
from actorim.domain.tokens import DEFAULT_REVOCATION_KEEP_S, token_revocation, user_revocation
from actorim.domain.webhooks import parse_endpoints
from actorim.protocol import requests
from actorim.protocol.events import published_message
from actorim.protocol.webhooks import Webhooks
from actorim.redis.broker import RedisBroker
from actorim.redis.link import ClusterLink
from actorim.redis.revocations import RedisRevocations
from actorim.redis.store import RedisStore
from actorim.store import erase, roomadmin
from actorim.store.roomadmin import (
    Conflict,
    Effects,
    NotFound,
    no_room,
    room_exists,
    room_json,
    too_many_rooms,
)

__all__ = ["Conflict", "InvalidRequest", "NotFound", "Publisher"]

InvalidRequest = requests.InvalidRequest

T = TypeVar("T")


def _now_ms() -> int:
    return int(time.time() * 1000)


class Publisher:
    """Sends messages into an actorim cluster through its Redis; see the module docstring."""

    def __init__(
        self,
        redis_url: str,
        *,
        namespace: str = "actorim",
        revocation_keep: float = DEFAULT_REVOCATION_KEEP_S,
        max_rooms_per_user: int = Config.max_rooms_per_user,
        erase_limit: int = Config.erase_limit,
        member_list_limit: int = Config.member_list_limit,
        webhooks: Any = "",
    ) -> None:
        self._webhooks = Webhooks(parse_endpoints(webhooks))
        outbox = self._webhooks.for_message if self._webhooks else None
        # The nodes' broker on a link of the Publisher's own: it publishes, never listens. Its
        # client (of any topology the URL names) serves the store and the revocations too.
        self._link = ClusterLink(redis_url, "publisher", namespace=namespace)
        self._broker = RedisBroker(self._link, lambda: None)
        self._store = RedisStore(self._link.client, namespace=namespace, outbox=outbox)
        self._revocations = RedisRevocations(self._link.client, namespace=namespace)
        self._keep = revocation_keep
        self._max_rooms = max_rooms_per_user
        self._erase_limit = erase_limit
        self._member_limit = member_list_limit

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

    # -- rooms and membership (the same code as Node and the server API) ----------------------

    def create_room(
        self,
        room: str,
        *,
        title: str = "",
        topic: str = "",
        public: bool = True,
        members: list[str] | tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Make ``room`` and add ``members``: ``{"room": info, "full": [users]}`` as
        ``Node.create_room``; raises ``Conflict`` when the room exists."""
        requests.room_name(room)
        requests.room_text(title, topic)
        requests.flag(public, "public")
        users = requests.member_list(members, self._member_limit)
        info, full, effects = roomadmin.create_room(
            self._store,
            room,
            title=title,
            topic=topic,
            public=public,
            members=users,
            max_rooms=self._max_rooms,
            webhooks=self._webhooks,
            now_ms=_now_ms(),
        )
        if info is None:
            raise room_exists(room)
        self._announce(effects)
        return {"room": room_json(info), "full": full}

    def update_room(
        self,
        room: str,
        *,
        title: str | None = None,
        topic: str | None = None,
        public: bool | None = None,
    ) -> dict[str, Any]:
        """Change what is given of ``room``'s title, topic and ``public`` flag; its info after.
        Raises ``NotFound`` when there is no such room."""
        requests.room_name(room)
        if title is None and topic is None and public is None:
            raise requests.InvalidRequest("give at least one of title, topic and public")
        requests.room_text(title, topic)
        if public is not None:
            requests.flag(public, "public")
        info, effects = roomadmin.update_room(
            self._store, room, title=title, topic=topic, public=public
        )
        return room_json(self._found(room, info, effects))

    def delete_room(self, room: str) -> list[str]:
        """Delete ``room`` (its members' connections leave it; its messages stay): the members
        it had. Raises ``NotFound`` when there is no such room."""
        requests.room_name(room)
        members, effects = roomadmin.delete_room(
            self._store, room, webhooks=self._webhooks, now_ms=_now_ms()
        )
        return list(self._found(room, members, effects))

    def add_member(self, room: str, user: str) -> bool:
        """Make ``user`` a member of ``room`` (a private one too); False when they were one.
        Raises ``NotFound`` (no such room) or ``Conflict`` (``max_rooms_per_user``)."""
        requests.room_name(room)
        requests.user_id(user, "user")
        outcome, effects = roomadmin.add_member(
            self._store,
            room,
            user,
            max_rooms=self._max_rooms,
            webhooks=self._webhooks,
            now_ms=_now_ms(),
        )
        if self._found(room, outcome, effects) == "full":
            raise too_many_rooms(user, self._max_rooms)
        return outcome == "joined"

    def remove_member(self, room: str, user: str) -> bool:
        """End ``user``'s membership of ``room``; False when they were not a member."""
        requests.room_name(room)
        requests.user_id(user, "user")
        removed, effects = roomadmin.remove_member(
            self._store, room, user, webhooks=self._webhooks, now_ms=_now_ms()
        )
        self._announce(effects)
        return removed

    # -- erasing a user's messages (the same plan as Node and the server API) ------------------

    def erase(
        self, user: str, *, room: str | None = None, with_: str | None = None
    ) -> dict[str, Any]:
        """Delete ``user``'s messages as their own deletes would (in ``room``, with user
        ``with_``, or everywhere they have messages, rooms they left included), at most
        ``erase_limit`` a call: ``{"erased": n, "more": bool}``; call again while ``more``."""
        requests.one_place(user, room, with_)
        deletes, more = erase.erase_plan(
            self._store, user, room=room, with_=with_, limit=self._erase_limit, now_ms=_now_ms()
        )
        stored = self._store.append_batch(deletes) if deletes else []
        erased = sum(1 for m in stored if m.refused is None and not m.duplicate)
        return {"erased": erased, "more": more}

    def _found(self, room: str, answer: T | None, effects: Effects) -> T:
        if answer is None:
            raise no_room(room)
        self._announce(effects)
        return answer

    def _announce(self, effects: Effects) -> None:
        roomadmin.announce(self._broker, effects)

    def close(self) -> None:
        self._store.close()
        self._link.client.close()  # the store's and the revocations' client too

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
