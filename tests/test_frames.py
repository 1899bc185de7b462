"""FrameReader and the frame encoders, fed literal bytes (RFC 6455 section cited per test)."""

from __future__ import annotations

import random
import struct

import pytest
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from actorim.protocol.frames import (
    DEFAULT_MAX_MESSAGE_SIZE,
    CloseCode,
    Closed,
    FrameReader,
    Message,
    PingReceived,
    PongReceived,
    ReaderState,
    encode_close,
    encode_frame,
    encode_ping,
    encode_pong,
)

# RFC 6455 §5.7: a single-frame masked text message "Hello".
MASKED_HELLO = bytes.fromhex("818537fa213d7f9f4d5158")
MASK = bytes.fromhex("37fa213d")


def client_frame(opcode: Opcode, payload: bytes, *, fin: bool = True) -> bytes:
    """A masked frame as a client sends it."""
    return Frame(opcode, payload, fin=fin).serialize(mask=True)


def raw_masked(head1: int, payload: bytes) -> bytes:
    """A masked frame with a first header byte of our choosing (even an invalid one)."""
    assert len(payload) < 126
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([head1, 0x80 | len(payload)]) + MASK + masked


def unmasked(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    return bytes([(0x80 if fin else 0) | opcode, len(payload)]) + payload


def server_frames(data: bytes) -> list[Frame]:
    """Parse unmasked server frames, as a client would."""
    stream = StreamReader()
    stream.feed_data(data)
    stream.feed_eof()
    frames = []
    while stream.buffer:
        parser = Frame.parse(stream.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
        else:
            raise AssertionError("incomplete server frame")
    return frames


def close_of(data: bytes) -> tuple[int, str]:
    (frame,) = server_frames(data)
    assert frame.opcode is Opcode.CLOSE
    close = Close.parse(frame.data)
    return close.code, close.reason


# --- data frames --------------------------------------------------------------------------


def test_masked_text_frame_from_the_rfc_decodes_to_hello() -> None:
    # RFC 6455 §5.7, "A single-frame masked text message".
    assert FrameReader().feed(MASKED_HELLO) == [Message(b"Hello", binary=False)]


@pytest.mark.parametrize("split", range(1, len(MASKED_HELLO)))
def test_a_frame_split_at_any_byte_boundary_decodes_the_same(split: int) -> None:
    # RFC 6455 §5.2: framing is independent of how TCP segments the stream.
    reader = FrameReader()
    assert reader.feed(MASKED_HELLO[:split]) == []
    assert reader.feed(MASKED_HELLO[split:]) == [Message(b"Hello", binary=False)]


def test_a_frame_fed_one_byte_at_a_time_decodes_once_complete() -> None:
    reader = FrameReader()
    events = []
    for i in range(len(MASKED_HELLO)):
        events.append(reader.feed(MASKED_HELLO[i : i + 1]))
    assert events[:-1] == [[]] * (len(MASKED_HELLO) - 1)
    assert events[-1] == [Message(b"Hello", binary=False)]


def test_a_stream_cut_anywhere_across_frames_and_fragments_decodes_the_same() -> None:
    # The reader lets go of its parser between frames: a stream of whole frames, fragments
    # and a ping, cut at random points (some right between frames), gives the same events.
    data = (
        client_frame(Opcode.TEXT, b"one")
        + client_frame(Opcode.BINARY, b"\x00two" * 50, fin=False)
        + client_frame(Opcode.PING, b"p")
        + client_frame(Opcode.CONT, b"three")
        + client_frame(Opcode.TEXT, b"four")
    )
    whole = FrameReader().feed(data)
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 8)))
        reader = FrameReader()
        events = []
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            events += reader.feed(data[start:end])
        assert events == whole


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_binary_frames_of_every_length_encoding_decode(length: int) -> None:
    # RFC 6455 §5.2: 7-bit, 16-bit and 64-bit payload lengths.
    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    reader = FrameReader(max_size=65536)
    assert reader.feed(client_frame(Opcode.BINARY, payload)) == [Message(payload, binary=True)]


def test_several_frames_in_one_chunk_give_events_in_order() -> None:
    data = (
        client_frame(Opcode.TEXT, b"one")
        + client_frame(Opcode.PING, b"p")
        + client_frame(Opcode.BINARY, b"\x00two")
    )
    assert FrameReader().feed(data) == [
        Message(b"one", binary=False),
        PingReceived(b"p"),
        Message(b"\x00two", binary=True),
    ]


