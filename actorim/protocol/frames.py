"""Server-side WebSocket framing (RFC 6455), with no sockets and no clock.

The parser is websockets' own (`websockets.frames.Frame.parse` over its `StreamReader`), so
header checks, masking with the C `websockets.speedups` and control-frame rules are the
maintained ones. On top of it `FrameReader` adds what a chat server relies on: a message size
limit enforced on the announced length before any payload is buffered, reassembly of
fragmented messages, UTF-8 validation of text, and the closing handshake. Bad input never
raises: it becomes a `Closed` event and a close frame to send.

Outgoing frames are encoded by plain functions so a frame can be built once and the same bytes
written to every member of a room.

>>> reader = FrameReader()
>>> reader.feed(bytes.fromhex("818537fa213d7f9f4d5158"))  # RFC 6455 §5.7, masked "Hello"
[Message(payload=b'Hello', binary=False)]
>>> encode_frame(b"Hello", binary=False)
b'\\x81\\x05Hello'
"""

from __future__ import annotations

import codecs
import enum
import logging
import struct
import sys
from collections.abc import Generator
from dataclasses import dataclass

from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

__all__ = [
    "DEFAULT_CLOSING_READ_LIMIT",
    "DEFAULT_MAX_FRAGMENTS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_CONTROL_PAYLOAD",
    "CloseCode",
    "Closed",
    "Event",
    "FrameReader",
    "Message",
    "PingReceived",
    "PongReceived",
    "ReaderState",
    "encode_close",
    "encode_frame",
    "encode_ping",
    "encode_pong",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024
"""Largest message (all fragments together) a client may send, in bytes.

Chat commands are a few KiB at most; 64 KiB leaves room for long messages while bounding
what one connection can make the server hold (10,000 connections x 64 KiB = 640 MiB in the
worst case, against 64 GiB at websockets' own 1 MiB default)."""

DEFAULT_MAX_FRAGMENTS = 64
"""Most frames one message may be split into.

Browsers and the usual client libraries send every message in one frame; a message in many
tiny fragments costs a frame's parsing per byte (about 15 µs of the hub each) for one command.
64 leaves room for a client that streams a large message in pieces."""

DEFAULT_CLOSING_READ_LIMIT = 64 * 1024
"""Bytes read from a client after the server's close frame before the socket is shut anyway.

Enough for the frames a client may have in flight when the close reaches it (one message of
`DEFAULT_MAX_MESSAGE_SIZE`), not for a client that keeps sending instead of closing."""

MAX_CONTROL_PAYLOAD = 125
"""RFC 6455 §5.5: a control frame (close, ping, pong) carries at most 125 bytes."""

_MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2
"""RFC 6455 §5.5.1: the close reason shares the control payload with the 2-byte code."""


class CloseCode(enum.IntEnum):
    """Close codes the framing layer and the server send (RFC 6455 §7.4.1, IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    ABNORMAL_CLOSURE = 1006
    """Never sent: reported when the TCP connection ended without a close frame (§7.1.5)."""
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    """The node drains for a restart; the reason says when to come back (``restart``)."""
    TRY_AGAIN_LATER = 1013
    TOKEN_EXPIRED = 4001
    """The connection's token expired (its ``exp`` plus the grace passed) and was not refreshed."""
    TOKEN_REVOKED = 4003
    """The connection's token was revoked (by its ``jti``, or every token of its user)."""
    REPLACED = 4009
    """A newer connection of the same user past ``max_connections_per_user`` took its place."""


# Codes a close frame may carry (RFC 6455 §7.4.1-2): 1005, 1006 and 1015 are reserved for
# reporting and must never appear on the wire; 3000-4999 belong to libraries and applications.
_SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})


def _sendable(code: int) -> bool:
    return code in _SENDABLE_CLOSE_CODES or 3000 <= code < 5000


@dataclass(frozen=True, slots=True)
class Message:
    """A complete data message; `binary` is False for text, whose payload is valid UTF-8."""

    payload: bytes
    binary: bool


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The client pinged; the pong is already queued in `FrameReader.data_to_send()`."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The client answered a ping (or sent an unsolicited pong, RFC 6455 §5.5.3)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is over: the client closed, the reader failed it, or the TCP stream ended.

    `code` and `reason` are what the server sends or sent in its close frame, so the owner can
    log one value whichever side started. `CloseCode.ABNORMAL_CLOSURE` (1006) means the stream
    ended without a close frame from the client.
    """

    code: int
    reason: str


Event = Message | PingReceived | PongReceived | Closed
"""What `FrameReader.feed` returns, in the order the frames arrived."""


class ReaderState(enum.Enum):
    """Where a connection is in the closing handshake (RFC 6455 §7)."""

    OPEN = "open"
    """Messages flow both ways."""
    CLOSING = "closing"
    """The server sent a close frame and waits for the client's; incoming data is dropped."""
    CLOSED = "closed"
    """Both close frames exchanged, or the connection failed: further input is ignored."""


