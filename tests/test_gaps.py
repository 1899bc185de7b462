"""Gaps are repaired without flooding anyone, and what is read for a repair stays bounded.

A room actor that missed messages (Redis was away, or the actor restarted) replays at most the
replay bounds to its members; beyond them it tells them the room skipped from one seq to
another, and the clients page ``history`` over it. A ``join since`` reads the store only up to
its byte bound. The Python client accepts the largest ``history`` page the server may send.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from actorim.client import Client as AppClient
from actorim.config import Config
from actorim.protocol.codec import Encoding, encode
from tests.support import Client, RunningNode

WAIT = 10.0  # seconds; a generous bound for what takes a fraction of one

# Under the 64 KiB frame limit with the send command's fields, and long enough that a 1 MiB page
# holds only a handful.
LARGE_BODY = 60_000


def busy(start_node: Callable[..., RunningNode], **settings: Any) -> RunningNode:
    # Senders pipeline large messages: the per-connection rate limit is not under test.
    return start_node(rate=100_000.0, burst=100_000.0, **settings)


def send_to_room(sender: Client, room: str, bodies: list[Any]) -> list[int]:
    """Send ``bodies`` to ``room``, pipelined; their seqs, in order."""
    ids = [next(sender.ids) for _ in bodies]
    for command_id, body in zip(ids, bodies, strict=True):
        sender.send_obj({"t": "send", "id": command_id, "room": room, "body": body})
    return [sender.reply_to(command_id, timeout=30)["data"]["seq"] for command_id in ids]


# -- the Python client's frame limit -----------------------------------------------------------


@pytest.mark.parametrize("json_frames", [False, True], ids=["msgpack", "json"])
def test_the_python_client_reads_a_history_page_of_the_largest_size(
    start_node: Callable[..., RunningNode], json_frames: bool
) -> None:
    node = busy(start_node)
    cap = Config().history_page_bytes
    encoding = Encoding.JSON if json_frames else Encoding.MSGPACK
    alice = node.client("alice", json_frames=json_frames)
    alice.ok("join", room="r")
    # What one message adds to a page beyond its body, measured on a message of the same shape
    # (its seq as long as theirs in JSON: two digits).
    send_to_room(alice, "r", ["warm-up"] * 9)
    [probe] = send_to_room(alice, "r", ["x" * LARGE_BODY])
    [stored] = alice.ok("history", room="r", after=probe - 1, limit=1)["messages"]
    per_message = len(encode(stored, encoding))
    # Messages that fill the page cap to the byte: as many large ones as fit, and one more.
    count = cap // per_message
    filler = cap - count * per_message - (per_message - LARGE_BODY)
    assert 256 <= filler <= LARGE_BODY, filler  # same string header as the large bodies
    seqs = send_to_room(alice, "r", ["x" * LARGE_BODY] * (count - 1) + ["y" * filler])
    bob = AppClient(node.url, node.token("bob"), json_frames=json_frames, request_timeout=WAIT)
    try:
        bob.connect(timeout=WAIT)
        page = bob.history("r", after=probe - 1, limit=100)
    finally:
        bob.close()
    assert [m["seq"] for m in page["messages"]] == [probe, *seqs]
    assert sum(len(encode(m, encoding)) for m in page["messages"]) == cap
    assert page["more"] is False
