"""``PushDecider``: decides, for the webhook dispatcher, whether a due ``push.needed`` is sent.

A pending push waits in the outbox until the presence grace after its window ended
(``actorim.domain.push``). When the dispatcher claims it, it is decided on what is true then:
the presence tracker answers the user's status (on a cluster, across every node), and, if
they are offline, the store answers their counts, from which ``push_payload`` makes the
payload with the badge, or finds that the user read the conversation meanwhile. Each attempt
decides again, so a push whose delivery is retried is dropped once the user came back.

Every answer comes back to the dispatcher's actor as a ``Call``; the decider keeps no state.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from pykka import ActorDeadError, ActorRef

from actorim.domain.markers import Counts
from actorim.domain.messages import dm_conv, room_conv
from actorim.domain.presence import OFFLINE
from actorim.domain.push import push_payload
from actorim.domain.webhooks import OutboxEntry
from actorim.runtime.context import NodeContext, Unavailable
from actorim.runtime.messages import Call, OutboxRequest, Statuses
from actorim.store.base import Store

__all__ = ["Decision", "PushDecider"]

Decision = bytes | str | None
"""What became of a due push: its payload (JSON) to send; None, not needed (the user is
online or read it); or why it could not be decided now (it is tried again later)."""


class PushDecider:
    """Asks the presence tracker, then the store, on behalf of the actor behind ``actor``."""

    def __init__(self, ctx: NodeContext, actor: ActorRef[Any]) -> None:
        self.ctx = ctx
        self._actor = actor

    def decide(self, entry: OutboxEntry, done: Callable[[Decision], None]) -> None:
        """Decide the due push ``entry``; ``done(decision)`` runs in the actor."""
        try:
            pending: dict[str, Any] = json.loads(entry.data)
            user = pending["user"]
            if not isinstance(user, str):
                raise TypeError(f"user is {type(user).__name__}")
        except (ValueError, KeyError, TypeError) as exc:
            done(f"not a pending push: {exc!r}"[:200])
            return

        def heard(statuses: dict[str, Any]) -> None:  # in the presence tracker
            # The dispatcher stopped meanwhile: the push stays leased and is decided again.
            with contextlib.suppress(ActorDeadError):
                self._actor.tell(Call(self._heard, (pending, statuses.get(user), done)))

        try:
            self.ctx.refs.tell_presence(Statuses((user,), heard))
        except Unavailable as exc:
            done(f"presence: {exc}")

    def _heard(
        self, pending: dict[str, Any], status: Any, done: Callable[[Decision], None]
    ) -> None:
        if status != OFFLINE:
            done(None)
            return
        user: str = pending["user"]
        cap = self.ctx.config.unread_count_max

        def read(store: Store) -> dict[str, Any] | None:
            rooms = store.rooms_of(user)
            partners = store.dm_partners(user)
            convs = [room_conv(r) for r in rooms] + [dm_conv(user, p) for p in partners]
            counts: dict[str, Counts] = store.counts(user, convs, cap=cap) if convs else {}
            return push_payload(pending, counts, rooms)

        def answered(payload: Any, error: BaseException | None) -> None:
            if error is not None:
                done(f"store: {error}")
            elif payload is None:
                done(None)
            else:
                done(json.dumps(payload, separators=(",", ":")).encode())

        try:
            self.ctx.refs.tell_store(OutboxRequest(read, self._actor, answered))
        except Unavailable as exc:
            done(f"store: {exc}")
