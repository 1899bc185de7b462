"""Who a connection is and which rooms it may join, from a signed token.

Clients present a JWT (HS256) when they connect. The token names the user (``sub``), may expire
(``exp``), may restrict rooms (``rooms``: exact names, ``prefix:*`` patterns, or ``*``), and
carries the time it was issued (``iat``) and an id (``jti``), by which it can be revoked.
Without a ``rooms`` claim every room is allowed. Verification is pure: the current time is an
argument, so tests and the server's own clock decide what "expired" means, not PyJWT's. PyJWT
mints; tokens are verified by `actorim.domain.jws`, which checks what PyJWT's ``decode`` checks
at a fraction of its cost (every connection verifies one).

>>> authority = TokenAuthority(generate_secret())
>>> token = authority.mint("alice", rooms=["lobby", "team:*"], now=1_000)
>>> identity = authority.verify(token, now=1_010)
>>> identity.user, identity.may_join("team:red"), identity.may_join("team")
('alice', True, False)
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

from actorim.domain.jws import HS256, JwsError, Refusal, verify_hs256

__all__ = [
    "ALGORITHM",
    "DEFAULT_TTL_S",
    "MAX_ROOMS_CLAIM",
    "MAX_TOKEN_CHARS",
    "MAX_TOKEN_ID_CHARS",
    "MIN_SECRET_BYTES",
    "Identity",
    "TokenAuthority",
    "TokenError",
    "generate_secret",
    "valid_user_id",
    "weak_secret",
]

ALGORITHM = HS256
"""The only algorithm accepted: a token claiming any other (including ``none``) is refused."""

DEFAULT_TTL_S = 3600
"""Lifetime of a minted token: an hour, long enough for a session, short enough to leak little."""

MIN_SECRET_BYTES = 32
"""RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output, 256 bits."""

MAX_TOKEN_CHARS = 8192
"""Tokens come from unauthenticated peers; anything longer is refused before it is decoded."""

MAX_TOKEN_ID_CHARS = 128
"""Length of a ``jti``: room for a UUID or any id an issuer keeps, short enough to store."""

MAX_ROOMS_CLAIM = 1000
"""Entries in a ``rooms`` claim; a longer list belongs in a pattern (``team:*``), not a token."""

MAX_ROOM_PATTERN_CHARS = 256
"""Length of one ``rooms`` entry; bounds the claim, the room-name rules live in the protocol."""

WILDCARD = "*"
PREFIX_SUFFIX = ":*"

_USER_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
_USER_ID_RULE = "1 to 128 characters of A-Z a-z 0-9 _ . : @ -"
_ROOMS_RULE = "a list of room names, 'prefix:*' patterns or '*'"


class TokenError(Exception):
    """A token was refused; the message says why and is safe to show the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def valid_user_id(user: object) -> bool:
    """Whether ``user`` is an acceptable user id (the ``sub`` of a token)."""
    return isinstance(user, str) and _USER_ID.fullmatch(user) is not None


def weak_secret(secret: str) -> bool:
    """Whether ``secret`` is too short to sign tokens in production (under 256 bits)."""
    return len(secret.encode("utf-8")) < MIN_SECRET_BYTES


