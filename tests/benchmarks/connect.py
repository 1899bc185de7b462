"""Connect time against the number of rooms a user belongs to (1, 100, 1,000).

Starts ``actorim serve`` (tests/benchmarks/sends.py's ``start_server``: a separate process,
pinned to CPU 0 when ``taskset`` exists) for each store (``redis``: a cluster node on a private
``redis-server``, durable as tests/redis_server.py starts it); a user joins N rooms, each with one
message, and then connects again and again. Each sample is the time from sending ``connect``
to its reply (the inbox of N rooms read from the store), and to the reply of a ``ping`` sent
right behind it (the connection subscribed to every room by then). Prints a Markdown table
(``--json`` for one JSON object).

    .venv/bin/python tests/benchmarks/connect.py [--samples 30] [--rooms 1,100,1000]
        [--stores sqlite,memory,redis]
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import msgpack  # noqa: E402
import websocket  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from actorim.domain.auth import TokenAuthority  # noqa: E402
from tests.benchmarks.sends import SECRET, start_server  # noqa: E402
from tests.redis_server import RedisServer, find_redis_server  # noqa: E402


@contextlib.contextmanager
def store_of(store: str, data_dir: str) -> Iterator[str]:
    """The ``--store`` to start the server with; for ``redis``, a private redis-server, named
    in ``REDIS_URL`` for the server while it starts."""
    if store != "redis":
        yield store
        return
    redis = RedisServer(Path(data_dir) / "redis", binary=find_redis_server())
    redis.start()
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{redis.port}/0"
    try:
        yield "memory"  # in cluster mode the store is Redis's
    finally:
        del os.environ["REDIS_URL"]
        redis.stop()


def _until_reply(ws: Any, command_id: int) -> dict[str, Any]:
    while True:
        frame = msgpack.unpackb(ws.recv())
        if frame.get("t") == "reply" and frame.get("id") == command_id:
            return dict(frame)


def _open(port: int, token: str) -> tuple[Any, dict[str, Any]]:
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws", suppress_origin=True)
    ws.send_binary(msgpack.packb({"t": "connect", "id": 0, "token": token}))
    return ws, _until_reply(ws, 0)


def member_of(port: int, token: str, rooms: int) -> None:
    """Join ``rooms`` rooms (pipelined, 100 at a time), each with one message."""
    ws, _ = _open(port, token)
    for n in range(rooms):
        ws.send_binary(msgpack.packb({"t": "join", "id": 1 + 2 * n, "room": f"bench{n}"}))
        ws.send_binary(
            msgpack.packb({"t": "send", "id": 2 + 2 * n, "room": f"bench{n}", "body": "x" * 50})
        )
        if n % 100 == 99 or n == rooms - 1:
            _until_reply(ws, 2 + 2 * n)
    ws.close()


def sample(port: int, token: str) -> tuple[float, float, int]:
    started = time.perf_counter()
    ws, reply = _open(port, token)
    replied = time.perf_counter()
    ws.send_binary(msgpack.packb({"t": "ping", "id": 1}))
    _until_reply(ws, 1)
    subscribed = time.perf_counter()
    ws.close()
    listed = len(reply["data"]["conversations"])
    return (replied - started) * 1000, (subscribed - started) * 1000, listed


def run(store: str, rooms: int, samples: int) -> dict[str, Any]:
    data_dir = tempfile.mkdtemp(prefix="actorim-bench-")
    token = TokenAuthority(SECRET).mint(f"member-of-{rooms}")
    with store_of(store, data_dir) as setting:
        proc, port = start_server(setting, data_dir)
        try:
            member_of(port, token, rooms)
            sample(port, token)  # the first connect after the joins is left out
            taken = [sample(port, token) for _ in range(samples)]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    shutil.rmtree(data_dir, ignore_errors=True)
    replies = sorted(t[0] for t in taken)
    subscribed = sorted(t[1] for t in taken)
    return {
        "store": store,
        "rooms": rooms,
        "listed": taken[0][2],
        "reply_p50_ms": round(statistics.median(replies), 2),
        "reply_p90_ms": round(replies[int(0.9 * (len(replies) - 1))], 2),
        "subscribed_p50_ms": round(statistics.median(subscribed), 2),
        "subscribed_p90_ms": round(subscribed[int(0.9 * (len(subscribed) - 1))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--rooms", default="1,100,1000")
    parser.add_argument("--stores", default="sqlite,memory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    counts = [int(n) for n in args.rooms.split(",")]
    rows = [run(store, n, args.samples) for store in args.stores.split(",") for n in counts]
    if args.json:
        print(json.dumps(rows))
        return
    print(f"connect: {args.samples} samples each, server pinned to one core")
    print("| store | rooms | listed | connect reply p50 / p90 ms | subscribed p50 / p90 ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['store']} | {r['rooms']:,} | {r['listed']} | {r['reply_p50_ms']} /"
            f" {r['reply_p90_ms']} | {r['subscribed_p50_ms']} / {r['subscribed_p90_ms']} |"
        )


if __name__ == "__main__":
    main()
