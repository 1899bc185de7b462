"""The limits of the WebSocket read path, as pure objects fed events and on real sockets.

The attacks these limits answer are in tests/test_attacks_wire.py; here each limit's decision
is checked on its own: the frame reader's turns, fragment cap, pong collapse and closing read
limit (RFC 6455), the frame budget, the header block limit, the handshake gate, the outbox's
single pong, and the node's answers (408, 431, rate-limited malformed commands).
"""

from __future__ import annotations

import _socket
import io
import os
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace

import gevent
import pytest
from gevent.pywsgi import WSGIHandler
from websockets.frames import Frame, Opcode

from actorim.domain.outbox import Outbox
from actorim.domain.ratelimit import FrameBudget
from actorim.protocol.frames import (
    CloseCode,
    Closed,
    FrameReader,
    Message,
    PingReceived,
    ReaderState,
    encode_pong,
)
from actorim.web._gevent_compat import ParsedHeadersEnviron
from actorim.web.handshakes import HandshakeGate
from actorim.web.headers import TOO_LARGE, read_headers
from actorim.web.websocket import ServerWebSocket
from tests.support import RawWebSocket

TIMEOUT = 5.0


def client_frame(opcode: Opcode, payload: bytes, *, fin: bool = True) -> bytes:
    return Frame(opcode, payload, fin=fin).serialize(mask=True)


# -- FrameReader: turns, fragments, pongs, closing -----------------------------------------------


def test_a_feed_parses_at_most_max_frames_and_resume_goes_on() -> None:
    reader = FrameReader()
    data = b"".join(client_frame(Opcode.BINARY, bytes([n])) for n in range(10))
    assert reader.feed(data, max_frames=4) == [Message(bytes([n]), True) for n in range(4)]
    assert reader.paused and reader.frames == 4
    assert reader.resume(max_frames=4) == [Message(bytes([n]), True) for n in range(4, 8)]
    assert reader.resume(max_frames=4) == [Message(bytes([n]), True) for n in range(8, 10)]
    assert not reader.paused and reader.frames == 10
    assert reader.resume() == []


def test_a_turn_that_ends_on_a_frame_boundary_is_not_paused() -> None:
    reader = FrameReader()
    reader.feed(client_frame(Opcode.BINARY, b"a"), max_frames=1)
    # The frame limit was reached, but no bytes are left: nothing to resume.
    assert not reader.paused
    assert reader.resume() == []
    assert reader.feed(client_frame(Opcode.BINARY, b"b")) == [Message(b"b", True)]


@pytest.mark.parametrize(("fragments", "closed"), [(64, False), (65, True)])
def test_a_message_in_more_than_max_fragments_closes_1009(fragments: int, closed: bool) -> None:
    reader = FrameReader(max_fragments=64)
    frames = [client_frame(Opcode.TEXT, b"x", fin=False)]
    frames += [client_frame(Opcode.CONT, b"x", fin=False) for _ in range(fragments - 2)]
    frames.append(client_frame(Opcode.CONT, b"x"))
    events = reader.feed(b"".join(frames))
    if closed:
        assert events == [Closed(CloseCode.MESSAGE_TOO_BIG, "message in over 64 fragments")]
    else:
        assert events == [Message(b"x" * fragments, False)]


def test_control_frames_inside_a_message_do_not_count_as_its_fragments() -> None:
    reader = FrameReader(max_fragments=2)
    data = (
        client_frame(Opcode.TEXT, b"a", fin=False)
        + client_frame(Opcode.PING, b"1")
        + client_frame(Opcode.PING, b"2")
        + client_frame(Opcode.CONT, b"b")
    )
    assert reader.feed(data) == [PingReceived(b"1"), PingReceived(b"2"), Message(b"ab", False)]


def test_pings_not_yet_answered_get_one_pong_for_the_latest() -> None:
    # RFC 6455 §5.5.3: a pong may answer only the most recent ping.
    reader = FrameReader()
    pings = b"".join(client_frame(Opcode.PING, b"p%d" % n + b"." * 120) for n in range(1000))
    assert len(reader.feed(pings)) == 1000
    assert reader.data_to_send() == encode_pong(b"p999" + b"." * 120)
    assert reader.feed(client_frame(Opcode.PING, b"next")) == [PingReceived(b"next")]
    assert reader.data_to_send() == encode_pong(b"next")


def test_after_the_servers_close_only_closing_read_limit_bytes_are_read() -> None:
    reader = FrameReader(closing_read_limit=100)
    reader.start_close(CloseCode.POLICY_VIOLATION, "connect must come first")
    small = client_frame(Opcode.BINARY, b"x")  # 7 bytes
    assert reader.feed(small * 14) == []  # 98 bytes: still waiting for the client's close
    assert reader.state is ReaderState.CLOSING
    # Past the limit the reader stops waiting: the close it sent is the outcome.
    assert reader.feed(small) == [Closed(CloseCode.POLICY_VIOLATION, "connect must come first")]
    assert reader.state is ReaderState.CLOSED
    assert reader.feed(small) == []