class _MessageTooBig(Exception):
    """The message outgrew the limit after its frame was read (short frames, tiny limits)."""


class _TooManyFragments(Exception):
    """The message came in more frames than `max_fragments`."""


_decode_utf8 = codecs.getincrementaldecoder("utf-8")


class FrameReader:
    """Turns the bytes a client sends into events, and says which control frames to answer.

    Feed it whatever the socket returned, in any chunking; it keeps only the bytes of the
    frame still incomplete. Call `data_to_send()` after every `feed()` and write what it returns
    (pongs, the close reply, the close frame of a failure) before anything else.

    It never raises for bad input: a protocol error closes with 1002 (RFC 6455 §7.1.7), invalid
    UTF-8 text with 1007 (§8.1), a message over `max_size` or in more than `max_fragments`
    frames with 1009 (§10.4). The size check runs on the length a frame header announces,
    before any of its payload is buffered, and on the running total of a fragmented message.

    Its work is bounded too, so that a caller on a shared event loop can take turns: `feed`
    parses at most `max_frames` frames and keeps the rest of the bytes (`paused` is then true;
    call `resume` later, and read nothing more from the socket meanwhile). Pongs owed to the
    client collapse into one for the latest ping (RFC 6455 §5.5.3 allows it), so pings from a
    client that never reads cost one pending frame. After the server's close frame, at most
    `closing_read_limit` bytes are read before the reader gives up on the client's close frame.

    >>> reader = FrameReader()
    >>> reader.feed(bytes.fromhex("898537fa213d7f9f4d5158"))  # masked ping "Hello"
    [PingReceived(payload=b'Hello')]
    >>> reader.data_to_send()
    b'\\x8a\\x05Hello'
    >>> pings = bytes.fromhex("8980aabbccdd") * 3  # three masked empty pings
    >>> len(reader.feed(pings, max_frames=2)), reader.paused, len(reader.resume()), reader.paused
    (2, True, 1, False)
    >>> reader.data_to_send()  # one pong for the three pings
    b'\\x8a\\x00'
    """

    __slots__ = (
        "_between",
        "_close_sent",
        "_closing_read",
        "_closing_read_limit",
        "_events",
        "_fragment_binary",
        "_fragments",
        "_fragments_size",
        "_max_fragments",
        "_max_size",
        "_output",
        "_parser",
        "_paused",
        "_pong",
        "_state",
        "_step_left",
        "_stream",
        "_utf8",
        "frames",
    )

    def __init__(
        self,
        *,
        max_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
        closing_read_limit: int = DEFAULT_CLOSING_READ_LIMIT,
    ) -> None:
        if max_size < 0:
            raise ValueError(f"max_size must be 0 or more, got {max_size}")
        if max_fragments < 1:
            raise ValueError(f"max_fragments must be 1 or more, got {max_fragments}")
        if closing_read_limit < 0:
            raise ValueError(f"closing_read_limit must be 0 or more, got {closing_read_limit}")
        self._max_size = max_size
        self._max_fragments = max_fragments
        self._closing_read_limit = closing_read_limit
        self._closing_read = 0
        self._state = ReaderState.OPEN
        self._close_sent: Closed | None = None
        self._events: list[Event] = []
        self._output: list[bytes] = []
        self._pong: int | None = None
        self._paused = False
        self._step_left = 0
        self.frames = 0
        """Frames parsed so far (data and control): what a per-connection frame budget counts."""
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._fragment_binary: bool | None = None
        self._utf8: codecs.IncrementalDecoder | None = None
        # The parser and its buffer exist while a frame is under way: between frames, with
        # nothing buffered, the reader lets go of them (an idle connection holds none).
        self._stream: StreamReader | None = None
        self._parser: Generator[None, None, None] | None = None
        self._between = False

    @property
    def state(self) -> ReaderState:
        return self._state

    @property
    def max_size(self) -> int:
        return self._max_size

    @property
    def paused(self) -> bool:
        """True when `feed` or `resume` stopped at `max_frames` with bytes left to parse."""
        return self._paused

    def feed(self, data: bytes, *, max_frames: int = sys.maxsize) -> list[Event]:
        """Parse `data` and return the events it completes (possibly none).

        Parses at most `max_frames` frames; the rest waits for `resume`. Feeding more bytes
        while `paused` is allowed, but only `resume` keeps the buffer bounded.
        """
        if self._state is ReaderState.CLOSED:
            return []
        if self._state is ReaderState.CLOSING:
            self._closing_read += len(data)
            if self._closing_read > self._closing_read_limit:
                # A client that keeps sending instead of closing: stop looking for its close.
                assert self._close_sent is not None
                self._finish()
                return [self._close_sent]
        if not data and not self._paused:
            return []
        if data:
            if self._parser is None:
                self._stream = StreamReader()
                self._parser = self._parse()
                next(self._parser)
            assert self._stream is not None
            self._stream.feed_data(data)
        return self._step(max_frames)

    def resume(self, *, max_frames: int = sys.maxsize) -> list[Event]:
        """Go on parsing the bytes a paused `feed` left, at most `max_frames` frames."""
        if self._state is ReaderState.CLOSED or not self._paused:
            return []
        return self._step(max_frames)

    def _step(self, max_frames: int) -> list[Event]:
        if max_frames < 1:
            raise ValueError(f"max_frames must be 1 or more, got {max_frames}")
        self._step_left = max_frames
        self._paused = False
        if self._parser is not None:
            next(self._parser)
            if self._between and self._stream is not None and not self._stream.buffer:
                self._parser = self._stream = None  # made again by the next feed
        events, self._events = self._events, []
        return events

    def feed_eof(self) -> list[Event]:
        """The TCP stream ended: report 1006 unless the connection was already closed."""
        if self._state is ReaderState.CLOSED:
            return []
        self._finish()
        return [Closed(CloseCode.ABNORMAL_CLOSURE, "")]

    def data_to_send(self) -> bytes:
        """Control frames to write now, in order; cleared by the call."""
        if not self._output:
            return b""
        output = b"".join(self._output)
        self._output.clear()
        self._pong = None
        return output

    def start_close(self, code: int, reason: str = "") -> bytes:
        """The server closes: returns the close frame to write, or b"" if one was already sent.

        From now on incoming data is dropped and no ping is answered (RFC 6455 §5.5.1); the
        client's close frame completes the handshake as `Closed(code, reason)` with no reply.
        """
        if self._state is not ReaderState.OPEN:
            return b""
        frame = encode_close(code, reason)
        self._close_sent = Closed(code, _fit_reason(reason))
        self._state = ReaderState.CLOSING
        return frame

    def _parse(self) -> Generator[None, None, None]:
        try:
            while self._state is not ReaderState.CLOSED:
                # Control frames may arrive inside a fragmented message whose remaining
                # allowance is smaller than a control payload: never refuse those on size.
                allowance = max(self._max_size - self._fragments_size, MAX_CONTROL_PAYLOAD)
                self._between = True  # until the frame's first bytes are read
                frame = yield from Frame.parse(self._read_exact, mask=True, max_size=allowance)
                self.frames += 1
                self._on_frame(frame)
                self._step_left -= 1
                if (
                    self._step_left <= 0
                    and self._stream is not None
                    and self._stream.buffer
                    # `_on_frame` may have closed the reader: mypy keeps the state it
                    # narrowed in the loop's test, hence the ignore.
                    and self._state is not ReaderState.CLOSED  # type: ignore[comparison-overlap]
                ):
                    self._paused = True
                    yield
        except ProtocolError as exc:
            self._fail(CloseCode.PROTOCOL_ERROR, str(exc))
        except (PayloadTooBig, _MessageTooBig):
            self._fail(CloseCode.MESSAGE_TOO_BIG, f"message over {self._max_size} bytes")
        except _TooManyFragments:
            self._fail(
                CloseCode.MESSAGE_TOO_BIG, f"message in over {self._max_fragments} fragments"
            )
        except UnicodeDecodeError:
            self._fail(CloseCode.INVALID_DATA, "invalid UTF-8")
        except Exception:
            logger.exception("WebSocket frame parser failed")
            self._fail(CloseCode.INTERNAL_ERROR, "")
        # Both ways out of the loop leave the reader CLOSED; feed() never steps it again.
        yield

    def _read_exact(self, n: int) -> Generator[None, None, bytearray]:
        assert self._stream is not None
        data = yield from self._stream.read_exact(n)
        self._between = False
        return data

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        data = bytes(frame.data)
        if self._state is ReaderState.CLOSING:
            if opcode is Opcode.CLOSE:
                assert self._close_sent is not None
                self._events.append(self._close_sent)
                self._finish()
            return
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if self._fragment_binary is not None:
                raise ProtocolError("expected a continuation frame")
            binary = opcode is Opcode.BINARY
            if frame.fin:
                if len(data) > self._max_size:
                    raise _MessageTooBig
                if not binary and not data.isascii():
                    data.decode("utf-8")
                self._events.append(Message(data, binary))
            else:
                self._fragment_binary = binary
                self._add_fragment(data, final=False)
        elif opcode is Opcode.CONT:
            if self._fragment_binary is None:
                raise ProtocolError("unexpected continuation frame")
            self._add_fragment(data, final=frame.fin)
            if frame.fin:
                message = Message(b"".join(self._fragments), self._fragment_binary)
                self._reset_fragments()
                self._events.append(message)
        elif opcode is Opcode.PING:
            # RFC 6455 §5.5.3: a pong for the latest ping only, in place of one still unsent.
            if self._pong is None:
                self._pong = len(self._output)
                self._output.append(encode_pong(data))
            else:
                self._output[self._pong] = encode_pong(data)
            self._events.append(PingReceived(data))
        elif opcode is Opcode.PONG:
            self._events.append(PongReceived(data))
        else:
            close = Close.parse(data)
            # RFC 6455 §5.5.1: echo the client's code; a close without one is answered 1000.
            code = CloseCode.NORMAL_CLOSURE if not data else close.code
            self._output.append(encode_close(code, close.reason))
            self._events.append(Closed(code, close.reason))
            self._finish()

    def _add_fragment(self, data: bytes, *, final: bool) -> None:
        self._fragments_size += len(data)
        if self._fragments_size > self._max_size:
            raise _MessageTooBig
        if len(self._fragments) >= self._max_fragments:
            raise _TooManyFragments
        self._fragments.append(data)
        if not self._fragment_binary:
            if self._utf8 is None:
                self._utf8 = _decode_utf8()
            # Fails on the first fragment holding a bad sequence, not at the end (§8.1).
            self._utf8.decode(data, final)

    def _reset_fragments(self) -> None:
        self._fragments = []
        self._fragments_size = 0
        self._fragment_binary = None
        self._utf8 = None

    def _fail(self, code: CloseCode, reason: str) -> None:
        """Fail the WebSocket connection (RFC 6455 §7.1.7): one close frame, then silence."""
        if self._state is ReaderState.OPEN:
            self._output.append(encode_close(code, reason))
            self._events.append(Closed(code, _fit_reason(reason)))
        elif self._close_sent is not None:
            self._events.append(self._close_sent)
        self._finish()

    def _finish(self) -> None:
        self._state = ReaderState.CLOSED
        self._paused = False
        self._reset_fragments()
        if self._stream is not None:
            self._stream.discard()


