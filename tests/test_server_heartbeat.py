"""Heartbeats against a real node: pings go out, silent peers are dropped, live ones stay."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import gevent
import pytest
from gevent.event import Event

from actorim.domain.hooks import Allow, Hooks, Outgoing
from actorim.protocol.frames import CloseCode
from actorim.protocol.restart import restart_delay, restart_reason
from tests.support import (
    OPCODE_CLOSE,
    OPCODE_PING,
    OPCODE_PONG,
    RawWebSocket,
    RunningNode,
)

StartNode = Callable[..., RunningNode]
OpenRaw = Callable[[RunningNode], RawWebSocket]

HEARTBEAT = 0.1
IDLE_TIMEOUT = 0.4


@pytest.fixture
def open_raw() -> Iterator[OpenRaw]:
    """Bare-socket clients connected as fresh users, closed after the test."""
    opened: list[RawWebSocket] = []

    def open_client(node: RunningNode) -> RawWebSocket:
        raw = RawWebSocket(node.host, node.port)
        opened.append(raw)
        raw.ok("connect", token=node.token(f"user{len(opened)}"))
        return raw

    yield open_client
    for raw in opened:
        raw.close()


@pytest.mark.slow  # waits out a real deadline
def test_server_sends_websocket_pings_every_heartbeat(
    start_node: StartNode, open_raw: OpenRaw
) -> None:
    node = start_node(heartbeat=HEARTBEAT, idle_timeout=5)
    raw = open_raw(node)
    started = time.monotonic()
    pings = 0
    with gevent.Timeout(2, AssertionError("fewer than 3 pings in 2 s")):
        while pings < 3:
            frame = raw.read_frame()
            assert frame is not None and frame[0] != OPCODE_CLOSE
            pings += frame[0] == OPCODE_PING
    assert time.monotonic() - started >= 2 * HEARTBEAT


@pytest.mark.slow  # waits out a real deadline
def test_client_that_sends_nothing_is_closed_1001_after_idle_timeout(
    start_node: StartNode, open_raw: OpenRaw
) -> None:
    node = start_node(heartbeat=HEARTBEAT, idle_timeout=IDLE_TIMEOUT)
    started = time.monotonic()  # before the connect frame, the last one the server gets
    raw = open_raw(node)
    assert raw.wait_closed(timeout=3) == 1001
    assert time.monotonic() - started >= IDLE_TIMEOUT


# Slow: outlives the idle timeout in real time.
@pytest.mark.slow
def test_client_that_answers_pings_stays_past_the_idle_timeout(
    start_node: StartNode, open_raw: OpenRaw
) -> None:
    node = start_node(heartbeat=HEARTBEAT, idle_timeout=IDLE_TIMEOUT)
    silent = open_raw(node)
    silent_closed = gevent.spawn(silent.wait_closed, timeout=3)
    lively = open_raw(node)
    pongs = 0
    while not silent_closed.ready() or pongs * HEARTBEAT < 3 * IDLE_TIMEOUT:
        frame = lively.read_frame(timeout=1)
        assert frame is not None and frame[0] != OPCODE_CLOSE, "the ponging client was closed"
        if frame[0] == OPCODE_PING:
            lively.send_frame(OPCODE_PONG, frame[1])
            pongs += 1
    assert silent_closed.get() == 1001
    assert lively.ok("ping") == {}


@pytest.mark.slow  # waits out a real deadline
def test_connection_that_never_sends_connect_is_closed_1008_after_connect_timeout(
    start_node: StartNode,
) -> None:
    node = start_node(connect_timeout=0.3)
    alice = node.client("alice")
    started = time.monotonic()
    anonymous = node.client()
    closed = anonymous.wait_closed(timeout=3)
    assert closed.code == 1008
    assert time.monotonic() - started >= 0.3
    assert alice.ok("ping") == {}


@pytest.mark.slow  # waits out a real deadline
def test_a_peer_that_stopped_reading_is_cut_off_when_its_close_cannot_complete(
    start_node: StartNode,
) -> None:
    node = start_node(
        heartbeat=HEARTBEAT,
        idle_timeout=IDLE_TIMEOUT,
        close_timeout=0.3,
        outbox_max_frames=100_000,
        outbox_max_bytes=64 * 1024 * 1024,
    )
    stuck = RawWebSocket(node.host, node.port, rcvbuf=4096)
    stuck.ok("connect", token=node.token("stuck"))
    stuck.ok("join", room="flood")
    sender = node.client("sender")
    sender.ok("join", room="flood")
    body = "x" * 30_000
    links = node.node.ctx.directory.links
    # Filling the socket buffers may take longer than the idle timeout on a slow machine: the
    # peer keeps sending (and reading nothing) until the server is stuck writing to it, so that
    # it is the close, not the idle timeout alone, that cannot complete.
    with gevent.Timeout(30, AssertionError("the stuck peer's actor never blocked writing")):
        while not any(link.user == "stuck" and link.ws.writing for link in links.values()):
            stuck.send_frame(OPCODE_PING, b"")
            sender.ok("send", room="flood", body=body)
    with gevent.Timeout(5, AssertionError("the stuck connection was never cut off")):
        while any(link.user == "stuck" for link in links.values()):
            assert sender.ok("ping") == {}, "the sender keeps being served meanwhile"
            gevent.sleep(0.02)
    stuck.close()


def test_a_close_waiting_for_its_busy_actor_past_close_timeout_keeps_its_code_and_hint(
    start_node: StartNode,
) -> None:
    # A draining node on a busy core carries its closes out seconds after it asked for them,
    # each connection's actor in its turn. Only a close held up by a write to a peer that
    # stopped reading is cut short; one that waits for its actor must still reach the client
    # with its code and the hint of when to come back (cut, the client would see 1006).
    entered, release = Event(), Event()

    def before_publish(_outgoing: Outgoing) -> Allow:
        entered.set()  # the connection's actor is busy in this hook until the test says
        release.wait()
        return Allow()

    node = start_node(hooks=Hooks(before_publish=before_publish), close_timeout=0.3)
    busy = RawWebSocket(node.host, node.port)
    busy.ok("connect", token=node.token("busy"))
    busy.ok("join", room="lobby")
    busy.send_command("send", room="lobby", body="held up by the hook")
    with gevent.Timeout(10, AssertionError("the hook was never called")):
        entered.wait()
    link = next(link for link in node.node.ctx.directory.links.values() if link.user == "busy")
    link.request_close(CloseCode.SERVICE_RESTART, restart_reason(2.0))
    # A heartbeat sweep long past close_timeout, while the actor is busy (not writing).
    heartbeat = node.node.ctx.refs.heartbeat
    assert heartbeat is not None
    heartbeat.proxy().sweep(now=link.close_requested_at + 10.0).get(timeout=10)
    release.set()
    frame = busy.read_frame()
    while frame is not None and frame[0] != OPCODE_CLOSE:
        frame = busy.read_frame()
    assert frame is not None, "the socket was cut: no close frame"
    code, reason = int.from_bytes(frame[1][:2], "big"), frame[1][2:].decode()
    assert code == 1012
    assert restart_delay(code, reason) == 2.0
    busy.close()