def generate_secret() -> str:
    """A fresh random secret for development mode, where no secret is configured."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class _RoomRule:
    """A ``rooms`` claim compiled once, so ``may_join`` on every join is a set and a regex."""

    everything: bool
    exact: frozenset[str]
    prefixes: re.Pattern[str] | None

    @classmethod
    def compile(cls, rooms: Sequence[str] | None) -> _RoomRule:
        if rooms is None:
            return _EVERY_ROOM
        exact: set[str] = set()
        prefixes: list[str] = []
        everything = False
        for entry in rooms:
            if entry == WILDCARD:
                everything = True
            elif entry.endswith(PREFIX_SUFFIX):
                prefixes.append(entry[:-1])
            else:
                exact.add(entry)
        pattern = None
        if prefixes:
            alternatives = "|".join(re.escape(p) for p in sorted(set(prefixes)))
            # A pattern needs something after the prefix: 'team:*' allows 'team:red', not 'team:'.
            pattern = re.compile(f"(?:{alternatives}).+", re.DOTALL)
        return cls(everything, frozenset(exact), pattern)

    def allows(self, room: str) -> bool:
        if self.everything or room in self.exact:
            return True
        return self.prefixes is not None and self.prefixes.fullmatch(room) is not None


_EVERY_ROOM = _RoomRule(True, frozenset(), None)
"""The rule of every token without a ``rooms`` claim: one, shared (it is immutable)."""


def _rooms_problem(rooms: object) -> str | None:
    """Why ``rooms`` is not a valid ``rooms`` claim, or None when it is."""
    if not isinstance(rooms, list | tuple):
        return f"must be {_ROOMS_RULE}"
    if len(rooms) > MAX_ROOMS_CLAIM:
        return f"has {len(rooms)} entries, at most {MAX_ROOMS_CLAIM} are allowed"
    for entry in rooms:
        if not isinstance(entry, str) or not entry or len(entry) > MAX_ROOM_PATTERN_CHARS:
            return (
                f"entry {entry!r} is not a room name "
                f"(a non-empty string of at most {MAX_ROOM_PATTERN_CHARS} characters)"
            )
        if entry == WILDCARD:
            continue
        body = entry.removesuffix(PREFIX_SUFFIX)
        if not body or WILDCARD in body:
            return f"entry {entry!r} is not an exact name, a 'prefix:*' pattern or '*'"
    return None


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified user and the rooms the token lets them join (``None``: every room)."""

    user: str
    rooms: tuple[str, ...] | None
    expires_at: int | None
    issued_at: int | None = None
    """The ``iat`` claim: what a revocation of "every token of this user issued before T"
    compares; None when the token has none."""
    token_id: str | None = None
    """The ``jti`` claim: what a revocation of one token names; None when the token has none."""
    _rule: _RoomRule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.rooms is not None:
            problem = _rooms_problem(self.rooms)
            if problem is not None:
                raise ValueError(f"rooms {problem}")
        object.__setattr__(self, "_rule", _RoomRule.compile(self.rooms))

    def may_join(self, room: str) -> bool:
        """Whether the token allows joining ``room``: exact name, ``prefix:*`` or ``*``."""
        return self._rule.allows(room)


