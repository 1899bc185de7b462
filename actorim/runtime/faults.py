"""Fault injection (``debug.crash``), kept out of the actors' production handlers.

A chaos drill or a test crashes an actor on purpose to watch its supervisor restart it. The
command exists only with ``fault_injection`` on (``ACTORIM_FAULT_INJECTION=1``); :func:`inject`
carries it out for the connection that received it. An actor that can be crashed this way mixes
in :class:`FaultInjectable`, which handles the :class:`Crash` message before the actor's own
``on_receive`` sees anything unknown, and answers the command ``internal`` once the actor has
failed, as a real failure would have. The actors' handlers themselves carry no trace of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from actorim.protocol import commands as cmd
from actorim.protocol.errors import CommandError, ErrorCode
from supervisors import GeventActor

if TYPE_CHECKING:
    from actorim.runtime.context import NodeContext
    from actorim.runtime.link import Link

__all__ = ["Crash", "FaultInjectable", "InjectedFault", "inject"]


@dataclass(frozen=True, slots=True)
class Crash:
    """To an actor: fail while handling this, then answer ``command_id`` on ``link`` with
    ``internal``."""

    link: Link | None
    command_id: int | None


class InjectedFault(RuntimeError):
    """The exception an actor fails with when ``debug.crash`` asks it to."""


class FaultInjectable(GeventActor):
    """Mixin for an actor that ``debug.crash`` may crash.

    Put it before the actor's own class in the bases, and let the actor pass messages it does
    not know to ``super().on_receive`` and call ``super().on_failure`` from its own
    ``on_failure`` (both are what any actor does anyway)::

        class RoomActor(FaultInjectable, GeventActor):
            fault_kind = "room"
            fault_subject = "the room"
    """

    fault_kind: ClassVar[str] = "actor"
    """Names the actor in the failure's message: ``debug.crash: room failure injected``."""

    fault_subject: ClassVar[str] = "the actor"
    """Names the actor in the client's error: ``the room failed (injected)``."""

    _crash_request: Crash | None = None

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Crash):
            self._crash_request = message
            raise InjectedFault(f"debug.crash: {self.fault_kind} failure injected")
        return super().on_receive(message)

    def on_failure(self, *exc_info: Any) -> None:
        crash, self._crash_request = self._crash_request, None
        if crash is not None and crash.link is not None and crash.command_id is not None:
            crash.link.fail(
                cmd.DebugCrash.t,
                crash.command_id,
                ErrorCode.INTERNAL,
                f"{self.fault_subject} failed (injected)",
            )
        super().on_failure(*exc_info)


def inject(ctx: NodeContext, link: Link, command: cmd.DebugCrash) -> None:
    """Carry out ``debug.crash`` for the connection of ``link`` (its actor runs this).

    The crashed actor answers the command; a crashed connection answers it from its own
    ``on_failure``, as for any command it failed on.
    """
    if not ctx.config.fault_injection:
        raise CommandError(
            ErrorCode.BAD_REQUEST,
            "debug.crash is disabled: the server runs without ACTORIM_FAULT_INJECTION=1",
        )
    if command.what == "connection":
        raise InjectedFault("debug.crash: connection failure injected")
    crash = Crash(link, command.id)
    if command.what == "room":
        state = link.rooms.get(command.room or "")
        if state is None or state.actor is None:
            raise CommandError(ErrorCode.NOT_FOUND, "field 'room' must name a joined room")
        state.actor.tell(crash)
    else:
        ctx.refs.tell_by_name(command.what, crash)
    link.current = None  # the failing actor answers for this command
