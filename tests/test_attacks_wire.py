"""Attacks on the WebSocket read path: the handshake, the framing and the closing handshake.

Each test runs the server in a process of its own, an attacker in another, and a bystander pair
chatting beside them: the attacker must get its status or close code within bounded time, and
the bystanders' messages must keep flowing (``Bystander.assert_flowing`` prints the figures).

The attack functions run in a child process (``spawn_attack``) on plain blocking sockets; every
loop is bounded by a count or a deadline. An attack exits 0 when the server did what it must
(cut the attacker off, answered its status) and 1 when its own deadline passed first.
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import resource
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import gevent
import msgpack
import pytest

from tests.attack import Attack, AttackServer, Bystander, Latencies, attack_server, spawn_attack
from tests.support import (
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_PING,
    masked_frame,
)

pytestmark = (
    pytest.mark.process
)  # each test runs the server, and most an attacker, in processes of their own

OPCODE_CONT = 0x0

SEED = int(os.environ.get("ACTORIM_TEST_SEED", "20261202"))
"""Seeds the attackers' random choices (printed by each test that makes some)."""


# -- attacker side: plain blocking sockets in a child process ----------------------------------


def _connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _upgrade(port: int) -> socket.socket:
    """A WebSocket connection, handshake done; bytes after the 101 are left in the socket."""
    sock = _connect(port)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise ConnectionError("closed during the handshake")
        head += byte
    assert b" 101 " in head.split(b"\r\n", 1)[0], head
    return sock


def _command(obj: dict) -> bytes:
    return masked_frame(OPCODE_BINARY, msgpack.packb(obj, use_bin_type=True))


def _status_line(sock: socket.socket) -> bytes:
    """The status line the server answered on ``sock`` (b"" if it just closed)."""
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


def _read_until_close(sock: socket.socket, deadline: float) -> int | None:
    """Read frames until the server's close frame; its code, or None if the stream ended."""
    buffer = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except OSError:
            return None
        if not chunk:
            return None
        buffer += chunk
        while len(buffer) >= 2:
            length, offset = buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    break
                length, offset = struct.unpack("!H", buffer[2:4])[0], 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                length, offset = struct.unpack("!Q", buffer[2:10])[0], 10
            if len(buffer) < offset + length:
                break
            opcode, payload = buffer[0] & 0x0F, buffer[offset : offset + length]
            buffer = buffer[offset + length :]
            if opcode == OPCODE_CLOSE:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
    return None


def _send_until_cut(sock: socket.socket, chunk: bytes, deadline: float) -> bool:
    """Send ``chunk`` again and again; True once the server cut the connection."""
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            sock.sendall(chunk)
        except TimeoutError:
            continue  # the server stopped reading for a moment: try again
        except OSError:
            return True
    return False


def flood_after_close(port: int, seconds: float) -> None:
    """Make the server close (a first command that is not connect), then keep sending frames."""
    sock = _upgrade(port)
    sock.sendall(_command({"t": "ping", "id": 1}))
    # The close frame has been sent once the server's answer arrives; from then on, small frames.
    code = _read_until_close(sock, time.monotonic() + 5)
    print(f"flood_after_close: the server closed with {code}", flush=True)
    batch = b"".join(masked_frame(OPCODE_BINARY, b"x") for _ in range(2000))
    cut = _send_until_cut(sock, batch, time.monotonic() + seconds)
    print(f"flood_after_close: cut off by the server: {cut}", flush=True)
    sys.exit(0 if cut else 1)


def slow_handshakes(port: int, count: int, seconds: float, seed: int) -> None:
    """``count`` requests whose headers trickle in one byte at a time, never finished.

    Exits 0 once the server has closed every one of them, 1 if some are still open at the end.
    """
    rng = random.Random(seed)
    socks = []
    for _ in range(count):
        sock = _connect(port)
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        socks.append(sock)
    deadline = time.monotonic() + seconds
    open_socks = list(socks)
    while open_socks and time.monotonic() < deadline:
        for sock in list(open_socks):
            try:
                sock.sendall(bytes([rng.choice(b"abcdefghijklmnopqrstuvwxyz")]))
                sock.settimeout(0.0)
                with contextlib.suppress(BlockingIOError):
                    if sock.recv(4096) == b"":
                        raise ConnectionResetError
            except OSError:
                open_socks.remove(sock)
                sock.close()
        time.sleep(0.1)
    print(f"slow_handshakes: {len(open_socks)} of {count} still open", flush=True)
    sys.exit(0 if not open_socks else 1)


