"""WebSocket connections on gevent's WSGI server, framed by `actorim.protocol.frames`.

`WebSocketHandler` is the `handler_class` for `gevent.pywsgi.WSGIServer`. It keeps
gevent-websocket's place in the server but does the upgrade itself: it refuses a bad handshake
with a 4xx and a short text body (never a 500), asks the application about the Origin, writes
the 101, and hands the WSGI application a `ServerWebSocket` in
`environ["actorim.websocket"]`. The application owns the connection until it returns, unless
it called `read_in_background`: the connection then outlives the request (the handler lets go
of the socket) and is closed by its owner.

The application object may carry two optional attributes:

- `websocket_origin_allowed(origin: str | None, host: str) -> bool`: a refusal answers 403.
  Without it every origin is accepted, so a browser-facing server should provide it
  (RFC 6455 §10.2: cross-site WebSocket hijacking).
- `websocket_limits: WireLimits`: what one client may cost (handshake deadline, header bytes,
  handshakes at once, message size, fragments, frame budget); by default `WireLimits()`.
- `websocket_max_message_size: int`: the message size limit alone, when there are no
  `websocket_limits`.

No client can hold the hub: a request head must arrive within `handshake_timeout` (else 408)
and within `max_header_bytes` (else 431), and at most `max_handshakes` connections may be in
their request head at once (the oldest gives way to a new one). After the upgrade, one turn of
the event loop parses at most `frames_per_read` frames of a connection, and a `FrameBudget`
throttles a connection that sends more frames than `frame_rate`: its reader rests and TCP slows
the client down. A closing connection is read for at most `close_timeout` seconds and
`closing_read_limit` bytes, yielding between reads.

`ServerWebSocket` is read in one of two ways: by one greenlet blocking in `receive` (the
example below), or, as the chat server does, by `read_in_background`, a libev watcher that
hands each read's events to a callback on the hub, so an idle connection holds no greenlet.
Writes are serialized by a lock: `write` waits its turn and may block on a slow client;
`try_write`, for hub callbacks, writes only what the socket takes now and skips while another
write is under way. Control frames the reader must answer come back through
`take_control_output()` so the owner writes them in order with its own frames.

>>> from gevent.pywsgi import WSGIServer
>>> from actorim.protocol.frames import Message, encode_frame
>>> def app(environ, start_response):
...     ws = environ["actorim.websocket"]
...     while not ws.closed:
...         for event in ws.receive():
...             if isinstance(event, Message):
...                 ws.write(encode_frame(event.payload, binary=event.binary))
...         ws.write(ws.take_control_output())
...     return []
>>> server = WSGIServer(("127.0.0.1", 0), app, handler_class=WebSocketHandler)
"""

from __future__ import annotations

import binascii
import contextlib
import logging
import socket
import time
from base64 import b64decode
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.event import Event as GeventEvent
from gevent.lock import Semaphore
from gevent.pywsgi import WSGIHandler
from geventwebsocket.handler import WebSocketHandler as _GeventWebSocketHandler
from websockets.utils import accept_key

from actorim.domain.ratelimit import FrameBudget
from actorim.ports import ConnectionClosed
from actorim.protocol.frames import (
    CloseCode,
    Closed,
    Event,
    FrameReader,
    PongReceived,
    ReaderState,
    encode_ping,
)
from actorim.web._gevent_compat import (
    ClientErrorAnswer,
    ClientErrorHook,
    ParsedHeadersEnviron,
    access_log_off,
    close_now,
    recv_now,
    release_socket,
    send_now,
    send_response_head,
)
from actorim.web.handshakes import HandshakeGate
from actorim.web.headers import TOO_LARGE, RequestHeaders, read_headers
from actorim.web.limits import WireLimits

__all__ = [
    "CLOSE_TIMEOUT",
    "RECV_SIZE",
    "ConnectionClosed",
    "HandshakeRefusal",
    "ServerWebSocket",
    "WebSocketHandler",
    "check_handshake",
    "is_upgrade_request",
]

logger = logging.getLogger(__name__)

