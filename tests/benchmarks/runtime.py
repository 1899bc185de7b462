"""Cost of the actor runtime: GeventActor beside pykka.ThreadingActor and a bare greenlet loop.

Run from the repository root::

    .venv/bin/python tests/benchmarks/runtime.py          # Markdown table
    .venv/bin/python tests/benchmarks/runtime.py --json   # the same figures as JSON
    .venv/bin/python tests/benchmarks/runtime.py --quick  # a tenth of the work, for a smoke run

Each runtime is measured in a fresh child process, so that one runtime's garbage and heap do not
colour the next one's figures. The children are monkey-patched, as the server is, except the one
for ``pykka.ThreadingActor`` on real OS threads (Pykka as it ships); a second ThreadingActor
column shows it monkey-patched, where its threads are greenlets (what a ThreadingActor would be
inside the server). Every timing is the best of a few repetitions, to keep noise from other
processes out.
"""

from __future__ import annotations

import sys

_WORKER = "--worker"  # internal: measure one runtime in this (child) process
_UNPATCHED = "threading_os"
if not (_WORKER in sys.argv and sys.argv[sys.argv.index(_WORKER) + 1 :][:1] == [_UNPATCHED]):
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pykka  # noqa: E402
from pykka import ActorRegistry  # noqa: E402

# Pykka's own list-scanning lookup, kept before supervisors installs its index.
_PYKKA_GET_BY_URN = ActorRegistry.__dict__["get_by_urn"].__func__
_PYKKA_UNREGISTER = ActorRegistry.__dict__["unregister"].__func__

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.queue  # noqa: E402

from supervisors import GeventActor  # noqa: E402

REPEATS = 7  # best of: the machine is shared, the minimum is the runtime's own cost
TELLS = 100_000  # messages per tell measurement
ASKS = 20_000  # round trips per ask measurement
LIFECYCLES = 5_000  # start + stop pairs per measurement
IDLE_ACTORS = 10_000  # actors alive at once for the memory figure
WARM_UP_ACTORS = 100  # started and stopped before the memory figure
LOOKUP_ACTORS = 10_000  # registry size for the lookup figures
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- the three runtimes under test, behind one small interface ---------------------------------


class Counter:
    """Counts handled messages and signals when the expected number has arrived."""

    def __init__(self, expected: int, done: Any) -> None:
        self.expected = expected
        self.seen = 0
        self.done = done

    def hit(self) -> None:
        self.seen += 1
        if self.seen == self.expected:
            self.done.set()


def pykka_runtime(base: type[pykka.Actor], event_class: Callable[[], Any]) -> dict[str, Any]:
    class Echo(base):  # type: ignore[valid-type,misc]
        def __init__(self, counter: Counter | None = None) -> None:
            super().__init__()
            self.counter = counter

        def on_receive(self, message: Any) -> Any:
            if self.counter is not None:
                self.counter.hit()
            return message

    def start(counter: Counter | None = None) -> Any:
        return Echo.start(counter)

    return {
        "start": start,
        "tell": lambda ref, message: ref.tell(message),
        "ask": lambda ref, message: ref.ask(message),
        "stop": lambda ref: ref.stop(),
        "event": event_class,
    }


class BareActor:
    """The least an actor can be on gevent: a greenlet looping on a gevent queue."""

    _STOP = object()

    def __init__(self, counter: Counter | None = None) -> None:
        self.counter = counter
        self.inbox: gevent.queue.Queue[Any] = gevent.queue.Queue()
        self.greenlet = gevent.spawn(self._loop)

    def _loop(self) -> None:
        while True:
            message, reply = self.inbox.get()
            if message is self._STOP:
                reply.set(None)
                return
            if self.counter is not None:
                self.counter.hit()
            if reply is not None:
                reply.set(message)

    def tell(self, message: Any) -> None:
        self.inbox.put((message, None))

    def ask(self, message: Any) -> Any:
        reply = gevent.event.AsyncResult()
        self.inbox.put((message, reply))
        return reply.get()

    def stop(self) -> None:
        reply = gevent.event.AsyncResult()
        self.inbox.put((self._STOP, reply))
        reply.get()


BARE = {
    "start": BareActor,
    "tell": BareActor.tell,
    "ask": BareActor.ask,
    "stop": BareActor.stop,
    "event": gevent.event.Event,
}


# -- measurements --------------------------------------------------------------------------------


def best_of(measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(REPEATS))


