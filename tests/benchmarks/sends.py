"""Stored operations per second and reply latency, durable (SQLite, FULL sync) and not (memory).

Starts ``actorim serve`` as a separate process (pinned to CPU 0 when ``taskset`` exists) for each
store, drives it from this process with N MessagePack clients, each in a room of its own and
keeping W commands in flight, and prints a Markdown table (``--json`` for one JSON object). The
operations: ``send`` (new messages), ``edit`` (each client edits one message of its own over
and over) and ``react`` (each client adds and removes one reaction on one message in turn).
Every one is stored with the conversation's next seq, so they cost alike unless a store's
change path is slower than its append.

    .venv/bin/python tests/benchmarks/sends.py [--clients 50] [--window 8] [--seconds 5]
        [--ops send,edit,react]
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

import gevent  # noqa: E402
import msgpack  # noqa: E402
import websocket  # noqa: E402

from actorim.domain.auth import TokenAuthority  # noqa: E402

SECRET = "benchmark-secret-0123456789abcdefghijkl"


def start_server(store: str, data_dir: str) -> tuple[subprocess.Popen[bytes], int]:
    port_file = os.path.join(data_dir, "actorim.port")
    argv = [
        sys.executable,
        "-m",
        "actorim",
        "serve",
        "--port",
        "0",
        "--port-file",
        port_file,
        "--store",
        store,
        "--data-dir",
        data_dir,
        "--log-level",
        "WARNING",
        "--rate",
        "100000",
        "--burst",
        "100000",
    ]
    if shutil.which("taskset"):
        argv = ["taskset", "-c", "0", *argv]
    env = {**os.environ, "ACTORIM_SECRET": SECRET}
    proc = subprocess.Popen(argv, env=env)
    deadline = time.monotonic() + 20
    while True:
        try:
            with open(port_file) as file:
                port = int(file.read())
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).close()
            return proc, port
        except (OSError, ValueError):
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit("server did not start") from None
            time.sleep(0.05)


def command(op: str, n: int, room: str, mid: str) -> dict[str, object]:
    """The n-th command of a client running ``op`` (``mid``: its own message, for changes)."""
    if op == "edit":
        return {"t": "edit", "id": n, "mid": mid, "body": f"edit {n} " + "x" * 92}
    if op == "react":
        return {"t": "react", "id": n, "mid": mid, "key": "+1", "on": n % 2 == 0}
    return {"t": "send", "id": n, "room": room, "body": "x" * 100}


def run_store(
    store: str, op: str, clients: int, window: int, seconds: float
) -> dict[str, float | str]:
    data_dir = tempfile.mkdtemp(prefix="actorim-bench-")
    proc, port = start_server(store, data_dir)
    tokens = TokenAuthority(SECRET)
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds

    def client(i: int) -> None:
        nonlocal errors
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws", suppress_origin=True)
        pack = msgpack.packb
        ws.send_binary(pack({"t": "connect", "id": 0, "token": tokens.mint(f"b{i}")}))
        ws.recv()
        room = f"bench{i}"
        ws.send_binary(pack({"t": "join", "id": 1, "room": room}))
        while msgpack.unpackb(ws.recv()).get("id") != 1:
            pass
        ws.send_binary(pack({"t": "send", "id": 2, "room": room, "body": "the message changed"}))
        while (reply := msgpack.unpackb(ws.recv())).get("id") != 2:
            pass
        mid = reply["data"]["mid"]
        sent_at: dict[int, float] = {}
        next_id = 4  # even: the first reaction adds
        while True:
            now = time.monotonic()
            while len(sent_at) < window and now < stop_at:
                sent_at[next_id] = now
                ws.send_binary(pack(command(op, next_id, room, mid)))
                next_id += 1
            if not sent_at:
                break
            frame = msgpack.unpackb(ws.recv())
            if frame.get("t") == "reply":
                started = sent_at.pop(frame["id"], None)
                if started is not None:
                    if frame["ok"]:
                        latencies.append(time.monotonic() - started)
                    else:
                        errors += 1
        ws.close()

    began = time.monotonic()
    gevent.joinall([gevent.spawn(client, i) for i in range(clients)], raise_error=True)
    elapsed = time.monotonic() - began
    proc.terminate()
    proc.wait(timeout=30)
    shutil.rmtree(data_dir, ignore_errors=True)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "store": store,
        "op": op,
        "ops_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--ops", default="send,edit,react")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [
        run_store(store, op, args.clients, args.window, args.seconds)
        for op in args.ops.split(",")
        for store in ("sqlite", "memory")
    ]
    if args.json:
        print(json.dumps(rows))
        return
    print(
        f"{args.clients} clients, each in its own room, {args.window} in flight each, "
        f"{args.seconds:g} s per row, server pinned to one core"
    )
    print("| operation | store | per second | p50 reply ms | p99 reply ms | errors |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        label = "sqlite (durable, FULL)" if r["store"] == "sqlite" else "memory (store disabled)"
        print(
            f"| {r['op']} | {label} | {r['ops_per_s']:,} | {r['p50_ms']} | {r['p99_ms']}"
            f" | {r['errors']} |"
        )


if __name__ == "__main__":
    main()
