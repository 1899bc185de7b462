"""Test helpers: a real node on a free port and a real WebSocket client that speaks the protocol."""

from __future__ import annotations

import base64
import contextlib
import http.client
import itertools
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import gevent
import msgpack
import websocket  # websocket-client
from websockets.utils import apply_mask

from actorim.config import Config

if TYPE_CHECKING:
    # Imported where a node is started: attacker processes load this module for its clients,
    # and the node's whole stack would add a fifth of a second to each one's start.
    from actorim.domain.hooks import Hooks
    from actorim.node import Node

DEFAULT_TIMEOUT = 5.0


class Closed(Exception):
    """The server closed the connection; ``code`` and ``reason`` are what it sent."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code} {reason!r}")
        self.code = code
        self.reason = reason


class Client:
    """A protocol client over websocket-client; binary MessagePack frames unless ``json``."""

    def __init__(self, url: str, *, json_frames: bool = False, origin: str | None = None):
        options: dict[str, Any] = {"timeout": DEFAULT_TIMEOUT}
        if origin is not None:
            options["origin"] = origin
        else:
            options["suppress_origin"] = True
        self.ws = websocket.create_connection(url, **options)
        self.json = json_frames
        self.ids = itertools.count(1)
        self.events: deque[dict[str, Any]] = deque()
        self.replies: dict[int, dict[str, Any]] = {}
        self.closed: Closed | None = None
        self.user: str | None = None

    # -- frames ----------------------------------------------------------------------------

    def send_obj(self, obj: Any) -> None:
        if self.json:
            self.ws.send(json.dumps(obj))
        else:
            self.ws.send_binary(msgpack.packb(obj, use_bin_type=True))

    def _read(self, timeout: float) -> dict[str, Any]:
        if self.closed is not None:
            raise self.closed
        self.ws.settimeout(timeout)
        try:
            opcode, data = self.ws.recv_data(control_frame=False)
        except websocket.WebSocketConnectionClosedException:
            self.closed = Closed(None, "")
            raise self.closed from None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
            self.closed = Closed(code, data[2:].decode("utf-8", "replace"))
            raise self.closed
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return msgpack.unpackb(data, raw=False, strict_map_key=False)
        return json.loads(data)

    def _pump(self, timeout: float) -> None:
        frame = self._read(timeout)
        if frame.get("t") == "reply":
            self.replies[frame["id"]] = frame
        else:
            self.events.append(frame)

    # -- commands and events -----------------------------------------------------------------

    def request(self, t: str, *, timeout: float = DEFAULT_TIMEOUT, **args: Any) -> dict[str, Any]:
        """Send a command and return its whole reply frame."""
        command_id = next(self.ids)
        self.send_obj({"t": t, "id": command_id, **args})
        return self.reply_to(command_id, timeout=timeout)

    def reply_to(self, command_id: int, *, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        with gevent.Timeout(timeout, AssertionError(f"no reply to command {command_id}")):
            while command_id not in self.replies:
                self._pump(timeout)
        return self.replies.pop(command_id)

    def ok(self, t: str, **args: Any) -> dict[str, Any]:
        """Send a command that must succeed; return its ``data``."""
        reply = self.request(t, **args)
        assert reply["ok"], f"{t} failed: {reply}"
        return reply["data"]

    def error(self, t: str, **args: Any) -> dict[str, Any]:
        """Send a command that must fail; return its ``error``."""
        reply = self.request(t, **args)
        assert not reply["ok"], f"{t} unexpectedly succeeded: {reply}"
        return reply["error"]

    def event(self, t: str | None = None, *, timeout: float = DEFAULT_TIMEOUT, **match: Any):
        """The next event of type ``t`` (matching ``match``); other events stay queued."""
        with gevent.Timeout(timeout, AssertionError(f"no {t} event {match}")):
            while True:
                for event in self.events:
                    if (t is None or event.get("t") == t) and all(
                        event.get(k) == v for k, v in match.items()
                    ):
                        self.events.remove(event)
                        return event
                self._pump(timeout)

    def nothing_before_pong(self, t: str, **match: Any) -> None:
        """Assert that no event of type ``t`` (matching ``match``) came before a ``ping``'s reply.

        A barrier instead of a time window: the ping is sent now, and the server answers it after
        everything it queued to this connection before, so an event the action under test would
        have caused (for this connection, by the time the action's own reply was sent) is read
        before the pong. Events that travel another path (a room's fan-out, another node) need a
        barrier on that path instead: a later message through it, then :func:`queued`.
        """
        self.ok("ping")
        unexpected = queued(self, t, **match)
        assert not unexpected, f"unexpected {t} event before the ping's reply: {unexpected}"

    def wait_closed(self, *, timeout: float = DEFAULT_TIMEOUT) -> Closed:
        """Read until the server closes; return its close code and reason."""
        with gevent.Timeout(timeout, AssertionError("the server did not close")):
            while True:
                try:
                    self._pump(timeout)
                except Closed as closed:
                    return closed

    def connect(self, token: str) -> dict[str, Any]:
        data = self.ok("connect", token=token)
        self.user = data["user"]
        return data

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()


class RunningNode:
    """A node started in this process on a free port, with its URL and a token maker."""

    def __init__(self, config: Config, *, hooks: Hooks | None = None) -> None:
        from actorim.node import Node

        self.node: Node = Node(config, hooks=hooks).start()
        self.host, self.port = self.node.listen("127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.http = f"http://127.0.0.1:{self.port}"
        self.clients: list[Client] = []

    def token(self, user: str, **kwargs: Any) -> str:
        return self.node.token(user, **kwargs)

    def client(self, user: str | None = None, *, json_frames: bool = False, **kw: Any) -> Client:
        """A client, connected as ``user`` when given."""
        client = Client(self.url, json_frames=json_frames, **kw)
        self.clients.append(client)
        if user is not None:
            client.connect(self.token(user))
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.node.stop(drain=False)


SERVER_START_S = 30.0
"""How long a server process may take to listen and be ready: an import and a node start take
well under a second; the rest is room for a machine busy with other tests."""


def read_port_file(path: Path, proc: subprocess.Popen[Any]) -> int:
    """The port a server started with ``--port-file path`` wrote once it listened (polled: the
    file appearing is the only sign); fails if the process exits first or takes too long."""
    deadline = time.monotonic() + SERVER_START_S
    while True:
        try:
            return int(path.read_text())
        except (FileNotFoundError, ValueError):
            if proc.poll() is not None:
                raise AssertionError(f"the server exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise AssertionError(f"the server wrote no {path}") from None
            gevent.sleep(0.02)


def free_port() -> int:
    """A loopback port free a moment ago, for a program that cannot listen on port 0 and say
    which port it got (redis-server, nginx, ``--workers`` sharing one port). Another process
    may take it before the program binds it: the caller retries with a new one on a bind
    failure. Anything that can report its port listens on port 0 instead."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


BIND_TRIES = 5
"""Ports tried before a program that must be given one is declared unable to start: a port
taken between the pick and the bind is rare, five in a row means something else is wrong."""


def start_on_a_picked_port(make: Callable[[int], ServerProcess]) -> ServerProcess:
    """Start the server ``make(port)`` returns, for a test whose flags name the port (a public
    URL): on a port picked beforehand, and on another if that one was taken meanwhile."""
    for _ in range(BIND_TRIES - 1):
        server = make(free_port())
        try:
            server.start()
        except PortTaken:
            continue
        return server
    server = make(free_port())
    server.start()
    return server


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on for as long as the block runs: bound (so that nobody
    else gets it) but not listening, so a connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# -- robustness helpers: polling state, a bare-socket WebSocket client ---------------------------


def wait_until(
    predicate: Any, *, timeout: float = DEFAULT_TIMEOUT, interval: float = 0.01, what: str = ""
) -> None:
    """Poll ``predicate`` (a check of server state) until it holds; fail after ``timeout``."""
    with gevent.Timeout(timeout, AssertionError(f"timed out waiting for {what or predicate}")):
        while not predicate():
            gevent.sleep(interval)


OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def masked_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One client frame, masked as RFC 6455 §5.3 requires of every client frame."""
    mask = random.randbytes(4)  # from the seed conftest prints, so a failure can be replayed
    length = len(payload)
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        head = struct.pack("!BB", first, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    return head + mask + apply_mask(payload, mask)


class RawWebSocket:
    """A WebSocket client on a bare socket: its own handshake and masked frames.

    Nothing is read unless the test asks, pings are not answered unless the test answers them,
    and ``rcvbuf`` shrinks the socket's receive buffer (set before connecting, so the TCP
    window stays small): the client a misbehaving or slow peer looks like to the server.
    """

    def __init__(self, host: str, port: int, *, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(DEFAULT_TIMEOUT)
        self.sock.connect((host, port))
        self.buffer = b""
        self.ids = itertools.count(1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed during the handshake")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(f"handshake refused: {status!r}")

    # -- writing -------------------------------------------------------------------------------

    def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        self.sock.sendall(masked_frame(opcode, payload, fin=fin))

    def send_obj(self, obj: Any) -> None:
        self.send_frame(OPCODE_BINARY, msgpack.packb(obj, use_bin_type=True))

    def send_command(self, t: str, **args: Any) -> int:
        command_id = next(self.ids)
        self.send_obj({"t": t, "id": command_id, **args})
        return command_id

    # -- reading -------------------------------------------------------------------------------

    def _fill(self, size: int) -> bool:
        while len(self.buffer) < size:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return False
            self.buffer += chunk
        return True

    def read_frame(self, *, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, bytes] | None:
        """The next frame as ``(opcode, payload)``; None once the TCP connection ended."""
        with gevent.Timeout(timeout, AssertionError("no frame from the server")):
            if not self._fill(2):
                return None
            first, second = self.buffer[0], self.buffer[1]
            length, offset = second & 0x7F, 2
            if length == 126:
                if not self._fill(4):
                    return None
                length, offset = struct.unpack("!H", self.buffer[2:4])[0], 4
            elif length == 127:
                if not self._fill(10):
                    return None
                length, offset = struct.unpack("!Q", self.buffer[2:10])[0], 10
            if not self._fill(offset + length):
                return None
            payload = self.buffer[offset : offset + length]
            self.buffer = self.buffer[offset + length :]
            return first & 0x0F, payload

    def reply_to(self, command_id: int, *, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """Read (dropping events and control frames) until the reply to ``command_id``."""
        with gevent.Timeout(timeout, AssertionError(f"no reply to command {command_id}")):
            while True:
                frame = self.read_frame(timeout=timeout)
                if frame is None:
                    raise Closed(None, "")
                opcode, payload = frame
                if opcode == OPCODE_CLOSE:
                    raise Closed(struct.unpack("!H", payload[:2])[0], payload[2:].decode())
                if opcode != OPCODE_BINARY:
                    continue
                obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
                if obj.get("t") == "reply" and obj.get("id") == command_id:
                    return obj

    def ok(self, t: str, **args: Any) -> dict[str, Any]:
        reply = self.reply_to(self.send_command(t, **args))
        assert reply["ok"], f"{t} failed: {reply}"
        return reply["data"]

    def wait_closed(self, *, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        """Read until the server closes: its close code, or None if the TCP stream just ended."""
        with gevent.Timeout(timeout, AssertionError("the server did not close")):
            while True:
                frame = self.read_frame(timeout=timeout)
                if frame is None:
                    return None
                opcode, payload = frame
                if opcode == OPCODE_CLOSE:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def close(self) -> None:
        self.sock.close()


# -- protocol-level checks: queued events, raw frames, plain HTTP, handshakes -----------------


def queued(client: Client, t: str, **match: Any) -> list[dict[str, Any]]:
    """Events of type ``t`` (matching ``match``) the client has read but nobody has taken.

    Paired with a later event that the server must send after the one in question, this proves
    an event was *not* sent without waiting for a timeout.
    """
    return [
        event
        for event in client.events
        if event.get("t") == t and all(event.get(k) == v for k, v in match.items())
    ]


def stored_events(
    client: Client, room: str, kinds: tuple[str, ...], *, until: int
) -> list[dict[str, Any]]:
    """The room's events of ``kinds`` (those that take a seq: ``msg``, ``edit``, ...), taken in
    the order they came, up to seq ``until``; other events stay queued."""
    got: list[dict[str, Any]] = []
    with gevent.Timeout(DEFAULT_TIMEOUT, AssertionError(f"no stored event up to seq {until}")):
        while not got or got[-1]["seq"] < until:
            found = next(
                (e for e in client.events if e.get("t") in kinds and e.get("room") == room), None
            )
            if found is None:
                client._pump(DEFAULT_TIMEOUT)
                continue
            client.events.remove(found)
            got.append(found)
    return got


def joined(node: RunningNode, user: str, room: str = "lobby") -> Client:
    """A client of ``user`` on ``node`` that has joined ``room``."""
    client = node.client(user)
    client.ok("join", room=room)
    return client


def read_frame(client: Client, *, timeout: float = DEFAULT_TIMEOUT) -> tuple[bool, bytes]:
    """The next data frame as it came off the wire: whether it was binary, and its payload.

    Reads past the client's queues, so use it only when nothing else is expected.
    """
    client.ws.settimeout(timeout)
    opcode, data = client.ws.recv_data(control_frame=False)
    assert opcode in (websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_TEXT), opcode
    return opcode == websocket.ABNF.OPCODE_BINARY, data


def http_get(
    url: str, *, headers: dict[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT
) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP GET on a new connection: status, headers (lower-case names) and body."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def handshake_status(url: str, *, origin: str | None = None) -> int:
    """The HTTP status the server answers a WebSocket opening handshake with (101: accepted)."""
    options: dict[str, Any] = {"timeout": DEFAULT_TIMEOUT}
    if origin is not None:
        options["origin"] = origin
    else:
        options["suppress_origin"] = True
    try:
        ws = websocket.create_connection(url, **options)
    except websocket.WebSocketBadStatusException as exc:
        return exc.status_code
    ws.close()
    return 101


# -- a server in a child process: killed with SIGKILL, paused with SIGSTOP, restarted ----------


class PortTaken(AssertionError):
    """A server given a port beforehand could not bind it: another process had taken it."""


class ServerProcess:
    """``actorim serve`` as a child process, with a fixed secret and data dir.

    The first :meth:`start` listens on port 0 and reads the port the kernel picked from the
    server's ``--port-file``: no other process can take it between a pick and the bind.
    :meth:`start` again after :meth:`kill` restarts it on the same port and data dir.
    """

    def __init__(
        self, data_dir: Path, *, secret: str, args: tuple[str, ...] = (), port: int = 0
    ) -> None:
        self.data_dir = data_dir
        self.secret = secret
        self.args = args
        self.port = port  # 0 until the first start has read it back
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "ACTORIM_SECRET": self.secret, "ACTORIM_DATA_DIR": str(self.data_dir)}
        env.pop("PORT", None)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.data_dir / "actorim.port"
        port_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "actorim",
                "serve",
                "--port",
                str(self.port),
                "--port-file",
                str(port_file),
                "--store",
                "sqlite",
                "--log-level",
                "WARNING",
                *self.args,
            ],
            env=env,
        )
        try:
            self.port = read_port_file(port_file, self.proc)
        except AssertionError:
            # Imported here: importing actorim.cli monkey-patches, and attacker processes import
            # this module to stay on plain blocking sockets.
            from actorim.cli import EXIT_CANNOT_LISTEN

            if self.proc.poll() == EXIT_CANNOT_LISTEN:
                raise PortTaken(f"port {self.port} was taken before the server bound it") from None
            raise
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError("the server did not come up") from None
                gevent.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM, as a restart does: the server drains (closes its connections with 1012 over
        ``drain_seconds``) and exits; waits for the exit."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)

    def pause(self) -> None:
        """SIGSTOP: the process hangs with its TCP connections open, as a wedged server does."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill it if it still runs (a paused process is woken so that it can die)."""
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.kill()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"
