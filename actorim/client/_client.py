"""``Client``: a session with an actorim server that survives the server's restarts.

The link is governed by a :class:`~actorim.actors.breaker.BreakerActor`. Its probe is this
client's :meth:`Client._probe`: on a live link it is the heartbeat (the ``ping`` command); on a
dead one it is a reconnect attempt, which opens a WebSocket, sends ``connect``, re-joins every
room with ``since`` (the last seq seen) and resends every unanswered command in its original
order, ``cid`` included. The breaker schedules those attempts (back-off with full jitter while
the link fails, a cool-down once ``failure_threshold`` attempts failed in a row) and notices a
server that stopped answering; the client turns its transitions into :class:`LinkState`.

One rule keeps the breaker's count honest: the end of a link that was up is reported once, by
whoever sees it first (the socket's reader, or a failed write); a failed attempt is the
probe's own outcome.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
from pykka import ActorDeadError, ActorRef

from actorim.actors.breaker import BreakerActor, ReportFailure, Subscribe
from actorim.breaker import BreakerPolicy, BreakerState, Transition
from actorim.client._errors import (
    AuthError,
    ClientClosed,
    ClientError,
    LinkLost,
    NotConnected,
    QueueFull,
    RequestTimeout,
    ServerError,
)
from actorim.client._events import Dispatcher, EventBuffer, EventCallback, StateCallback
from actorim.client._link import DEFAULT_MAX_SIZE, LinkClosed, WebSocketLink
from actorim.client._state import Command, OnLoss, Session
from actorim.client._status import LinkState, LinkStatus, StateChange
from supervisors import Backoff

__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "MAX_SERVER_RETRIES",
    "Client",
    "SendResult",
    "Token",
]

logger = logging.getLogger("actorim.client")

Token = str | Callable[[], str]
"""A token, or a callable that returns a fresh one (asked again when the server refuses the
one it has)."""

DEFAULT_POLICY = BreakerPolicy(
    failure_threshold=6,
    cooldown=10.0,
    cooldown_cap=60.0,
    backoff=Backoff(floor=0.25, cap=8.0),
    heartbeat_interval=10.0,
    heartbeat_timeout=5.0,
    missed_heartbeats=2,
)
"""The client's link policy. A server restart is ridden out by five reconnect attempts spread
over up to ~9 s (0.25 s + jitter, doubling); then the circuit opens for 10 s plus jitter that
grows to a minute, so a server that stays down sees about one attempt a minute per client.
A server that stops answering (even over a TCP connection that stays up) is noticed within
``2 * 10 + 5 = 25`` s; each attempt, token fetch and session restore included, has 5 s."""

DEFAULT_REQUEST_TIMEOUT_S = 30.0
"""How long a command waits for its answer, reconnects included, before ``RequestTimeout``."""

MAX_SERVER_RETRIES = 3
"""Times a command is sent again when the server answers that it is busy or failed
(``overloaded``, ``internal``, ``rate_limited``): safe, since every command the client retries
is idempotent (a send keeps its ``cid``)."""

SERVER_RETRY_DELAY_S = 0.2
"""Pause before the first such retry; it doubles for each next one."""

_RETRYABLE_CODES = frozenset({"overloaded", "internal", "rate_limited"})

# The server accepts at most this many users in one watch command (docs/protocol.md).
_WATCH_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class SendResult:
    """A stored message: its id, its place in the room or conversation, its time (ms)."""

    mid: str
    seq: int
    ts: int
    cid: str


class _Refused(Exception):
    """The server refused the token (``unauthenticated``, then close 1008)."""


class _Conn:
    """One WebSocket and what the client knows of it."""

    __slots__ = ("dead", "flushing", "ready", "silent", "ws")

    def __init__(self, ws: WebSocketLink) -> None:
        self.ws = ws
        self.ready = False  # connected, rooms re-joined, waiting commands resent
        self.dead = False
        self.silent = False  # given up by the client: its end is not reported to the breaker
        self.flushing = False


class _Tokens:
    """The token to connect with: fixed, or fetched from a callable (once, then on refusal)."""

    def __init__(self, source: Token) -> None:
        self._source = source
        self._token = source if isinstance(source, str) else None

    @property
    def renewable(self) -> bool:
        return callable(self._source)

    def get(self) -> str:
        if self._token is None:
            self._token = self._fetch()
        return self._token

    def refresh(self) -> str:
        self._token = self._fetch()
        return self._token

    def _fetch(self) -> str:
        assert callable(self._source)
        token = self._source()
        if not isinstance(token, str) or not token:
            raise ClientError(f"the token callable returned {type(token).__name__}, not a token")
        return token


class Client:
    """A connection to an actorim server that reconnects by itself; see docs/clients.md.

    ``url`` is the server's WebSocket endpoint (``ws://host:port/ws`` or ``wss://...``);
    ``token`` is a token or a callable returning a fresh one. Options:

    * ``policy`` (default :data:`DEFAULT_POLICY`): back-off, circuit breaker and heartbeats.
    * ``request_timeout`` (default 30 s): how long a command waits for its answer, reconnects
      included, unless the call gives its own ``timeout``.
    * ``wait_for_reconnect`` (default True): a command made while the link is down waits for
      it (up to its timeout). False: it fails at once with :class:`NotConnected`.
    * ``auto_ack`` (default True): acknowledge every direct message as it arrives, so the
      server stops holding it for offline delivery and the sender gets a receipt.
    * ``buffer_events`` (default True): keep events for :meth:`events` (up to 10,000). Turn it
      off when only callbacks are used.
    * ``json_frames`` (default False): speak JSON instead of MessagePack.
    * ``clock``, ``rand``: the breaker's time source and jitter, for tests.

    Example::

        client = Client("ws://localhost:8080/ws", token)
        client.connect()
        client.join("lobby")
        client.on("msg", lambda m: print(m["from"], m["body"]))
        client.send(room="lobby", body="hello")
        client.close()
    """

    def __init__(
        self,
        url: str,
        token: Token,
        *,
        policy: BreakerPolicy = DEFAULT_POLICY,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
        wait_for_reconnect: bool = True,
        auto_ack: bool = True,
        buffer_events: bool = True,
        json_frames: bool = False,
        max_size: int = DEFAULT_MAX_SIZE,
        ssl_context: Any = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if not isinstance(token, str) and not callable(token):
            raise TypeError("token must be a string or a callable that returns one")
        if request_timeout <= 0:
            raise ValueError(f"request_timeout must be > 0, got {request_timeout!r}")
        self.url = url
        self._tokens = _Tokens(token)
        self._policy = policy
        self._request_timeout = request_timeout
        self._wait_for_reconnect = wait_for_reconnect
        self._json = json_frames
        self._max_size = max_size
        self._ssl_context = ssl_context
        self._clock = clock
        self._rand = rand
        self._session = Session(auto_ack=auto_ack)
        self._status = LinkStatus()
        self._results: dict[int, gevent.event.AsyncResult | None] = {}
        self._conn: _Conn | None = None
        self._breaker: ActorRef[Any] | None = None
        self._info: dict[str, Any] = {}
        self._closed: ClientClosed | None = None
        self._reason = "not started"  # of the last state change
        self._state_event = gevent.event.Event()
        self._buffer = EventBuffer() if buffer_events else None
        self._dispatch = Dispatcher(self._buffer)

    def __repr__(self) -> str:
        return f"<Client {self.url} {self.state.value} user={self.user!r}>"

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        return self._status.state

    @property
    def user(self) -> str | None:
        """The user the server authenticated (None before the first connect)."""
        return self._session.user

    @property
    def session(self) -> str | None:
        """The server's id for the current connection."""
        return self._info.get("session")

    @property
    def rooms(self) -> tuple[str, ...]:
        """The rooms joined (re-joined after every reconnect)."""
        return tuple(self._session.rooms)

    def last_seq(self, room: str) -> int | None:
        """The last seq seen in ``room``: where the next reconnect resumes."""
        state = self._session.rooms.get(room)
        return None if state is None else state.seq

    def wait_for(self, state: LinkState, timeout: float | None = None) -> bool:
        """Wait until the link is in ``state``; False after ``timeout`` seconds, or at once when
        the client is closed and ``state`` is another one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            event = self._state_event
            if self.state is state:
                return True
            if self._status.stopped:
                return False
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            event.wait(remaining)

    # -- events --------------------------------------------------------------------------------

    def on(self, event_type: str, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` for every event of ``event_type`` (``msg``, ``member``,
        ``presence``, ``receipt``, ``rejoined``, ``error``; ``"*"`` for all). Returns a function
        that unsubscribes. Callbacks run one at a time in the client's dispatch greenlet and may
        call the client."""
        return self._dispatch.on(event_type, callback)

    def on_state(self, callback: StateCallback) -> Callable[[], None]:
        """Call ``callback(change)`` with every :class:`StateChange` of the link."""
        return self._dispatch.on_state(callback)

    def events(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Iterate over incoming events, oldest first (those that arrived before the loop
        started included). Ends when none arrives within ``timeout`` seconds, or when the client
        is closed and every event was read."""
        if self._buffer is None:
            raise ClientError("this client was made with buffer_events=False: use on()")
        while True:
            event = self._buffer.get(timeout)
            if event is None:
                return
            yield event

    # -- life cycle ----------------------------------------------------------------------------

    def connect(self, timeout: float | None = None) -> dict[str, Any]:
        """Start the link (once) and wait until it is CONNECTED; returns the server's
        ``connect`` reply (``user``, ``session``, ``node``, ``heartbeat``).

        Raises :class:`AuthError` if the server refuses the token for good, and
        :class:`RequestTimeout` if the link is not up within ``timeout`` (default
        ``request_timeout``); the client keeps trying in the background.
        """
        if self._closed is not None:
            raise self._closed
        if self._breaker is None:
            self._publish(self._status.start(f"connecting to {self.url}"))
            self._breaker = BreakerActor.start(
                self._policy,
                probe=self._probe,
                name=f"client {self.url}",
                clock=self._clock,
                rand=self._rand,
            )
            self._breaker.ask(Subscribe(self._on_transition))
        limit = self._request_timeout if timeout is None else timeout
        if not self.wait_for(LinkState.CONNECTED, limit):
            if self._closed is not None:
                raise self._closed
            raise RequestTimeout(
                f"not connected to {self.url} within {limit:g}s (the link is {self.state.value}: "
                f"{self._reason}); the client keeps trying"
            )
        return dict(self._info)

    def close(self) -> None:
        """Close the link for good: waiting commands fail with :class:`ClientClosed`, the
        :meth:`events` iterators end once drained, and the state becomes DISCONNECTED."""
        self._shutdown(ClientClosed("the client was closed"))

    # -- commands ------------------------------------------------------------------------------

    def join(self, room: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Join ``room``; returns ``{room, seq, epoch, members}``. The room is re-joined after
        every reconnect, resuming after the last message seen."""
        self._session.joining(room)
        try:
            return self._request("join", {"room": room}, timeout=timeout)
        except ClientError:
            state = self._session.rooms.get(room)
            if state is not None and not state.joined:
                self._session.leaving(room)
            raise

    def leave(self, room: str, *, timeout: float | None = None) -> None:
        """Leave ``room``. While the link is down this only forgets the room: the next link is
        in no room the client does not re-join."""
        was_joined = self._session.leaving(room)
        conn = self._conn
        if was_joined and (conn is None or not conn.ready) and self._closed is None:
            return
        self._request("leave", {"room": room}, on_loss=OnLoss.DONE, retries=0, timeout=timeout)

    def send(
        self,
        *,
        room: str | None = None,
        to: str | None = None,
        body: Any,
        kind: str = "text",
        cid: str | None = None,
        timeout: float | None = None,
    ) -> SendResult:
        """Send ``body`` to a joined ``room`` or to the user ``to``; returns once the message is
        stored (durable). The ``cid`` (a fresh uuid4 hex unless given) makes every resend safe:
        after a reconnect, or by the caller after :class:`RequestTimeout` (its ``cid``)."""
        if (room is None) == (to is None):
            raise ValueError("give exactly one of room= or to=")
        cid = cid or uuid.uuid4().hex
        args: dict[str, Any] = {"room": room} if room is not None else {"to": to}
        args.update(body=body, kind=kind, cid=cid)
        data = self._request("send", args, timeout=timeout, cid=cid)
        return SendResult(mid=data["mid"], seq=data["seq"], ts=data["ts"], cid=cid)

    def ack(self, mid: str, *, timeout: float | None = None) -> None:
        """This user has the direct message ``mid`` (sent automatically with ``auto_ack``)."""
        self._request("ack", {"mid": mid}, timeout=timeout)

    def read(self, mid: str, *, timeout: float | None = None) -> None:
        """This user read the direct message ``mid``: its sender gets a ``read`` receipt."""
        self._request("read", {"mid": mid}, timeout=timeout)

    def history(
        self,
        room: str | None = None,
        *,
        with_user: str | None = None,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Stored messages of ``room`` or of the conversation ``with_user``, ascending by seq:
        ``{messages, more}``; ``before``/``after`` page by seq (docs/protocol.md)."""
        if (room is None) == (with_user is None):
            raise ValueError("give exactly one of room or with_user=")
        args: dict[str, Any] = {"room": room} if room is not None else {"with": with_user}
        for name, value in (("before", before), ("after", after), ("limit", limit)):
            if value is not None:
                args[name] = value
        return self._request("history", args, timeout=timeout)

    def presence(self, users: Iterable[str], *, timeout: float | None = None) -> dict[str, str]:
        """``{user: "online" | "offline"}`` for up to 1000 users."""
        data = self._request("presence", {"users": list(users)}, timeout=timeout)
        return dict(data.get("statuses", {}))

    def watch(self, users: Iterable[str], *, timeout: float | None = None) -> None:
        """Get a ``presence`` event whenever one of ``users`` comes online or goes offline (kept
        across reconnects)."""
        users = list(users)
        self._session.watch(users)
        try:
            self._request("watch", {"users": users}, timeout=timeout)
        except ServerError:
            self._session.unwatch(users)
            raise

    def unwatch(self, users: Iterable[str], *, timeout: float | None = None) -> None:
        users = list(users)
        self._session.unwatch(users)
        self._request("unwatch", {"users": users}, timeout=timeout)

    def ping(self, *, timeout: float | None = None) -> float:
        """A round trip to the server; returns its duration in seconds."""
        started = time.monotonic()
        self._request("ping", {}, timeout=timeout)
        return time.monotonic() - started

    # -- sending commands ----------------------------------------------------------------------

    def _request(
        self,
        t: str,
        args: dict[str, Any],
        *,
        on_loss: OnLoss = OnLoss.RESEND,
        timeout: float | None = None,
        retries: int = MAX_SERVER_RETRIES,
        cid: str | None = None,
    ) -> Any:
        """Send a command of the application and wait for its answer (see ``request_timeout``)."""
        limit = self._request_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        delay = SERVER_RETRY_DELAY_S
        for attempt in range(retries + 1):
            self._check_usable()
            command = self._session.submit(t, args, on_loss)
            result: gevent.event.AsyncResult = gevent.event.AsyncResult()
            self._results[command.id] = result
            self._flush()
            result.wait(max(0.0, deadline - time.monotonic()))
            if not result.ready():
                self._session.cancel(command.id)
                self._results.pop(command.id, None)
                raise RequestTimeout(
                    f"no answer to {t} within {limit:g}s (the link is {self.state.value})"
                    + (f"; resend with cid={cid!r} to be safe" if cid else ""),
                    cid=cid,
                )
            try:
                return result.get(block=False)
            except ServerError as exc:
                late = deadline - time.monotonic() < delay
                if exc.code not in _RETRYABLE_CODES or attempt == retries or late:
                    raise
                logger.info("%s answered %s; trying again in %.2fs", t, exc.code, delay)
                gevent.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_usable(self) -> None:
        if self._closed is not None:
            raise self._closed
        if self._breaker is None:
            raise NotConnected("call connect() first")
        if not self._wait_for_reconnect and self.state is not LinkState.CONNECTED:
            raise NotConnected(
                f"the link to {self.url} is {self.state.value}; try again once it is "
                "CONNECTED (or make the client with wait_for_reconnect=True)"
            )

    def _background(self, t: str, args: dict[str, Any]) -> None:
        """A command nobody waits for (an automatic receipt); resent like the others."""
        try:
            command = self._session.submit(t, args)
        except QueueFull as exc:
            logger.warning("dropping an automatic %s: %s", t, exc)
            return
        self._results[command.id] = None
        self._flush()

    def _flush(self) -> None:
        """Write every waiting command on the link, if it is ready."""
        conn = self._conn
        if conn is None or not conn.ready or conn.flushing:
            return
        conn.flushing = True
        try:
            self._write_unsent(conn)
        except LinkLost:
            pass  # the commands wait for the next link
        finally:
            conn.flushing = False

    def _write_unsent(self, conn: _Conn) -> None:
        while batch := self._session.take_unsent():
            for command in batch:
                self._write(conn, command)

    def _write(self, conn: _Conn, command: Command) -> None:
        if conn.dead:
            raise LinkLost("the link ended")
        try:
            conn.ws.send(command.frame())
        except (TypeError, ValueError) as exc:
            self._session.cancel(command.id)
            result = self._results.pop(command.id, None)
            error = ClientError(f"{command.t} cannot be encoded: {exc}", code="bad_request")
            if result is not None:
                result.set_exception(error)
        except (LinkClosed, OSError) as exc:
            self._lost(conn, f"writing to the server failed: {exc}")
            raise LinkLost(str(exc)) from None

    def _call_on(
        self, conn: _Conn, t: str, args: dict[str, Any], *, resume: bool = False
    ) -> gevent.event.AsyncResult:
        """Send a command that belongs to ``conn`` (connect, re-join, heartbeat) at once."""
        command = self._session.submit(t, args, OnLoss.FAIL, resume=resume, sent=True)
        result: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self._results[command.id] = result
        try:
            self._write(conn, command)
        except LinkLost:
            self._session.cancel(command.id)
            self._results.pop(command.id, None)
            raise
        return result

    # -- the probe: heartbeats on a live link, attempts on a dead one ---------------------------

    def _probe(self) -> None:
        """Called by the breaker actor in a greenlet of its own, under its ``heartbeat_timeout``:
        returns when the server answered, raises when the attempt failed."""
        conn = self._conn
        if conn is not None and conn.ready and not conn.dead:
            self._heartbeat(conn)
        else:
            self._establish()

    def _heartbeat(self, conn: _Conn) -> None:
        try:
            self._call_on(conn, "ping", {}).get()
        except LinkLost:
            # The link's end was reported to the breaker by whoever saw it, which abandons this
            # heartbeat; waiting here keeps the one failure from being counted twice.
            gevent.sleep(self._policy.heartbeat_timeout)
            raise

    def _establish(self) -> None:
        stale = self._conn
        if stale is not None:
            self._discard(stale, "replaced by a new connection")
        try:
            conn = self._open(self._tokens.get())
        except _Refused as refused:
            if not self._tokens.renewable:
                error = AuthError(
                    f"the server refused the token ({refused}); make a new client with a valid "
                    "token, or give a callable that returns fresh ones"
                )
                gevent.spawn(self._shutdown, error)
                raise error from None
            logger.info("the server refused the token (%s); fetching a fresh one", refused)
            # A fresh token that is refused too counts as one failed attempt.
            conn = self._open(self._tokens.refresh())
        try:
            self._restore(conn)
        except BaseException:
            self._discard(conn, "the session could not be restored")
            raise

    def _open(self, token: str) -> _Conn:
        ws = WebSocketLink.open(
            self.url,
            timeout=self._policy.heartbeat_timeout,
            json=self._json,
            max_size=self._max_size,
            ssl_context=self._ssl_context,
        )
        conn = _Conn(ws)
        self._conn = conn
        gevent.spawn(self._read, conn)
        try:
            info = self._call_on(conn, "connect", {"token": token}).get()
        except ServerError as exc:
            self._discard(conn, str(exc))
            if exc.code == "unauthenticated":
                raise _Refused(exc.server_message) from None
            raise
        except BaseException:
            self._discard(conn, "connect failed")
            raise
        self._info = dict(info)
        self._session.user = info.get("user")
        return conn

    def _restore(self, conn: _Conn) -> None:
        """Re-join the rooms (resuming after the last seq seen), watch again, resend every
        unanswered command in order; then the link is ready."""
        session = self._session
        waits = [self._call_on(conn, "join", a, resume=True) for a in session.rejoin_args()]
        watched = list(session.watched)
        for start in range(0, len(watched), _WATCH_CHUNK):
            users = watched[start : start + _WATCH_CHUNK]
            waits.append(self._call_on(conn, "watch", {"users": users}))
        for result in waits:
            try:
                result.get()
            except ServerError as exc:
                # A room the token no longer allows: the session dropped it and the
                # application gets an error event for it.
                logger.warning("restoring the session: %s", exc)
        self._write_unsent(conn)
        conn.ready = True
        self._publish(self._status.link_up(f"connected as {session.user}"))

    # -- reading -------------------------------------------------------------------------------

    def _read(self, conn: _Conn) -> None:
        try:
            while True:
                frame = conn.ws.recv()
                if conn.dead:
                    return
                self._received(conn, frame)
        except LinkClosed as closed:
            reason = f"the server closed the link ({closed.code}{': ' if closed.reason else ''}"
            self._lost(conn, f"{reason}{closed.reason})")
        except Exception as exc:
            logger.exception("reading from %s failed", self.url)
            self._lost(conn, f"reading failed: {exc}")

    def _received(self, conn: _Conn, frame: dict[str, Any]) -> None:
        if conn is not self._conn:
            return
        t = frame.get("t")
        if t == "reply":
            self._reply(frame)
        elif t == "msg":
            self._message(frame)
        else:
            self._dispatch.event(frame)

    def _reply(self, frame: dict[str, Any]) -> None:
        answer = self._session.answered(frame)
        if answer is None:
            return
        if answer.event is not None:
            self._dispatch.event(answer.event)
        result = self._results.pop(answer.command.id, None)
        if result is None:
            if frame.get("ok") is not True:
                logger.debug("%s failed: %s", answer.command.t, frame.get("error"))
            return
        if frame.get("ok") is True:
            data = frame.get("data")
            result.set(data if isinstance(data, dict) else {})
            return
        error = frame.get("error")
        error = error if isinstance(error, dict) else {}
        result.set_exception(
            ServerError(str(error.get("code", "internal")), str(error.get("message", "")))
        )

    def _message(self, msg: dict[str, Any]) -> None:
        incoming = self._session.message(msg)
        if incoming.settles is not None:
            # The reply to this send was lost with a link; the replay answers it instead.
            result = self._results.pop(incoming.settles.id, None)
            if result is not None:
                result.set({"mid": msg.get("mid"), "seq": msg.get("seq"), "ts": msg.get("ts")})
        if incoming.ack:
            self._background("ack", {"mid": msg["mid"]})
        if incoming.deliver:
            self._dispatch.event(msg)

    # -- the link's end ------------------------------------------------------------------------

    def _lost(self, conn: _Conn, reason: str) -> None:
        """``conn`` ended: report it once, and put its commands back in line for the next link."""
        if conn.dead:
            return
        conn.dead = True
        conn.ws.abort()
        if conn is not self._conn:
            return
        self._conn = None
        done, failed = self._session.link_lost()
        for command in done:
            result = self._results.pop(command.id, None)
            if result is not None:
                result.set({})
        for command in failed:
            result = self._results.pop(command.id, None)
            if result is not None:
                result.set_exception(LinkLost(reason))
        self._publish(self._status.link_down(reason))
        breaker = self._breaker
        if conn.ready and not conn.silent and breaker is not None:
            logger.info("lost the link to %s: %s", self.url, reason)
            with contextlib.suppress(ActorDeadError):
                breaker.tell(ReportFailure(reason))

    def _discard(self, conn: _Conn, reason: str) -> None:
        """Give ``conn`` up without reporting it: its failure is counted some other way."""
        conn.silent = True
        self._lost(conn, reason)

    def _on_transition(self, transition: Transition) -> None:
        """A breaker transition; runs inside the breaker actor, so it only updates state."""
        if self._status.stopped:
            return
        change = self._status.breaker_moved(transition)
        conn = self._conn
        if transition.new is BreakerState.OPEN and conn is not None:
            # Heartbeats went unanswered: the connection is dead even if TCP says otherwise.
            self._discard(conn, transition.reason)
        self._publish(change)

    def _publish(self, change: StateChange | None) -> None:
        if change is None:
            return
        self._reason = change.reason
        logger.info("%s: %s (%s)", self.url, change.state.value, change.reason)
        event, self._state_event = self._state_event, gevent.event.Event()
        event.set()
        self._dispatch.state(change)

    def _shutdown(self, error: ClientClosed) -> None:
        if self._closed is not None:
            return
        self._closed = error
        change = self._status.stop(str(error))
        breaker, self._breaker = self._breaker, None
        if breaker is not None:
            # Stopped first, so that no attempt starts while the link closes.
            with contextlib.suppress(ActorDeadError):
                breaker.stop()
        conn = self._conn
        if conn is not None:
            conn.silent = True
            conn.ws.close(1000, "client closed")
            self._lost(conn, str(error))
        for command in self._session.clear():
            result = self._results.pop(command.id, None)
            if result is not None:
                result.set_exception(error)
        self._results.clear()
        self._publish(change)
        self._dispatch.close()
