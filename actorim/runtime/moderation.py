"""Room moderation at run time: one implementation behind the ``moderate`` command, the
server API and ``Node`` (``actorim.runtime.operations``), and the live effects of each action.

An action is decided in the store (``actorim.domain.moderation`` decides; the store keeps the
standing, the audit entry and its webhook events together), then reaches the affected user's
live connections on every node through the broker's user path: a ``moderation`` event (what
happened, by whom, why, until when) and, for a kick or a ban, the ``member`` event that takes
every connection of the user out of the room (as a leave on another device does). Each
connection keeps the mutes of its user (read at ``connect`` and ``join``, changed by these
events) and refuses a send, edit or reaction in a room where its user is muted, without asking
the store.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from gevent.event import AsyncResult

from actorim.domain.messages import DELETE, new_mid, room_conv
from actorim.domain.moderation import (
    APPLICATION,
    FOREVER_MS,
    ROLE_ACTION,
    SANCTIONS,
    AuditEntry,
    Refusal,
    Standing,
    applied,
    check_action,
    check_role,
    until_of,
)
from actorim.protocol.errors import CommandError, ErrorCode
from actorim.protocol.events import self_member_frame
from actorim.protocol.webhooks import Webhooks
from actorim.protocol.wire import WireFrame
from actorim.runtime.context import Unavailable
from actorim.runtime.membership import ask_store, unsubscribe
from actorim.runtime.messages import Append
from actorim.store.base import NewMessage

if TYPE_CHECKING:
    from actorim.domain.messages import StoredMessage
    from actorim.runtime.context import NodeContext
    from actorim.runtime.link import Link
    from actorim.store.base import Store

__all__ = [
    "Moderation",
    "ModerationNotice",
    "apply_notice",
    "banned_from",
    "check_not_muted",
    "notice_of",
]

_PLAIN = Standing()

# How long a moderator's delete waits for the store to make it durable.
DELETE_TIMEOUT_S = 10.0

_REFUSALS = {
    Refusal.NOT_MODERATOR: (
        ErrorCode.NOT_MODERATOR,
        "only a moderator or the owner of room {room!r} may do that",
    ),
    Refusal.OUTRANKED: (
        ErrorCode.OUTRANKED,
        "{user!r} is a {role} of room {room!r}: only a higher role may {action} them",
    ),
}


class _AuditIds:
    """Audit entry ids that sort in the order this process made them: a message id (time,
    then random) whose time part moves on by a millisecond when two entries come within one,
    so that a room's log pages in the order its actions were taken (the entry's ``ts`` stays
    the true time). Made on the store's thread: a lock keeps the nodes of one process apart."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0

    def next(self, now_ms: int) -> str:
        with self._lock:
            self._last_ms = max(now_ms, self._last_ms + 1)
            return new_mid(self._last_ms)


_AUDIT_IDS = _AuditIds()


@dataclass(frozen=True, slots=True)
class ModerationNotice:
    """Told to each connection of a user that a moderator acted on: it leaves ``room``
    (kick, ban) or notes the mute's end (``until``; 0 once unmuted)."""

    room: str
    action: str
    until: int


def moderation_frame(entry: AuditEntry) -> WireFrame:
    """The ``moderation`` event the affected user's connections get."""
    return WireFrame({"t": "moderation", **entry.as_json()})


def notice_of(user: str, frame: WireFrame) -> ModerationNotice | None:
    """The notice a ``moderation`` event sent to ``user`` about ``user`` asks of their
    connections, or None."""
    obj = frame.obj
    if obj.get("t") != "moderation" or obj.get("user") != user:
        return None
    action, room = obj.get("action"), obj.get("room")
    if action not in ("kick", "ban", "mute", "unmute") or not isinstance(room, str):
        return None
    until = obj.get("until", 0)
    return ModerationNotice(room, action, FOREVER_MS if until is None else int(until))


def apply_notice(link: Link, notice: ModerationNotice) -> None:
    """Carry out ``notice`` on this connection."""
    if notice.action in ("kick", "ban"):
        link.mutes.pop(notice.room, None)
        unsubscribe(link, notice.room)
    elif notice.action == "mute":
        link.mutes[notice.room] = notice.until
    else:
        link.mutes.pop(notice.room, None)


