"""Frame payloads to values and back, in MessagePack or JSON.

A connection speaks the encoding of its first frame: binary frames carry MessagePack, text
frames JSON, with one schema. JSON has no binary type, so a JSON peer sees bytes as
`{"$bytes": "<base64>"}` and may send bytes the same way.

Decoding accepts only values that both encodings can carry, so that whatever one client
sends, every other client can be sent: maps keyed by strings or integers (a JSON peer sees an
integer key as its decimal string), finite floats, integers within MessagePack's 64-bit range,
valid Unicode text, and at most `MAX_NESTING` levels of maps and lists. Anything else raises
`FrameDecodeError`, which the server answers by closing the connection with
`FrameDecodeError.close_code` (1007) and the error's reason.

Two kinds of map decode in MessagePack but would reach a JSON peer as something else: a map with
both an integer key and the string of its digits (`1` and `"1"`: one JSON key, one value lost),
and a map whose only key is `$bytes` with a text value (JSON peers would read it as bytes). Such
a frame raises `AmbiguousMapError`, which the server answers with `bad_request` to the command,
keeping the connection: the frame is well formed, only its value cannot be relayed.

>>> frame = decode_frame(b'{"t":"ping","id":1}', binary=False)
>>> frame
{'t': 'ping', 'id': 1}
>>> encode(frame, Encoding.MSGPACK)
b'\\x82\\xa1t\\xa4ping\\xa2id\\x01'
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from enum import Enum
from typing import Any

import msgpack

__all__ = [
    "MAX_NESTING",
    "AmbiguousMapError",
    "Encoding",
    "FrameDecodeError",
    "decode_frame",
    "encode",
]

MAX_NESTING = 32
"""Deepest nesting of maps and lists a frame may have (the frame's own map is level 1).

Leaves a message body some thirty levels while keeping the server's own wrapping of a body
(an event map around a message map) far below the encoders' recursion limits (MessagePack
511, the interpreter 1000), so a frame that decodes can always be encoded again.
"""

INVALID_PAYLOAD_CLOSE_CODE = 1007
"""RFC 6455 §7.4.1: the endpoint received data inconsistent with the type of the message."""

MAX_CLOSE_REASON_BYTES = 123
"""RFC 6455 §5.5: a control frame carries at most 125 bytes, two of them the close code."""

_BYTES_KEY = "$bytes"

# MessagePack integers are 64-bit, signed or unsigned; JSON numbers are unbounded.
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

# A JSON escape of a UTF-16 surrogate, the only way JSON text can produce a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


class Encoding(Enum):
    """The two encodings of the same schema."""

    MSGPACK = "msgpack"
    JSON = "json"

    @property
    def binary(self) -> bool:
        """Whether frames of this encoding go out as binary WebSocket frames (else text)."""
        return self is Encoding.MSGPACK

    @classmethod
    def of_frame(cls, binary: bool) -> Encoding:
        """The encoding a connection speaks, chosen by the kind of its first frame."""
        return cls.MSGPACK if binary else cls.JSON


class FrameDecodeError(Exception):
    """A frame payload is not a value of the schema; the connection closes with `close_code`.

    `reason` is short, ASCII, fit for a close frame, and says what was wrong without
    internal details.
    """

    close_code: int = INVALID_PAYLOAD_CLOSE_CODE
    reason: str

    def __init__(self, reason: str) -> None:
        reason = reason.encode("utf-8")[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")
        super().__init__(reason)
        self.reason = reason


class AmbiguousMapError(Exception):
    """A frame decoded, but holds a map that JSON peers would see differently (see above).

    `frame` is the decoded value, so that the refusal can name the command's `id`; `reason` is
    short and ASCII, like `FrameDecodeError.reason`. Nothing in `frame` may be relayed.

    >>> try:
    ...     decode_frame(b"\\x82\\x01\\xa1a\\xa11\\xa1b", binary=True)
    ... except AmbiguousMapError as error:
    ...     print(error.reason)
    a map has both the key 1 and the key "1"
    """

    frame: Any
    reason: str

    def __init__(self, frame: Any, reason: str) -> None:
        super().__init__(reason)
        self.frame = frame
        self.reason = reason


def decode_frame(payload: bytes | bytearray | memoryview | str, binary: bool) -> Any:
    """Decode one frame's payload: MessagePack if `binary`, else JSON text in UTF-8.

    Raises `FrameDecodeError` for anything that is not exactly one value of the schema, else
    `AmbiguousMapError` for a value JSON peers would not see as it is; never any other
    exception, whatever the bytes.
    """
    if binary:
        value = _decode_msgpack(payload)
        _check_tree(value, check_text=False)
    else:
        text = _utf8_text(payload)
        value = _decode_json(text)
        _check_tree(value, check_text="\\u" in text and bool(_SURROGATE_ESCAPE.search(text)))
    return value


def encode(obj: Any, encoding: Encoding) -> bytes:
    """Encode one outgoing frame.

    On the hot path: a room message is encoded once per encoding and shared by all
    recipients (see `actorim.protocol.wire.WireFrame`). Raises `TypeError` or `ValueError` for
    values outside the schema, which only server code can build.
    """
    if encoding is Encoding.MSGPACK:
        # One packer for the process: `pack` runs to completion in C with no Python callback,
        # so no greenlet switch (nor thread switch) can interleave two calls, and with
        # autoreset it keeps no state between calls, even after raising.
        packed: bytes = _PACKER.pack(obj)  # msgpack ships no type hints
        return packed
    return _JSON_ENCODER.encode(obj).encode("utf-8")


def _to_json(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray | memoryview):
        return {_BYTES_KEY: base64.b64encode(obj).decode("ascii")}
    raise TypeError(f"{type(obj).__name__} cannot be encoded in a frame")


_PACKER = msgpack.Packer(use_bin_type=True, autoreset=True)
_JSON_ENCODER = json.JSONEncoder(
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=False,
    check_circular=False,
    default=_to_json,
)


class _BytesFormError(ValueError):
    pass


def _from_json_map(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and _BYTES_KEY in obj:
        encoded = obj[_BYTES_KEY]
        if isinstance(encoded, str):
            try:
                return base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise _BytesFormError from exc
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


_JSON_DECODER = json.JSONDecoder(object_hook=_from_json_map, parse_constant=_refuse_constant)


def _decode_msgpack(payload: bytes | bytearray | memoryview | str) -> Any:
    if isinstance(payload, str):
        raise FrameDecodeError("a binary frame must carry MessagePack bytes")
    try:
        # unpackb bounds every length by the payload's size, so a short frame cannot claim a
        # huge array; its own stack refuses nesting beyond 1024 before `_check_tree` runs.
        return msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except msgpack.ExtraData:
        raise FrameDecodeError("extra bytes after the MessagePack value") from None
    except msgpack.StackError:
        raise FrameDecodeError(_TOO_DEEP) from None
    except UnicodeDecodeError:
        raise FrameDecodeError("a MessagePack string is not valid UTF-8") from None
    except (ValueError, TypeError, msgpack.UnpackException):
        # TypeError: a map keyed by a map or a list.
        raise FrameDecodeError("invalid MessagePack") from None


def _utf8_text(payload: bytes | bytearray | memoryview | str) -> str:
    if isinstance(payload, str):
        return payload
    try:
        return str(payload, "utf-8")
    except UnicodeDecodeError:
        raise FrameDecodeError("a text frame must be valid UTF-8") from None


def _decode_json(text: str) -> Any:
    try:
        return _JSON_DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise FrameDecodeError(f"invalid JSON at line {exc.lineno} column {exc.colno}") from None
    except _BytesFormError:
        raise FrameDecodeError(f"a {_BYTES_KEY} value must be standard base64") from None
    except RecursionError:
        raise FrameDecodeError(_TOO_DEEP) from None
    except ValueError:
        # NaN and Infinity, or an integer too long to convert.
        raise FrameDecodeError("invalid JSON number") from None


_TOO_DEEP = f"maps and lists nest deeper than {MAX_NESTING} levels"


def _check_tree(root: Any, *, check_text: bool) -> None:
    """Refuse values that cannot be re-encoded in both encodings; iterative, so never deep.

    A `FrameDecodeError` anywhere in the tree wins over an ambiguous map, which is raised
    (`AmbiguousMapError`) only once the whole tree is known to be otherwise valid.
    """
    root_type = type(root)
    if root_type is not dict and root_type is not list:
        _check_scalar(root, check_text)
        return
    ambiguity: str | None = None
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            raise FrameDecodeError(_TOO_DEEP)
        if type(node) is dict:
            int_keys = False
            for key, item in node.items():
                key_type = type(key)
                if key_type is str:
                    if check_text:
                        _check_text(key)
                elif key_type is int:
                    _check_int(key)
                    int_keys = True
                else:
                    raise FrameDecodeError("map keys must be strings or integers")
                item_type = type(item)
                if item_type is dict or item_type is list:
                    stack.append((item, depth + 1))
                else:
                    _check_scalar(item, check_text)
            if ambiguity is None:
                ambiguity = _map_ambiguity(node, int_keys)
        else:
            for item in node:
                item_type = type(item)
                if item_type is dict or item_type is list:
                    stack.append((item, depth + 1))
                else:
                    _check_scalar(item, check_text)
    if ambiguity is not None:
        raise AmbiguousMapError(root, ambiguity)


def _map_ambiguity(node: dict[Any, Any], int_keys: bool) -> str | None:
    """Why a JSON peer would not see `node` as it is, or None; linear in its keys."""
    if int_keys:
        for key in node:
            # A JSON peer sees the integer key as its decimal string: the two would collide.
            if type(key) is int and str(key) in node:
                return f'a map has both the key {key} and the key "{key}"'
    # From JSON text, this form has already become bytes (or been refused): only MessagePack.
    if len(node) == 1 and type(node.get(_BYTES_KEY)) is str:
        return f'a map whose only key is "{_BYTES_KEY}" would reach JSON peers as bytes'
    return None


def _check_scalar(value: Any, check_text: bool) -> None:
    value_type = type(value)
    if value_type is str:
        if check_text:
            _check_text(value)
    elif value_type is int:
        _check_int(value)
    elif value_type is float:
        if not math.isfinite(value):
            raise FrameDecodeError("numbers must be finite")
    elif value_type is not bytes and value_type is not bool and value is not None:
        # MessagePack extension types, the timestamp among them.
        raise FrameDecodeError("unsupported MessagePack extension type")


def _check_int(value: int) -> None:
    if not _INT_MIN <= value <= _INT_MAX:
        raise FrameDecodeError("integers must fit in 64 bits")


def _check_text(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FrameDecodeError("text must not contain unpaired surrogates") from None
