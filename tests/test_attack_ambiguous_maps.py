"""An attacker floods wide MessagePack maps whose keys would collide for JSON peers."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.attack import Bystander, attack_server, spawn_attack
from tests.support import OPCODE_BINARY, OPCODE_CLOSE, RawWebSocket

pytestmark = pytest.mark.process  # the server and the attacker run in processes of their own

# Integer keys of a body map: about 4 bytes each packed, so the frame stays under the default
# max_frame_size (64 KiB) while every key must be looked at to find the collision at the end.
WIDE_KEYS = 12_000
# Bounds of the attack: frames sent, seconds spent, frames in flight.
ATTACK_FRAMES = 400
ATTACK_SECONDS = 4.0
WINDOW = 8


def flood_ambiguous_maps(port: int, token: str, result: str) -> None:
    """Send wide bodies with a key collision as fast as replies come; count the reply codes."""
    import msgpack

    body: dict[int | str, int] = dict.fromkeys(range(WIDE_KEYS), 0)
    body[str(WIDE_KEYS - 1)] = 1
    ws = RawWebSocket("127.0.0.1", port)
    ws.ok("connect", token=token)
    ws.ok("join", room="attack")
    codes: Counter[str] = Counter()
    sent = answered = 0
    deadline = time.monotonic() + ATTACK_SECONDS
    closed = False
    while answered < ATTACK_FRAMES and not closed:
        while sent - answered < WINDOW and sent < ATTACK_FRAMES and time.monotonic() < deadline:
            sent += 1
            ws.send_obj({"t": "send", "id": sent, "room": "attack", "body": body})
        if sent == answered:
            break
        frame = ws.read_frame(timeout=10)
        if frame is None or frame[0] == OPCODE_CLOSE:
            codes["closed"] += 1
            closed = True
        elif frame[0] == OPCODE_BINARY:
            reply = msgpack.unpackb(frame[1], raw=False, strict_map_key=False)
            if reply.get("t") == "reply":
                answered += 1
                codes["ok" if reply["ok"] else reply["error"]["code"]] += 1
    ws.close()
    Path(result).write_text(json.dumps({"sent": sent, "codes": codes}))


def test_wide_ambiguous_maps_are_refused_and_the_bystander_chats_on(tmp_path: Path) -> None:
    result = tmp_path / "attack.json"
    with attack_server(tmp_path / "data") as server:
        bystander = Bystander(server).start()
        with spawn_attack(
            "tests.test_attack_ambiguous_maps:flood_ambiguous_maps",
            port=server.port,
            token=server.token("eve"),
            result=str(result),
        ) as attack:
            assert attack.wait(timeout=60) == 0
        latencies = bystander.stop()
    outcome = json.loads(result.read_text())
    print(f"attacker: {outcome}")
    latencies.assert_flowing()
    codes = outcome["codes"]
    assert codes.get("bad_request", 0) > 0
    assert "ok" not in codes
