"""The quiet delivery path on its own: a room fanning messages out to members whose sockets
take every frame at once, so that nothing is batched and every delivery is one write.

Run from the repository root::

    .venv/bin/python tests/benchmarks/quiet.py                 # µs per delivery, best of 5
    .venv/bin/python tests/benchmarks/quiet.py --profile       # Python calls per delivery
    .venv/bin/python tests/benchmarks/quiet.py --instructions  # CPU instructions per delivery
    PYTHONPATH=/path/to/older/checkout .venv/bin/python tests/benchmarks/quiet.py  # older code

What runs is the server's own code: the room actor's fan-out (``RoomActor._fan_out``, called
with a room state holding what it reads), each member's ``Link``, ``Outbox`` and
``ServerWebSocket`` over a Unix socket pair, and the hub callbacks that flush them. Only the
network differs: a Unix socket write costs the kernel less than a TCP one, so the figures are
the Python part of a delivery plus a small write, not a real client's whole cost (the harness's
``compare`` measures that). ``--instructions`` counts with valgrind (callgrind) and subtracts a
run without messages, so it is the same on a busy machine as on an idle one.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import functools  # noqa: E402
import inspect  # noqa: E402
import pstats  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from benchlinks import connected_link  # noqa: E402
from callgrind import instructions  # noqa: E402

from actorim.protocol.wire import WireFrame  # noqa: E402
from actorim.runtime.messages import Publish  # noqa: E402
from actorim.runtime.room import RoomActor  # noqa: E402

BODY = "x" * 100
# Messages between two reads of the members' ends: 50 frames of about 120 bytes sit in a socket
# buffer with room to spare, and reading every time would count the reads as well (the runs of
# --instructions, 20 messages, never read).
DRAIN_EVERY = 50


class _Metrics:
    def observe_delivery(self, ts_ms: int, recipients: int) -> None:
        pass


def _room(members: int) -> tuple[Any, list[socket.socket]]:
    """A stand-in for the room actor: the state and context its fan-out reads."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * members + 100)), hard))
    links, readers = [], []
    for _ in range(members):
        server_side, client_side = socket.socketpair()
        link = connected_link(server_side)
        links.append(link)
        readers.append(client_side)
    state = SimpleNamespace(members=dict.fromkeys(links), log=SimpleNamespace(recovering=None))
    return SimpleNamespace(state=state, ctx=SimpleNamespace(metrics=_Metrics())), readers


def _drain(readers: list[socket.socket]) -> None:
    for reader in readers:
        reader.setblocking(False)
        try:
            while reader.recv(1 << 16):
                pass
        except BlockingIOError:
            pass


def run(members: int, messages: int, reps: int, profile: bool, queued: bool = False) -> float:
    """Best seconds per delivery over ``reps`` rounds of ``messages`` fan-outs."""
    room, readers = _room(members)
    fan_out = _fan_out(queued)
    best = float("inf")
    profiler = cProfile.Profile() if profile else None
    for _ in range(reps):
        elapsed = 0.0
        for seq in range(messages):
            publish = Publish(seq, WireFrame({"t": "msg", "seq": seq, "ts": 0, "body": BODY}), None)
            started = time.process_time()
            if profiler:
                profiler.enable()
            fan_out(room, publish)
            gevent.sleep(0)  # the hub runs the flushes queued by the fan-out, then comes back
            if profiler:
                profiler.disable()
            elapsed += time.process_time() - started
            if seq % DRAIN_EVERY == DRAIN_EVERY - 1:
                _drain(readers)
        best = min(best, elapsed / max(1, messages * members))
    if profiler:
        _report_calls(profiler, messages * members * reps)
    return best


def _fan_out(queued: bool) -> Any:
    """The room's fan-out of a quiet room (nothing behind the message in its mailbox), or with
    ``queued`` of a busy one (every copy queued for the flush pass); older code has one way."""
    if "quiet" not in inspect.signature(RoomActor._fan_out).parameters:
        return RoomActor._fan_out
    return functools.partial(RoomActor._fan_out, quiet=not queued)


def _report_calls(profiler: cProfile.Profile, deliveries: int) -> None:
    stats = pstats.Stats(profiler)
    print(f"Python-visible calls per delivery: {stats.total_calls / deliveries:.2f}")  # type: ignore[attr-defined]
    rows = sorted(
        (
            (value[1] / deliveries, f"{key[0].rsplit('/', 1)[-1]}:{key[2]}")
            for key, value in stats.stats.items()
        ),  # type: ignore[attr-defined]
        reverse=True,
    )
    for per, name in rows:
        if per >= 0.01:
            print(f"  {per:6.2f}  {name}")


def _instructions(members: int, messages: int, queued: bool) -> int:
    """Instructions of one run of this script under callgrind (the whole process)."""
    flags = ["--reps", "1", *(["--queued"] if queued else [])]
    return instructions([__file__, "--members", str(members), "--messages", str(messages), *flags])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="count Python calls (cProfile)")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions with valgrind"
    )
    parser.add_argument(
        "--queued", action="store_true", help="a busy room's path: every copy queued, then flushed"
    )
    args = parser.parse_args()
    if args.instructions:
        members, messages = min(args.members, 200), min(args.messages, 20)
        base = _instructions(members, 0, args.queued)
        total = _instructions(members, messages, args.queued)
        print(f"instructions per delivery: {(total - base) / (members * messages):,.0f}")
        return
    seconds = run(args.members, args.messages, args.reps, args.profile, args.queued)
    print(f"{args.members} members, {args.messages} messages: {seconds * 1e6:.2f} µs per delivery")


if __name__ == "__main__":
    main()
