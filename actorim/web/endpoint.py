"""The reading side of a WebSocket connection: socket → frames → commands → its actor.

Runs on the hub, called by the connection's read watcher with the events of one bounded read.
It checks the rate limit first, then decodes and validates the frame, answers what needs no
session (undecodable frames, bad commands, the rate limit) and tells well-formed commands to the
connection's actor. Limiting before decoding makes every message count, malformed ones too: a
flood of them is refused, then closed (1008) like any other flood. It never writes to the
socket itself: replies and the pong owed for the latest ping go into the link's outbox, which
the link flushes without blocking and the actor finishes (see ``Link.wake``), in order. A
command that arrives while the actor restarts waits for the next incarnation; a full mailbox
answers ``overloaded``. A draining node refuses new connections with 1013.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pykka import ActorDeadError

from actorim.domain.ratelimit import RateLimiter, Verdict
from actorim.protocol.codec import AmbiguousMapError, Encoding, FrameDecodeError, decode_frame
from actorim.protocol.commands import (
    COMMAND_NAMES,
    NotACommand,
    decode_command,
    error_event,
)
from actorim.protocol.errors import CommandError, ErrorCode
from actorim.protocol.frames import CloseCode, Closed, Message
from actorim.runtime.connection import ConnectionActor
from actorim.runtime.context import NodeContext
from actorim.runtime.link import Link, Phase
from actorim.web.websocket import ServerWebSocket
from supervisors import ChildSpec, MailboxFull, Restart, start_child_nowait

__all__ = ["run_connection"]

logger = logging.getLogger("actorim.connection")


def run_connection(ctx: NodeContext, ws: ServerWebSocket, remote: str) -> None:
    """Take over one WebSocket: start its actor and read it in the background.

    Returns at once: the connection is read by a watcher on the hub, not by this (the WSGI
    handler's) greenlet, so an idle connection holds no greenlet. Its actor closes it.
    """
    config = ctx.config
    now = time.monotonic()
    link = Link(
        ws,
        limiter=RateLimiter(
            now,
            rate=config.rate,
            burst=config.burst,
            abuse_rejections=config.rate_abuse_rejections,
            abuse_window_s=config.rate_abuse_window,
        ),
        metrics=ctx.metrics,
        max_frames=config.outbox_max_frames,
        max_bytes=config.outbox_max_bytes,
        remote=remote,
    )
    if ctx.draining or not _start_actor(ctx, link):
        ws.close(CloseCode.TRY_AGAIN_LATER, "server is not accepting connections")
        return
    ctx.directory.links[link.conn_id] = link
    ws.read_in_background(_Reading(link, config.history_max_limit))


class _Reading:
    """What the connection's read watcher calls with each read's events; False stops it.
    An object with slots rather than a closure: ten thousand idle connections hold one each."""

    __slots__ = ("link", "max_limit")

    def __init__(self, link: Link, max_limit: int) -> None:
        self.link = link
        self.max_limit = max_limit

    def __call__(self, events: list[Any]) -> bool:
        link = self.link
        go_on = _on_events(link, events, self.max_limit)
        return go_on and link.phase is not Phase.CLOSED and link.close_request is None


def _start_actor(ctx: NodeContext, link: Link) -> bool:
    """Add the connection's actor to the connections' supervisor, from this greenlet: no round
    trip to the supervisor, none to the actor's ``on_start`` (which runs once this greenlet lets
    go of the hub). Commands read before it ran wait in ``link.carry_over`` for it, as they do
    for the next incarnation after a crash."""
    supervisor = ctx.refs.connections
    if supervisor is None:
        return False
    spec = ChildSpec(
        id=link.conn_id,
        start=ConnectionActor.start,
        args=(link, ctx),
        restart=Restart.TRANSIENT,
        shutdown=5.0,
    )
    try:
        start_child_nowait(supervisor, spec)
    except ActorDeadError:
        logger.info("connection %s refused: the connections' supervisor is down", link.conn_id)
        return False
    except Exception:
        logger.exception("could not start the actor of connection %s", link.conn_id)
        return False
    return True


def _on_events(link: Link, events: list[Any], max_limit: int) -> bool:
    """Handle what one read brought; False when the connection must stop reading."""
    if not any(isinstance(e, Closed) for e in events):
        # While the connection is open the reader owes only pongs, one for the latest ping.
        control = link.ws.take_control_output()
        if control:
            link.outbox.offer_pong(control)
    for event in events:
        if isinstance(event, Message):
            if not _on_message(link, event, max_limit):
                return False
        elif isinstance(event, Closed):
            link.request_close(event.code, event.reason)
            return False
    return True


def _on_message(link: Link, message: Message, max_limit: int) -> bool:
    """Decode one message and hand it on; False when the connection must close."""
    if not link.encoding_fixed:
        link.encoding = Encoding.of_frame(message.binary)
        link.encoding_fixed = True
    verdict = link.limiter.check(time.monotonic())
    if verdict is Verdict.ABUSE:
        link.request_close(CloseCode.POLICY_VIOLATION, "rate limit exceeded persistently")
        return False
    ambiguous: str | None = None
    try:
        obj = decode_frame(message.payload, message.binary)
    except AmbiguousMapError as exc:
        # Well formed, but JSON peers would not see it as sent: refused below as a bad
        # command, once it has been counted against the rate limit like any other.
        obj, ambiguous = exc.frame, exc.reason
    except FrameDecodeError as exc:
        link.request_close(CloseCode.INVALID_DATA, exc.reason)
        return False
    try:
        command = decode_command(obj, max_limit=max_limit)
    except NotACommand as exc:
        code, text = exc.code, exc.message
        if verdict is Verdict.REJECT:
            code, text = ErrorCode.RATE_LIMITED, _RATE_LIMITED
            _count_rate_limited(link)
        link.send(error_event(code, text))
        return True
    except CommandError as exc:
        name = _command_name(obj)
        if verdict is Verdict.REJECT:
            _count_rate_limited(link)
            link.fail(name, obj["id"], ErrorCode.RATE_LIMITED, _RATE_LIMITED)
        else:
            link.fail(name, obj["id"], exc.code, exc.message)
        return True
    if verdict is Verdict.REJECT:
        _count_rate_limited(link)
        link.fail(command.t, command.id, ErrorCode.RATE_LIMITED, _RATE_LIMITED)
        return True
    if ambiguous is not None:
        link.fail(command.t, command.id, ErrorCode.BAD_REQUEST, ambiguous)
        return True
    _tell(link, command)
    return True


_RATE_LIMITED = "too many commands; slow down"


def _count_rate_limited(link: Link) -> None:
    if link.metrics is not None:
        link.metrics.rate_limited.inc()


def _command_name(frame: dict[str, Any]) -> str:
    """A bounded label for a refused command: its name if known, else "unknown"."""
    name = frame.get("t")
    return name if isinstance(name, str) and name in COMMAND_NAMES else "unknown"


def _tell(link: Link, command: Any) -> None:
    actor = link.actor
    try:
        if actor is None:
            raise ActorDeadError("restarting")
        actor.tell(command)
    except MailboxFull:
        link.fail(command.t, command.id, ErrorCode.OVERLOADED, "too many commands queued; retry")
    except ActorDeadError:
        # Between a crash and the restart: keep the command for the next incarnation.
        link.carry_over.append(command)