RECV_SIZE = 64 * 1024
"""Most bytes taken from the socket per `receive` call. Each call reads into a fresh bytes
object, so an idle connection holds no read buffer, only the bytes of an incomplete frame."""

CLOSE_TIMEOUT = 2.0
"""Seconds `ServerWebSocket.close` waits for the client's close frame before shutting the TCP
connection anyway; bounds the time a silent or vanished client keeps a greenlet."""

WEBSOCKET_VERSION = "13"
"""RFC 6455 §4.1: the only protocol version spoken; others get 426 naming it (§4.4)."""

_KEY_LENGTH = 16
"""RFC 6455 §4.1: Sec-WebSocket-Key is the base64 of 16 random bytes."""

_ENVIRON_KEY = "actorim.websocket"


@dataclass(frozen=True, slots=True)
class HandshakeRefusal:
    """An HTTP answer to an upgrade request that cannot be accepted."""

    status: str
    body: str
    headers: tuple[tuple[str, str], ...] = ()


_FORBIDDEN_ORIGIN = HandshakeRefusal("403 Forbidden", "WebSocket origin not allowed\n")
# A node that drains answers HTTP but takes no new WebSocket: a 503 (not a refused connection)
# lets a proxy try another node, and a client reconnect with back-off. Retry-After is one second,
# the order of a client's first reconnect delay: the retry goes to whichever node is next.
_NOT_ACCEPTING = HandshakeRefusal(
    "503 Service Unavailable",
    "not accepting WebSockets (draining): connect to another node\n",
    (("Retry-After", "1"),),
)


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def is_upgrade_request(environ: dict[str, Any]) -> bool:
    """Whether the request asks for a WebSocket (`Upgrade: websocket`); others are plain HTTP."""
    return "websocket" in _tokens(environ.get("HTTP_UPGRADE", ""))


