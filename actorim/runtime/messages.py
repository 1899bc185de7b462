"""Messages exchanged between a node's actors: small immutable values, one class per intent."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import gevent
from pykka import ActorDeadError

if TYPE_CHECKING:
    from collections.abc import Callable

    from pykka import ActorRef

    from actorim.domain.messages import NewMessage, ReceiptStatus, StoredMessage
    from actorim.protocol.errors import CommandError
    from actorim.protocol.wire import WireFrame
    from actorim.runtime.link import Link
    from actorim.store.base import Store


class ReplyTo(Protocol):
    """Where the store sends an answer: the asking actor's ref (or anything that forwards to
    the asker's current actor). The answer is a :class:`Call` of the request's ``done``, so it
    runs in the asker's own turn, never inside the store actor."""

    def tell(self, message: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class Publish:
    """To a room: a committed message to fan out to members (but ``origin``)."""

    seq: int
    frame: WireFrame
    origin: Link | None


@dataclass(frozen=True, slots=True)
class RemoteEvent:
    """From the cluster: a member or presence event about ``user``, for the local links."""

    frame: WireFrame
    user: str | None


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """To a room: an ephemeral event (no seq, not stored) for every member but ``origin``."""

    frame: WireFrame
    origin: Link | None


@dataclass(frozen=True, slots=True)
class Check:
    """To a room started from a seq a connect's inbox read: the store's last seq, read after
    the room subscribed; what lies beyond is repaired from the store."""

    seq: int


@dataclass(frozen=True, slots=True)
class Repair:
    """To a room: replay from the store what came after the last seq it fanned out."""


@dataclass(frozen=True, slots=True)
class JoinRoom:
    """To a room: add ``link``; with ``since``, first replay what it missed. ``command_id``
    None: the connection subscribes to a room its user belongs to (at connect, or when another
    of the user's devices joined), and nothing is answered. ``title`` and ``topic`` (the room's
    metadata, read as the user joined) go into the reply."""

    link: Link
    command_id: int | None
    since: int | None = None
    epoch: str | None = None
    title: str = ""
    topic: str = ""
    lasting: bool = True
    """False: the store could not be reached, the join subscribed the connection only (the
    reply says ``lasting: false``)."""
    role: str = "member"
    """The user's role in the room (``actorim.domain.moderation``); the reply names any
    other than ``member``."""


@dataclass(frozen=True, slots=True)
class LeaveRoom:
    """To a room: remove ``link``; ``command_id`` None when the connection is closing."""

    link: Link
    command_id: int | None = None


@dataclass(frozen=True, slots=True)
class Append:
    """To the store: persist ``message``; answer ``command_id`` on ``link`` once durable, and
    tell ``done(stored, error)`` to ``reply_to`` when given."""

    message: NewMessage
    body: Any
    link: Link | None
    command_id: int | None
    reply_to: ReplyTo | None = None
    done: Callable[[Any, BaseException | None], None] | None = None
    command: str = "send"  # the command ``command_id`` is, named in its answer's metric


@dataclass(frozen=True, slots=True)
class Mark:
    """To the store: record that ``user`` got (``delivered``) or read direct message ``mid``,
    in the next group commit; then ``done(receipt, error)`` is told to ``reply_to``."""

    mid: str
    user: str
    status: ReceiptStatus
    reply_to: ReplyTo
    done: Callable[[Any, BaseException | None], None]


@dataclass(frozen=True, slots=True)
class ReadPage:
    """To the store: read a ``history`` page on the store thread, then turn it into a reply with
    ``build(messages, more)`` on the page thread (decoding and encoding stay off the hub);
    ``done(reply, error)`` is told to ``reply_to``."""

    conv: str
    before: int | None
    after: int | None
    limit: int
    build: Callable[[list[StoredMessage], bool], Any]
    reply_to: ReplyTo
    done: Callable[[Any, BaseException | None], None]
    reader: str | None = None
    """Who reads the page: each message's reactions say which are theirs (``me``)."""
    guard: Callable[[Store], CommandError | None] | None = None
    """Run on the store thread before the read, in the same job: the CommandError that refuses
    the page (a private room read by someone not its member), or None to read it. Returned,
    not raised: the read's answer carries it to the asker."""


@dataclass(frozen=True, slots=True)
class ReadThread:
    """To the store: read a ``thread`` page (the root ``root`` and a page of its replies) on
    the store thread, then turn it into a reply with ``build(root, messages, more)`` on the
    page thread; ``done(reply, error)`` is told to ``reply_to``."""

    root: str
    before: int | None
    after: int | None
    limit: int
    build: Callable[[StoredMessage | None, list[StoredMessage], bool], Any]
    reply_to: ReplyTo
    done: Callable[[Any, BaseException | None], None]
    reader: str | None = None
    """Who reads the page: each message's reactions say which are theirs (``me``)."""
    guard: Callable[[Store, StoredMessage | None], CommandError | None] | None = None
    """Run on the store thread after the read, in the same job, with the root read (a thread's
    room is known only then): the CommandError that refuses the page, or None."""


@dataclass(frozen=True, slots=True)
class LastSeq:
    """To the store: the highest seq of ``conv``; ``done(seq, error)`` is told to ``reply_to``."""

    conv: str
    reply_to: ReplyTo
    done: Callable[[Any, BaseException | None], None]


@dataclass(frozen=True, slots=True)
class Since:
    """To the store: what ``conv`` holds after ``seq``, within ``limit`` messages and
    ``max_bytes``; ``done((messages, complete), error)`` is told to ``reply_to``."""

    conv: str
    seq: int
    limit: int
    max_bytes: int | None
    reply_to: ReplyTo
    done: Callable[[Any, BaseException | None], None]


@dataclass(frozen=True, slots=True)
class PendingFor:
    """To the store: a page of ``user``'s unacknowledged direct messages after mid ``after``;
    ``done(messages, error)`` is told to ``reply_to``."""

    user: str
    after: str | None
    limit: int
    reply_to: ReplyTo
    done: Callable[[Any, BaseException | None], None]


@dataclass(frozen=True, slots=True)
class GetMessage:
    """To the store: the stored message ``mid`` as it is now (None: unknown or not retained);
    ``done(message, error)`` is told to ``reply_to``. An edit or delete reads its message
    first, to know its conversation and to check who may change it."""

    mid: str
    reply_to: ReplyTo
    done: Callable[[Any, BaseException | None], None]


@dataclass(frozen=True, slots=True)
class OutboxRequest:
    """To the store: one operation on the webhook outbox or its dead-letter queue (the
    dispatcher's claims and settlements, the server API's dead-letter calls), ``run(store)``
    on the store's thread; ``done(result, error)`` is told to ``reply_to``."""

    run: Callable[[Store], Any]
    reply_to: ReplyTo
    done: Callable[[Any, BaseException | None], None]


@dataclass(frozen=True, slots=True)
class RoomsRequest:
    """To the store: ``run(store)`` on the store's thread, a membership, room metadata or
    inbox operation (``actorim.runtime.membership`` makes them); ``done(result, error)`` is
    told to ``reply_to``. Unlike an ``OutboxRequest`` it is refused while the store's link is
    down, as a connection's reads are."""

    run: Callable[[Store], Any]
    reply_to: ReplyTo
    done: Callable[[Any, BaseException | None], None]


@dataclass(frozen=True, slots=True)
class MoveMarker:
    """To the store: move ``user``'s read marker in ``conv`` up to ``seq`` (forward only);
    ``done((counts, moved), error)`` is told to ``reply_to``, the counts capped at ``cap``."""

    user: str
    conv: str
    seq: int
    cap: int
    reply_to: ReplyTo
    done: Callable[[Any, BaseException | None], None]


@dataclass(frozen=True, slots=True)
class CountsFor:
    """To the store: ``user``'s marker, unread and mention counts (capped at ``cap``) in each
    of ``convs``; ``done({conv: Counts}, error)`` is told to ``reply_to``."""

    user: str
    convs: tuple[str, ...]
    cap: int
    reply_to: ReplyTo
    done: Callable[[Any, BaseException | None], None]


StoreRead = LastSeq | Since | PendingFor | GetMessage | OutboxRequest | MoveMarker | CountsFor

# Everything the store actor is told by the others (it also runs its own timers' ``Call``s).
StoreRequest = Append | Mark | ReadPage | ReadThread | StoreRead | RoomsRequest


@dataclass(frozen=True, slots=True)
class Call:
    """Run ``func(*args)`` inside the receiving actor (a result coming back to it)."""

    func: Callable[..., Any]
    args: tuple[Any, ...] = ()


def call_later(ref: ActorRef[Any], delay: float, func: Callable[..., Any]) -> gevent.Greenlet:
    """Run ``func`` inside the actor behind ``ref`` after ``delay`` seconds (a timer of the
    actor's: kill the returned greenlet to cancel it; an actor gone by then is skipped)."""

    def fire() -> None:
        with contextlib.suppress(ActorDeadError):
            ref.tell(Call(func))

    return gevent.spawn_later(delay, fire)


# -- to the presence tracker ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Online:
    link: Link


@dataclass(frozen=True, slots=True)
class Offline:
    link: Link


@dataclass(frozen=True, slots=True)
class Resync:
    """After Redis was away: make this node's presence counts in Redis match its links."""


@dataclass(frozen=True, slots=True)
class PresenceQuery:
    link: Link
    command_id: int
    users: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Statuses:
    """To the presence tracker, from Python (the server API): ``done(statuses)`` with the
    status of each of ``users``, as a ``presence`` command would be answered."""

    users: tuple[str, ...]
    done: Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class WatchChange:
    link: Link
    command_id: int
    users: tuple[str, ...]
    watch: bool

    @property
    def command(self) -> str:
        """The command this answers: ``watch`` or ``unwatch``."""
        return "watch" if self.watch else "unwatch"


# -- to the router ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Register:
    """Ask: add an authenticated link under its user (refused past the per-user limit)."""

    link: Link


@dataclass(frozen=True, slots=True)
class Unregister:
    """Tell: the link is closing."""

    link: Link


@dataclass(frozen=True, slots=True)
class RepairRooms:
    """Tell: the Redis link is back; every room replays what it missed."""


@dataclass(frozen=True, slots=True)
class RoomFor:
    """Ask: the ``RoomState`` of ``name``, its actor running or starting (``starting``: a
    join goes to ``waiting``); counts as a join in flight. Answered at once."""

    name: str


@dataclass(frozen=True, slots=True)
class RoomsFor:
    """Ask: ``RoomFor`` for each of ``names`` at once (a connection subscribing to every room
    its user belongs to); answered with the states in the same order."""

    names: tuple[str, ...]
    seqs: tuple[int | None, ...] = ()
    """Each room's last seq as the asker read it (None: unknown), for a room not running."""


@dataclass(frozen=True, slots=True)
class RoomIdle:
    """To the router: the room has no members left after handling ``joins_handled`` joins."""

    name: str
    joins_handled: int
    state: object  # the room's RoomState, compared by identity only


# What each singleton takes, for the typed tells of ``actorim.runtime.context.Refs``.
PresenceRequest: TypeAlias = Online | Offline | Resync | PresenceQuery | Statuses | WatchChange
RouterRequest: TypeAlias = Register | Unregister | RepairRooms | RoomFor | RoomIdle | Call
