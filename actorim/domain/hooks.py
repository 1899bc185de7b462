"""The application's in-process hooks, as types: what an embedding application may give a
``Node`` to see and steer what happens in chat, with no I/O here.

``before_publish(message) -> Decision`` is asked about every message about to be stored: a
WebSocket ``send`` or ``edit``, and a publish through the server API or ``Node.publish``
(typing, reactions and deletes are not asked about). It answers ``ALLOW``, ``Reject(reason)``
(the sender gets the error ``forbidden`` with the reason) or ``Replace(body)`` (the message is
stored with that body instead). ``on_connect(user, session)`` and ``on_disconnect(user,
session)`` are told when a WebSocket session starts and ends.

How they run (their time bounded, their exceptions contained) is ``actorim.runtime.hooks``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ALLOW",
    "Allow",
    "BeforePublish",
    "Decision",
    "Hooks",
    "OnSession",
    "Outgoing",
    "Reject",
    "Replace",
    "SessionInfo",
]


@dataclass(frozen=True, slots=True)
class Allow:
    """Store the message as it is."""


ALLOW = Allow()


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the message: nothing is stored, the sender is told ``forbidden`` and ``reason``."""

    reason: str


@dataclass(frozen=True, slots=True)
class Replace:
    """Store the message with ``body`` (any value a message body may be) instead."""

    body: Any


Decision = Allow | Reject | Replace


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message about to be stored, as ``before_publish`` sees it.

    ``action`` is ``send`` (a WebSocket send), ``edit`` (a WebSocket edit of ``target``) or
    ``publish`` (the server API or ``Node.publish``, with no ``session``). Exactly one of
    ``room`` and ``to`` is set. ``body`` is the decoded value the sender sent.
    """

    action: Literal["send", "edit", "publish"]
    sender: str
    room: str | None
    to: str | None
    kind: str
    body: Any
    cid: str | None = None
    target: str | None = None
    session: str | None = None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A WebSocket session as ``on_connect`` and ``on_disconnect`` see it."""

    session: str
    node: str
    address: str | None


BeforePublish = Callable[[Outgoing], Decision]
OnSession = Callable[[str, SessionInfo], None]


@dataclass(frozen=True, slots=True)
class Hooks:
    """The hooks an application gives ``Node(config, hooks=...)``; each is optional."""

    before_publish: BeforePublish | None = None
    on_connect: OnSession | None = None
    on_disconnect: OnSession | None = None