def test_fragmented_message_is_reassembled_around_an_interleaved_ping() -> None:
    # RFC 6455 §5.4: control frames may be injected in the middle of a fragmented message.
    reader = FrameReader()
    assert reader.feed(client_frame(Opcode.TEXT, b"Hel", fin=False)) == []
    assert reader.feed(client_frame(Opcode.PING, b"x")) == [PingReceived(b"x")]
    assert reader.feed(client_frame(Opcode.CONT, b"lo", fin=True)) == [
        Message(b"Hello", binary=False)
    ]
    assert reader.data_to_send() == encode_pong(b"x")


def test_utf8_character_split_across_fragments_is_valid_text() -> None:
    # RFC 6455 §8.1: validity is of the whole message, not of each fragment.
    euro = "€".encode()
    reader = FrameReader()
    reader.feed(client_frame(Opcode.TEXT, euro[:1], fin=False))
    events = reader.feed(client_frame(Opcode.CONT, euro[1:], fin=True))
    assert events == [Message(euro, binary=False)]


def test_invalid_utf8_text_closes_with_1007() -> None:
    # RFC 6455 §8.1: "MUST _Fail the WebSocket Connection_" on invalid UTF-8 text.
    reader = FrameReader()
    assert reader.feed(client_frame(Opcode.TEXT, b"\xff\xfe")) == [
        Closed(CloseCode.INVALID_DATA, "invalid UTF-8")
    ]
    assert close_of(reader.data_to_send())[0] == 1007


def test_invalid_utf8_in_a_first_fragment_fails_before_the_message_ends() -> None:
    # RFC 6455 §8.1: fail fast rather than buffer the rest of a message known to be bad.
    reader = FrameReader()
    events = reader.feed(client_frame(Opcode.TEXT, b"ok\xc0\xafmore", fin=False))
    assert events == [Closed(CloseCode.INVALID_DATA, "invalid UTF-8")]


def test_invalid_utf8_in_a_binary_message_is_fine() -> None:
    assert FrameReader().feed(client_frame(Opcode.BINARY, b"\xff")) == [
        Message(b"\xff", binary=True)
    ]


# --- size limits --------------------------------------------------------------------------


def test_announced_length_over_limit_closes_1009_before_any_payload() -> None:
    # RFC 6455 §10.4: limit frame size; here decided from the header alone (no mask, no data).
    reader = FrameReader()
    header = b"\x82\xff" + struct.pack("!Q", 200 * 1024 * 1024)
    assert reader.feed(header) == [Closed(CloseCode.MESSAGE_TOO_BIG, "message over 65536 bytes")]
    assert close_of(reader.data_to_send()) == (1009, "message over 65536 bytes")
    assert reader.state is ReaderState.CLOSED
    assert reader.feed(b"\x00" * 1000) == []


def test_message_of_exactly_the_limit_is_accepted() -> None:
    payload = b"a" * 1000
    reader = FrameReader(max_size=1000)
    assert reader.feed(client_frame(Opcode.TEXT, payload)) == [Message(payload, binary=False)]


def test_fragments_adding_up_over_the_limit_close_1009() -> None:
    # RFC 6455 §5.4 + §10.4: the limit is on the message, not on each fragment.
    reader = FrameReader(max_size=100)
    assert reader.feed(client_frame(Opcode.BINARY, b"a" * 60, fin=False)) == []
    events = reader.feed(client_frame(Opcode.CONT, b"b" * 60, fin=False))
    assert [type(e) for e in events] == [Closed]
    assert events[0].code == CloseCode.MESSAGE_TOO_BIG


def test_continuation_over_the_remaining_allowance_closes_from_its_header() -> None:
    reader = FrameReader(max_size=1000)
    reader.feed(client_frame(Opcode.BINARY, b"a" * 900, fin=False))
    header = b"\x00\xfe" + struct.pack("!H", 200)  # continuation, masked, 200 bytes announced
    assert reader.feed(header)[0].code == CloseCode.MESSAGE_TOO_BIG


