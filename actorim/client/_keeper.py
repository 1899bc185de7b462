"""``LinkKeeper``: keeps a client's link to the server up, under a circuit breaker.

The link is governed by a :class:`~actorim.breaker.actor.BreakerActor` whose probe is
:meth:`LinkKeeper._probe`: on a live link it is the heartbeat (the ``ping`` command); on a dead
one it is a reconnect attempt, which opens a WebSocket, sends ``connect``, re-joins every room
with ``since`` (the last seq seen) and resends every unanswered command in its original order,
``cid`` included. The breaker schedules those attempts (back-off with full jitter while the
link fails, a cool-down once ``failure_threshold`` attempts failed in a row) and notices a
server that stopped answering; the keeper turns its transitions into a :class:`LinkState`.

One rule keeps the breaker's count honest: the end of a link that was up is reported once, by
whoever sees it first (the socket's reader, or a failed write); a failed attempt is the
probe's own outcome.

The decisions about commands, rooms and duplicates are the :class:`Session`'s; this shell owns
the socket, the greenlets that wait for replies, and the breaker actor.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
from pykka import ActorDeadError, ActorRef
from pykka import Timeout as PykkaTimeout

from actorim.breaker.actor import BreakerActor, ReportFailure, RetryLater, Subscribe
from actorim.breaker.machine import BreakerPolicy, BreakerState, Transition
from actorim.client._errors import (
    AuthError,
    ClientClosed,
    ClientError,
    ConnectRefused,
    LinkLost,
    QueueFull,
    Replaced,
    ServerError,
)
from actorim.client._events import Dispatcher
from actorim.client._link import LinkClosed, WebSocketLink
from actorim.client._state import CHANGE_EVENTS, Command, GapFill, OnLoss, Session
from actorim.client._status import LinkState, LinkStatus, StateChange
from actorim.protocol.restart import restart_delay

__all__ = ["LinkKeeper", "Token", "Tokens"]

logger = logging.getLogger("actorim.client")

Token = str | Callable[[], str]
"""A token, or a callable that returns a fresh one (asked again when the server refuses the
one it has, asks for a ``refresh`` before it expires, or closed the link because it expired or
was revoked)."""

# Close codes that say the token is spent (docs/protocol.md): 4001 it expired unrefreshed, 4003
# it was revoked. The next attempt connects with a fresh token, or the client stops.
_SPENT_TOKEN_CODES = frozenset({4001, 4003})

# Close codes that announce a restart: 1012 service restart (RFC 6455 registry; the server
# drains, and its reason may hint when to come back: docs/protocol.md), 1001 going away. The
# failed attempts that follow are retried within the policy's restart grace without opening the
# circuit.
_GOING_AWAY_CODES = frozenset({1001, 1012})

# Close code of a connection a newer one of the same user replaced, past the server's
# ``max_connections_per_user`` (docs/protocol.md): the client stops, as coming back would
# replace another connection in turn.
_REPLACED_CODE = 4009

# How long the socket's reader waits for the breaker to take in a lost link (it answers in
# microseconds); past it the state change goes out without the time of the next attempt.
_REPORT_TIMEOUT_S = 1.0

# The server accepts at most this many users in one watch command (docs/protocol.md).
_WATCH_CHUNK = 1000

# Refusals of ``connect`` that no retry can fix: an older server's refusal of a user holding
# ``max_connections_per_user`` connections (this one replaces the least recently heard, 4009).
# They end the client at once, as a refused fixed token does, instead of counting attempts
# until the circuit opens.
_FINAL_CONNECT_CODES = frozenset({"forbidden"})

# A gap's history page refused with one of these is asked again after a pause, from 0.25 s
# doubling up to 2 s: the rate limit refills a page's worth (about 800 KiB, 100 tokens) in
# about a second at its default rate.
_GAP_RETRY_CODES = frozenset({"rate_limited", "overloaded"})
_GAP_RETRY_FLOOR_S = 0.25
_GAP_RETRY_CAP_S = 2.0


class Tokens:
    """The token to connect with: fixed, or fetched from a callable (once, then on refusal)."""

    def __init__(self, source: Token) -> None:
        if not isinstance(source, str) and not callable(source):
            raise TypeError("token must be a string or a callable that returns one")
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

    def spend(self) -> None:
        """The server will not take the current token again (it expired or was revoked): the
        next ``get`` asks the callable for a fresh one."""
        if self.renewable:
            self._token = None

    def _fetch(self) -> str:
        assert callable(self._source)
        token = self._source()
        if not isinstance(token, str) or not token:
            raise ClientError(f"the token callable returned {type(token).__name__}, not a token")
        return token


class _Refused(Exception):
    """The server refused the token (``unauthenticated``, then close 1008)."""


class _Conn:
    """One WebSocket and what the keeper knows of it."""

    __slots__ = ("dead", "flushing", "ready", "sent_away", "silent", "ws")

    def __init__(self, ws: WebSocketLink) -> None:
        self.ws = ws
        self.ready = False  # connected, rooms re-joined, waiting commands resent
        self.dead = False
        self.silent = False  # given up by the keeper: its end is not reported to the breaker
        self.flushing = False
        self.sent_away: float | None = None
        """Closed before it was ready with a hint (1013 from a busy server): seconds to wait."""

    def failure(self, error: BaseException) -> BaseException:
        """What the attempt on this link failed with, as the probe reports it: sent away with
        a hint, the breaker waits the hint (``RetryLater``); else ``error`` itself."""
        if self.sent_away is None or not isinstance(error, Exception):
            return error
        return RetryLater(f"sent away; reconnect in {self.sent_away:g} s", self.sent_away)


class LinkKeeper:
    """See the module docstring. ``Client`` makes one and calls :meth:`submit` for every
    command; everything else here runs in the keeper's greenlets."""

    def __init__(
        self,
        url: str,
        tokens: Tokens,
        session: Session,
        dispatch: Dispatcher,
        *,
        policy: BreakerPolicy,
        open_link: Callable[[str, float], WebSocketLink],
        clock: Callable[[], float],
        rand: Callable[[float, float], float],
    ) -> None:
        self.url = url
        self._tokens = tokens
        self._session = session
        self._dispatch = dispatch
        self._policy = policy
        self._open_link = open_link
        self._clock = clock
        self._rand = rand
        self._status = LinkStatus()
        self._results: dict[int, gevent.event.AsyncResult | None] = {}
        self._conn: _Conn | None = None
        self._breaker: ActorRef[Any] | None = None
        self.info: dict[str, Any] = {}
        """The server's last ``connect`` reply."""
        self.closed: ClientClosed | None = None
        """Why the keeper stopped for good (None while it runs)."""
        self.reason = "not started"
        """Why the state last changed."""
        self._state_event = gevent.event.Event()
        self._giving_up = False

    # -- reading -----------------------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        return self._status.state

    @property
    def started(self) -> bool:
        return self._breaker is not None or self.closed is not None

    @property
    def ready(self) -> bool:
        """A link is up and restored: commands go out at once."""
        conn = self._conn
        return conn is not None and conn.ready and not conn.dead

    def wait_for(self, state: LinkState, deadline: float | None) -> bool:
        """Wait until the link is in ``state``; False at ``deadline`` (``time.monotonic``), or
        as soon as the keeper has stopped in another state."""
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

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the breaker actor; its first probe connects at once."""
        if self.started:
            return
        self._publish(self._status.start(f"connecting to {self.url}"))
        self._breaker = BreakerActor.start(
            self._policy,
            probe=self._probe,
            name=f"client {self.url}",
            clock=self._clock,
            rand=self._rand,
        )
        self._breaker.ask(Subscribe(self._on_transition))

    def shutdown(self, error: ClientClosed) -> None:
        """Stop for good: every waiting command fails with ``error``, and the dispatcher ends
        after the last state change."""
        if self.closed is not None:
            return
        self.closed = error
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

    # -- commands ----------------------------------------------------------------------------

    def submit(
        self, t: str, args: dict[str, Any], on_loss: OnLoss
    ) -> tuple[Command, gevent.event.AsyncResult]:
        """Queue a command of the application; it goes out now if the link is ready, else when
        it is restored. The result gets the reply's ``data`` or a :class:`ClientError`."""
        command = self._session.submit(t, args, on_loss)
        result: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self._results[command.id] = result
        self._flush()
        return command, result

    def cancel(self, command: Command) -> None:
        """Nobody waits for ``command`` any more: it is never written again."""
        self._session.cancel(command.id)
        self._results.pop(command.id, None)

    def background(self, t: str, args: dict[str, Any], on_loss: OnLoss = OnLoss.RESEND) -> None:
        """A command nobody waits for (an automatic receipt, a leave while reconnecting)."""
        try:
            command = self._session.submit(t, args, on_loss)
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
            self.cancel(command)
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
            try:
                conn = self._open(self._tokens.get())
            except _Refused as refused:
                if not self._tokens.renewable:
                    raise AuthError(
                        f"the server refused the token ({refused}); make a new client with a "
                        "valid token, or give a callable that returns fresh ones"
                    ) from None
                logger.info("the server refused the token (%s); fetching a fresh one", refused)
                # A fresh token that is refused too counts as one failed attempt.
                conn = self._open(self._tokens.refresh())
        except ClientClosed as final:
            self._give_up(final)
            raise
        try:
            self._restore(conn)
        except BaseException as exc:
            self._discard(conn, "the session could not be restored")
            failure = conn.failure(exc)
            if failure is exc:
                raise
            raise failure from exc

    def _open(self, token: str) -> _Conn:
        try:
            link = self._open_link(self.url, self._policy.heartbeat_timeout)
        except LinkClosed as closed:
            hint = restart_delay(closed.code, closed.reason)
            if hint is None:
                raise
            raise RetryLater(f"the server is busy ({closed})", hint) from closed
        conn = _Conn(link)
        self._conn = conn
        gevent.spawn(self._read, conn)
        try:
            args = {"token": token, **self._session.resume_args()}
            info = self._call_on(conn, "connect", args).get()
        except ServerError as exc:
            self._discard(conn, str(exc))
            if exc.code == "unauthenticated":
                raise _Refused(exc.server_message) from None
            if exc.code in _FINAL_CONNECT_CODES:
                raise ConnectRefused(exc.code, exc.server_message) from None
            raise
        except BaseException as exc:
            self._discard(conn, "connect failed")
            failure = conn.failure(exc)
            if failure is exc:
                raise
            raise failure from exc
        self.info = dict(info)
        self._session.user = info.get("user")
        return conn

    def _give_up(self, error: ClientClosed) -> None:
        """From inside the probe: the server refused for good. The breaker is stopped from a
        greenlet of its own (stopping it from its probe would kill this very greenlet); what it
        says meanwhile about the failed attempt no longer moves the state."""
        self._giving_up = True
        gevent.spawn(self.shutdown, error)

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

    # -- reading -----------------------------------------------------------------------------

    def _read(self, conn: _Conn) -> None:
        try:
            while True:
                frame = conn.ws.recv()
                if conn.dead:
                    return
                self._received(conn, frame)
        except LinkClosed as closed:
            why = f": {closed.reason}" if closed.reason else ""
            going_away = closed.code in _GOING_AWAY_CODES
            if closed.code in _SPENT_TOKEN_CODES and conn is self._conn:
                # Before the loss is reported: the attempt it schedules must not reuse it.
                self._token_spent(closed.code, closed.reason)
            if closed.code == _REPLACED_CODE and conn is self._conn:
                gevent.spawn(self.shutdown, Replaced(closed.reason))
            hint = restart_delay(closed.code, closed.reason)
            if not conn.ready:
                # Sent away while connecting (1013: the server is busy): the attempt failed,
                # and the next one waits the hint.
                conn.sent_away = hint
            self._lost(
                conn,
                f"the link ended ({closed.code}{why})",
                going_away=going_away or hint is not None,
                retry_after=hint or 0.0,
            )
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
        elif t == "refresh":
            self._dispatch.event(frame)
            if self._tokens.renewable:
                gevent.spawn(self._refresh, conn)
        elif t == "left":
            # A refreshed token no longer allows the room: it is not re-joined after this.
            room = frame.get("room")
            if isinstance(room, str):
                self._session.leaving(room)
            self._dispatch.event(frame)
        elif t in CHANGE_EVENTS:
            if self._session.change(frame):
                self._dispatch.event(frame)
        elif t == "member":
            self._session.membership(frame)
            self._dispatch.event(frame)
        else:
            gap = self._session.skipped(frame) if t == "gap" else None
            self._dispatch.event(frame)
            if gap is not None:
                gevent.spawn(self._fill_gap, gap)

    def _reply(self, frame: dict[str, Any]) -> None:
        answer = self._session.answered(frame)
        if answer is None:
            return
        if answer.event is not None:
            self._dispatch.event(answer.event)
        if answer.gap is not None:
            gevent.spawn(self._fill_gap, answer.gap)
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
            self.background("ack", {"mid": msg["mid"]})
        if incoming.deliver:
            self._dispatch.event(msg)

    def _fill_gap(self, gap: GapFill) -> None:
        """Page the messages of a gap (a re-join not recovered, a room's ``gap`` event) from
        ``history``; each reaches the application as a ``msg`` event (once: duplicates are
        dropped as for any message). The pages are ordinary commands, so a link lost meanwhile
        only delays them; a page refused for now (the rate limit, which charges pages by their
        size, or a busy store) is asked again after a pause."""
        refusals = 0
        while (args := gap.next_args()) is not None:
            try:
                _, result = self.submit("history", args, OnLoss.RESEND)
                data = result.get()
            except ServerError as exc:
                if exc.code not in _GAP_RETRY_CODES or self.closed is not None:
                    logger.warning("filling the gap in room %r stopped: %s", gap.room, exc)
                    return
                refusals += 1
                gevent.sleep(min(_GAP_RETRY_CAP_S, _GAP_RETRY_FLOOR_S * 2 ** (refusals - 1)))
                continue
            except ClientError as exc:
                logger.warning("filling the gap in room %r stopped: %s", gap.room, exc)
                return
            refusals = 0
            messages = [m for m in data.get("messages", []) if isinstance(m, dict)]
            for msg in messages:
                self._message(msg)
            gap.page(messages, more=data.get("more") is True)

    # -- the token's life --------------------------------------------------------------------

    def _refresh(self, conn: _Conn) -> None:
        """The server asked for a fresh token before the current one expires: fetch one from
        the callable and hand it over on the same link (``refresh``). A failure is logged; the
        server closes the link 4001 when the old token's grace runs out, and the next attempt
        connects with a fresh token."""
        try:
            token = self._tokens.refresh()
            self._call_on(conn, "refresh", {"token": token}).get()
        except ClientError as exc:
            logger.warning("refreshing the token failed: %s", exc)
        except Exception:
            logger.exception("the token callable failed")

    def _token_spent(self, code: int, reason: str) -> None:
        """The server closed the link because its token expired (4001) or was revoked (4003):
        never connect with that token again."""
        if self._tokens.renewable:
            self._tokens.spend()
            return
        gevent.spawn(
            self.shutdown,
            AuthError(
                f"the server closed the link: {reason or code}; make a new client with a "
                "valid token, or give a callable that returns fresh ones"
            ),
        )

    # -- the link's end ----------------------------------------------------------------------

    def _lost(
        self, conn: _Conn, reason: str, *, going_away: bool = False, retry_after: float = 0.0
    ) -> None:
        """``conn`` ended: report it once, and put its commands back in line for the next link.

        The breaker hears of it before the application does, so that the state change says when
        the next attempt is. ``going_away``: the server announced a restart (see
        ``BreakerPolicy.restart_grace``); ``retry_after``: the delay its close hinted
        (``actorim.protocol.restart``), which the next attempt waits before its own jitter."""
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
        breaker = self._breaker
        if conn.ready and not conn.silent and breaker is not None:
            logger.info("lost the link to %s: %s", self.url, reason)
            with contextlib.suppress(ActorDeadError, PykkaTimeout):
                failure = ReportFailure(reason, going_away, retry_after)
                breaker.ask(failure, timeout=_REPORT_TIMEOUT_S)
        self._publish(self._status.link_down(reason))

    def _discard(self, conn: _Conn, reason: str) -> None:
        """Give ``conn`` up without reporting it: its failure is counted some other way."""
        conn.silent = True
        self._lost(conn, reason)

    def _on_transition(self, transition: Transition) -> None:
        """A breaker transition; runs inside the breaker actor, so it only updates state."""
        if self._status.stopped or self._giving_up:
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
        self.reason = change.reason
        logger.info("%s: %s (%s)", self.url, change.state.value, change.reason)
        event, self._state_event = self._state_event, gevent.event.Event()
        event.set()
        self._dispatch.state(change)
