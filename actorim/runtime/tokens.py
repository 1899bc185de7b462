"""A live connection's token, carried out: the ``refresh`` event, the close when it expires,
the in-band ``refresh`` command, and revocations closing the connections they name.

The decisions are the domain's (``actorim.domain.tokens``: ``TokenPolicy``,
``RevocationList``); this module applies them to links. Expiry is checked by the heartbeat's
sweep, once a second over every link (no timer per connection); a revocation is applied the
moment it reaches the node (made here, or heard from another node through the broker).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

from pykka import ActorDeadError

from actorim.domain.auth import TokenError
from actorim.domain.tokens import Revocation, TokenPolicy
from actorim.logs import context as log_context
from actorim.protocol.errors import CommandError, ErrorCode
from actorim.protocol.frames import CloseCode
from actorim.runtime.context import Unavailable
from actorim.runtime.link import Phase
from actorim.runtime.membership import ask_store, subscribe
from actorim.runtime.messages import LeaveRoom

if TYPE_CHECKING:
    from actorim.domain.auth import Identity
    from actorim.protocol.commands import Refresh
    from actorim.runtime.context import NodeContext
    from actorim.runtime.link import Link

__all__ = [
    "EXPIRED_REASON",
    "REVOKED_REASON",
    "apply_revocation",
    "apply_revocations",
    "check_expiry",
    "policy_of",
    "refresh",
    "verify_fresh",
]

logger = logging.getLogger("actorim.tokens")

EXPIRED_REASON = "token expired"
REVOKED_REASON = "token revoked"
_LEFT_REASON = "the refreshed token does not allow this room"


def policy_of(ctx: NodeContext) -> TokenPolicy:
    config = ctx.config
    return TokenPolicy(notice_s=config.token_refresh_notice, grace_s=config.token_expiry_grace)


def verify_fresh(ctx: NodeContext, token: str) -> Identity:
    """The identity ``token`` proves now, refusing a revoked one (``TokenError``)."""
    now = time.time()
    identity = ctx.authority.verify(token, now=now)
    if ctx.revocations.revokes(identity, now=now):
        raise TokenError("token revoked: get a new token")
    return identity


def check_expiry(ctx: NodeContext, link: Link, policy: TokenPolicy, now: float) -> None:
    """Ask ``link``'s client to refresh its token, or close it, when that is due at ``now``
    (wall-clock seconds, like ``exp``). Called by the sweep and right after ``connect``."""
    identity = link.identity
    if identity is None or identity.expires_at is None:
        return
    asked = link.refresh_asked_for == identity.expires_at
    due = policy.due(identity.expires_at, asked=asked, now=now)
    if due == "close":
        link.request_close(CloseCode.TOKEN_EXPIRED, EXPIRED_REASON)
    elif due == "ask":
        link.refresh_asked_for = identity.expires_at
        link.send({"t": "refresh", "exp": identity.expires_at, "grace": policy.grace_s})


def refresh(ctx: NodeContext, link: Link, command: Refresh) -> None:
    """The ``refresh`` command, run by the connection's actor."""
    current = link.identity
    assert current is not None
    try:
        identity = verify_fresh(ctx, command.token)
    except TokenError as exc:
        raise CommandError(ErrorCode.UNAUTHENTICATED, exc.message) from None
    if identity.user != current.user:
        raise CommandError(
            ErrorCode.FORBIDDEN,
            f"the token is for user {identity.user!r}, this connection is {current.user!r}:"
            " refresh with a token of the same user, or connect anew",
        )
    dropped = link.session.refreshed(identity)
    for name in dropped:
        state = link.session.left(name)
        if state is not None and state.actor is not None:
            with contextlib.suppress(ActorDeadError):
                state.actor.tell(LeaveRoom(link))
        link.send({"t": "left", "room": name, "reason": _LEFT_REASON})
    link.reply(command.t, command.id, {"exp": identity.expires_at})
    check_expiry(ctx, link, policy_of(ctx), time.time())
    # The user's rooms the new claim allows and the old one did not: subscribed from now on.
    with contextlib.suppress(Unavailable, CommandError):
        rooms = ask_store(ctx, lambda store: store.rooms_of(identity.user), "read your rooms")
        subscribe(ctx, link, [(room, None, None) for room in rooms if identity.may_join(room)])


def apply_revocation(ctx: NodeContext, revocation: Revocation) -> int:
    """Take in ``revocation`` and close this node's connections whose token it names; returns
    how many were closed."""
    if not ctx.revocations.add(revocation):
        return 0
    if revocation.kind == "user":
        links = ctx.directory.links_of(revocation.subject)
    else:
        links = tuple(ctx.directory.links.values())
    return _close_revoked(ctx, links)


def apply_revocations(ctx: NodeContext, revocations: list[Revocation]) -> int:
    """Take in every revocation in force (read at start or after the cluster's link was
    away), then close the connections they name in one pass."""
    now = time.time()
    ctx.revocations.prune(now)
    for revocation in revocations:
        ctx.revocations.add(revocation)
    return _close_revoked(ctx, tuple(ctx.directory.links.values()))


def _close_revoked(ctx: NodeContext, links: tuple[Link, ...]) -> int:
    now = time.time()
    closed = 0
    for link in links:
        identity = link.identity
        if identity is None or link.phase is Phase.CLOSED:
            continue
        if ctx.revocations.revokes(identity, now=now):
            logger.info(
                "closing a connection whose token was revoked",
                extra=log_context(conn=link.conn_id, user=link.user),
            )
            link.request_close(CloseCode.TOKEN_REVOKED, REVOKED_REASON)
            closed += 1
    return closed
