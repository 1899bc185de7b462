"""The part of a WebSocket connection that outlives any one ``ConnectionActor``.

When a connection actor crashes, its supervisor starts a new one *on the same link*: the socket,
the outbox and the connection's ``Session`` (``actorim.domain.session``: phase, authenticated
user, joined rooms, watch list) are here, not in the actor, so the client
keeps its session and notices nothing but an ``internal`` error reply for the command that
failed. Rooms, the router and the presence tracker hold links, never actor refs, so they keep
reaching the client across restarts. They read the session but never change it: they tell the
connection's actor what changed (``notify``), and it applies that.

The link is also where frames leave: anyone on the hub offers frames (``send``,
``send_frame``, ``reply``), and ``wake`` schedules one flush per hub loop iteration, a hub
callback that writes what the socket takes without blocking and hands the rest (a slow reader,
an overflow, a close) to the connection's actor. The offline backlog being paged out
(``offline``) and the history requests in turn (``pages``) live here too, so a restarted actor
carries on with them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

import gevent
from gevent.event import Event
from pykka import ActorDeadError

from actorim.domain.outbox import Outbox
from actorim.domain.session import Phase, Session
from actorim.ports import Transport
from actorim.protocol.codec import Encoding
from actorim.protocol.commands import reply_error, reply_ok
from actorim.protocol.wire import WireFrame, frame_for
from actorim.runtime.pages import PageTurns
from supervisors import MailboxFull, RestartIntensity

if TYPE_CHECKING:
    from collections.abc import Set as AbstractSet

    from pykka import ActorRef

    from actorim.domain.auth import Identity
    from actorim.domain.ratelimit import RateLimiter
    from actorim.protocol.commands import Command
    from actorim.protocol.errors import ErrorCode
    from actorim.runtime.metrics import Metrics

__all__ = ["WAKE", "Backlog", "Link", "Phase"]  # Phase: re-exported from the domain

# A connection whose actor crashes more than this often is closed with 1011: a command that
# crashes it every time must not keep a restart loop spinning.
CONNECTION_MAX_RESTARTS = 3
CONNECTION_RESTART_WINDOW_S = 10.0

_ids = itertools.count(1)
logger = logging.getLogger("actorim.connection")


_loop: Any = None


def _schedule(callback: Any) -> None:
    """Run ``callback`` on the home hub's next loop iteration (the loop looked up once)."""
    global _loop
    if _loop is None:
        _loop = gevent.get_hub().loop
    _loop.run_callback(callback)


# The links woken since the last flush pass, in the order they were woken. A room's fan-out
# wakes every member it offers a frame to; they are flushed together by one hub callback, not
# one callback each (a callback is an object to make and a turn of the loop's callback queue:
# the pass, with the quiet path's other savings, took 31 % off a delivery's instructions, as
# tests/benchmarks/quiet.py counts them).
_woken: list[Link] = []


def _flush_woken() -> None:
    """The flush pass: write what each woken link holds, in the order they were woken."""
    global _woken
    links, _woken = _woken, []
    for link in links:
        try:
            link._flush()
        except Exception:
            # One link's failure (its offline backlog's page, say) must not leave the links
            # after it unflushed: their flush_scheduled flags would never clear.
            logger.exception("flushing connection %d failed", link.conn_id)


class Backlog(Protocol):
    """What a link needs of the delivery paging out its offline backlog
    (``actorim.runtime.offline.OfflineDelivery``, which holds the link: named here so that the
    two modules do not import each other)."""

    def hold(self, mid: str, frame: WireFrame) -> bool:
        """A live direct message for this link: True when it waits behind the backlog (or was
        sent by a page already); False when it goes out now."""
        ...

    def drained(self) -> None:
        """The link wrote out everything its outbox held: read the next page if one is due."""
        ...