def test_ping_inside_a_nearly_full_fragmented_message_is_not_refused_on_size() -> None:
    # RFC 6455 §5.5: control frames carry up to 125 bytes whatever the message allowance.
    reader = FrameReader(max_size=100)
    reader.feed(client_frame(Opcode.BINARY, b"a" * 95, fin=False))
    assert reader.feed(client_frame(Opcode.PING, b"p" * 100)) == [PingReceived(b"p" * 100)]


def test_default_limit_is_64_kib() -> None:
    assert DEFAULT_MAX_MESSAGE_SIZE == 65536
    assert FrameReader().max_size == 65536


# --- protocol errors ----------------------------------------------------------------------


def test_unmasked_client_frame_closes_with_1002() -> None:
    # RFC 6455 §5.1: "a client MUST mask all frames"; the server must fail the connection.
    reader = FrameReader()
    events = reader.feed(unmasked(Opcode.TEXT, b"Hello"))
    assert [type(e) for e in events] == [Closed]
    assert events[0].code == CloseCode.PROTOCOL_ERROR
    assert close_of(reader.data_to_send())[0] == 1002


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(raw_masked(0xC1, b"x"), id="reserved-bit"),  # §5.2
        pytest.param(b"\x83\x80" + MASK, id="reserved-opcode"),  # §5.2
        pytest.param(raw_masked(0x09, b"x"), id="fragmented-ping"),  # §5.5
        pytest.param(
            b"\x89\xfe" + struct.pack("!H", 126) + MASK + bytes(126), id="ping-over-125"
        ),  # §5.5
        pytest.param(client_frame(Opcode.CONT, b"x"), id="continuation-first"),  # §5.4
        pytest.param(
            client_frame(Opcode.TEXT, b"a", fin=False) + client_frame(Opcode.TEXT, b"b"),
            id="new-message-inside-fragmented",
        ),  # §5.4
        pytest.param(client_frame(Opcode.CLOSE, b"\x03"), id="close-one-byte"),  # §5.5.1
        pytest.param(client_frame(Opcode.CLOSE, struct.pack("!H", 1005)), id="close-1005"),
        pytest.param(client_frame(Opcode.CLOSE, struct.pack("!H", 999)), id="close-999"),
    ],
)
def test_protocol_errors_close_with_1002(data: bytes) -> None:
    reader = FrameReader()
    events = reader.feed(data)
    assert events[-1] == Closed(CloseCode.PROTOCOL_ERROR, events[-1].reason)
    assert close_of(reader.data_to_send())[0] == 1002
    assert reader.state is ReaderState.CLOSED


def test_close_reason_with_invalid_utf8_closes_with_1007() -> None:
    # RFC 6455 §5.5.1: the close reason is UTF-8; §8.1 applies.
    reader = FrameReader()
    events = reader.feed(client_frame(Opcode.CLOSE, struct.pack("!H", 1000) + b"\xff"))
    assert events == [Closed(CloseCode.INVALID_DATA, "invalid UTF-8")]


def test_random_input_never_raises() -> None:
    # The reader turns any input into events; it must never raise into the socket loop.
    rng = random.Random(6455)
    for _ in range(500):
        reader = FrameReader(max_size=1024)
        for _ in range(rng.randrange(1, 6)):
            chunk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
            events = reader.feed(chunk)
            assert all(
                isinstance(e, Message | PingReceived | PongReceived | Closed) for e in events
            )
        reader.data_to_send()


# --- control frames and the closing handshake ---------------------------------------------


def test_ping_from_the_rfc_is_answered_with_the_same_payload() -> None:
    # RFC 6455 §5.5.2 / §5.7: masked ping "Hello" -> unmasked pong "Hello".
    reader = FrameReader()
    assert reader.feed(bytes.fromhex("898537fa213d7f9f4d5158")) == [PingReceived(b"Hello")]
    assert reader.data_to_send() == bytes.fromhex("8a0548656c6c6f")
    assert reader.data_to_send() == b""


def test_pong_is_reported() -> None:
    # RFC 6455 §5.5.3.
    assert FrameReader().feed(client_frame(Opcode.PONG, b"t")) == [PongReceived(b"t")]


def test_client_close_is_answered_with_the_same_code_and_reason() -> None:
    # RFC 6455 §5.5.1: the endpoint MUST send a Close frame in response, typically echoing.
    reader = FrameReader()
    data = client_frame(Opcode.CLOSE, struct.pack("!H", 1000) + b"bye")
    assert reader.feed(data) == [Closed(1000, "bye")]
    assert close_of(reader.data_to_send()) == (1000, "bye")
    assert reader.state is ReaderState.CLOSED


