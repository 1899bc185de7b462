"""The Redis store's room roles, bans, mutes and audit logs.

Keyed per room and per user (``ns`` the namespace; names from :class:`ModerationKeys`, which
``actorim.redis.keys.ClusterKeys`` exposes beside the other key families)::

    ns:{r:room}:standing  hash  user -> "role banned_until muted_until" (the default is absent)
    ns:{u:user}:mutes     hash  room -> muted_until, the mutes a connect reads in one call
    ns:{r:room}:audit     zset  "<id> <entry as JSON>", score 0: id order by lex range

A moderation write is a pipeline of idempotent writes on the room's and the user's keys (two
hash slots, so not one transaction), then the webhook events in the outbox; an action that
failed midway is completed by doing it again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis

from actorim.domain.moderation import AuditEntry, Standing
from actorim.redis.replies import answer

__all__ = ["ModerationKeys", "RedisModeration"]

_PLAIN = Standing()


class ModerationKeys:
    """The key names of one namespace (see the module docstring)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def standing(self, room: str) -> str:
        return f"{self.namespace}:{{r:{room}}}:standing"

    def mutes(self, user: str) -> str:
        return f"{self.namespace}:{{u:{user}}}:mutes"

    def audit(self, room: str) -> str:
        return f"{self.namespace}:{{r:{room}}}:audit"


def _text(value: Any) -> str:
    return bytes(value).decode()


class RedisModeration:
    """The moderation part of ``RedisStore`` (which calls it inside its error handling)."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self._client = client
        self.keys = ModerationKeys(namespace)

    def standings(self, room: str, users: Sequence[str]) -> dict[str, Standing]:
        if not users:
            return {}
        values = answer(self._client.hmget(self.keys.standing(room), list(users)))
        found: dict[str, Standing] = {}
        for user, value in zip(users, values, strict=True):
            if value is not None:
                role, banned, muted = _text(value).split(" ")
                found[user] = Standing(role, int(banned), int(muted))
        return found

    def mutes_of(self, user: str) -> dict[str, int]:
        found = answer(self._client.hgetall(self.keys.mutes(user)))
        return {_text(room): int(until) for room, until in found.items()}

    def moderate(self, room: str, user: str, standing: Standing, entry: AuditEntry) -> None:
        keys = self.keys
        pipe = self._client.pipeline(transaction=False)
        if standing == _PLAIN:
            pipe.hdel(keys.standing(room), user)
        else:
            value = f"{standing.role} {standing.banned_until} {standing.muted_until}"
            pipe.hset(keys.standing(room), user, value)
        if standing.muted_until:
            pipe.hset(keys.mutes(user), room, str(standing.muted_until))
        else:
            pipe.hdel(keys.mutes(user), room)
        line = f"{entry.id} {json.dumps(entry.as_json(), separators=(',', ':'))}"
        pipe.zadd(keys.audit(room), {line: 0})
        pipe.execute()

    def audit(self, room: str, before: str | None, limit: int) -> list[AuditEntry]:
        top = "+" if before is None else f"({before}"
        lines = answer(
            self._client.zrevrangebylex(self.keys.audit(room), top, "-", start=0, num=limit)
        )
        return [AuditEntry.from_json(json.loads(_text(line).partition(" ")[2])) for line in lines]
