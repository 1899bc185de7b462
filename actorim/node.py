"""``Node``: one actorim server process's worth of actors, for the CLI and for embedding.

``Node(config).start()`` builds the supervision tree; ``listen()`` serves it on a port (or mount
``node.wsgi_app`` in your own gevent WSGI server with ``WebSocketHandler``); ``publish()`` sends
into rooms and to users from Python; ``drain()`` and ``stop()`` shut it down in order::

    node
    ├── store          StoreActor         (durable store, group commit; SQLite on its thread)
    ├── redis-breaker  BreakerActor       (cluster mode only: the Redis link's circuit breaker)
    ├── listener       ListenerActor      (cluster mode only: the node's Redis subscriber)
    ├── nodes          NodeRegistryActor  (cluster mode only: liveness, reaping dead nodes)
    ├── router         RouterActor        (users → links, rooms → room actors)
    ├── presence       PresenceActor      (online/offline with grace, watchers)
    ├── rooms          Supervisor         (one RoomActor per room, dynamic)
    ├── connections    Supervisor         (one ConnectionActor per WebSocket, dynamic)
    ├── heartbeat      HeartbeatActor     (pings, idle and connect time-outs)
    └── webhooks       WebhookDispatcher  (with webhooks configured: delivers the outbox)

Children start in this order and stop in the reverse one. Cluster mode (``redis_url`` set)
stores in Redis and carries events between nodes over a ``RedisBroker``; otherwise a
``LocalBroker`` carries them within the process: this is the one place that picks the broker,
and the actors hold ``ctx.broker`` and never ask which one it is. ``drain()`` refuses new
WebSockets and closes the open ones with 1012 (service restart, with a hint of when to come
back), spread over ``drain_seconds``, keeping the port open for health checks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer
from pykka import ActorRef
from pykka.messages import ProxyGetAttr

from actorim.breaker.actor import BreakerActor, Subscribe
from actorim.breaker.machine import BreakerPolicy
from actorim.config import Config, invalid_setting
from actorim.domain.auth import TokenAuthority
from actorim.domain.hooks import Hooks
from actorim.local.broker import LocalBroker
from actorim.local.revocations import MemoryRevocations, SqliteRevocations
from actorim.ports import Revocations
from actorim.protocol.frames import CloseCode
from actorim.protocol.restart import restart_reason
from actorim.protocol.webhooks import Webhooks
from actorim.redis.broker import RedisBroker
from actorim.redis.link import ClusterLink, make_client
from actorim.redis.listener import ListenerActor
from actorim.redis.nodes import NodeRegistryActor
from actorim.redis.revocations import RedisRevocations
from actorim.runtime.context import NodeContext, Unavailable, default_node_id
from actorim.runtime.delivery import NodeDelivery
from actorim.runtime.heartbeat import HeartbeatActor
from actorim.runtime.hooks import HookRunner
from actorim.runtime.link import Phase
from actorim.runtime.messages import RepairRooms, Resync
from actorim.runtime.metrics import Metrics
from actorim.runtime.operations import Operations
from actorim.runtime.presence import PresenceActor
from actorim.runtime.router import RouterActor
from actorim.runtime.store import StoreActor
from actorim.runtime.tokens import apply_revocations
from actorim.runtime.webhooks import WebhookDispatcher
from actorim.secret import token_secret
from actorim.store.base import OutboxFor, Store, StoredMessage
from actorim.web.app import App
from actorim.web.webhook_client import post
from actorim.web.websocket import WebSocketHandler
from supervisors import Backoff, ChildKind, ChildSpec, Supervisor

__all__ = ["Node"]


@dataclass(frozen=True, slots=True)
class StoreAdapter:
    """A message store a single node can run on, as the ``store`` setting names it."""

    open: Callable[[Config], Store]
    # Its calls block (file I/O): the store actor runs them on its thread, not on the hub.
    blocking: bool


def _outbox(config: Config) -> OutboxFor | None:
    """What the store writes to the webhook outbox with each message (None: no webhooks)."""
    if not config.webhooks:
        return None
    return Webhooks(config.webhooks, config.push_policy()).for_message


def _open_sqlite(config: Config) -> Store:
    from actorim.store.sqlite import SqliteStore

    path = Path(config.data_dir) / "actorim.sqlite3"
    return SqliteStore(path, synchronous=config.store_sync.upper(), outbox=_outbox(config))


def _open_memory(config: Config) -> Store:
    from actorim.store.memory import MemoryStore

    return MemoryStore(outbox=_outbox(config))


# The stores the ``store`` setting chooses from: adding one is its adapter module (a class
# that implements ``actorim.store.base.Store`` and passes tests/test_store_conformance.py) and
# a line here. In cluster mode the store is Redis's (``actorim.redis.store``), which shares the
# broker's link.
STORES: dict[str, StoreAdapter] = {
    "sqlite": StoreAdapter(_open_sqlite, blocking=True),
    "memory": StoreAdapter(_open_memory, blocking=False),
}


logger = logging.getLogger("actorim")

# Connection-level failures are handled per connection (see link.py); these limits only stop a
# node whose connections or rooms *all* crash, which means a bug, not a bad client.
CONNECTIONS_MAX_RESTARTS, CONNECTIONS_WINDOW_S = 1000, 1.0
ROOMS_MAX_RESTARTS, ROOMS_WINDOW_S = 100, 1.0
NODE_MAX_RESTARTS, NODE_WINDOW_S = 5, 10.0
# How long the whole tree may take to start (opening the store dominates).
START_TIMEOUT_S = 60.0


class Node:
    """One actorim node; see the module docstring."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        exit_code_on_failure: int | None = None,
        hooks: Hooks | None = None,
    ):
        self.config = config or Config()
        if self.config.store not in STORES:
            invalid_setting(
                "store", f"must be one of {', '.join(STORES)}, got {self.config.store!r}"
            )
        self.authority = TokenAuthority(token_secret(self.config))
        self.ctx = NodeContext(
            config=self.config,
            authority=self.authority,
            node_id=self.config.node_id or default_node_id(),
            broker=None,  # type: ignore[arg-type]
        )
        self.ctx.metrics = Metrics(self.ctx.snapshot)
        if hooks is not None:
            self.ctx.hooks = HookRunner(hooks, timeout=self.config.hook_timeout)
        # The Redis link in cluster mode (None on a single node).
        self.cluster: ClusterLink | None = None
        if self.config.redis_url:
            link = ClusterLink(
                self.config.redis_url, self.ctx.node_id, namespace=self.config.redis_namespace
            )
            self.cluster = link
            self.ctx.broker = RedisBroker(link, lambda: link.listener)
            self.ctx.breakers["redis"] = link.state_number
            link.on_recovered.append(self._recover)
        else:
            self.ctx.broker = LocalBroker(NodeDelivery(self.ctx))
        self.revocations = self._open_revocations()
        self.operations = Operations(self.ctx, self.revocations)
        self.ctx.metrics.watch_supervisors({"node", "rooms", "connections"})
        self._exit_code_on_failure = exit_code_on_failure
        self.supervisor: ActorRef[Any] | None = None
        self.server: WSGIServer | None = None
        self.wsgi_app = App(self)

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> Node:
        """Build and start the supervision tree (no socket yet: see ``listen``)."""
        ctx = self.ctx
        self.supervisor = Supervisor.start(
            children=self._children(),
            strategy="one_for_one",
            max_restarts=NODE_MAX_RESTARTS,
            max_seconds=NODE_WINDOW_S,
            name="node",
            exit_code_on_failure=self._exit_code_on_failure,
        )
        # Answered once the supervisor's on_start has started every child, in order; raises
        # (ActorDeadError) if a child could not start.
        self.supervisor.ask(ProxyGetAttr(attr_path=("actor_urn",)), timeout=START_TIMEOUT_S)
        store = "redis (cluster)" if self.cluster is not None else self.config.store
        logger.info("node %s started (store: %s)", ctx.node_id, store)
        self._load_revocations()
        return self

    def _open_revocations(self) -> Revocations:
        """Where token revocations are kept: Redis in a cluster (which also announces them to
        every node), else a SQLite file beside the SQLite store, or memory."""
        if self.config.redis_url:
            return RedisRevocations(
                make_client(self.config.redis_url), namespace=self.config.redis_namespace
            )
        if self.config.store == "sqlite":
            return SqliteRevocations(Path(self.config.data_dir) / "revocations.sqlite3")
        return MemoryRevocations()

    def _load_revocations(self) -> None:
        """Take in the revocations in force (at start, and when the cluster's link is back,
        having maybe missed some) and close the connections they name."""
        try:
            revocations = self.revocations.current(time.time())
        except Exception:
            # Redis away at start: the link's recovery reads them again.
            logger.warning("token revocations could not be read; retrying on recovery")
            return
        apply_revocations(self.ctx, revocations)

    def _children(self) -> list[ChildSpec]:
        ctx = self.ctx
        # A blocking store (SQLite) runs on its own thread; Redis (cooperative sockets) and
        # memory on the hub.
        offload = self.cluster is None and STORES[self.config.store].blocking
        store = ChildSpec(
            id="store",
            start=StoreActor.start,
            args=(ctx, self._open_store),
            kwargs={"offload": offload},
            shutdown=30.0,
        )
        return [store, *self._cluster_children(), *self._node_children()]

    def _cluster_children(self) -> list[ChildSpec]:
        link = self.cluster
        if link is None:
            return []
        beat = self.config.redis_heartbeat
        policy = BreakerPolicy(
            failure_threshold=3,
            cooldown=2 * beat,
            cooldown_cap=30.0,
            backoff=Backoff(floor=0.1, cap=2.0),
            heartbeat_interval=beat,
            heartbeat_timeout=beat,
            missed_heartbeats=2,
        )
        return [
            ChildSpec(id="redis-breaker", start=self._start_breaker, args=(link, policy)),
            ChildSpec(
                id="listener", start=ListenerActor.start, args=(NodeDelivery(self.ctx), link)
            ),
            ChildSpec(
                id="nodes", start=NodeRegistryActor.start, args=(link, self.config.node_timeout)
            ),
        ]

    def _start_breaker(self, link: ClusterLink, policy: BreakerPolicy) -> ActorRef[Any]:
        ref = BreakerActor.start(policy, probe=link.ping, name="redis")
        link.breaker = ref
        ref.tell(Subscribe(link.on_transition))
        return ref

    def _recover(self) -> None:
        """The Redis link is healthy again: re-register presence, repair the rooms, and read
        the revocations made while its subscription was down."""
        with contextlib.suppress(Unavailable):
            self.ctx.refs.tell_presence(Resync())
        with contextlib.suppress(Unavailable):
            self.ctx.refs.tell_router(RepairRooms())
        # A Redis read: in a greenlet of its own, not in the breaker's or listener's turn.
        gevent.spawn(self._load_revocations)

    def _node_children(self) -> list[ChildSpec]:
        ctx = self.ctx
        return [
            ChildSpec(id="router", start=RouterActor.start, args=(ctx,)),
            ChildSpec(id="presence", start=PresenceActor.start, args=(ctx,)),
            ChildSpec(id="rooms", start=self._start_rooms, kind=ChildKind.SUPERVISOR),
            ChildSpec(id="connections", start=self._start_connections, kind=ChildKind.SUPERVISOR),
            ChildSpec(id="heartbeat", start=HeartbeatActor.start, args=(ctx,)),
            *self._webhook_children(),
        ]

    def _webhook_children(self) -> list[ChildSpec]:
        """The webhook dispatcher, when endpoints are configured: last to start, first to
        stop, so the store outlives the deliveries it settles."""
        if not self.config.webhooks:
            return []
        return [ChildSpec(id="webhooks", start=WebhookDispatcher.start, args=(self.ctx, post))]

    def _start_rooms(self) -> ActorRef[Any]:
        ref = Supervisor.start(
            name="rooms", max_restarts=ROOMS_MAX_RESTARTS, max_seconds=ROOMS_WINDOW_S
        )
        self.ctx.refs.rooms = ref
        return ref

    def _start_connections(self) -> ActorRef[Any]:
        ref = Supervisor.start(
            name="connections",
            max_restarts=CONNECTIONS_MAX_RESTARTS,
            max_seconds=CONNECTIONS_WINDOW_S,
        )
        self.ctx.refs.connections = ref
        return ref

    def _open_store(self) -> Store:
        if self.cluster is not None:
            from actorim.redis.store import RedisStore

            return RedisStore(
                make_client(self.config.redis_url),
                namespace=self.config.redis_namespace,
                retention_count=self.config.retention_count,
                max_age_ms=self.config.retention_ms,
                outbox=_outbox(self.config),
                min_replicas=self.config.redis_min_replicas,
                wait_timeout_ms=max(1, round(self.config.redis_wait_timeout * 1000)),
            )
        return STORES[self.config.store].open(self.config)

    def listen(self, host: str | None = None, port: int | None = None) -> tuple[str, int]:
        """Serve the node on ``host:port`` (port 0 picks a free one); returns the address."""
        if self.supervisor is None:
            self.start()
        address = (host or self.config.host, self.config.port if port is None else port)
        listener: Any = address
        # gevent refuses a backlog with a socket it did not make; ours listens with it already.
        backlog: int | None = LISTEN_BACKLOG
        if self.config.reuse_port:
            listener, backlog = _reuse_port_socket(address), None
        self.server = WSGIServer(
            listener,
            self.wsgi_app,
            handler_class=WebSocketHandler,
            spawn=Pool(),
            log=None,
            error_log=logger,
            backlog=backlog,
        )
        try:
            self.server.start()
        except OSError:
            self.server = None  # nothing to stop: the port was never bound
            raise
        address = self.server.address
        logger.info("listening on http://%s:%s (WebSocket at /ws)", address[0], address[1])
        return address[0], address[1]

    def readiness(self) -> tuple[bool, str]:
        """Whether the node should get traffic, and why not."""
        return self.ctx.readiness()

    def drain(self, seconds: float | None = None) -> None:
        """Refuse new WebSockets, then close every connection with 1012, spread over ``seconds``.

        The port stays open until ``stop``: load balancers' health checks keep getting answers
        (``/readyz`` 503 "draining", ``/healthz`` 200: a closed port would fail the liveness check
        too, and get the node killed mid-drain) and a WebSocket upgrade gets a 503, which a proxy
        may pass on to another node.

        Spreading the closes keeps thousands of clients from reconnecting elsewhere in the same
        instant, and so does the hint each close carries (``actorim.protocol.restart``): come
        back after a delay drawn uniformly from 0 to ``drain_reconnect_spread``, which the
        clients honour. Returns when every connection is closed (or the budget is spent).
        """
        seconds = self.config.drain_seconds if seconds is None else seconds
        spread = self.config.drain_reconnect_spread
        self.ctx.draining = True
        links = [
            link for link in self.ctx.directory.links.values() if link.phase is not Phase.CLOSED
        ]
        if links:
            batches = max(1, min(len(links), math.ceil(seconds / 0.05)))
            size = math.ceil(len(links) / batches)
            pause = seconds / batches if batches > 1 else 0.0
            for start in range(0, len(links), size):
                for link in links[start : start + size]:
                    hint = restart_reason(random.uniform(0.0, spread))
                    link.request_close(CloseCode.SERVICE_RESTART, hint)
                if pause:
                    gevent.sleep(pause)
            deadline = time.monotonic() + 10.0
            for link in links:
                link.done.wait(timeout=max(0.0, deadline - time.monotonic()))
        logger.info("drained %d connections", len(links))

    def stop(self, *, drain: bool = True) -> None:
        """Drain (unless told not to), stop the supervision tree in order, then close the port."""
        if drain:
            self.drain()
        self.ctx.stopping = True
        if self.supervisor is not None and self.supervisor.is_alive():
            self.supervisor.stop(timeout=60)
        if self.server is not None:
            self.server.stop(timeout=1)
        self.supervisor = None
        self.ctx.metrics.close()
        with contextlib.suppress(Exception):
            self.revocations.close()

    # -- embedding -------------------------------------------------------------------------------

    def token(
        self,
        user: str,
        *,
        rooms: list[str] | None = None,
        ttl_s: int | None = 3600,
        token_id: str | None = None,
    ) -> str:
        """A signed token for ``user`` (what ``actorim token`` prints); its ``jti`` is
        ``token_id`` or a random id."""
        return self.authority.mint(user, rooms=rooms, ttl_s=ttl_s, token_id=token_id)

    def revoke_token(self, token_id: str, *, expires_at: float | None = None) -> None:
        """Revoke the token whose ``jti`` is ``token_id`` on every node: see
        ``Operations.revoke_token`` (the server API's ``POST /api/v1/revocations`` too)."""
        self.operations.revoke_token(token_id, expires_at=expires_at)

    def revoke_user(
        self, user: str, *, before: float | None = None, until: float | None = None
    ) -> None:
        """Revoke every token of ``user`` issued at or before ``before``, on every node: see
        ``Operations.revoke_user``."""
        self.operations.revoke_user(user, before=before, until=until)

    def publish(
        self,
        body: Any,
        *,
        room: str | None = None,
        to: str | None = None,
        sender: str = "system",
        kind: str = "text",
        cid: str | None = None,
        timeout: float = 10.0,
    ) -> StoredMessage:
        """Store and deliver a message from Python, as user ``sender``; returns it once durable.

        Exactly one of ``room`` and ``to``; idempotent by ``cid``. Blocks only the calling
        greenlet. See ``Operations.publish`` (the server API's ``POST /api/v1/messages``).
        """
        return self.operations.publish(
            body, room=room, to=to, sender=sender, kind=kind, cid=cid, timeout=timeout
        )

    def create_room(
        self,
        room: str,
        *,
        title: str = "",
        topic: str = "",
        public: bool = True,
        members: list[str] | tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Create ``room`` and add ``members``: see ``Operations.create_room`` (the server
        API's ``POST /api/v1/rooms``)."""
        return self.operations.create_room(
            room, title=title, topic=topic, public=public, members=members
        )

    def room(self, room: str) -> dict[str, Any]:
        """``room``'s metadata: see ``Operations.room``."""
        return self.operations.room(room)

    def update_room(
        self,
        room: str,
        *,
        title: str | None = None,
        topic: str | None = None,
        public: bool | None = None,
    ) -> dict[str, Any]:
        """Change ``room``'s title, topic or ``public`` flag: see ``Operations.update_room``."""
        return self.operations.update_room(room, title=title, topic=topic, public=public)

    def delete_room(self, room: str) -> list[str]:
        """Delete ``room`` (its members' connections leave it, its messages stay): see
        ``Operations.delete_room``."""
        return self.operations.delete_room(room)

    def members(
        self, room: str, *, after: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """A page of ``room``'s members with their presence: see ``Operations.members``."""
        return self.operations.members(room, after=after, limit=limit)

    def add_member(self, room: str, user: str) -> bool:
        """Make ``user`` a member of ``room`` (a private one too); False when they were one:
        see ``Operations.add_member``."""
        return self.operations.add_member(room, user)

    def remove_member(self, room: str, user: str) -> bool:
        """End ``user``'s membership of ``room``; False when they were not one: see
        ``Operations.remove_member``."""
        return self.operations.remove_member(room, user)

    def erase(
        self, user: str, *, room: str | None = None, with_: str | None = None
    ) -> dict[str, Any]:
        """Delete ``user``'s messages (in ``room``, with user ``with_``, or everywhere they wrote,
        rooms they left included), at most ``erase_limit`` a call: ``{"erased", "more"}``; see
        ``Operations.erase``."""
        return self.operations.erase(user, room=room, with_=with_)

    def presence(self, users: list[str]) -> dict[str, Any]:
        """The status of each of ``users``: see ``Operations.presence``."""
        return self.operations.presence(users)

    def sessions(self, user: str) -> list[dict[str, Any]]:
        """The live sessions of ``user`` (every node's in a cluster): see
        ``Operations.sessions``."""
        return self.operations.sessions(user)

    def disconnect(
        self, user: str, *, session: str | None = None, code: int = 4000, reason: str = ""
    ) -> None:
        """Close ``user``'s connections (or one session) on every node with ``code``
        (4000-4999) and ``reason``: see ``Operations.disconnect``."""
        self.operations.disconnect(user, session=session, code=code, reason=reason)

    def history(
        self,
        *,
        room: str | None = None,
        between: tuple[str, str] | None = None,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """A page of stored messages, as the WebSocket ``history``: see
        ``Operations.history``."""
        return self.operations.history(
            room=room, between=between, before=before, after=after, limit=limit
        )

    def set_role(self, room: str, user: str, role: str, *, by: str = "system") -> dict[str, Any]:
        """Make ``user`` the ``owner``, a ``moderator`` or a plain ``member`` of ``room``: see
        ``Operations.set_role`` and docs/moderation.md."""
        return self.operations.set_role(room, user, role, by=by)

    def standing(self, room: str, user: str) -> dict[str, Any]:
        """``user``'s role in ``room`` and any ban or mute: see ``Operations.standing``."""
        return self.operations.standing(room, user)

    def moderate(
        self,
        room: str,
        action: str,
        *,
        user: str | None = None,
        mid: str | None = None,
        by: str = "system",
        reason: str = "",
        for_s: float | None = None,
    ) -> dict[str, Any]:
        """Kick, ban, unban, mute or unmute ``user`` in ``room``, or delete the message
        ``mid``, as the application: see ``Operations.moderate`` and docs/moderation.md."""
        return self.operations.moderate(
            room, action, user=user, mid=mid, by=by, reason=reason, for_s=for_s
        )

    def audit(
        self, room: str, *, before: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """A page of ``room``'s moderation audit log, newest first: see ``Operations.audit``."""
        return self.operations.audit(room, before=before, limit=limit)

    def dead_letters(self, *, limit: int = 100, after: str | None = None) -> dict[str, Any]:
        """A page of the webhook dead-letter queue: see ``Operations.dead_letters``."""
        return self.operations.dead_letters(limit=limit, after=after)

    def retry_dead_letter(self, key: str) -> bool:
        """Send a dead webhook entry back to the outbox; False when there is none by ``key``."""
        return self.operations.retry_dead_letter(key)

    def delete_dead_letter(self, key: str) -> bool:
        """Delete a dead webhook entry; False when there is none by ``key``."""
        return self.operations.delete_dead_letter(key)

    @property
    def pid(self) -> int:
        return os.getpid()


# The listen backlog: bursts of reconnecting clients (a deploy) queue here, not in SYN drops.
LISTEN_BACKLOG = 4096


def _reuse_port_socket(address: tuple[str, int]) -> socket.socket:
    """A listening socket that other processes may bind too: the kernel spreads connections."""
    sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(LISTEN_BACKLOG)
    return sock
