"""A room's state kept in the node's directory, apart from its actor so that it survives a
restart and so that the directory (``actorim.runtime.context``) can name it without importing
the actor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from actorim.domain.heard import Heard
from actorim.domain.messages import room_conv
from actorim.domain.roomlog import RoomLog
from actorim.protocol.codec import Encoding

if TYPE_CHECKING:
    from pykka import ActorRef

    from actorim.config import Config
    from actorim.runtime.link import Link
    from actorim.runtime.messages import Check, JoinRoom, Publish

__all__ = ["RoomState"]


def _publish_size(publish: Publish) -> int:
    """What a message takes queued to a member, for the replay bounds: its MessagePack frame
    (the encoding nearly every member speaks, and the one the fan-out encodes anyway)."""
    return len(publish.frame.bytes_for(Encoding.MSGPACK))


@dataclass(eq=False)
class RoomState:
    """What a room knows that must survive its actor's restart.

    Who writes what: the room's actor owns the log, ``loaded``, ``joins_handled`` and
    ``heard``. The routing fields are the directory's entry for the room: the router starts
    the actor (``generation``, ``starting``, ``joins_forwarded``), the actor registers its own
    ref in ``actor`` when it starts (as singletons do in ``Refs``), and a join told while it
    starts is parked in ``waiting`` for the actor to take first.
    """

    name: str
    log: RoomLog[Publish, Link]
    loaded: bool = False
    actor: ActorRef[Any] | None = None
    generation: int = 0
    # The router is starting the room's actor: joins told meanwhile wait here for its start,
    # and so do a Check a connection asks for and a message this node hears meanwhile (until
    # the actor registers, nobody else would take them).
    starting: bool = False
    waiting: list[JoinRoom | Check | Publish] = field(default_factory=list)
    joins_forwarded: int = 0
    joins_handled: int = 0
    # The room's last seq as a connect's inbox read it just before the router made this entry:
    # the starting actor takes it instead of reading the store (a later message it missed is
    # a gap like any other, repaired from the store).
    known_seq: int | None = None
    # In a cluster: who this node's members were told is in the room ("joined" / "left").
    heard: Heard[str, str] = field(default_factory=lambda: Heard(absent="left"))

    @classmethod
    def new(cls, name: str, config: Config) -> RoomState:
        log: RoomLog[Publish, Link] = RoomLog(
            size=_publish_size,
            max_messages=config.replay_max_messages,
            max_bytes=config.replay_max_bytes,
        )
        return cls(name, log)

    @property
    def conv(self) -> str:
        return room_conv(self.name)

    @property
    def members(self) -> dict[Link, None]:
        return self.log.members

    @property
    def users(self) -> dict[str, int]:
        return self.log.users

    @property
    def seq(self) -> int:
        return self.log.seq