def test_the_clients_close_within_the_closing_read_limit_completes_the_handshake() -> None:
    reader = FrameReader(closing_read_limit=100)
    reader.start_close(CloseCode.GOING_AWAY, "bye")
    data = client_frame(Opcode.BINARY, b"late") + client_frame(Opcode.CLOSE, b"\x03\xe9")
    assert reader.feed(data) == [Closed(CloseCode.GOING_AWAY, "bye")]


def test_frames_dropped_while_closing_are_parsed_in_bounded_turns_too() -> None:
    reader = FrameReader()
    reader.start_close(CloseCode.GOING_AWAY, "bye")
    data = client_frame(Opcode.BINARY, b"x") * 10 + client_frame(Opcode.CLOSE, b"\x03\xe9")
    assert reader.feed(data, max_frames=4) == [] and reader.paused
    assert reader.resume(max_frames=4) == [] and reader.paused
    assert reader.resume(max_frames=4) == [Closed(CloseCode.GOING_AWAY, "bye")]
    assert not reader.paused


def test_frames_after_the_clients_own_close_are_ignored() -> None:
    reader = FrameReader()
    data = client_frame(Opcode.CLOSE, b"\x03\xe8") + client_frame(Opcode.BINARY, b"x") * 100
    assert reader.feed(data) == [Closed(CloseCode.NORMAL_CLOSURE, "")]
    assert reader.feed(client_frame(Opcode.CLOSE, b"\x03\xe8")) == []


# -- FrameBudget ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (now, frames spent) then the allowance at the last now
        ([(0.0, 0)], 8),
        ([(0.0, 20)], 0),
        ([(0.0, 20), (0.1, 0)], 1),
        ([(0.0, 20), (0.5, 0)], 5),
        ([(0.0, 20), (10.0, 0)], 8),  # refilled to the burst, capped per turn
        ([(0.0, 25), (0.5, 0)], 0),  # overspent: the debt is paid first
        ([(5.0, 20), (4.0, 0)], 0),  # a clock going back refills nothing
    ],
)
def test_frame_budget_allowance(steps: list[tuple[float, int]], expected: int) -> None:
    budget = FrameBudget(0.0, rate=10, burst=20, per_read=8)
    for now, frames in steps:
        budget.spend(now, frames)
    assert budget.allowance(steps[-1][0]) == expected


def test_frame_budget_wait_is_the_time_to_one_frame() -> None:
    budget = FrameBudget(0.0, rate=100, burst=10, per_read=10)
    assert budget.wait(0.0) == 0.0
    budget.spend(0.0, 12)
    assert budget.wait(0.0) == pytest.approx(0.03)
    assert budget.allowance(0.03) == 1


# -- request heads -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "max_bytes", "status"),
    [
        ([b"A: 1\r\n"], 8, ""),  # 6 + the blank line's 2
        ([b"A: 1\r\n"], 7, TOO_LARGE),
        ([b"X: %d\r\n" % n for n in range(99)], 16 * 1024, ""),
        ([b"X: " + b"a" * 1000 + b"\r\n"] * 20, 16 * 1024, TOO_LARGE),
        ([b"X: " + b"a" * 100_000 + b"\r\n"], 1_000_000, "Line too long"),
    ],
)
def test_header_block_limits(lines: list[bytes], max_bytes: int, status: str) -> None:
    rfile = io.BytesIO(b"".join(lines) + b"\r\n" + b"GET / HTTP/1.1\r\n")
    assert read_headers(rfile, max_bytes=max_bytes).status == status
    # Never reads more than the limit and one byte (nor the next request).
    assert rfile.tell() <= max_bytes + 1 or status == "Line too long"


@pytest.mark.parametrize(
    "block",
    [
        b"Host: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        b"Cookie: a=1\r\nCOOKIE: b=2\r\nX-Twice: 1\r\nx-twice: 2\r\n",  # joined by pywsgi
        b"X_Forwarded_For: spoof\r\nX-Forwarded-For: real\r\n",  # '_' names are dropped
        b"Content-Type: text/plain\r\nContent-Length: 0\r\nContent_Length: 9\r\n",
        b"X-Folded: one\r\n  two\r\nX-Empty:\r\nX-Colon: a: b \r\n",
        b"",
    ],
)
def test_the_environ_built_from_parsed_headers_is_pywsgis(block: bytes) -> None:
    """The handler takes the environ's HTTP_* entries from the parsed headers instead of
    formatting them as lines for pywsgi to split again: the entries are the same."""
    headers = read_headers(io.BytesIO(block + b"\r\n"))
    assert headers.status == ""
    handler = SimpleNamespace(headers=headers)
    assert ParsedHeadersEnviron._headers(handler) == list(WSGIHandler._headers(handler))


def test_header_lookups_take_the_first_value_whatever_the_case_and_see_deletions() -> None:
    headers = read_headers(io.BytesIO(b"Connection: Upgrade\r\nconnection: close\r\n\r\n"))
    assert headers.get("CONNECTION") == "Upgrade"
    assert "connection" in headers
    del headers["Connection"]
    assert headers.get("connection") is None
    assert headers.get("connection", "none") == "none"