class TokenAuthority:
    """Mints and verifies tokens signed with one shared secret.

    ``leeway_s`` tolerates clock skew between the machine that minted a token and this one.
    The secret is not checked for strength here; call :func:`weak_secret` where the
    configuration is validated, so development set-ups can still use a short one.
    """

    __slots__ = ("_key", "_leeway_s", "_secret")

    def __init__(self, secret: str, *, leeway_s: float = 0) -> None:
        if not secret:
            raise ValueError("the token secret must not be empty")
        if leeway_s < 0:
            raise ValueError(f"leeway_s must be >= 0, got {leeway_s!r}")
        try:
            # PyJWT's own refusal of a PEM or SSH public key as an HMAC secret (a key
            # confusion it would otherwise report on every token).
            self._key: bytes = HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
        except jwt.InvalidKeyError as exc:
            raise ValueError(f"the token secret cannot be an HMAC key: {exc}") from None
        self._secret = secret
        self._leeway_s = leeway_s

    def mint(
        self,
        user: str,
        *,
        rooms: Sequence[str] | None = None,
        ttl_s: int | None = DEFAULT_TTL_S,
        now: float | None = None,
        token_id: str | None = None,
    ) -> str:
        """A signed token for ``user``; ``ttl_s=None`` mints one that never expires.

        The token's ``jti`` is ``token_id``, or a fresh random id: what revoking it names.
        """
        if not valid_user_id(user):
            raise ValueError(f"user id {user!r} is invalid: use {_USER_ID_RULE}")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive or None, got {ttl_s!r}")
        issued = int(time.time() if now is None else now)
        if token_id is None:
            token_id = secrets.token_urlsafe(12)
        elif not isinstance(token_id, str) or not 0 < len(token_id) <= MAX_TOKEN_ID_CHARS:
            raise ValueError(f"token_id must be 1 to {MAX_TOKEN_ID_CHARS} characters")
        claims: dict[str, Any] = {"sub": user, "iat": issued, "jti": token_id}
        if ttl_s is not None:
            claims["exp"] = issued + int(ttl_s)
        if rooms is not None:
            if isinstance(rooms, str):
                raise ValueError(f"rooms must be {_ROOMS_RULE}, not a single string")
            entries = list(rooms)
            problem = _rooms_problem(entries)
            if problem is not None:
                raise ValueError(f"rooms {problem}")
            claims["rooms"] = entries
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str, *, now: float | None = None) -> Identity:
        """The identity a token proves, or :class:`TokenError` saying why it proves nothing."""
        if not isinstance(token, str) or not token:
            raise TokenError("missing token: connect with a token from the server")
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError(f"malformed token: longer than {MAX_TOKEN_CHARS} characters")
        claims = self._decode(token)
        at = time.time() if now is None else now
        expires_at = self._check_times(claims, at)

        user = claims.get("sub")
        if user is None:
            raise TokenError("token has no 'sub' claim: it must name the user")
        if not valid_user_id(user):
            raise TokenError(f"token 'sub' is not a valid user id: use {_USER_ID_RULE}")

        rooms = claims.get("rooms")
        if rooms is not None:
            problem = _rooms_problem(rooms)
            if problem is not None:
                raise TokenError(f"token 'rooms' claim {problem}")
            rooms = tuple(rooms)
        return Identity(
            user=user,
            rooms=rooms,
            expires_at=expires_at,
            issued_at=_issued_at(claims),
            token_id=_token_id(claims),
        )

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            return verify_hs256(token, self._key)
        except JwsError as exc:
            raise TokenError(_REFUSALS[exc.refusal].format(exc.message)) from None

    def _check_times(self, claims: dict[str, Any], now: float) -> int | None:
        """The expiry as an int, after refusing expired and not-yet-valid tokens."""
        exp = claims.get("exp")
        if exp is not None:
            if not _is_number(exp):
                raise TokenError("malformed token: 'exp' must be a number of seconds")
            # Same rule as PyJWT: a token is expired from the second 'exp' names.
            if exp <= now - self._leeway_s:
                raise TokenError("token expired: get a new token and reconnect")
        nbf = claims.get("nbf")
        if nbf is not None:
            if not _is_number(nbf):
                raise TokenError("malformed token: 'nbf' must be a number of seconds")
            if nbf > now + self._leeway_s:
                raise TokenError("token not valid yet: check the clocks of this server and issuer")
        return None if exp is None else int(exp)


_REFUSALS = {
    Refusal.SIGNATURE: "bad signature: the token was not signed by this server",
    Refusal.ALGORITHM: f"token algorithm not allowed: only {ALGORITHM} is accepted",
    Refusal.MALFORMED: "malformed token: {}",
    Refusal.INVALID: "invalid token: {}",
}
"""What the client is told for each kind of refusal (``{}``: the verifier's words)."""


def _issued_at(claims: dict[str, Any]) -> int | None:
    iat = claims.get("iat")
    if iat is None:
        return None
    if not _is_number(iat):
        raise TokenError("malformed token: 'iat' must be a number of seconds")
    return int(iat)


def _token_id(claims: dict[str, Any]) -> str | None:
    jti = claims.get("jti")
    if jti is None:
        return None
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_TOKEN_ID_CHARS:
        raise TokenError(
            f"malformed token: 'jti' must be a string of 1 to {MAX_TOKEN_ID_CHARS} characters"
        )
    return jti


def _is_number(value: object) -> bool:
    # JSON as Python parses it admits NaN and Infinity; neither is a time.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
