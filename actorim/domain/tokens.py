"""A live connection's token: when to ask for a fresh one, when to close, and what is revoked.

A token is checked at ``connect``, but a connection can outlive it by hours. So the token's
``exp`` is enforced while the connection is open: some time before it (``notice_s``) the
server asks the client to ``refresh``, and once ``exp`` plus a grace (``grace_s``) has passed
the connection is closed. A token without ``exp`` never expires, and neither does its
connection. :class:`TokenPolicy` makes that decision from the expiry, whether the client was
asked already, and the current time; it has no clock of its own.

>>> policy = TokenPolicy(notice_s=60, grace_s=30)
>>> policy.due(1_000, asked=False, now=900), policy.due(1_000, asked=False, now=950)
(None, 'ask')
>>> policy.due(1_000, asked=True, now=1_020), policy.due(1_000, asked=True, now=1_030)
(None, 'close')

Revocations name one token (its ``jti``) or every token of a user issued at or before a time
(by ``iat``; a token with no ``iat`` counts as issued before any time). Each is kept until
the tokens it names would have expired anyway (``until``), which bounds how many there are.
:class:`RevocationList` holds those in force and answers whether an identity is revoked.

>>> revoked = RevocationList()
>>> revoked.add(Revocation.of_user("mallory", before=2_000, until=9_000))
True
>>> mallory = Identity("mallory", None, None, issued_at=1_500)
>>> revoked.revokes(mallory, now=3_000), revoked.revokes(mallory, now=9_500)
(True, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal

from actorim.domain.auth import MAX_TOKEN_ID_CHARS, Identity, valid_user_id

__all__ = [
    "DEFAULT_REVOCATION_KEEP_S",
    "Due",
    "Revocation",
    "RevocationList",
    "TokenPolicy",
    "token_revocation",
    "user_revocation",
]

DEFAULT_REVOCATION_KEEP_S: Final = 7 * 86400
"""How long a revocation is kept when the caller does not say when its tokens expire: a week,
longer than any token the server mints by default (an hour) and than most issuers' refresh
cycle. A token without ``exp`` outlives it: revoke such tokens by user and rotate the secret."""

Due = Literal["ask", "close"]


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """When a connection's token must be refreshed: ``notice_s`` before ``exp`` the client is
    asked (at once if less is left), and ``grace_s`` after it the connection is closed."""

    notice_s: float
    grace_s: float

    def __post_init__(self) -> None:
        if self.notice_s < 0 or self.grace_s < 0:
            raise ValueError(f"notice_s and grace_s must be >= 0, got {self!r}")

    def due(self, expires_at: int | None, *, asked: bool, now: float) -> Due | None:
        """What is due now for a token expiring at ``expires_at`` (None: never)."""
        if expires_at is None:
            return None
        if now >= expires_at + self.grace_s:
            return "close"
        if not asked and now >= expires_at - self.notice_s:
            return "ask"
        return None


RevocationKind = Literal["token", "user"]


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revocation: of the token ``subject`` (a ``jti``), or of every token of the user
    ``subject`` issued at or before ``before``; kept until ``until`` (seconds since the epoch)."""

    kind: RevocationKind
    subject: str
    until: float
    before: float | None = None

    @classmethod
    def of_token(cls, token_id: str, *, until: float) -> Revocation:
        """Revoke the token whose ``jti`` is ``token_id``; ``until`` is that token's ``exp``."""
        if not isinstance(token_id, str) or not 0 < len(token_id) <= MAX_TOKEN_ID_CHARS:
            raise ValueError(f"token_id must be a string of 1 to {MAX_TOKEN_ID_CHARS} characters")
        return cls("token", token_id, _time(until, "until"))

    @classmethod
    def of_user(cls, user: str, *, before: float, until: float) -> Revocation:
        """Revoke every token of ``user`` issued at or before ``before``, keeping the
        revocation until ``until`` (when the last of those tokens expires)."""
        if not valid_user_id(user):
            raise ValueError(f"user id {user!r} is invalid")
        return cls("user", user, _time(until, "until"), _time(before, "before"))

    def revokes(self, identity: Identity) -> bool:
        """Whether this revocation names ``identity``'s token."""
        if self.kind == "token":
            return identity.token_id == self.subject
        if identity.user != self.subject:
            return False
        assert self.before is not None
        # iat has whole seconds: a token issued in the revocation's own second counts as before.
        return identity.issued_at is None or identity.issued_at <= self.before

    def to_map(self) -> dict[str, Any]:
        """The revocation as a plain map (for stores and the cluster's channel)."""
        return {
            "kind": self.kind,
            "subject": self.subject,
            "until": self.until,
            "before": self.before,
        }

    @classmethod
    def from_map(cls, data: dict[str, Any]) -> Revocation:
        """The inverse of :meth:`to_map`; ``ValueError`` for a map that is not one."""
        kind, subject = data.get("kind"), data.get("subject")
        if kind == "token" and isinstance(subject, str):
            return cls.of_token(subject, until=data.get("until"))  # type: ignore[arg-type]
        if kind == "user" and isinstance(subject, str):
            return cls.of_user(
                subject,
                before=data.get("before"),  # type: ignore[arg-type]
                until=data.get("until"),  # type: ignore[arg-type]
            )
        raise ValueError(f"not a revocation: {data!r}")