def check_handshake(environ: dict[str, Any]) -> HandshakeRefusal | str:
    """Check a client's opening handshake (RFC 6455 §4.2.1); returns the Sec-WebSocket-Accept.

    Pure: reads only the WSGI environ of a request that `is_upgrade_request`.
    """
    if environ.get("REQUEST_METHOD") != "GET":
        return _bad_request("a WebSocket upgrade must be a GET request")
    if environ.get("SERVER_PROTOCOL") != "HTTP/1.1":
        return _bad_request("a WebSocket upgrade needs HTTP/1.1")
    if "upgrade" not in _tokens(environ.get("HTTP_CONNECTION", "")):
        return _bad_request("a WebSocket upgrade needs 'Connection: Upgrade'")
    if environ.get("CONTENT_LENGTH", "") not in ("", "0") or environ.get("HTTP_TRANSFER_ENCODING"):
        return _bad_request("a WebSocket upgrade request has no body")
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip() != WEBSOCKET_VERSION:
        return HandshakeRefusal(
            "426 Upgrade Required",
            f"WebSocket version {WEBSOCKET_VERSION} required\n",
            (("Sec-WebSocket-Version", WEBSOCKET_VERSION),),
        )
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
    try:
        decoded = b64decode(key.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        decoded = b""
    if len(decoded) != _KEY_LENGTH:
        return _bad_request("Sec-WebSocket-Key must be the base64 of 16 bytes")
    return accept_key(key)


def _bad_request(body: str) -> HandshakeRefusal:
    return HandshakeRefusal("400 Bad Request", body + "\n")


class ServerWebSocket:
    """One accepted WebSocket: a gevent socket, a `FrameReader`, and a write lock.

    One reader at a time: a greenlet in `receive`, or the hub watcher of
    `read_in_background`. Any greenlet may `write`, `ping` or `close`: writes wait their turn
    instead of failing; a hub callback uses `try_write`, which never waits. `close` works from
    any greenlet, including while another is blocked in `receive`.
    """

    # Slots: ten thousand idle connections hold ten thousand of these.
    __slots__ = (
        "_budget",
        "_clock",
        "_close_timeout",
        "_closing",
        "_detached",
        "_final",
        "_final_event",
        "_on_events",
        "_pending",
        "_read_semaphore",
        "_reader",
        "_remote_address",
        "_resting",
        "_shut",
        "_sock",
        "_watcher",
        "_write_lock",
        "last_received",
        "pongs_received",
    )

    def __init__(
        self,
        sock: socket.socket,
        reader: FrameReader,
        *,
        remote_address: Any = None,
        pending: bytes = b"",
        close_timeout: float = CLOSE_TIMEOUT,
        budget: FrameBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sock = sock
        self._reader = reader
        self._resting: Any = None
        self._remote_address = remote_address
        self._pending = pending
        self._close_timeout = close_timeout
        self._clock = clock
        # Made when first needed: a connection read in the background never takes the read
        # lock, and only a close that waits for a blocked reader waits on the event.
        self._read_semaphore: Semaphore | None = None
        self._write_lock = Semaphore()
        self._final: Closed | None = None
        self._final_event: GeventEvent | None = None
        self._closing = False
        self._shut = False
        self._detached = False
        self._watcher: Any = None
        self._on_events: Callable[[list[Event]], bool] | None = None
        self.last_received: float = clock()
        """`clock()` when the last bytes arrived (any bytes, not only whole frames)."""
        self._budget = budget if budget is not None else FrameBudget(self.last_received)
        self.pongs_received = 0
        """How many pong frames the client sent."""

    @property
    def _read_lock(self) -> Semaphore:
        """Held by the one greenlet in `receive` (or by `close` reading the client's close)."""
        if self._read_semaphore is None:
            self._read_semaphore = Semaphore()
        return self._read_semaphore

    @property
    def _final_seen(self) -> GeventEvent:
        """Set once the stream's final event (a `Closed`) was read."""
        if self._final_event is None:
            self._final_event = GeventEvent()
        return self._final_event

    @property
    def remote_address(self) -> Any:
        return self._remote_address

    @property
    def detached(self) -> bool:
        """True once the connection reads in the background, apart from its WSGI handler."""
        return self._detached

    @property
    def closed(self) -> bool:
        """True once the close began (either side) or the connection dropped."""
        return self._closing or self._shut or self._final is not None

    @property
    def socket(self) -> socket.socket:
        """The TCP socket, for socket options; reading or writing on it breaks the framing."""
        return self._sock

    def receive(self) -> list[Event]:
        """Block until at least one event; the end of the stream is `Closed(1006, "")`.

        After a `Closed` event every call returns that same event at once.
        """
        with self._read_lock:
            return self._receive()

    def read_in_background(self, on_events: Callable[[list[Event]], bool]) -> None:
        """Read without a greenlet: a libev watcher calls ``on_events`` on the hub whenever a
        read brings events, until it returns False or the stream ends.

        The connection is detached from the WSGI handler (its socket duplicated), so the
        handler's greenlet can finish and nothing waits, parked, on an idle connection: no
        greenlet, no stack, no buffer. ``on_events`` runs on the hub itself and must never
        block. ``close`` (or ``abort``) stops the watcher and releases the socket.
        """
        self._detached = True
        self._sock = self._sock.dup()
        self._on_events = on_events
        self._watcher = gevent.get_hub().loop.io(self._sock.fileno(), 1)
        self._watcher.start(self._readable)
        if self._pending:
            gevent.get_hub().loop.run_callback(self._readable)

    def _stop_reading(self) -> None:
        watcher, self._watcher = self._watcher, None
        resting, self._resting = self._resting, None
        self._on_events = None
        if watcher is not None:
            watcher.stop()
            watcher.close()
        if resting is not None:
            resting.stop()
            resting.close()

    def _readable(self) -> None:
        """The watcher's callback: one bounded turn of reading and parsing, handed on.

        A turn parses at most the budget's allowance of frames. Bytes left over stay in the
        reader, and no more are read from the socket until they are parsed: in a later turn
        (`run_callback`, after the hub's other callbacks), or once the budget refilled.
        """
        on_events = self._on_events
        if on_events is None or self._resting is not None:
            return
        reader = self._reader
        budget = self._budget
        now = self._clock()
        allowance = budget.allowance(now)
        if allowance == 0:
            self._rest(budget.wait(now))
            return
        before = reader.frames
        if reader.paused:
            events = reader.resume(max_frames=allowance)
        else:
            data = self._pending
            if data:
                self._pending = b""
            elif self._shut:
                data = b""
            else:
                try:
                    # The socket's own non-blocking read: gevent's would wait, and a callback on
                    # the hub must never wait.
                    data = recv_now(self._sock, RECV_SIZE)
                except BlockingIOError:
                    return
                except OSError:
                    data = b""
            if data:
                self.last_received = now
                events = reader.feed(data, max_frames=allowance)
            else:
                events = reader.feed_eof() or [Closed(CloseCode.ABNORMAL_CLOSURE, "")]
            del data
        budget.spend(now, reader.frames - before)
        if reader.paused:
            gevent.get_hub().loop.run_callback(self._readable)
        if not events:
            return
        self._note(events)
        try:
            go_on = on_events(events)
        except Exception:
            logger.exception("handling frames from %s failed", self._remote_address)
            go_on = False
        if not go_on or self._final is not None:
            self._stop_reading()

    def _rest(self, seconds: float) -> None:
        """The frame budget is spent: stop reading (TCP holds the client back) for ``seconds``."""
        if self._watcher is not None:
            self._watcher.stop()
        self._resting = gevent.get_hub().loop.timer(seconds)
        self._resting.start(self._rested)

    def _rested(self) -> None:
        resting, self._resting = self._resting, None
        if resting is not None:
            resting.close()
        if self._watcher is None:
            return
        self._watcher.start(self._readable)
        self._readable()

    def _note(self, events: list[Event]) -> None:
        for event in events:
            if type(event) is PongReceived:
                self.pongs_received += 1
            elif type(event) is Closed:
                self._final = event
                self._final_seen.set()

    @property
    def writing(self) -> bool:
        """Whether a write is under way, possibly blocked on a client that stopped reading."""
        return self._write_lock.locked()

    def abort(self) -> None:
        """End the TCP connection now, with no closing handshake; safe from any greenlet.

        For a client that stopped reading: no close frame could reach it, and a writer blocked
        on it fails with `ConnectionClosed` instead of waiting for it forever.
        """
        self._closing = True
        self._stop_reading()
        self._shutdown()

    def take_control_output(self) -> bytes:
        """Pongs and close replies the reader owes the client, to be written by the owner."""
        return self._reader.data_to_send()

    def write(self, data: bytes | list[bytes]) -> None:
        """Write encoded frames in one `sendall`; waits for any other writer to finish first.

        Raises `ConnectionClosed` once the close began or the socket failed.
        """
        if isinstance(data, list):
            data = b"".join(data)
        with self._write_lock:
            if self._closing or self._shut:
                raise ConnectionClosed(
                    f"WebSocket to {self._remote_address} is closed; frames can no longer be sent"
                )
            self._sendall(data)

    def try_write(self, data: bytes) -> int:
        """Write what the socket takes now, without waiting; returns the bytes written, or -1
        when the socket is closed. For callbacks on the hub, which must never block: the rest
        is for a ``write`` from a greenlet. Skips (returns 0) while another write is under way.
        """
        if self._closing or self._shut:
            return -1
        # A write under way (a greenlet blocked in ``write``) goes first. The lock is not
        # taken: ``send_now`` never switches greenlets, so no writer can start in between.
        if self._write_lock.locked():
            return 0
        try:
            return send_now(self._sock, data)
        except BlockingIOError:
            return 0
        except OSError:
            return -1

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping (RFC 6455 §5.5.2); the client's answer shows in `pongs_received`."""
        self.write(encode_ping(payload))

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the WebSocket: send the close frame once, await the client's, shut the socket.

        Pending control frames are written first, so a close the reader already decided on
        (a reply to the client's close, or a protocol failure) is the one sent. Waits at most
        `close_timeout` for the client's close frame (RFC 6455 §7.1.2); the server then ends
        the TCP connection first (§7.1.1). Safe to call more than once and from any greenlet.
        """
        if self._shut:
            return
        self._stop_reading()
        closing = self._reader.start_close(code, reason)
        # A writer stuck on a client that stopped reading must not hold the close up forever:
        # past the timeout the close frame is given up and the socket shut down.
        if self._write_lock.acquire(timeout=self._close_timeout):
            try:
                self._closing = True
                self._send_close(self._reader.data_to_send() + closing)
            finally:
                self._write_lock.release()
        else:
            self._closing = True
            self._shutdown()
        if self._reader.state is ReaderState.CLOSING and not self._shut:
            self._await_client_close()
        self._shutdown()

    def _send_close(self, output: bytes) -> None:
        if not output or self._shut:
            return
        with gevent.Timeout(self._close_timeout, False):
            with contextlib.suppress(ConnectionClosed):
                self._sendall(output)
            return
        self._shutdown()

    def _sendall(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self._shutdown()
            raise ConnectionClosed(
                f"WebSocket to {self._remote_address} dropped while writing: {exc}"
            ) from exc

    def _receive(self) -> list[Event]:
        while self._final is None:
            events = self._read_some()
            if events:
                self._note(events)
                return events
            # A read that completed no event (a partial frame, frames dropped while closing)
            # must not loop without yielding: a client that keeps sending would hold the hub,
            # and no timeout could fire.
            gevent.sleep(0)
        return [self._final]

    def _read_some(self) -> list[Event]:
        """Read once and parse, within the frame budget. A function of its own so that no chunk
        stays referenced while the next read blocks: an idle connection holds no read buffer."""
        reader = self._reader
        budget = self._budget
        # The time of the last read stands in for now: a stale clock only refills less.
        now = self.last_received
        allowance = budget.allowance(now)
        while allowance == 0:
            gevent.sleep(budget.wait(now))
            now = self._clock()
            allowance = budget.allowance(now)
        before = reader.frames
        try:
            if reader.paused:
                return reader.resume(max_frames=allowance)
            data = self._pending
            if data:
                self._pending = b""
            else:
                data = self._recv()
            if data:
                now = self.last_received = self._clock()
                return reader.feed(data, max_frames=allowance)
            return reader.feed_eof() or [Closed(CloseCode.ABNORMAL_CLOSURE, "")]
        finally:
            budget.spend(now, reader.frames - before)

    def _recv(self) -> bytes:
        if self._shut:
            return b""
        try:
            return self._sock.recv(RECV_SIZE)
        except OSError:
            # Reset by the client, or the socket closed under us: the stream is over.
            return b""

    def _await_client_close(self) -> None:
        """Wait for the client's close frame: at most `close_timeout` seconds and the reader's
        `closing_read_limit` bytes, yielding between reads; the caller then shuts the socket."""
        if self._read_lock.acquire(blocking=False):
            # Nobody is reading: read until the client's close frame, dropping data.
            try:
                with gevent.Timeout(self._close_timeout, False):
                    self._receive()
            finally:
                self._read_lock.release()
        else:
            # The reader greenlet sees the client's close frame and returns it as Closed.
            self._final_seen.wait(self._close_timeout)

    def _shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        if self._detached:  # nobody else will close this duplicate of the handler's socket
            self._stop_reading()
            self._sock.close()


def _set_nodelay(sock: socket.socket) -> None:
    """Send small frames at once instead of waiting ~40 ms for Nagle's algorithm.

    Set without asking the socket's family first (gevent makes an enum of it on each call):
    a socket that is not TCP (a Unix socket) refuses the option, and is left as it is."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        logger.debug("TCP_NODELAY not set on %s", sock, exc_info=True)


def _no_http_response(
    status: str, headers: list[tuple[str, str]], exc_info: Any = None
) -> Callable[[bytes], None]:
    """start_response for an upgraded connection: the 101 is sent, no other response can be."""
    return _ignore_body


def _ignore_body(data: bytes) -> None:
    return None


class _HeadTimeout(BaseException):
    """The request head missed its deadline. A BaseException, so that pywsgi's handling of bad
    requests (which catches Exception) lets it through to `handle_one_request`."""


_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
    b"Content-Length: 0\r\n\r\n"
)

_DEFAULT_LIMITS = WireLimits()


def _limits_of(application: Any) -> WireLimits:
    limits = getattr(application, "websocket_limits", None)
    if isinstance(limits, WireLimits):
        return limits
    max_size = getattr(application, "websocket_max_message_size", None)
    if max_size is None:
        return _DEFAULT_LIMITS
    return WireLimits(max_message_size=max_size)


def _gate_of(server: Any, limit: int) -> HandshakeGate:
    """The server's one `HandshakeGate`, made by its first connection."""
    gate = getattr(server, "_actorim_handshakes", None)
    if gate is None:
        gate = HandshakeGate(limit)
        server._actorim_handshakes = gate
    return gate


class WebSocketHandler(ClientErrorHook, ParsedHeadersEnviron, _GeventWebSocketHandler):
    """gevent.pywsgi handler: TCP_NODELAY on every connection, RFC 6455 upgrades on our framing.

    Requests without `Upgrade: websocket` go to the WSGI application as plain HTTP.
    """

    close_timeout: float = CLOSE_TIMEOUT
    """Seconds the closing handshake may take; see `CLOSE_TIMEOUT`."""

    _wire_limits: WireLimits = _DEFAULT_LIMITS
    _gate: HandshakeGate | None = None
    _head_timer: Any = None
    _dropped = False
    _served = 0

    def MessageClass(self, *args: Any) -> RequestHeaders:  # noqa: N802 - pywsgi's name
        return read_headers(*args, max_bytes=self._wire_limits.max_header_bytes)

    # gevent-websocket's start_response prepares its own WebSocket response; ours writes the
    # 101 itself, so plain HTTP and refusals use pywsgi's unchanged.
    start_response = WSGIHandler.start_response

    def handle(self) -> None:
        _set_nodelay(self.socket)
        limits = self._wire_limits = _limits_of(self.server.application)
        gate = self._gate = _gate_of(self.server, limits.max_handshakes)
        evicted = gate.admit(self)
        if isinstance(evicted, WebSocketHandler):
            evicted._drop()
        try:
            super().handle()
        except OSError:
            # The client left before its 408 or 431 could be written: nothing more to do.
            logger.debug("connection from %s ended", self.client_address, exc_info=True)
        finally:
            gate.done(self)

    def _drop(self) -> None:
        """Give way to a newer connection: end this one, still in its request head.

        The descriptor is closed at once, not when this connection's greenlet next runs (nor,
        as ``close`` would, once pywsgi's read buffer lets go of it): a burst of accepts must
        find the descriptors of the connections it evicted free again. gevent wakes the greenlet
        blocked on the socket with an error, which ends it.
        """
        self._dropped = True
        sock = getattr(self, "socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            close_now(sock)

    def handle_one_request(self) -> Any:
        """One request, its head read within `handshake_timeout` (else 408 and close).

        A kept-alive connection idle past the deadline is closed without a 408: a client that
        reuses it at that moment would take the 408 for the answer to its next request.
        """
        timer = self._head_timer = gevent.Timeout(self._wire_limits.handshake_timeout, _HeadTimeout)
        timer.start()
        try:
            result = super().handle_one_request()
        except _HeadTimeout:
            self.close_connection = True
            return None if self._dropped or self._served else ("408", _REQUEST_TIMEOUT)
        finally:
            timer.close()
        self._served += 1
        return result

    def read_request(self, raw_requestline: str) -> Any:
        """The head is in (or refused): its deadline and its place in the gate end here."""
        try:
            ok = super().read_request(raw_requestline)
        finally:
            if self._head_timer is not None:
                self._head_timer.close()
            if self._gate is not None:
                self._gate.done(self)
        if self._dropped:  # what was read is a head cut short by the drop
            raise _HeadTimeout
        return ok

    def answer_client_error(self, ex: BaseException) -> ClientErrorAnswer:
        if self._dropped:
            return None
        headers = getattr(self, "headers", None)
        if isinstance(headers, RequestHeaders) and headers.status == TOO_LARGE:
            self.close_connection = True
            return ("431", _HEADERS_TOO_LARGE)
        return super().answer_client_error(ex)

    def run_application(self) -> None:
        if not is_upgrade_request(self.environ):
            WSGIHandler.run_application(self)
            return
        verdict = check_handshake(self.environ)
        if isinstance(verdict, HandshakeRefusal):
            self._refuse(verdict)
        elif not self._accepting():
            self._refuse(_NOT_ACCEPTING)
        elif not self._origin_allowed():
            self._refuse(_FORBIDDEN_ORIGIN)
        else:
            self._run_websocket(verdict)

    def log_request(self) -> None:
        if not access_log_off(self.server):
            WSGIHandler.log_request(self)

    def _accepting(self) -> bool:
        """The application's ``websocket_accepting()``, if it has one (the node's says no while
        it drains)."""
        check = getattr(self.application, "websocket_accepting", None)
        return True if check is None else bool(check())

    def _origin_allowed(self) -> bool:
        check = getattr(self.application, "websocket_origin_allowed", None)
        if check is None:
            return True
        origin = self.environ.get("HTTP_ORIGIN")
        host = self.environ.get("HTTP_HOST", "")
        try:
            return bool(check(origin, host))
        except Exception:
            logger.exception("websocket_origin_allowed failed; refusing origin %r", origin)
            return False

    def _refuse(self, refusal: HandshakeRefusal) -> None:
        body = refusal.body.encode()
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            *refusal.headers,
        ]
        self.close_connection = True
        self.start_response(refusal.status, headers)
        self.write(body)

    def _run_websocket(self, accept: str) -> None:
        status = "101 Switching Protocols"
        send_response_head(
            self,
            status,
            f"HTTP/1.1 {status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode("latin-1"),
        )
        limits = self._wire_limits
        websocket = ServerWebSocket(
            self.socket,
            FrameReader(
                max_size=limits.max_message_size,
                max_fragments=limits.max_fragments,
                closing_read_limit=limits.closing_read_limit,
            ),
            remote_address=self.client_address,
            pending=self._take_buffered_input(),
            close_timeout=self.close_timeout,
            budget=FrameBudget(
                time.monotonic(),
                rate=limits.frame_rate,
                burst=limits.frame_burst,
                per_read=limits.frames_per_read,
            ),
        )
        # The request's headers are not needed once the upgrade is done, and the connection may
        # live for days: let them go.
        self.headers = RequestHeaders()
        self.environ[_ENVIRON_KEY] = websocket
        self.environ["wsgi.websocket"] = websocket
        self.environ["wsgi.websocket_version"] = WEBSOCKET_VERSION
        try:
            _consume(self.application(self.environ, _no_http_response))
        except gevent.GreenletExit:
            websocket.close(CloseCode.GOING_AWAY)
            raise
        except BaseException:
            websocket.close(CloseCode.INTERNAL_ERROR)
            raise
        else:
            if not websocket.detached:
                websocket.close(CloseCode.NORMAL_CLOSURE)
            else:
                # pywsgi's clean-up would read ("drain") the socket before closing it, taking
                # frames that belong to the detached connection: it gets no socket to drain.
                release_socket(self)

    def _take_buffered_input(self) -> bytes:
        """Frames the client sent right behind its handshake sit in pywsgi's read buffer."""
        rfile = self.rfile
        timeout = self.socket.gettimeout()
        self.socket.settimeout(0.0)
        try:
            data = rfile.read(len(rfile.peek()))
        except OSError:
            data = b""
        finally:
            self.socket.settimeout(timeout)
        # Closing frees the 8 KiB read buffer; the socket stays open.
        rfile.close()
        return data or b""


def _consume(result: Iterable[bytes]) -> None:
    try:
        for _ in result:
            pass
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