def test_empty_client_close_is_answered_with_1000() -> None:
    # RFC 6455 §7.1.5: no status code received (1005), which is never sent back.
    reader = FrameReader()
    assert reader.feed(client_frame(Opcode.CLOSE, b"")) == [Closed(1000, "")]
    assert close_of(reader.data_to_send()) == (1000, "")


def test_input_after_the_close_is_ignored() -> None:
    # RFC 6455 §1.4: after the close, a peer discards any further data.
    reader = FrameReader()
    data = client_frame(Opcode.CLOSE, struct.pack("!H", 1001)) + MASKED_HELLO
    assert reader.feed(data) == [Closed(1001, "")]
    reader.data_to_send()
    assert reader.feed(MASKED_HELLO + client_frame(Opcode.PING, b"")) == []
    assert reader.data_to_send() == b""


def test_server_close_waits_for_the_client_close_and_does_not_answer_it() -> None:
    # RFC 6455 §5.5.1 / §7.1.2: after sending close, data is discarded; no second close.
    reader = FrameReader()
    frame = reader.start_close(CloseCode.POLICY_VIOLATION, "kicked")
    assert close_of(frame) == (1008, "kicked")
    assert reader.state is ReaderState.CLOSING
    assert reader.start_close(1000) == b""
    assert reader.feed(MASKED_HELLO + client_frame(Opcode.PING, b"x")) == []
    data = client_frame(Opcode.CLOSE, struct.pack("!H", 1008) + b"kicked")
    assert reader.feed(data) == [Closed(1008, "kicked")]
    assert reader.data_to_send() == b""
    assert reader.state is ReaderState.CLOSED


def test_protocol_error_while_closing_reports_the_close_already_sent() -> None:
    reader = FrameReader()
    reader.start_close(CloseCode.GOING_AWAY)
    assert reader.feed(unmasked(Opcode.TEXT, b"x")) == [Closed(1001, "")]
    assert reader.data_to_send() == b""


def test_end_of_stream_reports_1006_once() -> None:
    # RFC 6455 §7.1.5: closed without a close frame -> code 1006.
    reader = FrameReader()
    reader.feed(MASKED_HELLO[:3])
    assert reader.feed_eof() == [Closed(CloseCode.ABNORMAL_CLOSURE, "")]
    assert reader.feed_eof() == []


# --- encoders -----------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 70000])
@pytest.mark.parametrize("binary", [True, False])
def test_encode_frame_gives_one_unmasked_final_frame(length: int, binary: bool) -> None:
    # RFC 6455 §5.1: a server MUST NOT mask the frames it sends.
    payload = b"z" * length
    data = encode_frame(payload, binary=binary)
    assert data[1] & 0x80 == 0
    (frame,) = server_frames(data)
    assert frame.fin
    assert frame.opcode is (Opcode.BINARY if binary else Opcode.TEXT)
    assert frame.data == payload


def test_encode_close_carries_code_and_reason() -> None:
    assert encode_close(1000, "bye") == b"\x88\x05\x03\xe8bye"
    assert close_of(encode_close(CloseCode.TRY_AGAIN_LATER)) == (1013, "")
    assert close_of(encode_close(4000, "app")) == (4000, "app")


def test_encode_close_cuts_a_long_reason_at_a_character_boundary() -> None:
    # RFC 6455 §5.5: control payload at most 125 bytes; the reason stays valid UTF-8.
    data = encode_close(1008, "é" * 100)
    code, reason = close_of(data)
    assert code == 1008
    assert reason == "é" * 61
    assert len(data) == 2 + 2 + 122


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2000, 5000])
def test_encode_close_refuses_codes_that_may_not_be_sent(code: int) -> None:
    # RFC 6455 §7.4.1-2: 1005, 1006, 1015 are for reporting only; others are unassigned.
    with pytest.raises(ValueError, match=str(code)):
        encode_close(code)


def test_encode_ping_and_pong() -> None:
    assert encode_ping() == b"\x89\x00"
    assert encode_ping(b"hb") == b"\x89\x02hb"
    assert encode_pong(b"hb") == b"\x8a\x02hb"
    with pytest.raises(ValueError, match="125"):
        encode_ping(b"x" * 126)