def _time(value: object, name: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a time in seconds since the epoch, got {value!r}")
    return float(value)


def token_revocation(
    token_id: str,
    *,
    expires_at: float | None,
    now: float,
    keep_s: float = DEFAULT_REVOCATION_KEEP_S,
) -> Revocation:
    """The revocation of token ``token_id``, kept until ``expires_at`` (that token's ``exp``)
    or, when the caller does not know it, for ``keep_s`` from ``now``."""
    return Revocation.of_token(token_id, until=now + keep_s if expires_at is None else expires_at)


def user_revocation(
    user: str,
    *,
    before: float | None,
    until: float | None,
    now: float,
    keep_s: float = DEFAULT_REVOCATION_KEEP_S,
) -> Revocation:
    """The revocation of every token of ``user`` issued at or before ``before`` (default
    ``now``), kept until ``until`` (when the last of them expires) or for ``keep_s``."""
    before = now if before is None else before
    return Revocation.of_user(user, before=before, until=now + keep_s if until is None else until)


class RevocationList:
    """The revocations in force on a node: tokens by id, users by the latest ``before``.

    Checking an identity is two dictionary look-ups, so it is done at every ``connect`` and
    ``refresh``. Expired revocations are dropped by :meth:`prune` (and ignored before).
    """

    __slots__ = ("_tokens", "_users")

    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}
        self._users: dict[str, tuple[float, float]] = {}  # user -> (before, until)

    def __len__(self) -> int:
        return len(self._tokens) + len(self._users)

    def add(self, revocation: Revocation) -> bool:
        """Take in ``revocation``; False when one already in force covers it."""
        if revocation.kind == "token":
            until = self._tokens.get(revocation.subject)
            if until is not None and until >= revocation.until:
                return False
            self._tokens[revocation.subject] = revocation.until
            return True
        assert revocation.before is not None
        current = self._users.get(revocation.subject)
        if (
            current is not None
            and current[0] >= revocation.before
            and current[1] >= revocation.until
        ):
            return False
        if current is None:
            self._users[revocation.subject] = (revocation.before, revocation.until)
        else:
            before = max(current[0], revocation.before)
            self._users[revocation.subject] = (before, max(current[1], revocation.until))
        return True

    def revokes(self, identity: Identity, *, now: float) -> bool:
        """Whether ``identity``'s token is revoked at ``now``."""
        if identity.token_id is not None:
            until = self._tokens.get(identity.token_id)
            if until is not None and now < until:
                return True
        entry = self._users.get(identity.user)
        if entry is None or now >= entry[1]:
            return False
        return identity.issued_at is None or identity.issued_at <= entry[0]

    def prune(self, now: float) -> int:
        """Drop the revocations whose tokens have all expired by ``now``; returns how many."""
        tokens = [key for key, until in self._tokens.items() if until <= now]
        users = [key for key, (_, until) in self._users.items() if until <= now]
        for key in tokens:
            del self._tokens[key]
        for key in users:
            del self._users[key]
        return len(tokens) + len(users)
