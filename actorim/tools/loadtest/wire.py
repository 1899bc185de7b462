"""What load-test processes say to each other and put in the messages they send.

A message body is bytes: the due time of the send (wall clock, nanoseconds since the epoch),
the run's id, then padding up to ``--size``. Every process runs on the same machine and so
reads the same wall clock, which makes ``arrival - due`` a latency whichever process sent.
The run id tells this run's messages from anyone else's in the same rooms.

The runner and its worker processes exchange one JSON object per line over the workers'
standard input and output; `WorkerSpec` is the first line a worker reads.

>>> body = make_body(1_700_000_000_000_000_000, 42, size=16)
>>> len(body), read_body(body, 42), read_body(body, 7)
(16, 1700000000000000000, None)
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass
from typing import Any

from actorim.tools.loadtest.plan import Layout

__all__ = [
    "BODY_HEADER_BYTES",
    "WorkerSpec",
    "decode_line",
    "encode_line",
    "make_body",
    "read_body",
]

_BODY_HEADER = struct.Struct("!QI")
BODY_HEADER_BYTES = _BODY_HEADER.size
"""The smallest ``--size``: the due time (8 bytes) and the run id (4 bytes)."""


def make_body(due_ns: int, run_id: int, *, size: int) -> bytes:
    return _BODY_HEADER.pack(due_ns, run_id) + bytes(size - BODY_HEADER_BYTES)


def read_body(body: Any, run_id: int) -> int | None:
    """The due time a body of this run carries, or None for anybody else's message."""
    if type(body) is not bytes or len(body) < BODY_HEADER_BYTES:
        return None
    due_ns, body_run = _BODY_HEADER.unpack_from(body)
    return due_ns if body_run == run_id else None


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything one worker process needs to play its part."""

    process: int
    url: str
    layout: Layout
    rate: float | None
    """None: ``--max`` mode."""
    window: int
    ramp_s: float
    warmup_s: float
    duration_s: float
    size: int
    run_id: int
    token_source: str
    secret: str
    tokens: tuple[str, ...]
    """Tokens of this process's clients, in the order of `Layout.clients_of`."""
    user_prefix: str
    room_prefix: str
    connect_rate: float
    """Dials per second of this process."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerSpec:
        fields = dict(data)
        fields["layout"] = Layout(**fields["layout"])
        fields["tokens"] = tuple(fields["tokens"])
        return cls(**fields)


def encode_line(kind: str, **fields: Any) -> bytes:
    return json.dumps({"type": kind, **fields}, separators=(",", ":")).encode() + b"\n"


def decode_line(line: bytes) -> dict[str, Any]:
    """Raises ValueError for a line that is not a JSON object with a ``type``."""
    message = json.loads(line)
    if not isinstance(message, dict) or "type" not in message:
        raise ValueError(f"not a message: {line[:80]!r}")
    return message
