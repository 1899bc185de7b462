"""``ListenerActor``: the node's Redis subscriber.

It subscribes to exactly the channels the node's own connections need (a room's channel while the
room has a member here, a user's channel while the user has a connection here, and presence),
so a message reaches only the nodes that have a recipient; and it hands what Redis publishes to
the runtime's fan-out, ``ports.Delivery``: room messages (which the room's actor fans out in
``seq`` order), direct messages and receipts for a user's links, member events and ephemeral
room events (not stored, no seq) for the rooms, presence events for the presence tracker, and
token revocations (always subscribed, like presence).
It names no runtime actor or link: the events' origins too are resolved by the delivery.

A reader greenlet owned by the actor blocks on the subscriptions (``Subscriptions``: one
connection with SUBSCRIBE on a single Redis or under Sentinel, one per shard with SSUBSCRIBE on
a Redis Cluster). When a connection to Redis breaks, or a shard drops a channel whose slot
moved, it tells the breaker and subscribes again to every wanted channel on the slot map as it
is now; only when every subscription is confirmed does the link count as healthy again. A
reader that fails for any other reason fails the actor, so its supervisor restarts it: the
listener never dies silently.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
import msgpack
from gevent.event import Event
from pykka import ActorDeadError

from actorim.protocol.events import message_frame
from actorim.protocol.wire import WireFrame
from actorim.redis.link import ROOM_EVENT, USER_EVENT, ClusterLink
from actorim.redis.revocations import REVOKED_EVENT, decode_revocation
from actorim.redis.sessions import DISCONNECT_EVENT
from actorim.redis.store import decode_published_fields, msgpack_map
from actorim.redis.subscriptions import SlotMoved, Subscriptions
from actorim.redis.topology import REDIS_ERRORS
from supervisors import Backoff, GeventActor

if TYPE_CHECKING:
    from actorim.ports import Delivery, Origin

__all__ = ["ListenerActor", "Unwant", "Want"]

logger = logging.getLogger("actorim.cluster")

# How long a subscription may take to be confirmed before the caller carries on without it
# (it is confirmed later, or repaired: rooms replay their gaps when the link recovers).
SUBSCRIBE_TIMEOUT_S = 2.0
# How long the reader waits for a message before it looks at its state again.
READ_TIMEOUT_S = 1.0
RECONNECT = Backoff(floor=0.05, cap=2.0)


@dataclass(frozen=True, slots=True)
class Want:
    """Ask: subscribe to ``channel`` (counted); answered once Redis confirmed it."""

    channel: str


@dataclass(frozen=True, slots=True)
class Unwant:
    """Tell: one wanter less; unsubscribe when none is left."""

    channel: str


@dataclass(frozen=True, slots=True)
class _Failed:
    """Tell, from the reader greenlet: it failed with ``error``, so the actor fails with it."""

    error: BaseException


class ListenerActor(GeventActor):
    """See the module docstring."""

    def __init__(self, delivery: Delivery, link: ClusterLink) -> None:
        super().__init__()
        self.delivery = delivery
        self.link = link
        self.wanted: dict[str, int] = link.wanted
        self._pubsub: Any = None
        self._reader: Any = None
        self._confirmed: dict[str, Event] = {}
        self._stopping = False

    def on_start(self) -> None:
        self.link.listener = self.actor_ref
        self.link.set_subscribed(False)
        self._reader = gevent.spawn(self._read_forever)

    def on_stop(self) -> None:
        self._shutdown()

    def on_failure(self, *_exc: object) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        self._stopping = True
        self.link.listener = None
        self.link.set_subscribed(False)
        if self._reader is not None and self._reader is not gevent.getcurrent():
            self._reader.kill(block=False)
        self._close_pubsub()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Want):
            return self._want(message.channel)
        if isinstance(message, Unwant):
            self._unwant(message.channel)
        elif isinstance(message, _Failed):
            raise message.error
        else:
            return super().on_receive(message)
        return None

    # -- subscriptions ---------------------------------------------------------------------

    def _want(self, channel: str) -> bool:
        count = self.wanted.get(channel, 0)
        self.wanted[channel] = count + 1
        if count:
            return True
        return self._subscribe_and_wait([channel])

    def _unwant(self, channel: str) -> None:
        count = self.wanted.get(channel, 0) - 1
        if count > 0:
            self.wanted[channel] = count
            return
        self.wanted.pop(channel, None)
        if self._pubsub is not None:
            self._pubsub.unsubscribe(channel)

    def _subscribe_and_wait(self, channels: list[str]) -> bool:
        pubsub = self._pubsub
        if pubsub is None:
            return False  # not connected: subscribed with everything else on reconnect
        events = []
        for channel in channels:
            event = self._confirmed.setdefault(channel, Event())
            events.append(event)
        try:
            pubsub.subscribe(channels)
        except REDIS_ERRORS as exc:
            self.link.report_failure("subscribe", exc)
            return False
        if self.link.refusing:
            return False  # sent, in case the connection lives; not worth waiting for
        with gevent.Timeout(SUBSCRIBE_TIMEOUT_S, False):
            for event in events:
                event.wait()
            return True
        return False

    # -- the reader ------------------------------------------------------------------------

    def _read_forever(self) -> None:
        attempt = 0
        while True:
            try:
                self._connect()
                attempt = 0
                self._read()
            except REDIS_ERRORS as exc:
                self.link.set_subscribed(False)
                self.link.report_failure("subscriptions", exc)
                self._close_pubsub()
                gevent.sleep(RECONNECT.delay(attempt))
                attempt += 1
            except gevent.GreenletExit:
                raise
            except Exception as exc:
                if self._stopping:  # killed mid-read: redis-py's clean-up may raise instead
                    return
                logger.exception("the Redis listener failed")
                with contextlib.suppress(ActorDeadError):
                    self.actor_ref.tell(_Failed(exc))
                return

    def _connect(self) -> None:
        self._confirmed = {channel: Event() for channel in self.wanted}
        pubsub = Subscriptions(
            self.link.client, sharded=self.link.sharded, read_timeout=READ_TIMEOUT_S
        )
        self._pubsub = pubsub
        channels = list(self.wanted)
        pubsub.subscribe(channels)  # connects; raises while Redis is down
        late = [channel for channel in self.wanted if channel not in self._confirmed]
        if late:  # wanted while the connection was being made
            for channel in late:
                self._confirmed[channel] = Event()
            pubsub.subscribe(late)
        while not all(event.is_set() for event in self._confirmed.values()):
            self._handle(pubsub.get_message(timeout=READ_TIMEOUT_S))
        self.link.set_subscribed(True)
        self.link.report_success()

    def _read(self) -> None:
        pubsub = self._pubsub
        while True:
            self._handle(pubsub.get_message(timeout=READ_TIMEOUT_S))

    def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                pubsub.close()

    def _handle(self, message: dict[str, Any] | None) -> None:
        if message is None:
            return
        kind = message["type"]
        channel = message["channel"].decode()
        pubsub = self._pubsub
        if pubsub is None:
            return
        if kind == pubsub.confirm_kind:
            event = self._confirmed.get(channel)
            if event is not None:
                event.set()
        elif kind == pubsub.drop_kind and channel in self.wanted:
            # Dropped by a shard that does not serve the channel's slot any more.
            raise SlotMoved(f"Redis dropped the subscription to {channel}: its slot moved")
        elif kind == pubsub.message_kind:
            try:
                self._dispatch(channel, message["data"])
            except Exception:
                logger.exception("could not deliver a message from %s", channel)

    # -- delivery --------------------------------------------------------------------------

    def _dispatch(self, channel: str, data: bytes) -> None:
        fields = msgpack_map(data)
        if b"t" in fields:
            self._event(channel, msgpack.unpackb(data, raw=False, strict_map_key=False))
            return
        stored, origin = decode_published_fields(fields)
        link = self._local_origin(origin)
        frame = message_frame(stored)
        if stored.room is not None:
            self.delivery.room_message(stored.room, stored.seq, frame, link)
            return
        user = _user_of(channel)
        if user is not None:
            self.delivery.user_event(user, frame, mid=stored.mid, origin=link)

    def _event(self, channel: str, event: dict[str, Any]) -> None:
        kind = event.get("t")
        user = _user_of(channel)
        if user is not None and kind == USER_EVENT:
            # A user's own event that one of their connections caused (a typing indicator,
            # a marker, their membership change): to their connections but that one.
            if isinstance(event.get("event"), dict):
                origin = self._local_origin(event.get("origin"))
                self.delivery.user_event(user, WireFrame(event["event"]), origin=origin)
        elif user is not None and kind not in (DISCONNECT_EVENT, REVOKED_EVENT):
            # A user's own event from no connection of theirs (a receipt): to all of them.
            self.delivery.user_event(user, WireFrame(event))
        elif kind == "member":
            self.delivery.member_event(event.get("room", ""), WireFrame(event), event.get("user"))
        elif kind == ROOM_EVENT:
            if isinstance(event.get("event"), dict):
                origin = self._local_origin(event.get("origin"))
                self.delivery.room_event(event.get("room", ""), WireFrame(event["event"]), origin)
        elif kind == "presence":
            self.delivery.presence_event(WireFrame(event), event.get("user"))
        elif kind == DISCONNECT_EVENT:
            code, session = event.get("code"), event.get("session")
            if isinstance(code, int) and (session is None or isinstance(session, str)):
                reason = event.get("reason")
                self.delivery.disconnect(
                    event.get("user", ""), session, code, reason if isinstance(reason, str) else ""
                )
        elif kind == REVOKED_EVENT:
            revocation = decode_revocation(event)
            if revocation is not None:
                self.delivery.revoked(revocation)

    def _local_origin(self, origin: str | None) -> Origin | None:
        """The connection of this node that published an event (``<node>/<conn_id>``), which
        does not get it back; None for another node's."""
        if origin is None:
            return None
        node, _, conn = origin.rpartition("/")
        if node != self.link.node_id or not conn.isdigit():
            return None
        return self.delivery.local_origin(int(conn))


def _user_of(channel: str) -> str | None:
    """The user of a user channel (``ns:{u:<user>}``)."""
    start = channel.find("{u:")
    if start < 0 or not channel.endswith("}"):
        return None
    return channel[start + 3 : -1]
