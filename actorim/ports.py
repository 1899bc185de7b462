"""The seams between the runtime and the adapters below and beside it: small protocols that
the actors program against, so that no actor names the web layer or a concrete adapter.

``Transport`` is what a connection's actors need of its WebSocket (implemented by
``actorim.web.websocket.ServerWebSocket``), and ``ConnectionClosed`` what a write raises once
the socket is gone. ``Broker`` is how events reach other connections, on this node or on any
node of a cluster, and how presence and membership are counted: ``actorim.local.broker`` (one
node) and ``actorim.redis.broker`` (a cluster) implement it, and ``node.py`` picks one; the
actors never ask which they have. ``Delivery`` is what a broker hands events to: the runtime's
local fan-out, which the local broker calls as it publishes and the Redis listener as it hears
the cluster (so no adapter names a runtime actor or link). ``Revocations`` keeps the token
revocations (``actorim.local.revocations`` on one node, ``actorim.redis.revocations`` in a
cluster, where adding one also announces it to every node). The Store protocol is
``actorim.store.base.Store``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from actorim.domain.presence import Announcement, Status
    from actorim.domain.tokens import Revocation
    from actorim.protocol.wire import WireFrame

__all__ = [
    "Broker",
    "ConnectionClosed",
    "Delivery",
    "Membership",
    "Origin",
    "Revocations",
    "Transport",
    "WebhookPost",
]


class WebhookPost(Protocol):
    """How the webhook dispatcher sends a request (``actorim.web.webhook_client.post``): POST
    ``body`` with ``headers`` to ``url`` within ``timeout`` seconds in all, and answer the
    HTTP status; raise ``OSError`` (or ``TimeoutError``) when no answer came."""

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> int: ...


class ConnectionClosed(Exception):
    """The WebSocket is closing or its socket is gone: nothing more can be written to it."""


class Transport(Protocol):
    """One client's socket as the runtime sees it: frames already encoded go out, and the time
    the last frame came in is known (the idle check)."""

    last_received: float
    """When the client last sent bytes, on the socket's monotonic clock."""

    @property
    def writing(self) -> bool:
        """Whether a write is under way, possibly blocked on a client that stopped reading."""
        ...

    def write(self, data: bytes | list[bytes]) -> None:
        """Write encoded frames, waiting for the socket; raises ``ConnectionClosed``."""
        ...

    def take_control_output(self) -> bytes:
        """Pongs and close replies the reader owes the client, for the writer to send in order."""
        ...

    def try_write(self, data: bytes) -> int:
        """Write what the socket takes now without waiting: bytes written, or -1 when closed."""
        ...

    def abort(self) -> None:
        """End the connection now, with no closing handshake."""
        ...

    def close(self, code: int = ..., reason: str = "") -> None:
        """Close with the closing handshake."""
        ...


class Origin(Protocol):
    """The connection an event comes from, which does not get it back."""

    conn_id: int
    """Unique on its node: with the node's id it names the connection across a cluster."""


class Delivery(Protocol):
    """The runtime's fan-out on this node, which a broker hands what it carries to."""

    def room_message(self, room: str, seq: int, frame: WireFrame, origin: Any) -> None:
        """A stored room message to the room's actor here, if the room has members here;
        ``origin`` (the sending link, or None) does not get it."""
        ...

    def room_event(self, room: str, frame: WireFrame, origin: Any) -> None:
        """An ephemeral room event (no seq) to the room's actor here, for every member but
        ``origin``."""
        ...

    def user_event(
        self, user: str, frame: WireFrame, *, mid: str | None = None, origin: Any = None
    ) -> None:
        """An event for every local link of ``user`` but ``origin``; ``mid`` marks a direct
        message (held behind a backlog being paged out, and counted as delivered)."""
        ...

    def member_event(self, room: str, frame: WireFrame, user: str | None) -> None:
        """A membership change of ``user`` that the broker counted and announced once for the
        cluster, to the room's actor here, which tells its members."""
        ...

    def presence_event(self, frame: WireFrame, user: str | None) -> None:
        """A presence change of ``user`` that the broker announced once for the cluster, to
        this node's presence tracker, which tells the user's watchers here."""
        ...

    def revoked(self, revocation: Revocation) -> None:
        """A token revocation, made on this node or announced by another: refuse the tokens it
        names from now on and close this node's connections that hold one."""
        ...

    def disconnect(self, user: str, session: str | None, code: int, reason: str) -> None:
        """Close this node's connections of ``user`` (only the one whose session is
        ``session``, when given) with ``code`` and ``reason``: the server API's disconnect."""
        ...

    def local_origin(self, conn_id: int) -> Origin | None:
        """This node's open connection ``conn_id``, or None: an event that came back through
        the broker names its origin so, and the origin must not get it again."""
        ...


@dataclass(frozen=True, slots=True)
class Membership:
    """What a broker answers when a room's connection count of a user changes."""

    members: list[str] | None
    """The room's members everywhere after the change, or None: the room's own are all."""

    announced: bool
    """Whether the broker announces the arrival or departure itself (to every node's room
    actor, this one's too); when False the room tells its members."""


