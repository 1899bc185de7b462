"""The Redis store's lasting membership, room metadata and direct-conversation partners.

Keyed per user and per room, never under one hash tag, so Redis Cluster spreads them (``ns``
the namespace)::

    ns:{u:user}:rooms     zset    the rooms user is a member of (score 0: name order)
    ns:{u:user}:partners  zset    the users user has a direct conversation with (score 0)
    ns:{r:room}:roster    zset    the room's lasting members (score 0), on the room's shard (its
                          "members" key counts the connections subscribed on each node)
    ns:{r:room}:info      hash    title, topic, public ("1"/"0"); made by the room's first join
    ns:directory          zset    every room that ever had a member (score 0: name order)

A join is decided by a script on the user's key alone (is a member already, or past
``max_rooms``: the read-modify-write that must be atomic); the room's side (its members, its
info, the directory) follows in a pipeline of idempotent writes, which a repeated join
completes if it failed midway. An update checks membership and writes the room's info in one
script on the room's shard. Partners are added in the second step of an append (idempotent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis

from actorim.domain.rooms import JoinOutcome, RoomInfo, matches
from actorim.redis import scripts
from actorim.redis.replies import answer
from actorim.redis.shards import register_script

__all__ = ["RedisRooms", "RoomKeys"]

_JOIN = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 'member' end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 'full' end
redis.call('ZADD', KEYS[1], 0, ARGV[1])
return 'joined'
"""

# KEYS: members, info. ARGV: user, has title ("1"/"0"), title, has topic, topic.
_UPDATE = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return false end
if ARGV[2] == '1' then redis.call('HSET', KEYS[2], 'title', ARGV[3]) end
if ARGV[4] == '1' then redis.call('HSET', KEYS[2], 'topic', ARGV[5]) end
local info = redis.call('HMGET', KEYS[2], 'title', 'topic', 'public')
info[4] = redis.call('ZCARD', KEYS[1])
return info
"""

# Rooms read per step of a directory page.
_DIRECTORY_STEP = 200


class RoomKeys:
    """The key names of one namespace (see the module docstring)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.directory = f"{namespace}:directory"

    def rooms(self, user: str) -> str:
        return f"{self.namespace}:{{u:{user}}}:rooms"

    def partners(self, user: str) -> str:
        return f"{self.namespace}:{{u:{user}}}:partners"

    def members(self, room: str) -> str:
        return f"{self.namespace}:{{r:{room}}}:roster"

    def info(self, room: str) -> str:
        return f"{self.namespace}:{{r:{room}}}:info"


def _text(value: Any) -> str:
    return "" if value is None else bytes(value).decode()


def _room_info(room: str, reply: Any) -> RoomInfo:
    """A script's ``{title, topic, public, members}`` as a ``RoomInfo``."""
    title, topic, public, members = reply
    return RoomInfo(room, _text(title), _text(topic), public != b"0", int(members))


def _lex_after(after: str | None) -> str:
    return "-" if after is None else f"({after}"