def _probe_fragments(port: int, token: str, fragments: int) -> int | None:
    """One message of ``fragments`` one-byte fragments; the close code it earns, if any."""
    sock = _upgrade(port)
    sock.sendall(_command({"t": "connect", "id": 1, "token": token}))
    payload = msgpack.packb({"t": "ping", "id": 2}, use_bin_type=True).ljust(fragments, b"\xc0")
    frames = [masked_frame(OPCODE_BINARY, payload[:1], fin=False)]
    frames += [
        masked_frame(OPCODE_CONT, payload[n : n + 1], fin=False) for n in range(1, fragments - 1)
    ]
    frames.append(masked_frame(OPCODE_CONT, payload[-1:], fin=True))
    with contextlib.suppress(OSError):
        sock.sendall(b"".join(frames))
        # A barrier: the reply to this ping comes after whatever the message earned.
        sock.sendall(_command({"t": "ping", "id": 3}))
    code = _read_until_close(sock, time.monotonic() + 3)
    sock.close()
    return code


def oversized_heads(port: int, count: int, rounds: int) -> None:
    """``count`` requests at once, each with headers over the total limit, ``rounds`` times.

    Exits 0 if every one was answered 431.
    """
    lines = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"a" * 1000) for n in range(60))
    request = b"GET /ws HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n"
    statuses: dict[bytes, int] = {}
    for _ in range(rounds):
        socks = [_connect(port) for _ in range(count)]
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.sendall(request)
        for sock in socks:
            status = _status_line(sock)
            statuses[status] = statuses.get(status, 0) + 1
            sock.close()
    print(f"oversized_heads: {statuses}", flush=True)
    sys.exit(0 if list(statuses) == [b"HTTP/1.1 431 Request Header Fields Too Large"] else 1)


def held_handshakes(port: int, count: int, seconds: float, ready: str) -> None:
    """Open ``count`` connections that send half a request line and hold them ``seconds``;
    the file ``ready`` appears once they are all open."""
    held = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            sock = _connect(port)
            sock.sendall(b"GET /ws HTTP/1.1\r\n")
            held.append(sock)
    print(f"held_handshakes: {len(held)} connections opened", flush=True)
    Path(ready).touch()
    time.sleep(seconds)
    sys.exit(0)


def fragment_flood(port: int, tokens: list[str], seconds: float) -> None:
    """Connections that send messages as endless one-byte fragments, reconnecting when cut.

    Exits 0 if a message of 1,000 fragments is refused with 1009 (the flood itself only loads
    the server: the bystander measures what it costs everyone else).
    """
    code = _probe_fragments(port, tokens[0], 1000)
    print(f"fragment_flood: a 1000-fragment message earned close code {code}", flush=True)
    first = masked_frame(OPCODE_BINARY, b"\x81", fin=False)
    middle = b"".join(masked_frame(OPCODE_CONT, b"\xc0", fin=False) for _ in range(5000))

    def open_one(token: str) -> socket.socket:
        sock = _upgrade(port)
        sock.sendall(_command({"t": "connect", "id": 1, "token": token}) + first)
        return sock

    conns = {token: open_one(token) for token in tokens}
    deadline = time.monotonic() + seconds
    cut = 0
    while time.monotonic() < deadline:
        for token, sock in list(conns.items()):
            sock.settimeout(0.05)
            try:
                sock.sendall(middle)
            except TimeoutError:
                continue
            except OSError:
                sock.close()
                cut += 1
                conns[token] = open_one(token)
    print(f"fragment_flood: {cut} connections cut off in {seconds} s", flush=True)
    sys.exit(0 if code == 1009 else 1)


