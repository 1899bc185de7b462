"""The flags of ``actorim bench storm``, checked up front into one `StormOptions` value, and the
`StormOutcome` a run fills in (docs/loadtest.md, "Reconnect storm")."""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass, field

__all__ = ["StormOptions", "StormOutcome", "add_storm_flags", "options_from"]

DEFAULT_CLIENTS = 200
DEFAULT_CLIENTS_PER_ROOM = 50
DEFAULT_RATE = 20.0
"""Messages per second into the clients' rooms, over all of them: a steady flow, far below what
the node carries, so that the storm itself is what is measured."""
DEFAULT_DRAIN_SECONDS = 1.0
DEFAULT_SPREAD_S = 3.0
DEFAULT_GRACE_S = 30.0
"""Seconds node A has to exit after SIGTERM before it is killed, as Kubernetes'
``terminationGracePeriodSeconds`` (30) does; the report says which it was."""
DEFAULT_CONNECT_RATE = 100.0
"""First connections per second: the setup, not the storm. On this shared 2-core machine a node
fell behind at 250/s (connect, its router's registration and a join each) and clients timed
out; 100/s connects 10,000 clients in under two minutes."""


@dataclass(frozen=True, slots=True)
class StormOptions:
    clients: int = DEFAULT_CLIENTS
    processes: int = 1
    rooms: int = 0
    """0: one room per ``DEFAULT_CLIENTS_PER_ROOM`` clients."""
    rate: float = DEFAULT_RATE
    nodes: int = 1
    redis_url: str = ""
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    spread: float = DEFAULT_SPREAD_S
    connect_rate: float = DEFAULT_CONNECT_RATE
    grace: float = DEFAULT_GRACE_S
    seed: int = 0
    json: bool = False
    keep: bool = False
    """Keep the nodes' data directories and logs (their path goes to standard error)."""

    @property
    def room_count(self) -> int:
        return self.rooms or max(1, -(-self.clients // DEFAULT_CLIENTS_PER_ROOM))

    def check(self) -> None:
        """Raise ValueError naming the flag that is wrong."""
        if self.clients < 1:
            raise ValueError("--clients must be at least 1")
        if not 1 <= self.processes <= self.clients:
            raise ValueError("--processes must be from 1 to --clients")
        if self.rooms < 0:
            raise ValueError("--rooms must be 0 (automatic) or more")
        if self.rate <= 0:
            raise ValueError("--rate must be greater than 0")
        if self.nodes < 1 or (self.nodes > 1 and not self.redis_url):
            raise ValueError("--nodes above 1 needs --redis-url (the nodes share that Redis)")
        if self.redis_url and self.nodes < 2:
            raise ValueError("--redis-url needs --nodes 2 or more: the clients move to another")
        if not 0 <= self.spread <= 60:
            raise ValueError("--spread must be from 0 to 60 seconds")
        if self.grace < 0:
            raise ValueError("--grace must be 0 or more")
        if self.drain_seconds < 0:
            raise ValueError("--drain-seconds must be 0 or more")


@dataclass(slots=True)
class StormOutcome:
    options: StormOptions
    joined: int = 0
    recovered: int = 0
    """Clients back at the end: reconnected, and holding every message up to their room's seq
    at their last reconnect."""
    not_back: int = 0
    """Joined clients not recovered at the end (gave up, or still on their way back)."""
    missed_while_away: int = 0
    """Acknowledged messages the clients not back do not hold: not lost (nothing could reach
    them), but what they would have to fetch when they came back."""
    lost: int = 0
    """Acknowledged messages missing at clients that are back: what the server failed to
    deliver (``docs/guarantees.md``: none)."""
    duplicated: int = 0
    clients_losing: int = 0
    clients_doubling: int = 0
    published: int = 0
    publish_retries: int = 0
    attempts: int = 0
    all_recovered_s: float | None = None
    """From the drain (SIGTERM) until the last client recovered."""
    from_listen_s: float | None = None
    """One node: from the restarted process listening until the last client recovered."""
    closed_last_s: float | None = None
    """From the drain until node A had closed its last client."""
    recovery_p50_s: float | None = None
    recovery_p99_s: float | None = None
    hint_mean_s: float | None = None
    drained_exit: str = ""
    """How node A's old process ended: its exit status, or killed after the grace."""
    server_cpu_s: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def failures(self) -> list[str]:
        """Why the run failed, one phrase each (none: it passed)."""
        found = []
        if self.joined < self.options.clients:
            found.append(f"{self.options.clients - self.joined} clients never joined")
        left_out = self.joined - self.recovered - self.not_back
        if left_out > 0:
            found.append(f"{left_out} clients closed before the drain")
        if self.not_back:
            found.append(f"{self.not_back} clients not back")
        if self.lost:
            found.append(f"{self.lost} messages lost")
        if self.duplicated:
            found.append(f"{self.duplicated} messages duplicated")
        return found

    @property
    def passed(self) -> bool:
        return not self.failures


def add_storm_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS, help="clients of node A")
    parser.add_argument(
        "--processes", type=int, default=1, help="client processes (a few thousand clients each)"
    )
    parser.add_argument(
        "--rooms",
        type=int,
        default=0,
        help=f"rooms the clients are spread over (default: one per {DEFAULT_CLIENTS_PER_ROOM})",
    )
    parser.add_argument(
        "--rate", type=float, default=DEFAULT_RATE, help="messages per second into the rooms"
    )
    parser.add_argument(
        "--redis-url", default="", help="run --nodes nodes on this Redis (else: one SQLite node)"
    )
    parser.add_argument("--nodes", type=int, default=1, help="nodes (2 or more with --redis-url)")
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=DEFAULT_DRAIN_SECONDS,
        help="node A's drain_seconds: its closes are spread over this long",
    )
    parser.add_argument(
        "--spread",
        type=float,
        default=DEFAULT_SPREAD_S,
        help="node A's drain_reconnect_spread: the hinted delays are drawn from 0 to this",
    )
    parser.add_argument(
        "--connect-rate",
        type=float,
        default=DEFAULT_CONNECT_RATE,
        help="first connections per second, over all processes",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_S,
        help="seconds node A has to exit after SIGTERM before it gets SIGKILL",
    )
    parser.add_argument("--seed", type=int, default=0, help="the clients' jitter (0: random)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument(
        "--keep", action="store_true", help="keep the nodes' data directories and logs"
    )


def options_from(args: argparse.Namespace) -> StormOptions:
    options = StormOptions(
        clients=args.clients,
        processes=args.processes,
        rooms=args.rooms,
        rate=args.rate,
        nodes=args.nodes,
        redis_url=args.redis_url,
        drain_seconds=args.drain_seconds,
        spread=args.spread,
        connect_rate=args.connect_rate,
        grace=args.grace,
        seed=args.seed or random.randrange(1, 2**31),
        json=args.json,
        keep=args.keep,
    )
    options.check()
    return options