def check_not_muted(link: Link, room: str, now_ms: int) -> None:
    """Refuse with ``muted`` when the connection's user is muted in ``room``."""
    until = link.mutes.get(room)
    if until is None:
        return
    if until <= now_ms:
        del link.mutes[room]
        return
    when = "until it is lifted" if until == FOREVER_MS else f"until {until} (ms since the epoch)"
    raise CommandError(
        ErrorCode.MUTED, f"you are muted in room {room!r} {when}: you may read it, not write"
    )


def banned_from(room: str, standing: Standing) -> CommandError:
    """The refusal of a join by a user banned from ``room``."""
    until = standing.banned_until
    when = (
        "until the ban is lifted" if until == FOREVER_MS else f"until {until} (ms since the epoch)"
    )
    return CommandError(ErrorCode.BANNED, f"you are banned from room {room!r} {when}")


def _refused(refusal: Refusal, room: str, user: str, role: str, action: str) -> CommandError:
    code, text = _REFUSALS[refusal]
    return CommandError(code, text.format(room=room, user=user, role=role, action=action))


@dataclass(frozen=True, slots=True)
class _Ask:
    """One moderation action as asked (``Moderation.act``'s arguments)."""

    room: str
    action: str
    by: str
    user: str | None
    mid: str | None
    reason: str
    duration_ms: int | None
    application: bool


class _Waiter:
    """A ``ReplyTo`` that runs the store's answer at once, for a greenlet waiting on it."""

    def tell(self, message: Any) -> None:
        message.func(*message.args)


