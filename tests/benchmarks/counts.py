"""Cost of ``Store.counts``: one user's marker, unread and mention counts in 1,000 conversations
at once, in every store, as an inbox shown at ``connect`` would ask for them.

Run from the repository root::

    .venv/bin/python tests/benchmarks/counts.py          # Markdown table
    .venv/bin/python tests/benchmarks/counts.py --json   # the same figures as JSON
    .venv/bin/python tests/benchmarks/counts.py --quick  # 100 conversations, for a smoke run

Two shapes of inbox, each of ``--conversations`` conversations of ``--messages`` messages:
*mostly read* (the user's marker 3 messages from the end of each; 1 unread in 3 mentions them),
and *far behind* (no marker, more messages than ``unread_count_max`` in each: every count stops
at the cap, the worst case). The Redis store runs on a private redis-server when one is
installed. Every timing is the best of a few calls, to keep noise from other processes out.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from actorim.domain.markers import DEFAULT_UNREAD_COUNT_MAX
from actorim.store import MemoryStore, NewMessage, SqliteStore, Store, room_conv

REPEATS = 5
USER = "reader"


def inbox(store: Store, conversations: int, messages: int, *, marked: bool) -> list[str]:
    """Fill ``store`` with the conversations of one inbox shape; their keys."""
    convs = [room_conv(f"room-{i}") for i in range(conversations)]
    for conv in convs:
        room = conv[2:]
        batch = [
            NewMessage(
                conv,
                "writer",
                "text",
                b"a message of a few words",
                1_000 + n,
                room=room,
                mentions=(USER,) if n % 3 == 0 else (),
            )
            for n in range(messages)
        ]
        for start in range(0, len(batch), 500):
            store.append_batch(batch[start : start + 500])
        if marked:
            store.move_marker(USER, conv, messages - 3, cap=DEFAULT_UNREAD_COUNT_MAX)
    return convs


def best_ms(call: Callable[[], object]) -> float:
    timings = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        call()
        timings.append((time.perf_counter() - start) * 1000)
    return min(timings)


@contextmanager
def stores(directory: Path) -> Iterator[Iterator[tuple[str, Callable[[str], Store]]]]:
    """(name, open a fresh store) for each backend this machine can run."""
    redis_server = None
    opened: list[Store] = []

    def backends() -> Iterator[tuple[str, Callable[[str], Store]]]:
        nonlocal redis_server
        yield "memory", lambda name: MemoryStore()
        yield "sqlite", lambda name: SqliteStore(directory / name / "messages.db")
        try:
            from actorim.redis.store import RedisStore
            from tests.redis_server import RedisServer, find_redis_server

            redis_server = RedisServer(directory / "redis", binary=find_redis_server())
            redis_server.start()
        except Exception as exc:  # no redis-server here: the table says so
            print(f"redis: skipped ({exc})", file=sys.stderr)
            return
        url = f"redis://127.0.0.1:{redis_server.port}/0"
        yield "redis", lambda name: RedisStore.from_url(url, namespace=name)

    def tracked() -> Iterator[tuple[str, Callable[[str], Store]]]:
        for backend, make in backends():

            def opening(name: str, make: Callable[[str], Store] = make) -> Store:
                store = make(name)
                opened.append(store)
                return store

            yield backend, opening

    try:
        yield tracked()
    finally:
        for store in opened:
            store.close()
        if redis_server is not None:
            redis_server.stop()


def measure(conversations: int, messages: int) -> list[dict[str, Any]]:
    rows = []
    cap = DEFAULT_UNREAD_COUNT_MAX
    with tempfile.TemporaryDirectory() as tmp, stores(Path(tmp)) as backends:
        for backend, open_store in backends:
            for shape, marked, per_conv in [
                ("mostly read", True, messages),
                ("far behind", False, cap + 10),
            ]:
                store = open_store(f"{backend}-{shape.replace(' ', '-')}")
                convs = inbox(store, conversations, per_conv, marked=marked)
                found = store.counts(USER, convs, cap=cap)
                unread = sum(c.unread for c in found.values())
                ms = best_ms(lambda store=store, convs=convs: store.counts(USER, convs, cap=cap))
                rows.append(
                    {
                        "store": backend,
                        "inbox": shape,
                        "conversations": conversations,
                        "messages_each": per_conv,
                        "unread_total": unread,
                        "ms": round(ms, 2),
                        "us_per_conversation": round(ms * 1000 / conversations, 1),
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--conversations", type=int, default=1_000)
    parser.add_argument("--messages", type=int, default=20)
    args = parser.parse_args()
    conversations = 100 if args.quick else args.conversations
    rows = measure(conversations, args.messages)
    if args.json:
        print(json.dumps({"python": platform.python_version(), "rows": rows}, indent=2))
        return
    print(
        "| store | inbox | conversations | messages each | unread in all | counts()"
        " | per conversation |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['store']} | {r['inbox']} | {r['conversations']} | {r['messages_each']} |"
            f" {r['unread_total']} | {r['ms']} ms | {r['us_per_conversation']} µs |"
        )


if __name__ == "__main__":
    main()
