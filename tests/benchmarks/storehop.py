"""The store's hand-off on its own: store calls taken to the store's OS thread and answered.

A node with the SQLite store runs in this process, and an actor asks it for the last seq of a
conversation, over and over: each ask is one trip through the store actor, its OS thread and
back, with nothing to batch (the next ask waits for the answer), as a lone send's commit goes.
``--burst`` asks them all at once instead, as a storm of connections does: the calls that wait
while the thread is busy go over together. ``--store memory`` makes the same asks of the
memory store, which answers on the hub with no thread: the difference is the hand-off's.

Run from the repository root::

    .venv/bin/python tests/benchmarks/storehop.py                 # µs per hop, best of 5
    .venv/bin/python tests/benchmarks/storehop.py --instructions  # CPU instructions per hop
    PYTHONPATH=/path/to/older/checkout .venv/bin/python tests/benchmarks/storehop.py

``--instructions`` counts with valgrind (callgrind) over the whole process and subtracts a run
without asks, so it is the same on a busy machine as on an idle one (the node's start-up and
the SQLite read itself are in both runs; the read is a few thousand instructions of the count).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import gevent.event  # noqa: E402
from callgrind import instructions  # noqa: E402
from pykka import ActorRef  # noqa: E402

from actorim.config import Config  # noqa: E402
from actorim.domain.messages import room_conv  # noqa: E402
from actorim.node import Node  # noqa: E402
from actorim.runtime.messages import Call, LastSeq  # noqa: E402
from supervisors import GeventActor  # noqa: E402

CONV = room_conv("bench")


class Asker(GeventActor):
    """Asks the store ``hops`` times, one after the other (or all at once with ``burst``)."""

    def __init__(
        self, store: ActorRef[Any], hops: int, burst: bool, finished: gevent.event.Event
    ) -> None:
        super().__init__()
        self.store = store
        self.left = hops
        self.burst = burst
        self.finished = finished

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Call):
            return message.func(*message.args)
        for _ in range(self.left if self.burst else 1):
            self._ask()
        return None

    def _ask(self) -> None:
        self.store.tell(LastSeq(CONV, self.actor_ref, self._answered))

    def _answered(self, seq: Any, error: BaseException | None) -> None:
        assert error is None, error
        self.left -= 1
        if self.left == 0:
            self.finished.set()
        elif not self.burst:
            self._ask()


def run(hops: int, reps: int, burst: bool, store_name: str = "sqlite") -> float:
    """Seconds per hop, the best of ``reps`` runs of ``hops``."""
    with tempfile.TemporaryDirectory() as data_dir:
        node = Node(Config(secret="x" * 32, data_dir=data_dir, store=store_name)).start()
        try:
            store = node.ctx.refs.store
            assert store is not None
            best = float("inf")
            for _ in range(reps):
                if hops == 0:
                    break
                finished = gevent.event.Event()
                asker = Asker.start(store, hops, burst, finished)
                started = time.perf_counter()
                asker.tell("go")
                assert finished.wait(60), "the store never answered"
                best = min(best, (time.perf_counter() - started) / hops)
                asker.stop()
            return best
        finally:
            node.stop(drain=False)


def _instructions(hops: int, burst: bool, store_name: str) -> int:
    """Instructions of one run of this script under callgrind (the whole process)."""
    flags = ["--reps", "1", "--store", store_name, *(["--burst"] if burst else [])]
    return instructions([__file__, "--hops", str(hops), *flags])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--hops", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--burst", action="store_true", help="every ask at once")
    parser.add_argument(
        "--store", default="sqlite", help="memory: the same asks with no thread (the reference)"
    )
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions with valgrind"
    )
    args = parser.parse_args()
    how = ("at once" if args.burst else "one after the other") + f", {args.store} store"
    if args.instructions:
        base = _instructions(0, args.burst, args.store)
        total = _instructions(args.hops, args.burst, args.store)
        print(f"{args.hops} asks {how}: {(total - base) / args.hops:,.0f} instructions per ask")
        return
    seconds = run(args.hops, args.reps, args.burst, args.store)
    print(f"{args.hops} asks {how}: {seconds * 1e6:.1f} µs per ask")


if __name__ == "__main__":
    main()
