"""A WebSocket client small enough to run thousands of per process (RFC 6455, client side).

The server's `actorim.protocol.frames` reads masked frames; a client writes masked frames and
reads unmasked ones, so the client side is here: `masked_frame` to write, `ServerFrames` to
read (pure: bytes in, frames out), and `open_websocket` for the opening handshake on a plain
or TLS socket. Masking uses websockets' C ``apply_mask``.

>>> frames = ServerFrames()
>>> frames.feed(b"\\x82\\x03abc\\x89\\x00")
[(2, b'abc'), (9, b'')]
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import socket
import ssl
import struct
from collections.abc import Iterator
from urllib.parse import urlsplit

from websockets.utils import apply_mask

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "HandshakeError",
    "ServerFrames",
    "WebSocketProtocolError",
    "accept_key",
    "close_code",
    "incoming",
    "masked_frame",
    "open_websocket",
]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Largest message accepted from the server: far above any event, bounded all the same."""

RECV_BYTES = 256 * 1024
"""Bytes asked of the socket at a time."""

MAX_HANDSHAKE_BYTES = 16 * 1024
"""Longest HTTP response head accepted for the opening handshake."""

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
_NO_STATUS = 1005  # RFC 6455 §7.1.5: a close frame without a code
_FIN = 0x80
_MASKED = 0x80


class WebSocketProtocolError(Exception):
    """The server broke the framing rules (a masked frame, a bad continuation, too large)."""


class HandshakeError(Exception):
    """The server did not accept the WebSocket; the message says what it answered."""


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer to ``key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()


def masked_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final client frame, masked as RFC 6455 §5.3 requires of every client frame."""
    if mask is None:
        mask = random.getrandbits(32).to_bytes(4, "big")
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", _FIN | opcode, _MASKED | length)
    elif length < 65536:
        head = struct.pack("!BBH", _FIN | opcode, _MASKED | 126, length)
    else:
        head = struct.pack("!BBQ", _FIN | opcode, _MASKED | 127, length)
    return head + mask + apply_mask(payload, mask)


def close_code(payload: bytes) -> int:
    """The code of a close frame's payload (1005 when it carries none)."""
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else _NO_STATUS


class ServerFrames:
    """Turns what the server sends into ``(opcode, payload)`` pairs, fragments reassembled.

    Control frames (ping, pong, close) come out as they arrive, data messages once complete.
    Raises `WebSocketProtocolError` for framing a server must never send.
    """

    __slots__ = ("_buffer", "_fragment_opcode", "_fragments", "_fragments_size", "_max_size")

    def __init__(self, *, max_size: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragments_size = 0
        self._max_size = max_size

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer
        buffer += data
        frames: list[tuple[int, bytes]] = []
        size = len(buffer)
        pos = 0
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            if second & _MASKED:
                raise WebSocketProtocolError("the server sent a masked frame")
            length, head = second & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = (buffer[pos + 2] << 8) | buffer[pos + 3], 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buffer[pos + 2 : pos + 10], "big"), 10
            if length > self._max_size:
                raise WebSocketProtocolError(f"a frame of {length} bytes is too large")
            end = pos + head + length
            if end > size:
                break
            payload = bytes(buffer[pos + head : end])
            pos = end
            self._frame(first & 0x0F, bool(first & _FIN), payload, frames)
        if pos:
            del buffer[:pos]
        return frames

    def _frame(self, opcode: int, fin: bool, payload: bytes, out: list[tuple[int, bytes]]) -> None:
        if opcode >= OP_CLOSE:
            out.append((opcode, payload))
            return
        if opcode == OP_CONT:
            if not self._fragment_opcode:
                raise WebSocketProtocolError("a continuation frame without a message")
        elif self._fragment_opcode:
            raise WebSocketProtocolError("a new message inside a fragmented one")
        elif fin:
            out.append((opcode, payload))
            return
        else:
            self._fragment_opcode = opcode
        self._fragments_size += len(payload)
        if self._fragments_size > self._max_size:
            raise WebSocketProtocolError("a fragmented message is too large")
        self._fragments.append(payload)
        if fin:
            out.append((self._fragment_opcode, b"".join(self._fragments)))
            self._fragments, self._fragment_opcode, self._fragments_size = [], 0, 0


def incoming(sock: socket.socket, frames: ServerFrames, rest: bytes) -> Iterator[tuple[int, bytes]]:
    """Every frame the server sends on ``sock`` (``rest``: bytes read past the handshake), until
    it ends the TCP connection; raises what ``ServerFrames`` and the socket raise."""
    data = rest
    while True:
        if data:
            yield from frames.feed(data)
        data = sock.recv(RECV_BYTES)
        if not data:
            return


def _handshake_request(host: str, port: int, path: str, key: str, secure: bool) -> bytes:
    default_port = 443 if secure else 80
    authority = host if port == default_port else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        authority = f"[{host}]" if port == default_port else f"[{host}]:{port}"
    return (
        f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "User-Agent: actorim-bench\r\n\r\n"
    ).encode()


def check_handshake_response(head: bytes, key: str) -> None:
    """Raise `HandshakeError` unless ``head`` (status line and headers) accepts ``key``."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0]
    parts = status.split(" ", 2)
    if len(parts) < 2 or parts[1] != "101":
        raise HandshakeError(f"the server answered {status!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise HandshakeError("the server answered with a wrong Sec-WebSocket-Accept")


def open_websocket(url: str, *, timeout: float) -> tuple[socket.socket, bytes]:
    """Connect and complete the opening handshake; returns the socket and bytes read past it.

    ``ws://`` and ``wss://`` (certificates checked against the system's authorities).
    Raises OSError for network failures, `HandshakeError` when the server refuses.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if secure:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(_handshake_request(host, port, path, key, secure))
        received = b""
        while b"\r\n\r\n" not in received:
            if len(received) > MAX_HANDSHAKE_BYTES:
                raise HandshakeError("the handshake response is too long")
            chunk = sock.recv(4096)
            if not chunk:
                raise HandshakeError("the server closed the connection during the handshake")
            received += chunk
        head, rest = received.split(b"\r\n\r\n", 1)
        check_handshake_response(head, key)
    except BaseException:
        sock.close()
        raise
    return sock, rest