def ping_flood(port: int, token: str, megabytes: int, seconds: float, reads: bool) -> None:
    """Pings with 125-byte payloads until ``megabytes`` are sent; the pongs are read only if
    ``reads`` (so that the server's writes never hold it back)."""
    sock = _upgrade(port)
    sock.sendall(_command({"t": "connect", "id": 1, "token": token}))
    batch = b"".join(masked_frame(OPCODE_PING, b"p" * 125) for _ in range(1000))
    sent = 0
    deadline = time.monotonic() + seconds
    sock.settimeout(0.1)
    while sent < megabytes * 1024 * 1024 and time.monotonic() < deadline:
        try:
            sock.sendall(batch)
        except TimeoutError:
            continue  # the server is throttling this connection
        except OSError:
            break
        sent += len(batch)
        if reads and _read_available(sock) is None:
            break
    print(f"ping_flood: sent {sent / 1024 / 1024:.1f} MiB of pings", flush=True)
    # The attacker vanishes with a reset: what its kernel still held for the throttled server
    # (megabytes) is dropped, instead of trickling in at the frame rate long after the flood.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    sys.exit(0)


def _read_available(sock: socket.socket) -> bytes | None:
    """Everything the socket holds now; None once the stream ended."""
    data = b""
    sock.settimeout(0.0)
    try:
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return None
            data += chunk
    except BlockingIOError:
        return data
    except OSError:
        return None
    finally:
        sock.settimeout(0.2)


def bad_command_flood(port: int, seconds: float) -> None:
    """Malformed commands, before connect, as fast as possible; exits 0 once closed 1008."""
    sock = _upgrade(port)
    batch = b"".join(_command({"t": "no-such-command", "id": n}) for n in range(500))
    batch += b"".join(_command({"id": "not-a-number"}) for _ in range(500))
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    code = None
    buffer = b""
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            sock.sendall(batch)
        chunk = _read_available(sock)
        if chunk is None:
            break
        if chunk:
            buffer = (buffer + chunk)[-256:]
            close_at = buffer.rfind(b"\x88")
            if close_at >= 0 and len(buffer) >= close_at + 4:
                code = struct.unpack("!H", buffer[close_at + 2 : close_at + 4])[0]
                if code == 1008:
                    break
    print(f"bad_command_flood: closed with {code}", flush=True)
    sys.exit(0 if code == 1008 else 1)


# -- the tests ---------------------------------------------------------------------------------


def _outcome(bystander: Bystander, attack: Attack, timeout: float) -> tuple[int | None, Latencies]:
    """The attack's exit code (None if it outlived ``timeout``) and the bystander's figures,
    printed before anything is asserted so that a failing run records them too."""
    try:
        code: int | None = attack.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    bystander.measure_at_least()
    latencies = bystander.stop()
    print(latencies.summary())
    return code, latencies


def _peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


