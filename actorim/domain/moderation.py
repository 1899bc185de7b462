"""Room moderation, decided: roles, who may act on whom, what each action leaves behind, and
the audit entry that records it. Pure: no clock (times are passed in, in ms), no I/O.

A user's **standing** in a room is their role (``owner``, ``moderator`` or ``member``) and
the ends of their ban and mute (0: none; :data:`FOREVER_MS`: no expiry). A room made by a
plain ``join`` has no owner and no moderator until the application sets roles, so that
everybody there is a member and nobody may moderate over the WebSocket: today's behaviour.

The application (the server API and ``Node``) acts as :data:`APPLICATION`, above every role;
a user acting over the WebSocket must be a moderator or the owner, and outrank the user they
act on.

>>> check_action("moderator", "member", "kick") is None
True
>>> check_action("moderator", "moderator", "mute")
<Refusal.OUTRANKED: 'outranked'>
>>> check_action("member", "member", "delete")
<Refusal.NOT_MODERATOR: 'not_moderator'>
>>> check_action(APPLICATION, "owner", "ban") is None
True
>>> s = applied(Standing(), "mute", now_ms=1_000, duration_ms=60_000)
>>> s.muted(1_000), s.muted(61_000), s.muted_until
(True, False, 61000)
>>> banned = applied(s, "ban", now_ms=2_000, duration_ms=None)
>>> applied(banned, "unmute", now_ms=3_000, duration_ms=None)
Standing(role='member', banned_until=9007199254740991, muted_until=0)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

__all__ = [
    "ACTIONS",
    "APPLICATION",
    "FOREVER_MS",
    "ROLES",
    "ROLE_ACTION",
    "SANCTIONS",
    "AuditEntry",
    "Refusal",
    "Standing",
    "applied",
    "check_action",
    "check_role",
    "until_of",
]

ROLES: tuple[str, ...] = ("member", "moderator", "owner")
"""The roles of a room, lowest first."""

APPLICATION = "application"
"""The rank of the application (the server API, ``Node``): above every role."""

_RANK = {"member": 0, "moderator": 1, "owner": 2, APPLICATION: 3}

ACTIONS: tuple[str, ...] = ("kick", "ban", "unban", "mute", "unmute", "delete")
"""What a moderator may do to a user (or, for ``delete``, to a user's message)."""

SANCTIONS: tuple[str, ...] = ("ban", "mute")
"""The actions that last, for a duration or until lifted."""

ROLE_ACTION = "role"
"""The audit log's name for a role being set (by the application only)."""

FOREVER_MS = 2**53 - 1
"""The end of a ban or mute without expiry (the largest integer JavaScript holds exactly)."""


class Refusal(StrEnum):
    """Why a moderation action was refused; the wire error codes of the same names."""

    NOT_MODERATOR = "not_moderator"
    """The actor is neither a moderator nor the owner of the room."""
    OUTRANKED = "outranked"
    """The target's role is equal to or above the actor's."""


@dataclass(frozen=True, slots=True)
class Standing:
    """A user's role in a room and the ends (ms since the epoch) of their ban and mute."""

    role: str = "member"
    banned_until: int = 0
    muted_until: int = 0

    def banned(self, now_ms: int) -> bool:
        return self.banned_until > now_ms

    def muted(self, now_ms: int) -> bool:
        return self.muted_until > now_ms

    def plain(self, now_ms: int) -> bool:
        """A member, neither banned nor muted: the standing nobody needs to keep."""
        return self.role == "member" and not self.banned(now_ms) and not self.muted(now_ms)


def check_role(role: object) -> str:
    """``role`` when it is one of :data:`ROLES`, else ValueError naming them."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return str(role)


def check_action(actor_role: str, target_role: str, action: str) -> Refusal | None:
    """Why a user of ``actor_role`` may not take ``action`` against one of ``target_role``
    (for ``delete``: the author of the message), or None when they may."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if _RANK[actor_role] < _RANK["moderator"]:
        return Refusal.NOT_MODERATOR
    if _RANK[target_role] >= _RANK[actor_role]:
        return Refusal.OUTRANKED
    return None


def until_of(now_ms: int, duration_ms: int | None) -> int:
    """When a sanction of ``duration_ms`` (None: no expiry) taken at ``now_ms`` ends."""
    return FOREVER_MS if duration_ms is None else min(FOREVER_MS, now_ms + duration_ms)


def applied(standing: Standing, action: str, *, now_ms: int, duration_ms: int | None) -> Standing:
    """The standing ``action`` leaves (kick and delete leave it as it was)."""
    if action == "ban":
        return replace(standing, banned_until=until_of(now_ms, duration_ms))
    if action == "unban":
        return replace(standing, banned_until=0)
    if action == "mute":
        return replace(standing, muted_until=until_of(now_ms, duration_ms))
    if action == "unmute":
        return replace(standing, muted_until=0)
    return standing


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of a room's audit log: who (``actor``) did what (``action``) to whom
    (``target``, and ``mid`` for a delete), when (``ts``, ms), why (``reason``) and until
    when (``until``, ms; :data:`FOREVER_MS` for no expiry; 0 when the action does not last;
    for ``role`` the role set is in ``reason``'s place: ``role``). ``id`` sorts by time."""

    id: str
    room: str
    ts: int
    actor: str
    action: str
    target: str
    reason: str = ""
    until: int = 0
    mid: str | None = None
    role: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The entry as the API and ``Node`` give it: ``until`` null when the sanction does
        not expire, left out when the action does not last."""
        data: dict[str, Any] = {
            "id": self.id,
            "room": self.room,
            "ts": self.ts,
            "by": self.actor,
            "action": self.action,
            "user": self.target,
            "reason": self.reason,
        }
        if self.action in SANCTIONS:
            data["until"] = None if self.until == FOREVER_MS else self.until
        if self.mid is not None:
            data["mid"] = self.mid
        if self.role is not None:
            data["role"] = self.role
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditEntry:
        until = data.get("until", 0)
        return cls(
            data["id"],
            data["room"],
            data["ts"],
            data["by"],
            data["action"],
            data["user"],
            data["reason"],
            FOREVER_MS if until is None else until,
            data.get("mid"),
            data.get("role"),
        )