class _Wake:
    """The message that tells a connection actor to write its outbox and check for a close."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "WAKE"


WAKE = _Wake()


class Link:
    """One client connection's lasting state; see the module docstring."""

    __slots__ = (
        "__weakref__",
        "_done",
        "actor",
        "carry_over",
        "close_request",
        "close_requested_at",
        "conn_id",
        "crashes",
        "current",
        "encoding",
        "encoding_fixed",
        "flush_scheduled",
        "last_ping",
        "limiter",
        "metrics",
        "mutes",
        "notices",
        "offline",
        "opened_at",
        "outbox",
        "pages",
        "refresh_asked_for",
        "remote",
        "session",
        "ws",
    )

    def __init__(
        self,
        ws: Transport,
        *,
        limiter: RateLimiter,
        max_frames: int,
        max_bytes: int,
        remote: str = "",
        metrics: Metrics | None = None,
    ) -> None:
        self.conn_id = next(_ids)
        self.ws = ws
        self.remote = remote
        self.encoding = Encoding.MSGPACK
        self.encoding_fixed = False
        self.outbox = Outbox(max_frames=max_frames, max_bytes=max_bytes, wake=self.wake)
        self.actor: ActorRef[Any] | None = None
        # Phase, identity, rooms, watch list: changed only by this connection's actor (others
        # tell it, through ``notify``).
        self.session: Session[Any] = Session()
        self.opened_at = time.monotonic()
        self.last_ping = self.opened_at
        self.crashes = RestartIntensity(CONNECTION_MAX_RESTARTS, CONNECTION_RESTART_WINDOW_S)
        self.current: Command | None = None
        self.close_request: tuple[int, str] | None = None
        self.close_requested_at = 0.0
        # The offline backlog being paged out since connect; None once it is all sent.
        self.offline: Backlog | None = None
        self.flush_scheduled = False
        self.limiter = limiter
        self.metrics = metrics
        self.carry_over: list[Any] = []
        # What other actors told this connection about its session, in order, for its actor to
        # apply before its next command (kept here, so a restart or a full mailbox loses none).
        self.notices: list[Any] = []
        # History requests: one page in the making at a time; kept here, across crashes.
        self.pages: PageTurns[Any] = PageTurns()
        # The token expiry (``exp``) the client was last asked to refresh before: set by the
        # sweep, so each token is asked about once (actorim.runtime.tokens).
        self.refresh_asked_for: int | None = None
        # The rooms where the user is muted, with each mute's end in ms (read at connect and
        # join, changed by moderation events: actorim.runtime.moderation).
        self.mutes: dict[str, int] = {}
        self._done: Event | None = None

    def __repr__(self) -> str:
        return f"<Link {self.conn_id} user={self.user!r} {self.phase.value}>"

    @property
    def done(self) -> Event:
        """Set once the connection is closed; made when first asked for (a node that drains
        waits on it), since most connections end without anyone waiting."""
        if self._done is None:
            self._done = Event()
        return self._done

    # -- the session, read by anyone, changed only by the connection's actor --------------------

    @property
    def phase(self) -> Phase:
        return self.session.phase

    @property
    def identity(self) -> Identity | None:
        return self.session.identity

    @property
    def user(self) -> str | None:
        return self.session.user

    @property
    def rooms(self) -> dict[str, Any]:
        return self.session.rooms

    @property
    def watching(self) -> AbstractSet[str]:
        return self.session.watching

    def notify(self, notice: Any) -> None:
        """Tell the connection's actor something that changes its session (it left a room, its
        watch list changed). It applies the notices before anything else it handles, so a
        reply sent after ``notify`` reaches the client after the change took effect for the
        client's next command."""
        self.notices.append(notice)
        self.tell_actor()

    # -- offering frames (called by any actor on the hub) -----------------------------------

    def send(self, obj: dict[str, Any]) -> bool:
        """Encode ``obj`` for this client and queue it; False if the client is too far behind."""
        if self.phase is Phase.CLOSED:
            return False
        return self.outbox.offer(frame_for(obj, self.encoding))

    def send_frame(self, frame: WireFrame) -> bool:
        """Queue a frame shared with other recipients (encoded once for all of them)."""
        if self.phase is Phase.CLOSED:
            return False
        return self.outbox.offer(frame.bytes_for(self.encoding))

    # A reply names the command it answers, for the ``actorim_commands_total`` metric: whoever
    # answers (the connection's actor, a room, the presence tracker, the store) knows which
    # command it answers, so no list of commands waiting is shared between them.

    def offer_now(self, data: bytes) -> None:
        """Queue an encoded frame, or write it at once when nothing else is on its way.

        For a room's fan-out with nothing behind it (the room's mailbox empty: a quiet room).
        When the outbox holds nothing, no flush is due and no write is under way, the frame
        can go before anything offered later, so it is written now, in the caller's turn: no
        wake, no flush pass, no queue (half the Python steps of a quiet delivery,
        tests/benchmarks/quiet.py). What the socket does not take goes back to the outbox for
        the connection's actor, as a flush would. A busy room keeps queueing, so what
        arrives together still leaves in one write.
        """
        outbox = self.outbox
        if (
            outbox.frames
            or self.flush_scheduled
            or self.close_request is not None
            or outbox.overflowed
            or self.offline is not None
        ):
            outbox.offer(data)
            return
        sent = self.ws.try_write(data)
        if sent == len(data):
            return
        if sent >= 0:
            outbox.put_back(data[sent:])
        self.tell_actor()

    def reply(self, command: str, command_id: int, data: dict[str, Any] | None = None) -> None:
        """Answer ``command`` (its name) number ``command_id`` with ``ok`` and ``data``."""
        self._count(command, "ok")
        self.send(reply_ok(command_id, data))

    def reply_frame(self, command: str, command_id: int, frame: bytes) -> bool:
        """Queue a reply already encoded and framed for this client (a history page)."""
        self._count(command, "ok")
        if self.phase is Phase.CLOSED:
            return False
        return self.outbox.offer(frame)

    def fail(self, command: str, command_id: int, code: ErrorCode, message: str) -> None:
        """Answer ``command`` number ``command_id`` with the error ``code``."""
        self._count(command, code.value)
        self.send(reply_error(command_id, code, message))

    def _count(self, command: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.count_command(command, result)

    def request_close(self, code: int, reason: str) -> None:
        """Ask the connection's actor to close the socket; the first request wins."""
        if self.close_request is None and self.phase is not Phase.CLOSED:
            self.close_request = (code, reason)
            self.close_requested_at = time.monotonic()
            self.wake()

    def wake(self) -> None:
        """There is something to write (or a close to do): flush soon.

        The flush runs once per hub loop iteration for however many frames arrived, in the
        flush pass: one hub callback, shared by every link woken in that iteration, that never
        blocks; whatever it cannot finish without blocking (a client that reads slowly, a
        close) it hands to the connection's actor. So a message fanned out to a thousand
        members costs a thousand non-blocking writes and one callback, not a thousand greenlet
        switches or a thousand callbacks.
        """
        if self.outbox.overflowed and self.ws.writing:
            # The actor is stuck writing to a client that stopped reading, so it cannot close
            # the connection, and no close frame would get through: end the TCP connection,
            # which fails the stuck write and lets the actor clean up.
            self.ws.abort()
        if not self.flush_scheduled:
            self.flush_scheduled = True
            if not _woken:
                _schedule(_flush_woken)
            _woken.append(self)

    def _flush(self) -> None:
        self.flush_scheduled = False
        outbox = self.outbox
        if self.close_request is None and not outbox.overflowed and outbox.frames:
            frames = outbox.take()
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            sent = self.ws.try_write(data)
            if sent == len(data):
                if self.offline is not None:
                    self.written()
                return
            if sent >= 0:
                outbox.put_back(data[sent:])
        self.tell_actor()

    def written(self) -> None:
        """A write finished: when it emptied the outbox, the offline backlog may send on."""
        offline = self.offline
        if offline is not None and not self.outbox.frames:
            offline.drained()

    def tell_actor(self) -> None:
        """Hand the rest to the actor: a blocking write, a close, an overflow."""
        actor = self.actor
        if actor is None:
            return  # between incarnations: the next one services the link in on_start
        with contextlib.suppress(ActorDeadError, MailboxFull):
            actor.tell(WAKE)
