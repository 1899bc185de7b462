"""Draining against a real node: every client is told the service restarts (1012) and when to
come back, then the node stops.

One test runs the real command line and sends it SIGTERM, as a process manager would.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
import websocket
from gevent.event import Event

from actorim.protocol.restart import restart_delay
from actorim.runtime.context import NodeContext
from actorim.runtime.messages import Call
from tests.redis_server import RedisServer
from tests.support import (
    Client,
    RunningNode,
    handshake_status,
    http_get,
    read_port_file,
    wait_until,
)

StartNode = Callable[..., RunningNode]


def _get_json(url: str) -> dict[str, str]:
    with urllib.request.urlopen(url, timeout=1) as response:
        return json.loads(response.read())


def _answers(url: str) -> bool:
    try:
        return _get_json(url) == {"status": "alive"}
    except OSError:
        return False


@contextlib.contextmanager
def serving(tmp_path: Path, drain_seconds: float) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``actorim serve`` in a child process, once its /healthz answers."""
    port_file = tmp_path / "port"
    command = [sys.executable, "-m", "actorim", "serve", "--port", "0", "--dev"]
    command += ["--port-file", str(port_file)]
    command += ["--store", "memory", "--drain-seconds", str(drain_seconds)]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        port = read_port_file(port_file, process)
        wait_until(
            lambda: process.poll() is not None or _answers(f"http://127.0.0.1:{port}/healthz"),
            timeout=15,
            interval=0.05,
            what="actorim serve to answer /healthz",
        )
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    with serving(tmp_path, 0.5) as server:
        yield server


def _connected(port: int, user: str) -> Client:
    token = _get_json(f"http://127.0.0.1:{port}/dev/token?user={user}")["token"]
    client = Client(f"ws://127.0.0.1:{port}/ws")
    client.connect(token)
    return client


