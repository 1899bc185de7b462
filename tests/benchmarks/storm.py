"""Where a storm of connections spends the server's time and memory (docs/performance.md).

Three subcommands, used by ``tests/benchmarks/storm.sh``:

    storm.py serve OUT COUNT [flags]      run the server with tracemalloc: SIGUSR1 takes the
                                          first snapshot, SIGUSR2 the second and writes the
                                          difference per line of code, per connection (the
                                          number of them read from the file COUNT), to OUT
    storm.py stages BEFORE AFTER N        py-spy raw stacks (``--gil``) of two idle:N runs as a
                                          Markdown table: microseconds per connection per stage
    storm.py heap BEFORE AFTER            two ``serve`` outputs grouped by what holds the bytes

The stages are told apart by the frames of each sample (the first rule that matches wins);
samples of other threads are the store thread's.
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path
from typing import Any

RATE = 250  # py-spy samples per second, as storm.sh records them

STAGES = [
    ("JWT verification", ["jwt/", "auth.py", "verify_fresh"]),
    ("heartbeat sweep (periodic, over every link)", ["heartbeat.py"]),
    (
        "store actor on the hub: hand-offs to the store thread, answers",
        ["StoreActor.", "_hand_over", "storecalls", "storethread", "gevent/threadpool.py"],
    ),
    ("room actor: join, member list, join reply", ["RoomActor"]),
    ("router, presence", ["RouterActor", "PresenceActor", "presence.py", "router.py"]),
    (
        "connection actor: connect (session, inbox ask, reply, offline start)",
        ["ConnectionActor._connect", "OfflineDelivery"],
    ),
    ("connection actor: join (checks, store ask, room hand-off)", ["ConnectionActor._join"]),
    (
        "actor start (supervisor ask, start_child, on_start)",
        ["start_child", "_start_actor", "Supervisor", "on_start"],
    ),
    ("writes (flush of replies)", ["flush", "link.py", "try_write", "send_now", "_service"]),
    (
        "reading frames, decoding, rate limit",
        ["_readable", "_Reading", "frames.py", "codec.py", "_on_events", "commands.py"],
    ),
    (
        "upgrade (handshake check, 101, socket dup, watcher)",
        [
            "_run_websocket",
            "check_handshake",
            "run_application",
            "ServerWebSocket",
            "run_connection",
        ],
    ),
    (
        "request head (read, parse, environ)",
        ["read_request", "read_headers", "get_environ", "handle_one_request", "readline"],
    ),
    (
        "accept, handler set-up, TCP_NODELAY",
        ["baseserver", "do_read", "WSGIServer.handle", "WebSocketHandler.handle", "pywsgi"],
    ),
    (
        "actor runtime (mailboxes, greenlet switches)",
        ["_run_actors", "_actor.py", "_mailbox.py", "_future.py", "pykka/"],
    ),
]
OTHER_STAGE = "hub loop and the rest (libev, system calls, collector)"
STORE_THREAD = "store thread (SQLite reads, joins, commits)"

HOLDERS = [
    ("actor mailbox queue", ["supervisors/_mailbox.py"]),
    (
        "frame reader (parser generators, stream buffer)",
        ["protocol/frames.py", "websockets/frames.py", "websockets/streams.py"],
    ),
    (
        "WebSocket object, its gevent socket, locks, read watcher",
        ["web/websocket.py", "gevent/_socket3.py", "gevent/server.py", "gevent/_socketcommon.py"],
    ),
    (
        "link and its parts (outbox, session, rate limiter, lists, read callback)",
        [
            "web/endpoint.py",
            "runtime/link.py",
            "runtime/pages.py",
            "domain/session.py",
            "domain/ratelimit.py",
            "domain/outbox.py",
            "runtime/connection.py",
            "runtime/offline.py",
            "_intensity.py",
            "web/app.py",
            "secrets.py",
            "sqlite_moderation.py",
        ],
    ),
    ("identity (token claims, room rule)", ["domain/auth.py", "json/", "jwt/"]),
    ("presence book, router directory", ["domain/presence.py", "runtime/router.py"]),
    (
        "connection actor, its ref, supervisor child and monitor",
        ["supervisors/_supervisor.py", "supervisors/_actor.py", "pykka/", "uuid.py", "<string>"],
    ),
    ("room membership", ["runtime/room.py", "domain/roomlog.py"]),
]
UNLISTED = "the rest (lines under ~50 bytes each)"


def stage_of(stack: str) -> str:
    for stage, keys in STAGES:
        if any(key in stack for key in keys):
            return stage
    return OTHER_STAGE


def stages(path: str, n: int) -> dict[str, float]:
    """Microseconds per connection per stage, from a py-spy raw file (``--threads``)."""
    rows = []
    threads: collections.Counter[str] = collections.Counter()
    # One stack a line, split at "\n" only: a frame's text may hold other line breaks.
    for line in filter(None, Path(path).read_text().split("\n")):
        stack, _, count = line.rstrip().rpartition(" ")
        rows.append((stack, int(count)))
        threads[stack.split(";")[0]] += int(count)
    hub = threads.most_common(1)[0][0]
    per: collections.Counter[str] = collections.Counter()
    for stack, count in rows:
        per[stage_of(stack) if stack.split(";")[0] == hub else STORE_THREAD] += count
    return {stage: count * 1e6 / RATE / n for stage, count in per.items()}


def heap(path: str) -> dict[str, float]:
    """Bytes per connection by what holds them, from a ``serve`` output."""
    groups: collections.Counter[str] = collections.Counter()
    total = listed = 0.0
    for line in Path(path).read_text().splitlines():
        if line.startswith("total"):
            total = float(line.split(",")[1].split()[0])
            continue
        match = re.match(r"\s*(-?[\d.]+) B/conn\s+\S+ blocks/conn\s+(\S+)", line)
        if match is None:
            continue
        size, where = float(match.group(1)), match.group(2)
        listed += size
        name = next((n for n, keys in HOLDERS if any(k in where for k in keys)), UNLISTED)
        groups[name] += size
    groups[UNLISTED] += total - listed
    groups["**Python heap per connection**"] = total
    return dict(groups)


def table(first: str, before: dict[str, float], after: dict[str, float]) -> str:
    keys = sorted(set(before) | set(after), key=lambda k: (k.startswith("**"), -before.get(k, 0)))
    lines = [f"| {first} | before | after |", "|---|---:|---:|"]
    lines += [f"| {k} | {before.get(k, 0):,.0f} | {after.get(k, 0):,.0f} |" for k in keys]
    return "\n".join(lines)


def serve(out: str, count_file: str, argv: list[str]) -> Any:
    import gc
    import signal
    import tracemalloc

    from gevent import monkey

    monkey.patch_all()
    import gevent

    tracemalloc.start(1)
    first: list[tracemalloc.Snapshot] = []

    def take_first() -> None:
        gc.collect()
        first.append(tracemalloc.take_snapshot())

    def take_second() -> None:
        gc.collect()
        stats = tracemalloc.take_snapshot().compare_to(first[0], "lineno")
        total = sum(s.size_diff for s in stats)
        n = max(1, int(Path(count_file).read_text()))
        with open(out, "w") as f:
            f.write(f"total {total} bytes, {total / n:.0f} per connection, {n} connections\n")
            for s in stats[:80]:
                f.write(
                    f"{s.size_diff / n:8.1f} B/conn {s.count_diff / n:6.2f} blocks/conn"
                    f"  {s.traceback}\n"
                )

    gevent.signal_handler(signal.SIGUSR1, lambda: gevent.spawn(take_first))
    gevent.signal_handler(signal.SIGUSR2, lambda: gevent.spawn(take_second))
    from actorim.cli import main

    return main(argv)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "serve":
        sys.exit(serve(args[0], args[1], args[2:]))
    elif command == "stages":
        n = int(args[2])
        print(table("stage, µs per connection", stages(args[0], n), stages(args[1], n)))
    elif command == "heap":
        print(table("what holds it, bytes per connection", heap(args[0]), heap(args[1])))
    else:
        sys.exit(__doc__)
