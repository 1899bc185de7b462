"""What operators see at ``/metrics``: Prometheus metrics of one node.

Each node has its own registry (several nodes can live in one process, as in tests), exposed by
its WSGI app. Counters on hot paths are bound once (``labels()`` resolved ahead), so a count
costs an attribute lookup and an ``inc``. Gauges that describe the whole node (connections,
queued frames, breaker state) are computed when Prometheus scrapes, from a ``NodeSnapshot`` the
node's context takes of its directory, instead of being maintained on every change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from actorim import hubwatch
from supervisors import EventKind, SupervisorEvent, subscribe

__all__ = ["Metrics", "NodeSnapshot"]

# Latency buckets in seconds, from the sub-millisecond fan-out of an idle node to the seconds of
# a node under overload; the same for delivery and store commits so they can be compared.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

SUPERVISOR_KINDS = {"rooms": "room", "connections": "connection"}


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """The whole-node gauges at one instant (``NodeContext.snapshot``), read at scrape time."""

    phases: dict[str, int]
    """Open connections by phase."""
    queued_frames: int
    queued_bytes: int
    deepest_queue: int
    """Frames in the deepest outgoing queue of one connection."""
    users: int
    rooms: int
    breakers: dict[str, int]
    """Each circuit breaker's state: 0 closed, 1 half-open, 2 open."""
    ready: bool


class Metrics:
    """The node's metrics; ``render()`` is the body of ``/metrics``."""

    def __init__(self, snapshot: Callable[[], NodeSnapshot]) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.commands = Counter(
            "actorim_commands",
            "Commands answered, by command and result (ok or the error code)",
            ["command", "result"],
            registry=registry,
        )
        self.delivered = Counter(
            "actorim_messages_delivered", "Message events queued to clients", registry=registry
        )
        self.delivery_latency = Histogram(
            "actorim_delivery_latency_seconds",
            "From a message's timestamp to its fan-out to the room's members",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.slow_consumer_closes = Counter(
            "actorim_slow_consumer_closes",
            "Connections closed (1013) because their outgoing queue overflowed",
            registry=registry,
        )
        self.webhook_attempts = Counter(
            "actorim_webhook_attempts",
            "Webhook deliveries tried, by result: delivered, retry (failed, tried again),"
            " dead (failed, moved to the dead-letter queue) or dropped (a push.needed no longer"
            " needed when due)",
            ["result"],
            registry=registry,
        )
        self.setups_refused = Counter(
            "actorim_setups_refused",
            "Connections refused at once (1013 with a hint) because max_setups were setting up",
            registry=registry,
        )
        self.rate_limited = Counter(
            "actorim_rate_limited", "Commands refused by the rate limit", registry=registry
        )
        self.restarts = Counter(
            "actorim_actor_restarts", "Actor restarts by kind of actor", ["kind"], registry=registry
        )
        self.crashes = Counter(
            "actorim_actor_crashes", "Actor failures by kind of actor", ["kind"], registry=registry
        )
        self.escalations = Counter(
            "actorim_supervisor_escalations",
            "Supervisors that gave up (restart intensity exceeded)",
            registry=registry,
        )
        self.commit_latency = Histogram(
            "actorim_store_commit_seconds",
            "Duration of one store commit (a group of sends)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.commit_batch = Histogram(
            "actorim_store_commit_messages",
            "Messages per store commit (group commit)",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self._command_children: dict[tuple[str, str], Any] = {}
        registry.register(_NodeCollector(snapshot))
        self._unsubscribe = subscribe(self._on_supervision)
        self._supervisors: set[str] = set()

    def count_command(self, command: str, result: str) -> None:
        key = (command, result)
        child = self._command_children.get(key)
        if child is None:
            child = self._command_children[key] = self.commands.labels(command, result)
        child.inc()

    def observe_delivery(self, ts_ms: int, recipients: int) -> None:
        if recipients:
            self.delivered.inc(recipients)
        self.delivery_latency.observe(max(0.0, time.time() - ts_ms / 1000))

    def watch_supervisors(self, names: set[str]) -> None:
        """Count events of these supervisors (by name) as this node's."""
        self._supervisors |= names

    def _on_supervision(self, event: SupervisorEvent) -> None:
        if event.supervisor not in self._supervisors:
            return
        kind = SUPERVISOR_KINDS.get(event.supervisor) or str(event.child_id)
        if event.kind is EventKind.RESTARTED:
            self.restarts.labels(kind).inc()
        elif event.kind is EventKind.CRASHED:
            self.crashes.labels(kind).inc()
        elif event.kind is EventKind.ESCALATED:
            self.escalations.inc()

    def close(self) -> None:
        self._unsubscribe()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _NodeCollector(Collector):
    """Gauges read from the node's state at scrape time."""

    def __init__(self, snapshot: Callable[[], NodeSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        now = self._snapshot()
        connections = GaugeMetricFamily(
            "actorim_connections", "Open WebSocket connections", labels=["phase"]
        )
        for phase, count in sorted(now.phases.items()):
            connections.add_metric([phase], count)
        yield connections
        yield GaugeMetricFamily(
            "actorim_users_online", "Users with a connection to this node", value=now.users
        )
        yield GaugeMetricFamily("actorim_rooms", "Rooms with members on this node", value=now.rooms)
        yield GaugeMetricFamily(
            "actorim_outgoing_queue_frames",
            "Frames waiting to be written, all connections",
            value=now.queued_frames,
        )
        yield GaugeMetricFamily(
            "actorim_outgoing_queue_bytes",
            "Bytes waiting to be written, all connections",
            value=now.queued_bytes,
        )
        yield GaugeMetricFamily(
            "actorim_outgoing_queue_max_frames",
            "Deepest outgoing queue of one connection",
            value=now.deepest_queue,
        )
        yield GaugeMetricFamily(
            "actorim_hub_blocked",
            "Times the gevent hub was blocked past block_threshold",
            value=hubwatch.blocked_count(),
        )
        breakers = GaugeMetricFamily(
            "actorim_circuit_breaker_state",
            "Circuit-breaker state per link: 0 closed, 1 half-open, 2 open",
            labels=["link"],
        )
        for name, state in now.breakers.items():
            breakers.add_metric([name], state)
        yield breakers
        yield GaugeMetricFamily(
            "actorim_ready", "1 when the node takes traffic", value=int(now.ready)
        )
