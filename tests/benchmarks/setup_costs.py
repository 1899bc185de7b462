"""What three stages of a connection's set-up cost, each on its own (docs/performance.md).

    .venv/bin/python tests/benchmarks/setup_costs.py jwt|start|upgrade|sweep [--instructions]
    PYTHONPATH=/path/to/older/checkout .venv/bin/python tests/benchmarks/setup_costs.py ...

- ``jwt``: ``TokenAuthority.verify`` of 2,000 distinct storm-like tokens.
- ``start``: 1,000 dynamic children of a ``Supervisor`` (trivial actors, each ``on_start`` run),
  started by ``start_child_nowait`` where the code has it, else by an ``ask`` of ``start_child``
  (what the node did before); ``--ask`` forces the latter.
- ``upgrade``: 1,000 WebSocket upgrades by ``WebSocketHandler`` on a ``WSGIServer`` (accept,
  request head, handshake check, 101, detach to a read watcher), the client in another process.
- ``sweep``: the heartbeat's sweep over 5,000 connected links heard from just now (none due);
  an operation is one link visited by one sweep.

By default prints Python calls per operation (cProfile), a count that a busy machine does not
change. ``--instructions`` counts CPU instructions per operation with valgrind (callgrind):
a run with the operations minus a run with fewer of them, so start-up cancels out.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
from callgrind import instructions  # noqa: E402

SECRET = "storm-benchmark-secret-0123456789abcdef"
COUNTS = {"jwt": (2000, 0), "start": (1000, 0), "upgrade": (1200, 200), "sweep": (50_000, 0)}
SWEPT_LINKS = 5000

_CLIENT = r"""
import base64, os, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
key = base64.b64encode(os.urandom(16)).decode()
request = (
    f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    f"Origin: http://127.0.0.1\r\nUser-Agent: bench\r\n\r\n"
).encode()
held = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(request)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    held.append(s)
sys.stdin.read()
"""


def _jwt(n: int) -> Callable[[], None]:
    import jwt

    from actorim.domain.auth import TokenAuthority

    # As many tokens made whatever n is: --instructions subtracts a run that verifies none.
    tokens = [
        jwt.encode({"sub": f"u{i}", "exp": 4_102_444_800}, SECRET, algorithm="HS256")
        for i in range(COUNTS["jwt"][0])
    ][:n]
    authority = TokenAuthority(SECRET)
    authority.verify(jwt.encode({"sub": "warm", "exp": 4_102_444_800}, SECRET))

    def run() -> None:
        for token in tokens:
            authority.verify(token)

    return run


def _start(n: int, *, ask: bool) -> Callable[[], None]:
    from pykka.messages import ProxyCall

    import supervisors
    from supervisors import ChildSpec, GeventActor, Restart, Supervisor

    nowait = None if ask else getattr(supervisors, "start_child_nowait", None)
    started: list[int] = []

    class Child(GeventActor):
        def on_start(self) -> None:
            started.append(1)

    sup = Supervisor.start(name="bench", max_restarts=1000, max_seconds=1)
    sup.proxy().which_children().get(timeout=5)

    def run() -> None:
        for i in range(n):
            spec = ChildSpec(id=i, start=Child.start, restart=Restart.TRANSIENT, shutdown=5.0)
            if nowait is not None:
                nowait(sup, spec)
            else:
                sup.ask(ProxyCall(attr_path=("start_child",), args=(spec,), kwargs={}), timeout=10)
        while len(started) < n:
            gevent.sleep(0)

    return run


def _upgrade(n: int) -> Callable[[], None]:
    from gevent.pywsgi import WSGIServer

    from actorim.web.websocket import WebSocketHandler

    kept: list[Any] = []
    done = gevent.event.Event()

    def app(environ: dict[str, Any], _start_response: Any) -> list[bytes]:
        ws = environ["actorim.websocket"]
        ws.read_in_background(lambda _events: True)
        kept.append(ws)
        if len(kept) == n:
            done.set()
        return []

    server = WSGIServer(("127.0.0.1", 0), app, handler_class=WebSocketHandler, log=None)
    server.start()

    def run() -> None:
        client = subprocess.Popen(
            [sys.executable, "-c", _CLIENT, str(server.server_port), str(n)],
            stdin=subprocess.PIPE,
        )
        done.wait()
        assert client.stdin is not None
        client.stdin.close()
        client.wait()
        for ws in kept:
            ws.abort()
        server.stop()

    return run


def _sweep(n: int) -> Callable[[], None]:
    import socket
    import time
    from types import SimpleNamespace

    from benchlinks import connected_link

    from actorim.config import Config
    from actorim.domain.auth import Identity
    from actorim.domain.tokens import RevocationList
    from actorim.runtime.context import Directory
    from actorim.runtime.heartbeat import HeartbeatActor
    from actorim.runtime.tokens import policy_of

    ctx: Any = SimpleNamespace(config=Config(), directory=Directory(), revocations=RevocationList())
    shared, _peer = socket.socketpair()  # the sweep reads no socket: one serves every link
    for i in range(SWEPT_LINKS):
        link = connected_link(shared)
        link.session.identity = Identity(f"u{i}", None, int(time.time()) + 86_400)
        ctx.directory.links[link.conn_id] = link
    heartbeat = HeartbeatActor.__new__(HeartbeatActor)  # its sweep alone, no timer
    heartbeat.ctx, heartbeat._tokens = ctx, policy_of(ctx)
    heartbeat._arm = lambda: None  # type: ignore[method-assign]
    now = time.monotonic()

    def run() -> None:
        for _ in range(n // SWEPT_LINKS):
            heartbeat.sweep(now=now, wall=time.time())

    return run


def _prepare(what: str, n: int, *, ask: bool) -> Callable[[], None]:
    if what == "sweep":
        return _sweep(n)
    if what == "jwt":
        return _jwt(n)
    if what == "start":
        return _start(n, ask=ask)
    return _upgrade(n)


def _instructions(what: str, n: int, ask: bool) -> int:
    """Instructions of one run of this script under callgrind (the whole process)."""
    return instructions(
        [str(Path(__file__).resolve()), what, "--count", str(n), *(["--ask"] if ask else [])]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=sorted(COUNTS))
    parser.add_argument("--instructions", action="store_true", help="count with valgrind")
    parser.add_argument("--ask", action="store_true", help="start: ask start_child")
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)  # one run, measured outside
    args = parser.parse_args()
    many, few = COUNTS[args.what]
    if args.count is not None:
        _prepare(args.what, args.count, ask=args.ask)()
        return
    if args.instructions:
        more = _instructions(args.what, many, args.ask)
        fewer = _instructions(args.what, few, args.ask)
        print(f"{args.what}: {(more - fewer) / (many - few):,.0f} instructions per operation")
        return
    run = _prepare(args.what, many, ask=args.ask)
    profile = cProfile.Profile()
    profile.runcall(run)
    calls = pstats.Stats(profile).total_calls
    print(f"{args.what}: {calls / many:.0f} Python calls per operation")


if __name__ == "__main__":
    main()