class Broker(Protocol):
    """How events reach the connections that want them, wherever they are, and how presence
    and room membership are counted across the nodes that share them.

    No method raises: a broker whose link is down answers a default (None: "this node knows
    no more") and repairs what it missed when the link is back. Only subscribing waits, for the
    subscription to be confirmed (bounded: the Redis broker's ``WANT_TIMEOUT_S``).
    """

    live_copies_lag: bool
    """Whether a message's live copy can reach a link after a store read returned the message
    already (it travels apart from the store): a reader of stored messages must then drop such
    late copies itself."""

    # -- health ----------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """Whether what is published now reaches every node: a node refuses sends and is not
        ready while it is not."""
        ...

    @property
    def refusing(self) -> bool:
        """Whether calls that need the broker's link are refused unmade (its breaker is open)."""
        ...

    def link_failed(self, what: str, error: BaseException) -> bool:
        """Report a failure of a call over the broker's link (the cluster's store shares it);
        True if the link owns it (its breaker handles it), False if the caller must."""
        ...

    # -- publishing ------------------------------------------------------------------------

    def publish_stored(self, room: str, seq: int, frame: WireFrame, origin: Any) -> None:
        """A room message the store committed with ``seq``, for every member but ``origin``."""
        ...

    def publish_ephemeral(self, room: str, frame: WireFrame, origin: Origin | None) -> None:
        """An event for every member of ``room`` but ``origin``, with no seq: not stored, not
        replayed to a member that was away (typing indicators and the like)."""
        ...

    def publish_to_user(
        self, user: str, frame: WireFrame, *, mid: str | None = None, origin: Any = None
    ) -> None:
        """An event for every connection of ``user`` but ``origin``; ``mid`` marks a stored
        direct message."""
        ...

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe_room(self, room: str) -> None:
        """This node has members in ``room``: from now on its messages reach this node."""
        ...

    def unsubscribe_room(self, room: str) -> None: ...

    def subscribe_user(self, user: str) -> None:
        """This node has connections of ``user``: from now on their events reach this node."""
        ...

    def unsubscribe_user(self, user: str) -> None: ...

    # -- sessions ------------------------------------------------------------------------

    def sessions(self, user: str) -> list[dict[str, Any]] | None:
        """The live sessions of ``user`` on every node (``session``, ``user``, ``node``,
        ``since`` in ms, ``address``), or None: this node's own are all there are (one node, or
        the link is away)."""
        ...

    def disconnect(self, user: str, session: str | None, code: int, reason: str) -> None:
        """Close ``user``'s connections (or the one of ``session``) on every node, this one's
        too (through ``Delivery.disconnect``)."""
        ...

    # -- presence --------------------------------------------------------------------------

    def connected(self, user: str, session: str, address: str | None) -> None:
        """A connection of ``user`` came up on this node: count it (and record its session)."""
        ...

    def disconnected(self, user: str, session: str) -> None:
        """A connection of ``user`` on this node went down."""
        ...

    def announce(self, announcements: list[Announcement]) -> list[Announcement]:
        """The node's presence tracker changed a status: publish it; returns the announcements
        the tracker must tell its own watchers (on a cluster none: the broker announces once
        for every node, this one's watchers included)."""
        ...

    def settle(self, user: str, ts_ms: int | None = None) -> None:
        """``user``'s grace on this node is over without the tracker announcing it (the tracker
        is stopping): announce them offline if no node has a connection of theirs."""
        ...

    def statuses(self, users: Iterable[str]) -> dict[str, Status] | None:
        """Statuses of ``users`` across the nodes, or None: this node's tracker knows best."""
        ...

    def resync_presence(self, connections: Mapping[str, list[tuple[str, str | None]]]) -> bool:
        """After the link was away: make the counted connections match this node's (user ->
        (session, address) of each); False if nothing needed it or it could not be done."""
        ...

    # -- membership ------------------------------------------------------------------------

    def member_adjust(self, room: str, user: str, delta: int) -> Membership:
        """Count ``delta`` connections of ``user`` into (or out of) ``room`` on this node."""
        ...

    def members(self, room: str) -> list[str] | None:
        """``room``'s members on every node, or None: the room's own are all there are."""
        ...

    def resync_members(self, room: str, users: Mapping[str, int]) -> None:
        """After the link was away: make ``room``'s counts for this node match ``users``."""
        ...

    def resync_rooms(self, rooms: Iterable[str]) -> None:
        """After the link was away: count this node's connections out of rooms it has no
        members in any more (outside ``rooms``)."""
        ...


class Revocations(Protocol):
    """Where token revocations are kept, so that a node that starts (or comes back to Redis)
    knows every one in force. Not part of the message ``Store``: revocations are few, small,
    and in a cluster must reach every node at once rather than a room's members."""

    def add(self, revocation: Revocation) -> None:
        """Keep ``revocation`` until its ``until``; in a cluster, also announce it to every
        node (each hands it to its ``Delivery.revoked``). Raises on a store that failed."""
        ...

    def current(self, now: float) -> list[Revocation]:
        """The revocations still in force at ``now``; expired ones are dropped."""
        ...

    def close(self) -> None: ...