def us_per_tell(rt: dict[str, Any], count: int) -> float:
    def once() -> float:
        done = rt["event"]()
        ref = rt["start"](Counter(count, done))
        rt["ask"](ref, "warm up")
        t0 = time.perf_counter()
        tell = rt["tell"]
        for n in range(count):
            tell(ref, n)
        done.wait()
        elapsed = time.perf_counter() - t0
        rt["stop"](ref)
        return elapsed / count * 1e6

    return best_of(once)


def us_per_ask(rt: dict[str, Any], count: int) -> float:
    def once() -> float:
        ref = rt["start"]()
        ask = rt["ask"]
        ask(ref, "warm up")
        t0 = time.perf_counter()
        for n in range(count):
            ask(ref, n)
        elapsed = time.perf_counter() - t0
        rt["stop"](ref)
        return elapsed / count * 1e6

    return best_of(once)


def us_per_lifecycle(rt: dict[str, Any], count: int) -> float:
    def once() -> float:
        start, stop = rt["start"], rt["stop"]
        t0 = time.perf_counter()
        for _ in range(count):
            stop(start())
        return (time.perf_counter() - t0) / count * 1e6

    return best_of(once)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def bytes_per_idle_actor(rt: dict[str, Any], count: int) -> dict[str, float]:
    """Python-heap bytes (tracemalloc) and resident bytes (RSS) per idle actor.

    Run in a fresh process: RSS is measured on the first large population, before freed memory
    can be reused; tracemalloc counts allocations exactly, reuse or not.
    """

    def populate(n: int) -> list[Any]:
        refs = [rt["start"]() for _ in range(n)]
        for ref in refs:
            rt["ask"](ref, "settle")  # started, handled a message, now waiting for the next
        return refs

    def release(refs: list[Any]) -> None:
        for ref in refs:
            rt["stop"](ref)
        refs.clear()
        gc.collect()

    release(populate(WARM_UP_ACTORS))  # load code paths and caches, not the heap
    gc.collect()
    before = rss_bytes()
    refs = populate(count)
    gc.collect()
    rss = (rss_bytes() - before) / count
    release(refs)

    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    refs = populate(count)
    gc.collect()
    heap = (tracemalloc.get_traced_memory()[0] - baseline) / count
    tracemalloc.stop()
    release(refs)
    return {"heap": heap, "rss": rss}


