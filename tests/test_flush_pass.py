"""The flush pass (``actorim.runtime.link``): the links a fan-out woke are written by one hub
callback, each client getting its frames whole and in order, and one link's failure in the
pass keeps no other link's frames back."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from actorim.domain.ratelimit import RateLimiter
from actorim.protocol.frames import FrameReader
from actorim.protocol.wire import WireFrame
from actorim.runtime.link import Link
from actorim.web.websocket import ServerWebSocket

TIMEOUT = 5.0
MEMBERS = 5


class _FailingBacklog:
    """An offline backlog whose next page fails to load."""

    def hold(self, mid: str, frame: WireFrame) -> bool:
        return False

    def drained(self) -> None:
        raise RuntimeError("the backlog's next page could not be read")


@pytest.fixture
def members() -> Iterator[list[tuple[Link, socket.socket]]]:
    """Links over real socket pairs: the link writes to one end, the test reads the other."""
    pairs = [socket.socketpair() for _ in range(MEMBERS)]
    links = []
    for server_side, client_side in pairs:
        client_side.settimeout(TIMEOUT)
        ws = ServerWebSocket(server_side, FrameReader())
        links.append(
            (Link(ws, limiter=RateLimiter(now=0.0), max_frames=64, max_bytes=1 << 20), client_side)
        )
    yield links
    for server_side, client_side in pairs:
        server_side.close()
        client_side.close()


def _read(client_side: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = client_side.recv(size - len(data))
        assert chunk, "the connection closed before its frames arrived"
        data += chunk
    return data


def _fan_out(links: list[Link], *frames: WireFrame) -> None:
    """What a room does: offer each frame to every member, without yielding in between."""
    for frame in frames:
        for link in links:
            link.send_frame(frame)


def test_frames_fanned_out_together_reach_every_member_whole_and_in_order(members) -> None:
    first, second = WireFrame({"type": "msg", "seq": 1}), WireFrame({"type": "msg", "seq": 2})
    _fan_out([link for link, _ in members], first, second)
    expected = first.bytes_for(members[0][0].encoding) + second.bytes_for(members[0][0].encoding)
    for _, client_side in members:
        assert _read(client_side, len(expected)) == expected


def test_a_link_failing_in_the_flush_pass_keeps_no_other_members_frames_back(members) -> None:
    failing, _ = members[1]
    failing.offline = _FailingBacklog()
    frame = WireFrame({"type": "msg", "seq": 1})
    expected = frame.bytes_for(failing.encoding)
    _fan_out([link for link, _ in members], frame)
    for _, client_side in members:
        assert _read(client_side, len(expected)) == expected
    # The failing link is flushed again on its next frame: the pass cleared its flag.
    later = WireFrame({"type": "msg", "seq": 2})
    _fan_out([failing], later)
    assert _read(members[1][1], len(expected)) == later.bytes_for(failing.encoding)


def _ready(client_side: socket.socket) -> bytes:
    """What has reached the client's end so far, without waiting (and without letting the hub
    run a flush pass)."""
    client_side.setblocking(False)
    try:
        return client_side.recv(1 << 16)
    except BlockingIOError:
        return b""
    finally:
        client_side.settimeout(TIMEOUT)


def test_a_frame_offered_now_to_a_link_with_nothing_queued_is_written_at_once(members) -> None:
    link, client_side = members[0]
    frame = WireFrame({"type": "msg", "seq": 1}).bytes_for(link.encoding)
    link.offer_now(frame)
    assert _ready(client_side) == frame
    assert not link.outbox.frames and not link.flush_scheduled


def test_a_frame_offered_now_behind_queued_frames_goes_out_after_them(members) -> None:
    link, client_side = members[0]
    first, second = WireFrame({"type": "msg", "seq": 1}), WireFrame({"type": "msg", "seq": 2})
    link.send_frame(first)
    link.offer_now(second.bytes_for(link.encoding))
    assert _ready(client_side) == b"", "nothing may overtake the frame queued first"
    expected = first.bytes_for(link.encoding) + second.bytes_for(link.encoding)
    assert _read(client_side, len(expected)) == expected
