"""Test helpers: a real node on a free port and a real WebSocket client that speaks the protocol."""

from __future__ import annotations

import itertools
import json
import socket
import struct
from collections import deque
from typing import Any

import gevent
import msgpack
import websocket  # websocket-client

from actorim.config import Config
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

    def no_event(self, t: str, *, within: float = 0.3, **match: Any) -> None:
        """Assert no such event arrives while the client waits ``within`` seconds."""
        try:
            event = self.event(t, timeout=within, **match)
        except AssertionError:
            return
        raise AssertionError(f"unexpected event {event}")

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
        try:
            self.ws.close()
        except Exception:
            pass


class RunningNode:
    """A node started in this process on a free port, with its URL and a token maker."""

    def __init__(self, config: Config) -> None:
        self.node = Node(config).start()
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
