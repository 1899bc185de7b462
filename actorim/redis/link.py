"""``ClusterLink``: the node's Redis link: the client, the cluster's scripts, and its health.

Every cluster call goes through ``guarded``: a Redis error never escapes into an actor (which
would crash it and, repeated, take its supervisor down while Redis is away); it is reported to
the link's circuit breaker and the caller gets a default and carries on with what it knows
locally. While the breaker is open no call is made at all: a Redis that hangs instead of
refusing would hold every actor that calls it for the socket timeout. The breaker's transitions
and the listener's subscription state make up ``healthy``: a node whose link is not healthy
refuses sends (``overloaded``) and is not ready.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, TypeVar

import gevent
import msgpack
from pykka import ActorRef
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from actorim.breaker.actor import ReportFailure, ReportSuccess
from actorim.breaker.machine import BreakerState, Transition
from actorim.domain.presence import OFFLINE, ONLINE, Status
from actorim.redis import scripts
from actorim.redis.keys import ClusterKeys
from actorim.redis.replies import answer
from actorim.redis.shards import is_sharded, load_scripts, publish, register_script
from actorim.redis.topology import REDIS_ERRORS, make_client, parse_url

__all__ = ["ROOM_EVENT", "USER_EVENT", "ClusterLink", "make_client"]

logger = logging.getLogger("actorim.cluster")

T = TypeVar("T")

# The kind of an ephemeral room event on a room's channel: the event, its room and origin.
ROOM_EVENT = "room_event"
# The kind of an event for a user's connections but the one it came from, on the user's
# channel: the event and its origin (``node/conn``).
USER_EVENT = "user_event"

_STATE_NUMBERS = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}

REAP_BATCH = 500
"""Script calls sent in one pipeline when a node's connections are taken out of presence and
membership (``release``): a round trip a batch instead of two a call. A node that stops after
a drain of 10,000 connections has about 10,000 users to settle, which one by one took longer
than its registry's shutdown time."""