def _await_file(path: Path, timeout: float = 15.0) -> None:
    """Wait until the attacker says it is ready by creating ``path``."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        gevent.sleep(0.05)


def _open_connections(server: AttackServer) -> float:
    with urllib.request.urlopen(f"{server.http}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("actorim_connections{")
    )


def _await_connections(server: AttackServer, count: int, timeout: float = 15.0) -> None:
    """Wait until the server counts ``count`` open connections (it read every earlier byte)."""
    deadline = time.monotonic() + timeout
    while _open_connections(server) != count:
        assert time.monotonic() < deadline, f"still {_open_connections(server)} connections"
        gevent.sleep(0.05)


def test_a_client_sending_after_the_close_is_cut_off_and_stalls_nobody(tmp_path: Path) -> None:
    with attack_server(tmp_path) as server:
        bystander = Bystander(server).start()
        with spawn_attack(
            "tests.test_attacks_wire:flood_after_close", port=server.port, seconds=15
        ) as attack:
            # Cut off within the closing handshake's timeout (2 s), long before its 15 s.
            code, latencies = _outcome(bystander, attack, timeout=25)
        assert code == 0, "the closing connection was not cut off"
        latencies.assert_flowing()


def test_unfinished_handshakes_are_closed_at_their_deadline(tmp_path: Path) -> None:
    print(f"seed {SEED}")
    with attack_server(tmp_path, "--handshake-timeout", "1") as server:
        bystander = Bystander(server).start()
        with spawn_attack(
            "tests.test_attacks_wire:slow_handshakes",
            port=server.port,
            count=50,
            seconds=10,
            seed=SEED,
        ) as attack:
            code, latencies = _outcome(bystander, attack, timeout=20)
        assert code == 0, "handshakes trickling in byte by byte stayed open"
        latencies.assert_flowing()


def test_request_headers_over_the_total_limit_get_431(tmp_path: Path) -> None:
    # Each header line is far under the per-line limit; together they pass the total.
    with attack_server(tmp_path, "--max-header-bytes", "8192") as server:
        bystander = Bystander(server).start()
        with spawn_attack(
            "tests.test_attacks_wire:oversized_heads", port=server.port, count=20, rounds=20
        ) as attack:
            code, latencies = _outcome(bystander, attack, timeout=30)
        assert code == 0, "requests over the header limit were not all answered 431"
        with _connect(server.port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _status_line(sock) == b"HTTP/1.1 200 OK"
        latencies.assert_flowing()


def test_handshakes_over_the_cap_make_room_for_new_clients(tmp_path: Path) -> None:
    # The server gets a low descriptor limit: handshakes an attacker leaves open must not use
    # up the descriptors new clients need.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        server_cm = attack_server(tmp_path, "--max-handshakes", "64", "--handshake-timeout", "30")
        server = server_cm.__enter__()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        bystander = Bystander(server).start()
        ready = tmp_path / "held"
        with spawn_attack(
            "tests.test_attacks_wire:held_handshakes",
            port=server.port,
            count=400,
            seconds=30,
            ready=str(ready),
        ):
            _await_file(ready)
            # More half-sent requests than the server has descriptors, held longer than the
            # newcomer's own 5 s timeout: it gets in all the same.
            newcomer = server.client("newcomer")
            newcomer.ok("join", room="lobby")
            newcomer.close()
            bystander.measure_at_least()
            bystander.stop().assert_flowing()
    finally:
        server_cm.__exit__(None, None, None)


def test_fragment_floods_are_closed_and_stall_nobody(tmp_path: Path) -> None:
    with attack_server(tmp_path) as server:
        bystander = Bystander(server).start()
        tokens = [server.token(f"fragmenter{n}") for n in range(4)]
        with spawn_attack(
            "tests.test_attacks_wire:fragment_flood", port=server.port, tokens=tokens, seconds=2
        ) as attack:
            code, latencies = _outcome(bystander, attack, timeout=25)
        assert code == 0, "a message in 1000 fragments was not refused with 1009"
        latencies.assert_flowing()


@pytest.mark.parametrize("reads", [False, True], ids=["never-reads", "reads-pongs"])
def test_a_ping_flood_costs_bounded_memory_and_stalls_nobody(tmp_path: Path, reads: bool) -> None:
    with attack_server(tmp_path) as server:
        bystander = Bystander(server).start()
        assert server.proc is not None
        before = _peak_rss_mib(server.proc.pid)
        with spawn_attack(
            "tests.test_attacks_wire:ping_flood",
            port=server.port,
            token=server.token("pinger"),
            megabytes=30,
            seconds=2,
            reads=reads,
        ) as attack:
            code, latencies = _outcome(bystander, attack, timeout=20)
        # The attacker is gone once the server has read all it sent: only the bystanders remain.
        _await_connections(server, 0)
        grown = _peak_rss_mib(server.proc.pid) - before
        print(f"the server's peak memory grew by {grown:.1f} MiB during the ping flood")
        assert code == 0
        # The pongs owed to a client that never reads are one frame, not one per ping.
        assert grown < 10, f"the server grew by {grown:.1f} MiB"
        latencies.assert_flowing()


def test_malformed_commands_count_against_the_rate_limit(tmp_path: Path) -> None:
    with attack_server(tmp_path) as server:
        bystander = Bystander(server).start()
        with spawn_attack(
            "tests.test_attacks_wire:bad_command_flood", port=server.port, seconds=10
        ) as attack:
            code, latencies = _outcome(bystander, attack, timeout=20)
        assert code == 0, "a flood of malformed commands was never closed 1008"
        latencies.assert_flowing()