class Moderation:
    """The moderation operations of a node; see the module docstring. Each call blocks the
    calling greenlet (a connection's, or the application's) while the store answers, and
    raises a ``CommandError`` that refuses it, or ``Unavailable``."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.webhooks = Webhooks(ctx.config.webhooks)

    def act(
        self,
        room: str,
        action: str,
        *,
        by: str,
        user: str | None = None,
        mid: str | None = None,
        reason: str = "",
        for_s: float | None = None,
        application: bool = False,
    ) -> AuditEntry:
        """Take ``action`` (``kick``, ``ban``, ``unban``, ``mute``, ``unmute`` against
        ``user``; ``delete`` of the message ``mid``) in ``room`` as ``by``: a user whose role
        there is checked, or the application (``application``), above every role. Returns
        the audit entry kept."""
        limit = self.ctx.config.moderation_reason_max
        if len(reason) > limit:
            raise CommandError(
                ErrorCode.BAD_REQUEST,
                f"a reason may have at most {limit} characters (moderation_reason_max)",
            )
        now_ms = int(time.time() * 1000)
        duration_ms = None if for_s is None else int(for_s * 1000)
        ask = _Ask(room, action, by, user, mid, reason, duration_ms, application)

        def check_and_keep(store: Store) -> tuple[AuditEntry, StoredMessage | None] | CommandError:
            checked = self._check(store, ask, now_ms)
            if not isinstance(checked, CommandError) and action != "delete":
                self._keep(store, checked[0], ask)
            return checked

        checked = ask_store(self.ctx, check_and_keep, f"{action} in room {room!r}")
        if isinstance(checked, CommandError):
            raise checked
        entry, message = checked
        if message is not None:
            # A delete is stored first, like the author's own; then it is on the record.
            self._delete(message, by, now_ms)
            ask_store(self.ctx, lambda store: self._keep(store, entry, ask), f"keep the {action}")
        self._announce(entry)
        return entry

    def set_role(self, room: str, user: str, role: str, *, by: str) -> AuditEntry:
        """Make ``user`` the ``role`` of ``room`` (the application's call); the audit log
        keeps it, and the user's connections get a ``moderation`` event (action ``role``)."""
        check_role(role)
        now_ms = int(time.time() * 1000)

        def run(store: Store) -> AuditEntry:
            old = store.standings(room, [user]).get(user, _PLAIN)
            entry = AuditEntry(
                _AUDIT_IDS.next(now_ms), room, now_ms, by, ROLE_ACTION, user, role=role
            )
            store.moderate(room, user, replace(old, role=role), entry)
            return entry

        entry: AuditEntry = ask_store(self.ctx, run, f"set a role in room {room!r}")
        self._announce(entry)
        return entry

    def standings(self, room: str, users: list[str]) -> dict[str, Standing]:
        """The kept standing of each of ``users`` in ``room`` that has one."""
        found: dict[str, Standing] = ask_store(
            self.ctx, lambda store: store.standings(room, users), f"read roles in {room!r}"
        )
        return found

    def audit(self, room: str, *, before: str | None, limit: int) -> dict[str, Any]:
        """A page of ``room``'s audit log, newest first: ``{"entries": [...], "next": id or
        None}``; ``next`` is the ``before`` of the following page."""
        found: list[AuditEntry] = ask_store(
            self.ctx,
            lambda store: store.audit(room, before=before, limit=limit + 1),
            f"read the audit log of {room!r}",
        )
        page = found[:limit]
        more = len(found) > limit
        return {"entries": [e.as_json() for e in page], "next": page[-1].id if more else None}

    # -- the steps -------------------------------------------------------------------------------

    def _check(
        self, store: Store, ask: _Ask, now_ms: int
    ) -> tuple[AuditEntry, StoredMessage | None] | CommandError:
        """Run on the store: the audit entry of the action, and the message a delete deletes;
        or the CommandError that refuses it (returned: raised, it would read as the store's
        own failure)."""
        room, action, by, user, mid = ask.room, ask.action, ask.by, ask.user, ask.mid
        application = ask.application
        message = None
        if action == "delete":
            assert mid is not None
            message = store.get(mid)
            if (
                message is None
                or message.room != room
                or message.target is not None
                or message.deleted
            ):
                return CommandError(ErrorCode.NOT_FOUND, f"no message {mid!r} in room {room!r}")
            user = message.sender
        assert user is not None
        found = store.standings(room, [user] if application else [user, by])
        target = found.get(user, _PLAIN)
        actor_role = APPLICATION if application else found.get(by, _PLAIN).role
        refusal = check_action(actor_role, target.role, action)
        if refusal is not None:
            return _refused(refusal, room, user, target.role, action)
        if action == "kick" and room not in store.rooms_of(user):
            return CommandError(ErrorCode.NOT_FOUND, f"{user!r} is not a member of room {room!r}")
        until = until_of(now_ms, ask.duration_ms) if action in SANCTIONS else 0
        entry = AuditEntry(
            _AUDIT_IDS.next(now_ms),
            room,
            now_ms,
            by,
            action,
            user,
            ask.reason,
            until,
            mid,
        )
        return entry, message

    def _keep(self, store: Store, entry: AuditEntry, ask: _Ask) -> None:
        """Run on the store: keep what ``entry`` records, from the target's standing as it is
        now (so that two moderators acting at once both count), with its webhook events; a
        kick or ban ends the target's membership."""
        user, room = entry.target, entry.room
        now = store.standings(room, [user]).get(user, _PLAIN)
        standing = applied(now, entry.action, now_ms=entry.ts, duration_ms=ask.duration_ms)
        if entry.action in ("kick", "ban"):
            store.leave_room(user, room)
        store.moderate(room, user, standing, entry, self.webhooks.for_moderation(entry))

    def _delete(self, message: StoredMessage, by: str, now_ms: int) -> None:
        """Store the delete of ``message`` by ``by`` like any delete: its tombstone reaches
        the room in order, and its ``message.deleted`` webhook event is kept."""
        change = NewMessage(
            conv=room_conv(message.room or ""),
            sender=by,
            kind=DELETE,
            body=b"",
            ts=now_ms,
            room=message.room,
            target=message.mid,
        )
        result: AsyncResult = AsyncResult()

        def done(value: Any, error: BaseException | None) -> None:
            result.set((value, error))

        self.ctx.refs.tell_store(Append(change, None, None, None, _Waiter(), done))
        if not result.wait(DELETE_TIMEOUT_S):
            raise Unavailable("the store did not store the delete in time")
        stored, error = result.get()
        if isinstance(error, (Unavailable, CommandError)):
            raise error
        if error is not None:
            raise CommandError(ErrorCode.INTERNAL, "the delete could not be stored; retry")
        if stored.refused is not None:
            raise CommandError(ErrorCode.NOT_FOUND, f"no message {message.mid!r} to delete")

    def _announce(self, entry: AuditEntry) -> None:
        """Tell the affected user's connections, on every node."""
        broker = self.ctx.broker
        broker.publish_to_user(entry.target, moderation_frame(entry))
        if entry.action in ("kick", "ban"):
            broker.publish_to_user(
                entry.target, self_member_frame(entry.room, entry.target, joined=False)
            )
