"""Frame payloads: MessagePack and JSON decoding, its refusals, and exact encoder output."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from actorim.protocol.codec import (
    MAX_NESTING,
    AmbiguousMapError,
    Encoding,
    FrameDecodeError,
    decode_frame,
    encode,
)
from actorim.protocol.commands import reply_error, reply_ok
from actorim.protocol.errors import ErrorCode


def _nested_json(depth: int) -> bytes:
    return b'{"v":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def _nested_msgpack(depth: int) -> bytes:
    # fixarray of one element, `depth - 1` times, around an empty fixmap
    return b"\x91" * (depth - 1) + b"\x80"


# --- decoding what clients send ---------------------------------------------------------------


def test_msgpack_frame_decodes_to_a_map_with_text_keys() -> None:
    assert decode_frame(b"\x82\xa1t\xa4ping\xa2id\x01", binary=True) == {"t": "ping", "id": 1}


def test_json_frame_decodes_from_utf8_bytes_and_from_text() -> None:
    expected = {"t": "send", "id": 2, "room": "lobby", "body": "héllo"}
    payload = '{"t":"send","id":2,"room":"lobby","body":"héllo"}'
    assert decode_frame(payload.encode("utf-8"), binary=False) == expected
    assert decode_frame(payload, binary=False) == expected


def test_msgpack_accepts_bytearray_and_memoryview_payloads() -> None:
    payload = b"\x81\xa2id\x07"
    assert decode_frame(bytearray(payload), binary=True) == {"id": 7}
    assert decode_frame(memoryview(payload), binary=True) == {"id": 7}


def test_json_bytes_form_decodes_to_bytes() -> None:
    frame = decode_frame(b'{"body":{"$bytes":"AAH/"}}', binary=False)
    assert frame == {"body": b"\x00\x01\xff"}


def test_json_bytes_round_trip_gives_back_the_same_text() -> None:
    payload = b'{"body":{"$bytes":"AAH/"},"list":[{"$bytes":""}]}'
    frame = decode_frame(payload, binary=False)
    assert frame == {"body": b"\x00\x01\xff", "list": [b""]}
    assert encode(frame, Encoding.JSON) == payload


@pytest.mark.parametrize(
    "payload",
    [
        b'{"$bytes":5}',
        b'{"$bytes":"AAH/","other":1}',
        b'{"$bytes":null}',
        b'{"$byte":"AAH/"}',
    ],
)
def test_json_map_not_exactly_the_bytes_form_stays_a_map(payload: bytes) -> None:
    frame = decode_frame(payload, binary=False)
    assert isinstance(frame, dict)


def test_json_bytes_form_with_bad_base64_is_refused() -> None:
    with pytest.raises(FrameDecodeError, match=r"\$bytes"):
        decode_frame(b'{"body":{"$bytes":"not base64!"}}', binary=False)


def test_msgpack_bin_round_trips_as_bytes_and_str_stays_str() -> None:
    payload = b"\x82\xa3bin\xc4\x03\x00\x01\xff\xa3str\xa2hi"
    frame = decode_frame(payload, binary=True)
    assert frame == {"bin": b"\x00\x01\xff", "str": "hi"}
    assert type(frame["bin"]) is bytes
    assert encode(frame, Encoding.MSGPACK) == payload


def test_msgpack_bytes_reach_a_json_peer_in_the_bytes_form() -> None:
    frame = decode_frame(b"\x81\xa4body\xc4\x03\x00\x01\xff", binary=True)
    assert encode(frame, Encoding.JSON) == b'{"body":{"$bytes":"AAH/"}}'


def test_json_bytes_reach_a_msgpack_peer_as_bin() -> None:
    frame = decode_frame(b'{"body":{"$bytes":"AAH/"}}', binary=False)
    assert encode(frame, Encoding.MSGPACK) == b"\x81\xa4body\xc4\x03\x00\x01\xff"


def test_msgpack_integer_map_keys_are_kept_and_reach_json_as_strings() -> None:
    frame = decode_frame(b"\x81\xa4body\x81\x01\xa3one", binary=True)
    assert frame == {"body": {1: "one"}}
    assert encode(frame, Encoding.JSON) == b'{"body":{"1":"one"}}'


def _msgpack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({1: "one", "1": "uno"}, id="int and str keys"),
        pytest.param({"a": [{"-5": 0, -5: 1}]}, id="negative, nested in a list"),
        pytest.param({2**64 - 1: 0, str(2**64 - 1): 1}, id="at the 64-bit bound"),
        pytest.param({"$bytes": "AAH/"}, id="bytes form"),
        pytest.param({"$bytes": "not base64"}, id="bytes form, bad base64"),
        pytest.param([[{"k": {"$bytes": ""}}]], id="bytes form, nested"),
    ],
)
def test_a_msgpack_map_json_peers_would_see_differently_is_ambiguous(body: Any) -> None:
    frame = {"t": "send", "id": 3, "room": "lobby", "body": body}
    with pytest.raises(AmbiguousMapError) as raised:
        decode_frame(_msgpack(frame), binary=True)
    assert raised.value.frame == frame
    assert raised.value.reason.isascii()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({1: "one", "01": "x", "1.0": "y", " 1": "z"}, id="near-miss keys"),
        pytest.param({"$bytes": "AAH/", "other": 1}, id="bytes key among others"),
        pytest.param({"$bytes": 5}, id="bytes key, not text"),
        pytest.param({"$bytes": b"\x00"}, id="bytes key, bytes value"),
        pytest.param({"$byte": "AAH/"}, id="another key"),
    ],
)
def test_a_msgpack_map_json_peers_see_as_it_is_is_accepted(body: Any) -> None:
    frame = decode_frame(_msgpack({"body": body}), binary=True)
    assert frame == {"body": body}
    again = decode_frame(encode(frame, Encoding.JSON), binary=False)
    assert len(again["body"]) == len(body)


def test_an_invalid_value_wins_over_an_ambiguous_map() -> None:
    payload = _msgpack([{"$bytes": "AAH/"}, {"x": 1}]).replace(b"\x01", b"\xcb\x7f\xf8" + bytes(6))
    with pytest.raises(FrameDecodeError, match="finite"):
        decode_frame(payload, binary=True)


def test_a_wide_map_with_many_integer_keys_is_checked_key_by_key() -> None:
    wide = {i: i for i in range(20_000)}
    assert decode_frame(_msgpack({"body": wide}), binary=True) == {"body": wide}
    wide["19999"] = 0
    with pytest.raises(AmbiguousMapError, match='"19999"'):
        decode_frame(_msgpack({"body": wide}), binary=True)


def test_json_surrogate_pair_escape_decodes_to_one_character() -> None:
    assert decode_frame(b'{"body":"\\ud83d\\ude00"}', binary=False) == {"body": "\U0001f600"}


# --- refusals: each closes the connection with 1007 -------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="never-used-byte"),
        pytest.param(b"\x92\x01", id="truncated-array"),
        pytest.param(b"\x01\x02", id="two-values"),
        pytest.param(b"\xa2\xff\xfe", id="invalid-utf8-string"),
        pytest.param(b"\xdd\xff\xff\xff\xff", id="array-claiming-4G-items"),
        pytest.param(b"\xdb\xff\xff\xff\xff", id="string-claiming-4GB"),
        pytest.param(b"\x81\x91\x01\x02", id="list-as-map-key"),
        pytest.param(b"\x81\xc4\x01k\x02", id="bytes-as-map-key"),
        pytest.param(b"\x81\xc0\x02", id="nil-as-map-key"),
        pytest.param(b"\x81\xc3\x02", id="bool-as-map-key"),
        pytest.param(b"\xd4\x05\x00", id="extension-type"),
        pytest.param(b"\xd6\xff\x00\x00\x00\x01", id="timestamp-extension"),
        pytest.param(b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", id="nan"),
        pytest.param(b"\xca\x7f\x80\x00\x00", id="float32-infinity"),
    ],
)
def test_undecodable_msgpack_is_refused(payload: bytes) -> None:
    with pytest.raises(FrameDecodeError) as caught:
        decode_frame(payload, binary=True)
    assert caught.value.close_code == 1007
    assert caught.value.reason


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{", id="truncated"),
        pytest.param(b"{}x", id="trailing-garbage"),
        pytest.param(b"{'t':'ping'}", id="single-quotes"),
        pytest.param(b'{"t":"\xff"}', id="invalid-utf8"),
        pytest.param(b'{"n":NaN}', id="nan"),
        pytest.param(b'{"n":-Infinity}', id="infinity"),
        pytest.param(b'{"n":1e999}', id="overflowing-float"),
        pytest.param(b'{"n":18446744073709551616}', id="integer-beyond-64-bits"),
        pytest.param(b'{"n":' + b"9" * 5000 + b"}", id="integer-with-5000-digits"),
        pytest.param(b'{"t":"\\ud800"}', id="lone-surrogate-value"),
        pytest.param(b'{"\\udc00":1}', id="lone-surrogate-key"),
    ],
)
def test_undecodable_json_is_refused(payload: bytes) -> None:
    with pytest.raises(FrameDecodeError) as caught:
        decode_frame(payload, binary=False)
    assert caught.value.close_code == 1007
    assert caught.value.reason


def test_binary_frame_given_text_is_refused() -> None:
    with pytest.raises(FrameDecodeError):
        decode_frame('{"t":"ping","id":1}', binary=True)


def test_integers_at_the_msgpack_bounds_decode_from_json() -> None:
    frame = decode_frame(b'{"a":18446744073709551615,"b":-9223372036854775808}', binary=False)
    assert encode(frame, Encoding.MSGPACK) == (
        b"\x82\xa1a\xcf\xff\xff\xff\xff\xff\xff\xff\xff\xa1b\xd3\x80\x00\x00\x00\x00\x00\x00\x00"
    )


def test_json_invalid_reason_says_where() -> None:
    with pytest.raises(FrameDecodeError, match="line 1 column 8"):
        decode_frame(b'{"t":1,}', binary=False)


# --- nesting bombs ----------------------------------------------------------------------------


def test_nesting_up_to_the_limit_is_accepted_in_both_encodings() -> None:
    assert decode_frame(_nested_json(MAX_NESTING), binary=False)
    assert decode_frame(_nested_msgpack(MAX_NESTING), binary=True)


def test_nesting_one_past_the_limit_is_refused_in_both_encodings() -> None:
    with pytest.raises(FrameDecodeError, match="nest deeper"):
        decode_frame(_nested_json(MAX_NESTING + 1), binary=False)
    with pytest.raises(FrameDecodeError, match="nest deeper"):
        decode_frame(_nested_msgpack(MAX_NESTING + 1), binary=True)


def test_deeply_nested_json_is_refused_not_a_crash() -> None:
    with pytest.raises(FrameDecodeError, match="nest deeper"):
        decode_frame(b"[" * 200_000 + b"]" * 200_000, binary=False)
    with pytest.raises(FrameDecodeError, match="nest deeper"):
        decode_frame(b'{"a":' * 200_000 + b"1" + b"}" * 200_000, binary=False)


def test_deeply_nested_msgpack_is_refused_not_a_crash() -> None:
    with pytest.raises(FrameDecodeError, match="nest deeper"):
        decode_frame(b"\x91" * 200_000 + b"\xc0", binary=True)
    with pytest.raises(FrameDecodeError, match="nest deeper"):
        decode_frame(b"\x81\xa1a" * 200_000 + b"\xc0", binary=True)


def test_wide_but_shallow_frames_are_accepted() -> None:
    payload = b"[" + b",".join([b"[1,2]"] * 10_000) + b"]"
    assert len(decode_frame(payload, binary=False)) == 10_000


# --- encoding what the server sends -----------------------------------------------------------


def test_reply_encodes_to_exact_msgpack_bytes() -> None:
    expected = (
        b"\x84"  # map of 4
        b"\xa1t\xa5reply"
        b"\xa2id\x07"
        b"\xa2ok\xc3"
        b"\xa4data\x81\xa4room\xa5lobby"
    )
    assert encode(reply_ok(7, {"room": "lobby"}), Encoding.MSGPACK) == expected


def test_reply_encodes_to_exact_compact_json() -> None:
    assert encode(reply_ok(7, {"room": "lobby"}), Encoding.JSON) == (
        b'{"t":"reply","id":7,"ok":true,"data":{"room":"lobby"}}'
    )


def test_error_reply_encodes_to_exact_bytes_in_both_encodings() -> None:
    reply = reply_error(3, ErrorCode.NOT_FOUND, "no")
    assert encode(reply, Encoding.JSON) == (
        b'{"t":"reply","id":3,"ok":false,"error":{"code":"not_found","message":"no"}}'
    )
    assert encode(reply, Encoding.MSGPACK) == (
        b"\x84\xa1t\xa5reply\xa2id\x03\xa2ok\xc2\xa5error\x82\xa4code\xa9not_found\xa7message\xa2no"
    )


def test_json_output_is_utf8_not_ascii_escapes() -> None:
    assert encode({"body": "héllo ✓"}, Encoding.JSON) == '{"body":"héllo ✓"}'.encode()


def test_bytearray_and_memoryview_encode_as_bytes() -> None:
    for value in (bytearray(b"\x01"), memoryview(b"\x01")):
        assert encode({"b": value}, Encoding.JSON) == b'{"b":{"$bytes":"AQ=="}}'
        assert encode({"b": value}, Encoding.MSGPACK) == b"\x81\xa1b\xc4\x01\x01"


def test_unencodable_value_raises_and_leaves_the_encoder_usable() -> None:
    for encoding in Encoding:
        with pytest.raises(TypeError):
            encode({"x": object()}, encoding)
    assert encode({"id": 1}, Encoding.MSGPACK) == b"\x81\xa2id\x01"
    assert encode({"id": 1}, Encoding.JSON) == b'{"id":1}'


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        -1,
        2**64 - 1,
        1.5,
        "text",
        b"\x00",
        [1, [2, [3]]],
        {"nested": {"deep": [{"x": b"\xff"}]}},
    ],
)
def test_any_decoded_value_can_be_sent_to_either_encoding(value: Any) -> None:
    for source in Encoding:
        decoded = decode_frame(encode({"body": value}, source), binary=source.binary)
        assert decoded == {"body": value}
        for target in Encoding:
            again = decode_frame(encode(decoded, target), binary=target.binary)
            assert again == {"body": value}


def test_encoding_follows_the_kind_of_the_first_frame() -> None:
    assert Encoding.of_frame(binary=True) is Encoding.MSGPACK
    assert Encoding.of_frame(binary=False) is Encoding.JSON
    assert Encoding.MSGPACK.binary
    assert not Encoding.JSON.binary


def test_close_reasons_fit_in_a_close_frame() -> None:
    error = FrameDecodeError("x" * 500)
    assert len(error.reason.encode("utf-8")) <= 123