@pytest.mark.process
def test_sigterm_closes_every_client_1012_refuses_new_ones_and_exits_0(
    cli_server: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = cli_server
    url = f"ws://127.0.0.1:{port}/ws"
    clients = []
    for user in ("alice", "bob"):
        token = _get_json(f"http://127.0.0.1:{port}/dev/token?user={user}")["token"]
        client = Client(url)
        client.connect(token)
        client.ok("join", room="lobby")
        clients.append(client)
    sent = clients[1].ok("send", room="lobby", body="before the drain")
    assert clients[0].event("msg", room="lobby")["mid"] == sent["mid"]

    process.send_signal(signal.SIGTERM)
    closes = [gevent.spawn(client.wait_closed, timeout=5) for client in clients]
    gevent.wait(closes, count=1, timeout=5)
    # The closes are spread over the drain: the node is still draining, and accepts no one.
    with pytest.raises((OSError, websocket.WebSocketException)):
        Client(url).close()
    assert [closed.get().code for closed in closes] == [1012, 1012]
    status = process.wait(timeout=5)
    assert status == 0, process.stderr.read().decode() if process.stderr else ""


@pytest.mark.process
def test_during_the_drain_health_checks_answer_and_websockets_get_503(tmp_path: Path) -> None:
    # Two clients over a 2 s drain: the first is closed at once, the second 1 s later. Between
    # the two closes the node is draining, which is when a load balancer probes it.
    with serving(tmp_path, 2.0) as (process, port):
        first, second = _connected(port, "alice"), _connected(port, "bob")
        process.send_signal(signal.SIGTERM)
        closes = [gevent.spawn(client.wait_closed, timeout=10) for client in (first, second)]
        (closed,) = gevent.wait(closes, count=1, timeout=10)
        assert closed.get().code == 1012
        http = f"http://127.0.0.1:{port}"
        status, _headers, body = http_get(f"{http}/readyz")
        assert (status, json.loads(body)) == (503, {"ready": False, "reason": "draining"})
        assert http_get(f"{http}/healthz")[0] == 200
        assert handshake_status(f"ws://127.0.0.1:{port}/ws") == 503
        assert [c.get().code for c in gevent.wait(closes, timeout=10)] == [1012, 1012]
        assert process.wait(timeout=15) == 0


def test_drain_closes_every_client_with_1012_and_a_delay_within_the_spread(
    start_node: StartNode,
) -> None:
    node = start_node(drain_reconnect_spread=2.0)
    alice = node.client("alice")
    bob = node.client("bob", json_frames=True)
    anonymous = node.client()
    alice.ok("join", room="lobby")
    drain = gevent.spawn(node.node.drain, 0.2)
    for client in (alice, bob, anonymous):
        closed = client.wait_closed(timeout=5)
        assert closed.code == 1012
        assert re.fullmatch(r"service restart; reconnect in \d+ ms", closed.reason), closed.reason
        delay = restart_delay(closed.code, closed.reason)
        assert delay is not None and 0.0 <= delay <= 2.0
    drain.get(timeout=5)
    assert node.node.readiness() == (False, "draining")
    assert not node.node.ctx.directory.links


def _room_actor(ctx: NodeContext) -> Any:
    return ctx.directory.rooms["busy"].actor


def _presence_actor(ctx: NodeContext) -> Any:
    return ctx.refs.presence


@pytest.mark.parametrize(
    "case",
    [(_room_actor, "member_adjust"), (_presence_actor, "disconnected")],
    ids=["room", "presence"],
)
def test_a_stopping_nodes_actors_drop_the_bookkeeping_queued_for_them_and_stop_in_time(
    case: tuple[Callable[[NodeContext], Any], str],
    start_node: StartNode,
    redis_session: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A node drained under a storm stops with its rooms' and presence tracker's mailboxes
    # still full of the closed connections' departures, each a Redis round trip to count:
    # worked through, they held those actors past their shutdown time and the process past
    # its grace. The node's records leave Redis with the node (its registry reaps them as it
    # stops), so a stopping node's actors drop that bookkeeping.
    actor_of, bookkeeping = case
    url = f"redis://127.0.0.1:{redis_session.port}/0"
    namespace = f"stop-{bookkeeping}-{secrets.token_hex(4)}"  # the session's Redis is shared
    running = start_node(redis_url=url, redis_namespace=namespace)
    ctx = running.node.ctx
    clients = [running.client(f"user{n}") for n in range(3)]
    for client in clients:
        client.ok("join", room="busy")
    actor = actor_of(ctx)
    assert actor is not None
    held, release, redis_answers = Event(), Event(), Event()

    def hold() -> None:
        held.set()
        release.wait()

    actor.tell(Call(hold))  # the actor is busy: the departures queue behind this
    with gevent.Timeout(10, AssertionError("the actor never ran the call")):
        held.wait()
    counted: list[str] = []
    count = getattr(ctx.broker, bookkeeping)

    def slow_count(*args: Any) -> Any:
        counted.append(args[0])
        redis_answers.wait()  # a Redis that answers only when the test ends
        return count(*args)

    monkeypatch.setattr(ctx.broker, bookkeeping, slow_count)
    for client in clients:
        client.close()
    wait_until(lambda: not ctx.directory.links, what="the clients' connections to close")
    stopping = gevent.spawn(running.node.stop, drain=False)
    wait_until(lambda: ctx.refs.heartbeat is None, what="the supervision tree to begin stopping")
    release.set()
    try:
        with gevent.Timeout(60, AssertionError("the node did not stop")):
            stopping.get()
        assert counted == [], f"the stopping actor did its {bookkeeping} in Redis"
        assert "did not stop within" not in caplog.text, caplog.text
    finally:
        redis_answers.set()


def test_a_stopping_nodes_users_in_their_grace_are_announced_offline_on_the_other_nodes(
    start_node: StartNode, redis_session: RedisServer
) -> None:
    # Their grace outlasts the node: the node's registry announces them as it leaves.
    url = f"redis://127.0.0.1:{redis_session.port}/0"
    namespace = f"stop-grace-{secrets.token_hex(4)}"  # the session's Redis is shared
    here = start_node(redis_url=url, redis_namespace=namespace, presence_grace=600)
    there = start_node(redis_url=url, redis_namespace=namespace, presence_grace=600)
    watcher = there.client("watcher")
    watcher.ok("watch", users=["alice"])
    alice = here.client("alice")
    assert watcher.event("presence", user="alice")["status"] == "online"
    alice.close()
    wait_until(lambda: not here.node.ctx.directory.links, what="alice's connection to close")
    here.node.stop(drain=False)
    assert watcher.event("presence", user="alice")["status"] == "offline"
    assert watcher.ok("presence", users=["alice"])["statuses"] == {"alice": "offline"}