def test_the_handshake_gate_drops_the_oldest_at_its_limit() -> None:
    gate = HandshakeGate(limit=3)
    assert [gate.admit(key) for key in "abc"] == [None, None, None]
    assert gate.admit("d") == "a"
    gate.done("c")
    assert gate.admit("e") is None
    assert [gate.admit(key) for key in "fg"] == ["b", "d"]
    assert len(gate) == 3
    gate.done("nobody")  # a connection that already left: nothing happens
    with pytest.raises(ValueError, match="limit"):
        HandshakeGate(limit=0)


# -- the outbox's pong ---------------------------------------------------------------------------


def test_the_outbox_keeps_one_pong_in_place_of_the_unsent_one() -> None:
    outbox = Outbox(max_frames=10, max_bytes=1000, wake=lambda: None)
    outbox.offer(b"m1")
    outbox.offer_pong(b"pong-1")
    outbox.offer(b"m2")
    outbox.offer_pong(b"pong-22")
    assert outbox.frames == [b"m1", b"pong-22", b"m2"]
    assert outbox.queued_bytes == 2 + 7 + 2
    outbox.put_back(b"tail")
    outbox.offer_pong(b"p3")
    assert outbox.take() == [b"tail", b"m1", b"p3", b"m2"]
    outbox.offer_pong(b"p4")  # once written, the next pong is a new frame
    assert outbox.take() == [b"p4"]


# -- on real sockets -----------------------------------------------------------------------------


@pytest.fixture
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server_side, client_side = socket.socketpair()
    client_side.settimeout(TIMEOUT)
    yield server_side, client_side
    server_side.close()
    client_side.close()


@pytest.mark.slow  # waits out a real deadline
def test_a_client_sending_after_the_close_cannot_hold_the_closer(socket_pair) -> None:
    # RFC 6455 §7.1.1: the server ends the TCP connection. A client that keeps sending instead
    # of closing (from a thread of its own, so its bytes are always there to read) must not
    # keep the closer reading without a yield: others run, and the close ends on time.
    server_side, client_side = socket_pair
    ws = ServerWebSocket(server_side, FrameReader(), close_timeout=1.0)
    raw = _socket.socket(fileno=os.dup(client_side.fileno()))
    raw.setblocking(True)
    burst = client_frame(Opcode.BINARY, b"x") * 2000

    def flood() -> None:
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                raw.sendall(burst)
        except OSError:
            return
        finally:
            raw.close()

    ticks = 0

    def bystander() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            gevent.sleep(0.01)

    sender = gevent.get_hub().threadpool.spawn(flood)
    other = gevent.spawn(bystander)
    closer = gevent.spawn(ws.close, CloseCode.POLICY_VIOLATION, "connect must come first")
    closer.join(timeout=TIMEOUT)
    other.kill()
    assert closer.ready(), "close() still reading from a client that never stops sending"
    assert ws.closed
    assert ticks > 10, f"the closer held the hub: the bystander ran {ticks} times"
    sender.get(timeout=TIMEOUT)


@pytest.mark.slow  # waits out a real deadline
def test_a_connection_that_sends_nothing_gets_408_at_the_deadline(start_node) -> None:
    node = start_node(handshake_timeout=0.3)
    for sent in (b"", b"GET /ws HTTP/1.1\r\nHost: x\r\n"):  # silent, or half a request
        with socket.create_connection(("127.0.0.1", node.port), timeout=TIMEOUT) as sock:
            sock.sendall(sent)
            assert sock.recv(4096).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
            assert sock.recv(4096) == b""
    # The deadline covers the head only (the bystander of the slow-handshake attack chats for
    # seconds with a deadline of one): a client that upgraded in time is served.
    assert node.client("alice").ok("join", room="r")["room"] == "r"


def test_headers_over_max_header_bytes_get_431(start_node) -> None:
    node = start_node(max_header_bytes=1024)
    with socket.create_connection(("127.0.0.1", node.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 2000 + b"\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


def test_malformed_commands_before_connect_are_rate_limited_then_closed(start_node) -> None:
    node = start_node(rate=0.01, burst=2, rate_abuse_rejections=3)
    raw = RawWebSocket("127.0.0.1", node.port)
    for _ in range(2):
        raw.send_obj({"t": "no-such-command", "id": 1})
        assert raw.reply_to(1)["error"]["code"] == "bad_request"
    for n in range(3):
        raw.send_obj({"t": "no-such-command", "id": 10 + n})
        assert raw.reply_to(10 + n)["error"]["code"] == "rate_limited"
    raw.send_obj({"no": "id"})
    assert raw.wait_closed() == CloseCode.POLICY_VIOLATION
    raw.close()


def test_a_kept_alive_connection_idle_past_the_deadline_is_closed_without_a_408(
    start_node,
) -> None:
    node = start_node(handshake_timeout=0.3)
    with socket.create_connection(("127.0.0.1", node.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while b'"alive"' not in answer:
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert sock.recv(4096) == b""  # closed at the deadline, with no 408 for a next request