_HEAD_SHORT = struct.Struct("!BB")
_HEAD_MEDIUM = struct.Struct("!BBH")
_HEAD_LONG = struct.Struct("!BBQ")
_FIN = 0x80


def _encode(opcode: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        head = _HEAD_SHORT.pack(_FIN | opcode, length)
    elif length < 65536:
        head = _HEAD_MEDIUM.pack(_FIN | opcode, 126, length)
    else:
        head = _HEAD_LONG.pack(_FIN | opcode, 127, length)
    return head + payload


def encode_frame(payload: bytes, *, binary: bool) -> bytes:
    """One final, unmasked data frame (RFC 6455 §5.2), ready to write to any number of sockets.

    Text payloads must already be UTF-8; they are not checked here, on the hot path.
    """
    return _encode(Opcode.BINARY if binary else Opcode.TEXT, payload)


def encode_close(code: int, reason: str = "") -> bytes:
    """A close frame (RFC 6455 §5.5.1); a reason too long for it is cut at a character boundary.

    Raises ValueError for codes that must never be sent, such as 1005 and 1006 (§7.4.1).
    """
    if not _sendable(code):
        raise ValueError(f"close code {code} may not be sent in a close frame")
    return _encode(Opcode.CLOSE, struct.pack("!H", code) + _fit_reason(reason).encode())


def encode_ping(payload: bytes = b"") -> bytes:
    """A ping frame (RFC 6455 §5.5.2); raises ValueError past 125 bytes of payload."""
    _check_control_payload(payload)
    return _encode(Opcode.PING, payload)


def encode_pong(payload: bytes = b"") -> bytes:
    """A pong frame (RFC 6455 §5.5.3); raises ValueError past 125 bytes of payload."""
    _check_control_payload(payload)
    return _encode(Opcode.PONG, payload)


def _check_control_payload(payload: bytes) -> None:
    if len(payload) > MAX_CONTROL_PAYLOAD:
        raise ValueError(f"control frame payload of {len(payload)} bytes exceeds 125")


def _fit_reason(reason: str) -> str:
    encoded = reason.encode()
    if len(encoded) <= _MAX_CLOSE_REASON:
        return reason
    return encoded[:_MAX_CLOSE_REASON].decode("utf-8", errors="ignore")
