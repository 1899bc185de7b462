"""What the actors of one node share: settings, the directory of links and rooms, well-known refs.

The directory is the routing state that must survive an actor's restart (which users have which
links, which rooms exist and who is in them), so it lives here rather than inside the router or
a room actor. Only actors on the node's hub touch it, and greenlets switch only where one
waits, so no two touch it at once and it needs no locks. A handler that waits (an ``ask`` to
the router, a blocking write) lets other actors run meanwhile, so it must not rely on what it
read before the wait; store answers never run inside the store actor but come back to the
asker as messages (``actorim.runtime.store.reply``).

``refs`` holds the current ref of each singleton actor; an actor writes its own ref there in
``on_start``, so a restarted store or router is found again without asking a supervisor. The
store, the router and the presence tracker are told through ``tell_store``, ``tell_router`` and
``tell_presence``, each typed by the requests that actor takes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pykka import ActorDeadError

from actorim.domain.admission import SetupGate
from actorim.domain.hooks import Hooks
from actorim.domain.ratelimit import TypingThrottle
from actorim.domain.tokens import RevocationList
from actorim.runtime.hooks import HookRunner
from actorim.runtime.metrics import Metrics, NodeSnapshot
from supervisors import MailboxFull

if TYPE_CHECKING:
    from pykka import ActorRef

    from actorim.config import Config
    from actorim.domain.auth import TokenAuthority
    from actorim.ports import Broker
    from actorim.runtime.link import Link
    from actorim.runtime.messages import PresenceRequest, RouterRequest, StoreRequest
    from actorim.runtime.roomstate import RoomState

__all__ = ["Directory", "NodeContext", "Refs", "Unavailable"]


class Unavailable(Exception):
    """A singleton actor is down (restarting); the caller answers ``overloaded`` or retries."""


@dataclass
class Refs:
    """Current refs of the node's singleton actors (None while one restarts)."""

    store: ActorRef[Any] | None = None
    router: ActorRef[Any] | None = None
    presence: ActorRef[Any] | None = None
    rooms: ActorRef[Any] | None = None
    connections: ActorRef[Any] | None = None
    heartbeat: ActorRef[Any] | None = None

    def tell_store(self, message: StoreRequest) -> None:
        """Tell the store a typed request; raises :class:`Unavailable` while it is down or
        swamped. Its answer comes back to the request's ``reply_to``."""
        self.tell_by_name("store", message)

    def tell_router(self, message: RouterRequest) -> None:
        """Tell the router; raises :class:`Unavailable` while it is down or swamped."""
        self.tell_by_name("router", message)

    def tell_presence(self, message: PresenceRequest) -> None:
        """Tell the presence tracker; raises :class:`Unavailable` while it is down or swamped."""
        self.tell_by_name("presence", message)

    def tell_by_name(self, name: str, message: Any) -> None:
        """Tell the singleton called ``name`` anything: for fault injection, where a client's
        ``debug.crash`` names its target. Everything else uses the typed tells above."""
        ref = getattr(self, name)
        if ref is None:
            msg = f"the {name} is restarting"
            raise Unavailable(msg)
        try:
            ref.tell(message)
        except ActorDeadError:
            msg = f"the {name} is restarting"
            raise Unavailable(msg) from None
        except MailboxFull:
            msg = f"the {name} is overloaded"
            raise Unavailable(msg) from None


@dataclass
class Directory:
    """Routing state: live links, links per user, rooms by name."""

    links: dict[int, Link] = field(default_factory=dict)
    by_user: dict[str, tuple[Link, ...]] = field(default_factory=dict)
    """A user's links on this node, oldest first: a tuple (a user nearly always has one or two,
    at most ``max_connections_per_user``), a quarter of a dict's memory."""
    rooms: dict[str, RoomState] = field(default_factory=dict)

    def links_of(self, user: str) -> tuple[Link, ...]:
        return self.by_user.get(user, ())


@dataclass
class NodeContext:
    """Everything a node's actors share."""

    config: Config
    authority: TokenAuthority
    node_id: str
    broker: Broker
    directory: Directory = field(default_factory=Directory)
    refs: Refs = field(default_factory=Refs)
    epoch: str = ""
    draining: bool = False
    stopping: bool = False
    """Set when the node stops its supervision tree (``Node.stop``), after the drain: the rooms
    and the presence tracker then drop the bookkeeping still queued for them (members and
    statuses of connections that are gone) instead of working through it, one Redis round
    trip each, past their shutdown time; the node's records are taken out of Redis at once
    as it stops (``NodeRegistryActor``), and a single node keeps none."""
    metrics: Metrics = field(init=False)
    breakers: dict[str, Callable[[], int]] = field(default_factory=dict)
    typing: TypingThrottle = field(init=False)
    """Which typing indicators of this node's users are relayed (``typing_throttle``)."""

    hooks: HookRunner = field(init=False)
    """The application's hooks (``Node(config, hooks=...)``); none by default."""

    admission: SetupGate = field(init=False)
    """The connections setting up (upgraded, ``connect`` not yet answered), at most
    ``max_setups``: past it the web layer refuses new ones, 1013 with a hint
    (``actorim.web.admission``); the connection actor reports each set-up's end."""

    def __post_init__(self) -> None:
        self.typing = TypingThrottle(self.config.typing_throttle)
        self.admission = SetupGate(self.config.max_setups)
        self.hooks = HookRunner(Hooks(), timeout=self.config.hook_timeout)

    # Token revocations in force on this node, checked at every connect and refresh
    # (actorim.runtime.tokens).
    revocations: RevocationList = field(default_factory=RevocationList)

    def readiness(self) -> tuple[bool, str]:
        """Whether the node should get traffic, and why not."""
        if self.draining:
            return False, "draining"
        if self.refs.store is None:
            return False, "store unavailable"
        if not self.broker.healthy:
            return False, "Redis link not healthy"
        return True, "ok"

    def breaker_states(self) -> dict[str, int]:
        """Each circuit breaker's state for metrics: 0 closed, 1 half-open, 2 open."""
        return {name: state() for name, state in self.breakers.items()}

    def snapshot(self) -> NodeSnapshot:
        """The whole-node gauges for ``/metrics``, read from the directory now."""
        phases: dict[str, int] = {}
        frames = queued_bytes = deepest = 0
        for link in list(self.directory.links.values()):
            phases[link.phase.value] = phases.get(link.phase.value, 0) + 1
            depth = len(link.outbox)
            frames += depth
            queued_bytes += link.outbox.queued_bytes
            deepest = max(deepest, depth)
        return NodeSnapshot(
            phases=phases,
            queued_frames=frames,
            queued_bytes=queued_bytes,
            deepest_queue=deepest,
            users=len(self.directory.by_user),
            rooms=len(self.directory.rooms),
            breakers=self.breaker_states(),
            ready=self.readiness()[0],
        )


def default_node_id() -> str:
    """A readable id that tells nodes on one machine apart: host name and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"
