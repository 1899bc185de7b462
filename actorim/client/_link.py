"""One WebSocket to the server on gevent sockets, one protocol map per message.

The WebSocket protocol is websockets' sans-I/O :class:`~websockets.client.ClientProtocol`
(handshake, masking of every client frame, pongs, the closing handshake); this module adds the
socket, a lock so that frames from several greenlets never interleave, and the encoding of
the actorim frames (MessagePack in binary messages, or JSON in text messages).

It uses ``gevent.socket`` directly, so it cooperates with other greenlets whether or not the
application monkey-patched the standard library.
"""

from __future__ import annotations

import contextlib
import logging
import socket as _stdsocket
from typing import Any

import gevent
import gevent.lock
import gevent.socket
import gevent.ssl
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidURI
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from actorim.protocol.codec import (
    AmbiguousMapError,
    Encoding,
    FrameDecodeError,
    decode_frame,
    encode,
)
from actorim.protocol.limits import SERVER_FRAME_MAX_BYTES

__all__ = ["CLOSE_WRITE_TIMEOUT_S", "DEFAULT_MAX_SIZE", "LinkClosed", "LinkError", "WebSocketLink"]

logger = logging.getLogger("actorim.client")

DEFAULT_MAX_SIZE = SERVER_FRAME_MAX_BYTES
"""Largest message accepted from the server: the largest a server with the documented default
limits sends (a full ``history`` page of 1 MiB of messages and its envelope; see
:mod:`actorim.protocol.limits`), so no reply the server may send drops the link. Against a
server whose ``history_max_bytes`` was raised, raise ``max_size`` to match. The bound stops a
wrong endpoint from making the client buffer without limit."""

_READ_CHUNK = 65536

CLOSE_WRITE_TIMEOUT_S = 1.0
"""Longest a close frame may take to write: a server that stopped reading does not hold up
``Client.close()``."""

_ABNORMAL_CLOSURE = 1006


class LinkError(OSError):
    """The WebSocket could not be opened (bad URL, refused handshake)."""


