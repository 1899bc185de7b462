"""Attacks beside a bystander: the server in a process of its own, the attacker in another, and
two ordinary users chatting through the server while the attack runs.

The standard every hardening test holds the server to: bad input gets its error or close code,
and nobody else notices. ``Bystander`` is the nobody else: alice sends to a room one message at
a time and bob must receive each one. A hub that the attack stalls shows as a message that does
not arrive (``STALL_S``) or as a latency far above a loopback round trip (``NORMAL_P90_S``), both
orders of magnitude above what a healthy node shows, so the check detects a stalled node, not a
slow machine. The figures are printed so that a run's output records them.

The attacker runs as a separate process (``spawn_attack``) so that its loops cost the test
process nothing: the bystander's own greenlets measure the server, not their neighbour.

>>> # in a test:
>>> # server = attack_server(tmp_path); bystander = Bystander(server).start()
>>> # attack = spawn_attack("tests.test_x:flood", port=server.port, token=server.token("eve"))
>>> # ... assert what the attacker must get ...
>>> # bystander.stop().assert_flowing()
"""

from __future__ import annotations

import contextlib
import importlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent

from actorim.domain.auth import TokenAuthority
from tests.support import Client, ServerProcess, wait_until

__all__ = [
    "MIN_SAMPLES",
    "NORMAL_P90_S",
    "STALL_S",
    "AttackServer",
    "Bystander",
    "Latencies",
    "attack_server",
    "spawn_attack",
]

SECRET = "attack-test-secret-0123456789abcdef0123456789"

STALL_S = 3.0
"""A bystander's message that takes longer than this has stalled: the hub was held."""

NORMAL_P90_S = 0.5
"""The bystander's 90th-percentile latency must stay under this. A message crosses loopback and
one hub loop in about a millisecond; half a second means the attack kept the hub from it."""

PAUSE_S = 0.02
"""Time between two bystander messages: a person chatting fast, not a load test."""

MIN_SAMPLES = 10
"""Messages the bystander must have measured for its figures to say anything."""


class AttackServer(ServerProcess):
    """``actorim serve`` in a child process with a fixed secret; ``token`` mints for it."""

    def __init__(self, data_dir: Path, *, args: tuple[str, ...] = ()) -> None:
        super().__init__(data_dir, secret=SECRET, args=args)
        self._authority = TokenAuthority(SECRET)

    def token(self, user: str, **kwargs: Any) -> str:
        return self._authority.mint(user, **kwargs)

    def client(self, user: str | None = None, **kwargs: Any) -> Client:
        client = Client(self.url, **kwargs)
        if user is not None:
            client.connect(self.token(user))
        return client

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def attack_server(data_dir: Path, *args: str) -> Iterator[AttackServer]:
    """A started server process (``args`` are ``actorim serve`` flags), killed afterwards."""
    server = AttackServer(data_dir, args=args)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Latencies:
    """What the bystander measured: one latency per message sent, ``None`` where it stalled."""

    samples: tuple[float | None, ...]

    @property
    def delivered(self) -> list[float]:
        return sorted(s for s in self.samples if s is not None)

    def percentile(self, p: float) -> float:
        values = self.delivered
        if not values:
            return float("inf")
        return values[min(len(values) - 1, int(p / 100 * len(values)))]

    def summary(self) -> str:
        values = self.delivered
        if not values:
            return f"bystander: 0 of {len(self.samples)} messages delivered"
        return (
            f"bystander: {len(values)} of {len(self.samples)} messages delivered, "
            f"p50 {self.percentile(50) * 1000:.1f} ms, p90 {self.percentile(90) * 1000:.1f} ms, "
            f"p99 {self.percentile(99) * 1000:.1f} ms, max {values[-1] * 1000:.1f} ms, "
            f"mean {statistics.fmean(values) * 1000:.1f} ms"
        )

    def assert_flowing(self, *, at_least: int = MIN_SAMPLES) -> None:
        """Every message arrived, enough of them were sent, and the p90 is normal."""
        print(self.summary())
        assert len(self.samples) >= at_least, self.summary()
        assert None not in self.samples, f"a bystander message stalled; {self.summary()}"
        assert self.percentile(90) < NORMAL_P90_S, self.summary()


class Bystander:
    """Two users chatting in a room of their own, one message at a time, measured."""

    def __init__(self, server: AttackServer, *, room: str = "bystanders") -> None:
        self.room = room
        self.alice = server.client("bystander-alice")
        self.bob = server.client("bystander-bob")
        self.alice.ok("join", room=room)
        self.bob.ok("join", room=room)
        self._samples: list[float | None] = []
        self._running = False
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> Bystander:
        """Start chatting in the background; returns once the first message went through."""
        self._running = True
        self._exchange(0)  # proves the pair works before any attack starts
        self._samples.clear()
        self._greenlet = gevent.spawn(self._run)
        return self

    def _run(self) -> None:
        n = 1
        while self._running:
            self._samples.append(self._exchange(n))
            n += 1
            gevent.sleep(PAUSE_S)

    def _exchange(self, n: int) -> float | None:
        start = time.monotonic()
        cid = f"b{n}"
        self.alice.send_obj(
            {"t": "send", "id": 10_000 + n, "room": self.room, "body": n, "cid": cid}
        )
        try:
            self.bob.event("msg", room=self.room, cid=cid, timeout=STALL_S)
        except AssertionError:
            return None
        return time.monotonic() - start

    def measure_for(self, seconds: float) -> None:
        """Let the bystander chat for ``seconds`` more (while an attack runs)."""
        gevent.sleep(seconds)

    def measure_at_least(self, count: int = MIN_SAMPLES) -> None:
        """Let the bystander chat until it has measured ``count`` messages since `start`: an
        attack over in a fraction of a second still leaves figures that rest on enough."""
        wait_until(
            lambda: len(self._samples) >= count,
            timeout=count * (STALL_S + PAUSE_S),
            interval=PAUSE_S,
            what=f"{count} bystander messages",
        )

    def stop(self) -> Latencies:
        """Stop chatting and return what was measured since `start`."""
        self._running = False
        if self._greenlet is not None:
            self._greenlet.join(timeout=STALL_S + 1)
        self.alice.close()
        self.bob.close()
        return Latencies(tuple(self._samples))


class Attack:
    """An attacker process; ``stop`` ends it (it may also end by itself)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def __enter__(self) -> Attack:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def spawn_attack(target: str, **kwargs: Any) -> Attack:
    """Run ``module:function(**kwargs)`` in a child process (JSON-serialisable arguments).

    The function is an ordinary top-level function of a test module; it should bound its own
    loops (a count or a deadline) so that it ends by itself too.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.attack", target, json.dumps(kwargs)],
        cwd=Path(__file__).resolve().parent.parent,
    )
    return Attack(proc)


def _main(argv: list[str]) -> None:
    target, arguments = argv
    module_name, _, name = target.partition(":")
    function = getattr(importlib.import_module(module_name), name)
    function(**json.loads(arguments))


if __name__ == "__main__":
    _main(sys.argv[1:])