class ClusterLink:
    """The node's link to Redis; see the module docstring."""

    def __init__(self, url: str, node_id: str, *, namespace: str = "actorim") -> None:
        self.url = url
        self.node_id = node_id
        self.keys = ClusterKeys(namespace)
        self.topology = parse_url(url)
        self.client = make_client(self.topology)
        # A Redis Cluster: publish with SPUBLISH, listen per shard with SSUBSCRIBE.
        self.sharded = is_sharded(self.client)
        self._presence_adjust = register_script(self.client, scripts.PRESENCE_ADJUST)
        self._presence_settle = register_script(self.client, scripts.PRESENCE_SETTLE)
        self._member_adjust = register_script(self.client, scripts.MEMBER_ADJUST)
        self._node_take = register_script(self.client, scripts.NODE_TAKE)
        if self.sharded:  # a cluster's pipelines need them loaded beforehand
            with contextlib.suppress(*REDIS_ERRORS):  # else on the first NOSCRIPT
                load_scripts(self.client, self.scripts())
        self.breaker: ActorRef[Any] | None = None
        self.breaker_state = BreakerState.CLOSED
        self.link_failures = 0
        self.subscribed = False
        # Channels the listener subscribes to, with how many wanters; kept here so that a
        # restarted listener subscribes to the same set. Presence and revocations are always
        # wanted.
        self.wanted: dict[str, int] = dict.fromkeys(
            [*self.keys.presence_channels, self.keys.revocations_channel], 1
        )
        # The node's listener (an actor) while it runs, None while it restarts: the broker
        # asks it to subscribe.
        self.listener: ActorRef[Any] | None = None
        self.on_recovered: list[Callable[[], None]] = []
        # When the link last became healthy (monotonic), None while it is not.
        self.healthy_since: float | None = None

    # -- health ----------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """The breaker is closed with no failures and every subscription is in place."""
        return (
            self.breaker_state is BreakerState.CLOSED
            and self.link_failures == 0
            and self.subscribed
        )

    @property
    def refusing(self) -> bool:
        """The breaker is open: calls are answered with their default at once, unmade."""
        return self.breaker_state is BreakerState.OPEN

    def state_number(self) -> int:
        return _STATE_NUMBERS[self.breaker_state]

    def on_transition(self, transition: Transition) -> None:
        """The breaker's subscriber: track its state; when the link is back, recover."""
        was_healthy = self.healthy
        self.breaker_state = transition.new
        self.link_failures = transition.failures
        if not self.healthy:
            self.healthy_since = None
        logger.log(
            logging.INFO if transition.new is BreakerState.CLOSED else logging.WARNING,
            "Redis link %s -> %s (%s)",
            transition.old,
            transition.new,
            transition.reason,
        )
        if not was_healthy and self.healthy:
            self.recovered()

    def set_subscribed(self, subscribed: bool) -> None:
        was_healthy = self.healthy
        self.subscribed = subscribed
        if not self.healthy:
            self.healthy_since = None
        if not was_healthy and self.healthy:
            self.recovered()

    def recovered(self) -> None:
        """Re-register this node's connections and repair its rooms (the link is healthy
        again, or the node found it had been reaped)."""
        if self.healthy_since is None:
            self.healthy_since = time.monotonic()
        logger.info("Redis link healthy: re-registering and repairing")
        for callback in list(self.on_recovered):
            try:
                callback()
            except Exception:
                logger.exception("recovery step %r failed", callback)

    def report_failure(self, what: str, exc: BaseException) -> None:
        logger.warning("Redis call failed (%s): %s", what, exc)
        if self.breaker is not None:
            with contextlib.suppress(Exception):
                self.breaker.tell(ReportFailure(f"{what}: {exc}"))

    def report_success(self) -> None:
        if self.breaker is not None and self.link_failures:
            with contextlib.suppress(Exception):
                self.breaker.tell(ReportSuccess())

    def guarded(self, what: str, call: Callable[[], T], default: T) -> T:
        """``call()``, or ``default`` when Redis fails (reported to the breaker) or while the
        breaker is open (not even tried: what it would have changed is re-registered when the
        link recovers)."""
        if self.refusing:
            return default
        try:
            return call()
        except NoScriptError as exc:
            # A replica took over and has no scripts: nothing of the call ran. Loaded again
            # here; what the call would have changed is re-counted on recovery.
            with contextlib.suppress(*REDIS_ERRORS):
                load_scripts(self.client, self.scripts())
            self.report_failure(what, exc)
            return default
        except REDIS_ERRORS as exc:
            self.report_failure(what, exc)
            return default

    def scripts(self) -> list[Script]:
        """The link's scripts (to load again on a master that answered NOSCRIPT)."""
        return [
            self._presence_adjust,
            self._presence_settle,
            self._member_adjust,
            self._node_take,
        ]

    def node_take(self, node: str) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        """``node``'s connections per user and per (room, user), its records removed at once
        (one slot); raises when Redis fails (the reaper's caller guards it)."""
        keys = self.keys
        users, members = self._node_take(
            keys=[
                keys.node_users(node),
                keys.node_members(node),
                keys.node_sessions(node),
                keys.node_alive(node),
            ]
        )
        per_user = {users[i].decode(): int(users[i + 1]) for i in range(0, len(users), 2)}
        per_member = {}
        for i in range(0, len(members), 2):
            room, _, user = members[i].decode().partition("\x1f")
            per_member[(room, user)] = int(members[i + 1])
        return per_user, per_member

    def release(self, members: dict[tuple[str, str], int], users: dict[str, int]) -> None:
        """Take the connections ``node_take`` returned out of room membership and presence,
        then settle each of the users (announced offline if no node has them any more), in
        pipelines of `REAP_BATCH` calls; raises when Redis fails (the reaper's caller guards
        it)."""
        keys, now = self.keys, _now_ms()
        calls: list[Callable[..., Any]] = []
        for (room, user), count in members.items():
            if count > 0:
                args = [user, -count, room, keys.room_channel(room)]
                calls.append(partial(self._member_adjust, [keys.room_members(room)], args))
        for user, count in users.items():
            state = [keys.presence_counts(user), keys.presence_state(user)]
            if count > 0:
                args = [user, -count, now, keys.presence_shard(user)]
                calls.append(partial(self._presence_adjust, state, args))
            settle = [user, now, keys.presence_shard(user)]
            calls.append(partial(self._presence_settle, state, settle))
        for start in range(0, len(calls), REAP_BATCH):
            pipe = self.client.pipeline(transaction=False)
            for call in calls[start : start + REAP_BATCH]:
                call(client=pipe)
            pipe.execute()

    def publish(self, target: Any, channel: str, payload: bytes) -> Any:
        """Publish through ``target`` (the client or a pipeline): SPUBLISH on a cluster."""
        return publish(target, self.sharded, channel, payload)

    def ping(self) -> None:
        """The breaker's probe: raises when Redis does not answer; on a cluster, when any
        master does not (a shard failing over refuses its rooms' sends until it is back), and
        then the slot map is read again, for the replica that takes over."""
        if not self.sharded:
            self.client.ping()
            return
        client = self.client
        pings = [
            gevent.spawn(client.get_redis_connection(node).ping) for node in client.get_primaries()
        ]
        gevent.joinall(pings)  # side by side: the probe takes one round trip, not one a shard
        failed = next((p.exception for p in pings if p.exception is not None), None)
        if failed is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                client.nodes_manager.initialize()
            raise failed

    # -- presence --------------------------------------------------------------------------

    def presence_adjust(self, user: str, delta: int) -> int | None:
        """Add ``delta`` connections of ``user`` to the cluster's count and to this node's
        (a reaped node's are taken out by ``release``)."""
        keys = self.keys

        def call() -> int:
            pipe = self.client.pipeline(transaction=False)
            pipe.hincrby(keys.node_users(self.node_id), user, delta)
            self._presence_adjust(
                keys=[keys.presence_counts(user), keys.presence_state(user)],
                args=[user, delta, _now_ms(), keys.presence_shard(user)],
                client=pipe,
            )
            return int(pipe.execute()[-1])

        return self.guarded("presence", call, None)

    def presence_settle(self, user: str, ts_ms: int | None = None) -> None:
        """Announce ``user`` offline if no node has a connection of theirs any more."""
        keys = self.keys
        self.guarded(
            "presence",
            lambda: self._presence_settle(
                keys=[keys.presence_counts(user), keys.presence_state(user)],
                args=[user, ts_ms or _now_ms(), keys.presence_shard(user)],
            ),
            None,
        )

    def statuses(self, users: Iterable[str]) -> dict[str, Status] | None:
        """Cluster-wide statuses (online during a grace too), or None when Redis fails."""
        users = list(users)
        if not users:
            return {}

        def call() -> dict[str, Status]:
            by_shard: dict[str, list[str]] = {}
            for user in users:
                by_shard.setdefault(self.keys.presence_state(user), []).append(user)
            pipe = self.client.pipeline(transaction=False)
            for key, some in by_shard.items():
                pipe.hmget(key, some)
            found: dict[str, Status] = {}
            for some, states in zip(by_shard.values(), pipe.execute(), strict=True):
                for u, s in zip(some, states, strict=True):
                    found[u] = ONLINE if s == b"online" else OFFLINE
            return found

        return self.guarded("presence", call, None)

    # -- rooms -----------------------------------------------------------------------------

    def member_adjust(self, room: str, user: str, delta: int) -> list[str] | None:
        """Add ``delta`` connections of ``user`` to ``room`` and to this node's record (a
        reaped node's are taken out by ``release``); the room's members after it."""
        keys = self.keys

        def call() -> list[str]:
            pipe = self.client.pipeline(transaction=False)
            pipe.hincrby(keys.node_members(self.node_id), f"{room}\x1f{user}", delta)
            self._member_adjust(
                keys=[keys.room_members(room)],
                args=[user, delta, room, keys.room_channel(room)],
                client=pipe,
            )
            return [m.decode() for m in pipe.execute()[-1]]

        return self.guarded("membership", call, None)

    def node_member_counts(self, room: str, users: list[str]) -> dict[str, int] | None:
        """This node's recorded connections in ``room``: of ``users`` and any other user."""

        def call() -> dict[str, int]:
            prefix = f"{room}\x1f"
            counts = {}
            for field, count in self.client.hscan_iter(
                self.keys.node_members(self.node_id), match=_glob_escape(prefix) + "*"
            ):
                counts[field.decode()[len(prefix) :]] = int(count)
            return counts

        return self.guarded("membership", call, None)

    def node_member_records(self) -> dict[tuple[str, str], int] | None:
        """This node's recorded connections per (room, user), every room."""

        def call() -> dict[tuple[str, str], int]:
            records = {}
            own: dict[bytes, bytes] = answer(
                self.client.hgetall(self.keys.node_members(self.node_id))
            )
            for field, count in own.items():
                room, _, user = field.decode().partition("\x1f")
                records[(room, user)] = int(count)
            return records

        return self.guarded("membership", call, None)

    def node_user_counts(self) -> dict[str, int] | None:
        """This node's recorded connections per user."""
        return self.guarded(
            "presence",
            lambda: {
                u.decode(): int(c)
                for u, c in answer(self.client.hgetall(self.keys.node_users(self.node_id))).items()
            },
            None,
        )

    def members(self, room: str) -> list[str] | None:
        return self.guarded(
            "membership",
            lambda: [m.decode() for m in answer(self.client.hkeys(self.keys.room_members(room)))],
            None,
        )

    # -- events ----------------------------------------------------------------------------

    def publish_to_room(self, room: str, event: dict[str, Any], origin: str | None) -> None:
        """Publish an ephemeral event to every node with members in ``room``, wrapped as a
        ``room_event`` that names the connection it came from (``node/conn``)."""
        wrapped = {"t": ROOM_EVENT, "room": room, "event": event, "origin": origin}
        payload = msgpack.packb(wrapped, use_bin_type=True)
        channel = self.keys.room_channel(room)
        self.guarded("publish", lambda: self.publish(self.client, channel, payload), None)

    def publish_to_user(self, user: str, event: dict[str, Any], origin: str | None = None) -> None:
        """Publish an event (a receipt) to every node with a connection of ``user``; with
        ``origin``, wrapped as a ``user_event`` that names the connection it came from, which
        does not get it."""
        if origin is not None:
            event = {"t": USER_EVENT, "event": event, "origin": origin}
        payload = msgpack.packb(event, use_bin_type=True)
        channel = self.keys.user_channel(user)
        self.guarded("publish", lambda: self.publish(self.client, channel, payload), None)


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _now_ms() -> int:
    return int(time.time() * 1000)