class LinkClosed(Exception):
    """The WebSocket ended: ``code`` and ``reason`` from the server's close frame, or 1006 when
    the TCP connection ended without one."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason


class WebSocketLink:
    """An open WebSocket; make one with :meth:`open`.

    :meth:`recv` is for one reader greenlet; :meth:`send` may be called from any greenlet.
    A write interrupted half-way (a ``Timeout``, a kill) leaves a frame cut short on the wire,
    so the link is aborted: the reader then sees it end.
    """

    def __init__(
        self, sock: Any, protocol: ClientProtocol, encoding: Encoding, early: list[Frame]
    ) -> None:
        self._sock = sock
        self._protocol = protocol
        self._encoding = encoding
        self._lock = gevent.lock.Semaphore()
        self._fragments: list[bytes] = []
        self._fragments_binary = False
        self._messages: list[tuple[bytes, bool]] = []
        self._closed: LinkClosed | None = None
        self._aborted = False
        for frame in early:
            self._frame(frame)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        timeout: float,
        json: bool = False,
        max_size: int = DEFAULT_MAX_SIZE,
        ssl_context: Any = None,
    ) -> WebSocketLink:
        """Connect to ``url`` (``ws://`` or ``wss://``) and complete the opening handshake within
        ``timeout`` seconds. Raises ``OSError`` (:class:`LinkError` for a refused handshake)."""
        try:
            uri = parse_uri(url)
        except InvalidURI as exc:
            raise LinkError(f"not a WebSocket URL: {url!r} ({exc})") from None
        sock = gevent.socket.create_connection((uri.host, uri.port), timeout=timeout)
        try:
            sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
            if uri.secure:
                context = ssl_context or gevent.ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=uri.host)
            protocol = ClientProtocol(uri, max_size=max_size)
            protocol.send_request(protocol.connect())
            for data in protocol.data_to_send():
                sock.sendall(data)
            early = cls._handshake(sock, protocol)
            sock.settimeout(None)  # a hung server is noticed by the heartbeats, not by reads
            encoding = Encoding.JSON if json else Encoding.MSGPACK
            return cls(sock, protocol, encoding, early)
        except BaseException:
            sock.close()
            raise

    @staticmethod
    def _handshake(sock: Any, protocol: ClientProtocol) -> list[Frame]:
        """Read the handshake response; returns the frames that came in the same read."""
        while protocol.state is State.CONNECTING and protocol.handshake_exc is None:
            data = sock.recv(_READ_CHUNK)
            if not data:
                protocol.receive_eof()
                break
            protocol.receive_data(data)
        events = protocol.events_received()
        if protocol.handshake_exc is not None:
            raise LinkError(f"the server refused the WebSocket: {protocol.handshake_exc}")
        if protocol.state is not State.OPEN:
            rcvd = protocol.close_rcvd
            if rcvd is not None:
                # Upgraded and closed at once: a busy server's 1013 with its hint.
                raise LinkClosed(int(rcvd.code), rcvd.reason)
            raise LinkError("the server closed during the WebSocket handshake")
        return [e for e in events if isinstance(e, Frame)]

    # -- sending -----------------------------------------------------------------------------

    def send(self, obj: dict[str, Any]) -> None:
        """Write one frame. Raises :class:`LinkClosed` if the link has ended."""
        payload = encode(obj, self._encoding)
        with self._lock:
            if self._closed is not None or self._aborted:
                raise self._closed or LinkClosed(_ABNORMAL_CLOSURE, "the link was aborted")
            protocol = self._protocol
            if protocol.state is not State.OPEN:
                raise LinkClosed(_ABNORMAL_CLOSURE, "the link is closing")
            if self._encoding.binary:
                protocol.send_binary(payload)
            else:
                protocol.send_text(payload)
            self._write(protocol.data_to_send())

    def _write(self, chunks: list[bytes]) -> None:
        """Write under the lock; a write cut short aborts the link."""
        try:
            for chunk in chunks:
                if chunk:
                    self._sock.sendall(chunk)
                else:
                    with contextlib.suppress(OSError):
                        self._sock.shutdown(_stdsocket.SHUT_WR)
        except BaseException:
            self.abort()
            raise

    # -- receiving ---------------------------------------------------------------------------

    def recv(self) -> dict[str, Any]:
        """The next protocol map from the server. Raises :class:`LinkClosed` when the link ends
        (or was aborted). Frames that do not decode are logged and skipped."""
        while True:
            while self._messages:
                payload, binary = self._messages.pop(0)
                try:
                    value = decode_frame(payload, binary)
                except AmbiguousMapError as exc:
                    # The server relays no such map; one stored before it refused them is kept.
                    value = exc.frame
                except FrameDecodeError as exc:
                    logger.warning("skipping a frame from the server that does not decode: %s", exc)
                    continue
                if isinstance(value, dict):
                    return value
                logger.warning("skipping a frame from the server that is not a map")
            if self._closed is not None:
                raise self._closed
            try:
                data = self._sock.recv(_READ_CHUNK)
            except OSError as exc:
                self._closed = LinkClosed(_ABNORMAL_CLOSURE, str(exc) if not self._aborted else "")
                raise self._closed from None
            if not data:
                self._protocol.receive_eof()
                self._end()
                raise self._closed_now()
            self._take_in(data)

    def _take_in(self, data: bytes) -> None:
        protocol = self._protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Frame):
                self._frame(event)
        # Pongs and the echo of a close frame.
        with self._lock:
            outgoing = protocol.data_to_send()
            if outgoing and not self._aborted:
                with contextlib.suppress(OSError):
                    self._write(outgoing)
        if protocol.state is State.CLOSED or protocol.close_rcvd is not None:
            self._end()

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._messages.append((bytes(frame.data), opcode is Opcode.BINARY))
            else:
                self._fragments = [bytes(frame.data)]
                self._fragments_binary = opcode is Opcode.BINARY
        elif opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                self._messages.append((b"".join(self._fragments), self._fragments_binary))
                self._fragments = []

    def _end(self) -> None:
        if self._closed is None:
            self._closed = self._closed_now()

    def _closed_now(self) -> LinkClosed:
        rcvd = self._protocol.close_rcvd
        if rcvd is not None:
            return LinkClosed(int(rcvd.code), rcvd.reason)
        return LinkClosed(_ABNORMAL_CLOSURE, "the connection ended without a close frame")

    # -- closing -----------------------------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (best effort, within ``CLOSE_WRITE_TIMEOUT_S``), then drop the TCP
        connection without waiting for the server's answer."""
        with gevent.Timeout(CLOSE_WRITE_TIMEOUT_S, False), self._lock:
            if not self._aborted and self._protocol.state is State.OPEN:
                self._protocol.send_close(code, reason)
                with contextlib.suppress(OSError):
                    self._write(self._protocol.data_to_send())
        self.abort()

    def abort(self) -> None:
        """Drop the TCP connection now; a greenlet blocked in :meth:`recv` gets
        :class:`LinkClosed`."""
        if self._aborted:
            return
        self._aborted = True
        with contextlib.suppress(OSError):
            self._sock.close()
