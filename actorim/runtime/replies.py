"""``ConnectionReplies``: where a connection's store requests send their answers.

A connection's answers must reach the actor that serves its link *now*: when the connection
actor crashes, its supervisor starts a fresh one on the same link, and an answer told to the
dead ref would be lost (a history request never answered holds up every later one; an offline
backlog never paged on stops). So the answer goes to ``link.actor`` at the moment it comes
back, and when there is none (between the crash and the restart) it joins the link's
``carry_over``, which the fresh actor handles first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pykka import ActorDeadError

from actorim.protocol.frames import CloseCode
from supervisors import MailboxFull

if TYPE_CHECKING:
    from actorim.runtime.link import Link

__all__ = ["ConnectionReplies"]


class ConnectionReplies:
    """A ``ReplyTo`` that forwards to the link's current connection actor."""

    __slots__ = ("_link",)

    def __init__(self, link: Link) -> None:
        self._link = link

    def tell(self, message: Any) -> None:
        """Tell the link's actor; keep the message for the next actor while there is none.

        An actor whose mailbox is full (a client that queued a thousand commands) cannot take
        the answer, and a lost answer would hold up the connection's later requests: the
        connection is closed with 1013 instead, and the client starts afresh.
        """
        link = self._link
        actor = link.actor
        if actor is not None:
            try:
                actor.tell(message)
            except ActorDeadError:
                pass
            except MailboxFull:
                link.request_close(
                    CloseCode.TRY_AGAIN_LATER, "too many commands queued; reconnect and retry"
                )
                return
            else:
                return
        link.carry_over.append(message)
