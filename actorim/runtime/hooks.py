"""Running the application's hooks (``actorim.domain.hooks``) so that none of them can hurt
more than the one message or session it is about.

Each hook runs in the greenlet of whoever it is about, never in a shared actor:

- ``before_publish`` in the sender's connection actor (for a WebSocket send or edit) or in the
  caller's greenlet (the server API, ``Node.publish``). A slow hook holds up that sender's next
  commands and nobody else's; other connections have actors of their own.
- ``on_connect`` and ``on_disconnect`` in a greenlet of their own each, the disconnect of a
  session after its connect: they hold up nothing.

Every call is bounded by ``hook_timeout`` seconds (``gevent.Timeout``: a hook that waits on I/O
is interrupted there). An exception, a time-out or an answer that is not a decision is logged
with its traceback and, for ``before_publish``, refuses that one message with ``internal``;
nothing else fails. A hook must cooperate with gevent: one that computes for long without
yielding holds up the whole process, which no time-out can interrupt.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent

from actorim.domain.hooks import Allow, Hooks, OnSession, Outgoing, Reject, Replace, SessionInfo
from actorim.protocol.errors import CommandError, ErrorCode
from actorim.protocol.events import encode_body
from actorim.protocol.limits import MESSAGE_MAX_BYTES

__all__ = ["HookFailed", "HookRunner"]

logger = logging.getLogger("actorim.hooks")

MAX_REASON_CHARS = 200
"""What is kept of a rejecting hook's reason in the sender's error."""


class HookFailed(Exception):
    """A hook did not answer within ``hook_timeout``."""


class HookRunner:
    """The node's hooks, each called bounded and contained; see the module docstring."""

    def __init__(self, hooks: Hooks, *, timeout: float) -> None:
        self.hooks = hooks
        self.timeout = timeout
        # The on_connect still running of each session, which its on_disconnect waits for.
        self._connecting: dict[str, gevent.Greenlet] = {}

    # -- before_publish ------------------------------------------------------------------------

    def before_publish(self, outgoing: Outgoing) -> Any:
        """The body to store for ``outgoing``: its own, or the one the hook gave instead.

        Raises ``CommandError``: ``forbidden`` with the hook's reason when it rejected the
        message, ``internal`` when the hook failed (nothing is stored either way).
        """
        hook = self.hooks.before_publish
        if hook is None:
            return outgoing.body
        try:
            decision = self._bounded("before_publish", hook, outgoing)
        except Exception:
            logger.exception("the before_publish hook failed for a %s by %s", outgoing.action,
                             outgoing.sender)  # fmt: skip
            raise CommandError(ErrorCode.INTERNAL, _FAILED) from None
        if isinstance(decision, Allow):
            return outgoing.body
        if isinstance(decision, Reject):
            reason = str(decision.reason)[:MAX_REASON_CHARS] or "refused by the application"
            raise CommandError(ErrorCode.FORBIDDEN, reason)
        if isinstance(decision, Replace):
            try:
                size = len(encode_body(decision.body))
            except (TypeError, ValueError, OverflowError):
                size = None
            if size is not None and size <= MESSAGE_MAX_BYTES:
                return decision.body
            logger.error("the before_publish hook replaced a body with one that cannot be sent"
                         " (not a message value, or over %d bytes)", MESSAGE_MAX_BYTES)  # fmt: skip
            raise CommandError(ErrorCode.INTERNAL, _FAILED)
        logger.error("the before_publish hook answered %r, not ALLOW, Reject or Replace", decision)
        raise CommandError(ErrorCode.INTERNAL, _FAILED)

    # -- sessions --------------------------------------------------------------------------------

    def connected(self, user: str, session: SessionInfo) -> None:
        """Tell ``on_connect``, in a greenlet of its own."""
        hook = self.hooks.on_connect
        if hook is None:
            return
        running = gevent.spawn(self._told, "on_connect", hook, user, session)
        self._connecting[session.session] = running
        running.link(lambda _: self._forget(session.session, running))

    def disconnected(self, user: str, session: SessionInfo) -> None:
        """Tell ``on_disconnect``, in a greenlet of its own, once ``on_connect`` is done."""
        hook = self.hooks.on_disconnect
        connecting = self._connecting.get(session.session)
        if hook is None:
            return

        def after_connect() -> None:
            if connecting is not None:
                connecting.join(self.timeout)
            self._told("on_disconnect", hook, user, session)

        gevent.spawn(after_connect)

    def _forget(self, session: str, running: gevent.Greenlet) -> None:
        if self._connecting.get(session) is running:
            del self._connecting[session]

    def _told(self, name: str, hook: OnSession, user: str, session: SessionInfo) -> None:
        try:
            self._bounded(name, hook, user, session)
        except Exception:
            logger.exception("the %s hook failed for %s (session %s)", name, user, session.session)

    # -- bounds ------------------------------------------------------------------------------------

    def _bounded(self, name: str, hook: Any, *args: Any) -> Any:
        timeout = HookFailed(f"the {name} hook did not answer within {self.timeout} s")
        with gevent.Timeout(self.timeout, timeout):
            return hook(*args)


_FAILED = "the application could not check this message; it was not stored (retry later)"