class RedisRooms:
    """The membership half of ``RedisStore`` (which calls it inside its error handling)."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self._client = client
        self.keys = RoomKeys(namespace)
        self._join = register_script(client, _JOIN)
        self._update = register_script(client, _UPDATE)
        self._create = register_script(client, scripts.ROOM_CREATE)
        self._set = register_script(client, scripts.ROOM_SET)
        self._delete = register_script(client, scripts.ROOM_DELETE)

    def join_room(self, user: str, room: str, max_rooms: int) -> JoinOutcome:
        keys = self.keys
        outcome = _text(self._join(keys=[keys.rooms(user)], args=[room, max_rooms]))
        if outcome != "full":
            pipe = self._client.pipeline(transaction=False)
            pipe.zadd(keys.members(room), {user: 0})
            pipe.hsetnx(keys.info(room), "public", "1")
            pipe.zadd(keys.directory, {room: 0})
            pipe.execute()
        return "joined" if outcome == "joined" else "member" if outcome == "member" else "full"

    def leave_room(self, user: str, room: str) -> bool:
        pipe = self._client.pipeline(transaction=False)
        pipe.zrem(self.keys.rooms(user), room)
        pipe.zrem(self.keys.members(room), user)
        gone, _ = pipe.execute()
        return bool(gone)

    def rooms_of(self, user: str) -> list[str]:
        return [_text(r) for r in answer(self._client.zrange(self.keys.rooms(user), 0, -1))]

    def members_of(self, room: str, after: str | None, limit: int) -> tuple[list[str], bool]:
        found = answer(
            self._client.zrangebylex(
                self.keys.members(room), _lex_after(after), "+", start=0, num=limit + 1
            )
        )
        users = [_text(u) for u in found]
        return users[:limit], len(users) > limit

    def room_info(self, rooms: Sequence[str]) -> dict[str, RoomInfo]:
        pipe = self._client.pipeline(transaction=False)
        for room in rooms:
            pipe.hmget(self.keys.info(room), ["title", "topic", "public"])
            pipe.zcard(self.keys.members(room))
        replies = pipe.execute() if rooms else []
        found: dict[str, RoomInfo] = {}
        for index, room in enumerate(rooms):
            (title, topic, public), members = replies[2 * index], replies[2 * index + 1]
            if public is not None:
                found[room] = RoomInfo(room, _text(title), _text(topic), public == b"1", members)
        return found

    def update_room(
        self, user: str, room: str, title: str | None, topic: str | None
    ) -> RoomInfo | None:
        keys = self.keys
        args = [user, "0" if title is None else "1", title or "", "0" if topic is None else "1"]
        reply = self._update(keys=[keys.members(room), keys.info(room)], args=[*args, topic or ""])
        if not reply:
            return None
        new_title, new_topic, public, members = reply
        return RoomInfo(room, _text(new_title), _text(new_topic), public != b"0", int(members))

    def set_public(self, room: str, public: bool) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.hset(self.keys.info(room), "public", "1" if public else "0")
        pipe.zadd(self.keys.directory, {room: 0})
        pipe.execute()

    def create_room(self, room: str, title: str, topic: str, public: bool) -> RoomInfo | None:
        keys = self.keys
        flag = "1" if public else "0"
        reply = self._create(keys=[keys.info(room), keys.members(room)], args=[title, topic, flag])
        if not reply:
            return None
        self._client.zadd(keys.directory, {room: 0})
        return _room_info(room, reply)

    def set_room(
        self, room: str, title: str | None, topic: str | None, public: bool | None
    ) -> RoomInfo | None:
        keys = self.keys
        flag = "" if public is None else "1" if public else "0"
        args = ["0" if title is None else "1", title or "", "0" if topic is None else "1"]
        reply = self._set(
            keys=[keys.info(room), keys.members(room)], args=[*args, topic or "", flag]
        )
        return None if not reply else _room_info(room, reply)

    def delete_room(self, room: str) -> list[str] | None:
        keys = self.keys
        reply = self._delete(keys=[keys.info(room), keys.members(room)])
        if reply is None or reply is False:
            return None
        members = [_text(user) for user in reply]
        pipe = self._client.pipeline(transaction=False)
        for user in members:
            pipe.zrem(keys.rooms(user), room)
        pipe.zrem(keys.directory, room)
        pipe.execute()
        return members

    def directory(
        self, query: str | None, after: str | None, limit: int, allowed: Callable[[str], bool]
    ) -> tuple[list[RoomInfo], bool]:
        page: list[RoomInfo] = []
        cursor = after
        while True:
            names = [
                _text(r)
                for r in answer(
                    self._client.zrangebylex(
                        self.keys.directory, _lex_after(cursor), "+", start=0, num=_DIRECTORY_STEP
                    )
                )
            ]
            candidates = [room for room in names if allowed(room)]
            infos = self.room_info(candidates)
            for room in candidates:
                info = infos.get(room)
                if info is not None and info.public and matches(info, query):
                    if len(page) == limit:
                        return page, True
                    page.append(info)
            if len(names) < _DIRECTORY_STEP:
                return page, False
            cursor = names[-1]

    def dm_partners(self, user: str) -> list[str]:
        return [_text(u) for u in answer(self._client.zrange(self.keys.partners(user), 0, -1))]

    def met(self, pipe: Any, sender: str, to: str) -> None:
        """Queue the partner records of a direct message between ``sender`` and ``to``."""
        pipe.zadd(self.keys.partners(sender), {to: 0})
        pipe.zadd(self.keys.partners(to), {sender: 0})