def registry_lookups(actors: int) -> dict[str, float]:
    """ActorRegistry.get_by_urn and unregister with the O(1) index and with Pykka's list."""

    class Idle(GeventActor):
        pass

    refs = [Idle.start() for _ in range(actors)]
    urns = [ref.actor_urn for ref in refs]
    index = ActorRegistry._actor_refs
    sample = urns[:: max(1, actors // 200)]  # spread over the list: the scan's average case

    def lookups_indexed() -> float:
        t0 = time.perf_counter()
        for urn in urns:
            ActorRegistry.get_by_urn(urn)
        return (time.perf_counter() - t0) / len(urns) * 1e6

    def lookups_listed() -> float:
        t0 = time.perf_counter()
        for urn in sample:
            _PYKKA_GET_BY_URN(ActorRegistry, urn)
        return (time.perf_counter() - t0) / len(sample) * 1e6

    def unregister_listed() -> float:
        # Removal cost depends on the position: remove a spread sample, then put it back.
        victims = refs[:: max(1, actors // 200)]
        t0 = time.perf_counter()
        for ref in victims:
            _PYKKA_UNREGISTER(ActorRegistry, ref)
        elapsed = (time.perf_counter() - t0) / len(victims) * 1e6
        ActorRegistry._actor_refs = list(refs)  # type: ignore[assignment]
        return elapsed

    def unregister_indexed() -> float:
        t0 = time.perf_counter()
        for ref in refs:
            ActorRegistry.unregister(ref)
        elapsed = (time.perf_counter() - t0) / len(refs) * 1e6
        for ref in refs:
            ActorRegistry.register(ref)
        return elapsed

    indexed = best_of(lookups_indexed)
    indexed_unregister = best_of(unregister_indexed)
    ActorRegistry._actor_refs = list(index)  # type: ignore[assignment]
    try:
        listed = best_of(lookups_listed)
        listed_unregister = best_of(unregister_listed)
    finally:
        ActorRegistry._actor_refs = index
    for ref in refs:
        ref.stop()
    return {
        "get_by_urn_indexed_us": indexed,
        "get_by_urn_pykka_list_us": listed,
        "unregister_indexed_us": indexed_unregister,
        "unregister_pykka_list_us": listed_unregister,
    }


def measure_runtime(rt: dict[str, Any], scale: float, idle_actors: int) -> dict[str, float]:
    memory = bytes_per_idle_actor(rt, idle_actors)
    return {
        "tell_us": us_per_tell(rt, int(TELLS * scale)),
        "ask_us": us_per_ask(rt, int(ASKS * scale)),
        "start_stop_us": us_per_lifecycle(rt, int(LIFECYCLES * scale)),
        "idle_heap_bytes": memory["heap"],
        "idle_rss_bytes": memory["rss"],
        "idle_actors": idle_actors,
    }


def runtime_named(name: str) -> dict[str, Any]:
    if name == "gevent":
        return pykka_runtime(GeventActor, gevent.event.Event)
    if name in ("threading_patched", _UNPATCHED):
        return pykka_runtime(pykka.ThreadingActor, threading.Event)
    if name == "bare":
        return BARE
    msg = f"unknown runtime {name!r}"
    raise ValueError(msg)


def worker(name: str, scale: float) -> dict[str, Any]:
    if name == "registry":
        return registry_lookups(int(LOOKUP_ACTORS * scale))
    return measure_runtime(runtime_named(name), scale, int(IDLE_ACTORS * scale))


def in_child(name: str, scale: float) -> dict[str, Any] | None:
    result = subprocess.run(
        [sys.executable, __file__, _WORKER, name, "--scale", str(scale)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        print(f"{name}: the measuring process failed:\n{result.stderr}", file=sys.stderr)
        return None
    return json.loads(result.stdout.splitlines()[-1])


# -- report --------------------------------------------------------------------------------------

COLUMNS = [
    ("GeventActor", "gevent"),
    ("ThreadingActor, patched (greenlets)", "threading_patched"),
    ("ThreadingActor, OS threads", "threading_os"),
    ("bare greenlet + gevent.queue", "bare"),
]
ROWS = [
    ("µs per tell handled", "tell_us", "{:.2f}"),
    ("µs per ask round trip", "ask_us", "{:.2f}"),
    ("µs to start and stop an actor", "start_stop_us", "{:.1f}"),
    ("bytes per idle actor (Python heap, tracemalloc)", "idle_heap_bytes", "{:,.0f}"),
    ("bytes per idle actor (RSS delta)", "idle_rss_bytes", "{:,.0f}"),
]


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    runtimes = [(title, key) for title, key in COLUMNS if results["runtimes"].get(key)]
    idle = next((results["runtimes"][key]["idle_actors"] for _, key in runtimes), 0)
    lines = [
        f"{machine['cpus']} CPUs, {machine['platform']}; Python {machine['python']}, "
        f"pykka {machine['pykka']}, gevent {machine['gevent']}, greenlet {machine['greenlet']}; "
        f"load average {machine['load_average_before']:.2f} before the run. "
        f"Memory over {idle:,} idle actors.",
        "",
        "| | " + " | ".join(title for title, _ in runtimes) + " |",
        "|---|" + "---:|" * len(runtimes),
    ]
    for label, field, fmt in ROWS:
        cells = [fmt.format(results["runtimes"][key][field]) for _, key in runtimes]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    registry = results["registry"]
    if registry is None:
        return "\n".join(lines)
    lines += [
        "",
        f"ActorRegistry with {results['lookup_actors']:,} actors:",
        "",
        "| | O(1) index (supervisors) | list scan (Pykka 4.5) |",
        "|---|---:|---:|",
        "| µs per get_by_urn | {:.2f} | {:.1f} |".format(
            registry["get_by_urn_indexed_us"], registry["get_by_urn_pykka_list_us"]
        ),
        "| µs per unregister | {:.2f} | {:.1f} |".format(
            registry["unregister_indexed_us"], registry["unregister_pykka_list_us"]
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--quick", action="store_true", help="a tenth of the work")
    parser.add_argument("--scale", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument(_WORKER, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    scale = args.scale if args.scale is not None else (0.1 if args.quick else 1.0)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, scale)))
        return

    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pykka": version("pykka"),
            "gevent": version("gevent"),
            "greenlet": version("greenlet"),
            "platform": platform.platform(),
            "load_average_before": os.getloadavg()[0],
        },
        "runtimes": {key: in_child(key, scale) for _, key in COLUMNS},
        "lookup_actors": int(LOOKUP_ACTORS * scale),
        "registry": in_child("registry", scale),
    }
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(markdown(results))


if __name__ == "__main__":
    main()
