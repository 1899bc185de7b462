"""Attackers flood typing indicators into a room: it costs each attacker its rate limit (then
its connection, 1008, for one that ignores the refusals), never the room: the members hear at
most one indicator per attacker and ``typing_throttle``, and a bystander pair chats on at its
usual latency. A second attacker keeps just under the rate limit for the whole attack, so the
throttle, not the closing, is what keeps the room quiet."""

from __future__ import annotations

import json
import math
import struct
import time
from collections import Counter
from pathlib import Path

import msgpack
import pytest

from actorim.config import Config
from tests.attack import Bystander, attack_server, spawn_attack
from tests.support import OPCODE_BINARY, OPCODE_CLOSE, RawWebSocket, queued

pytestmark = pytest.mark.process  # the server and the attacker run in processes of their own

ROOM = "typing-flood"
ATTACK_SECONDS = 2.0  # the attacker bounds its own loop by this (or by being closed)
# The server's throttle, shorter than the default 2 s so that a short attack spans several.
TYPING_THROTTLE_S = 0.5
WINDOW = 256  # typing commands in flight: far beyond the rate limit's burst
PACED_RATE = 90.0  # commands a second of the attacker that keeps within the limit (100)


def flood_typing(port: int, token: str, result: str, rate: float | None = None) -> None:
    """Send ``typing {room}`` as fast as the window allows (or ``rate`` a second); count the
    replies by code, and record the close code if the server closes."""
    ws = RawWebSocket("127.0.0.1", port)
    ws.ok("connect", token=token)
    ws.ok("join", room=ROOM)
    codes: Counter[str] = Counter()
    close_code = None
    sent = answered = 0
    start = time.monotonic()
    deadline = start + ATTACK_SECONDS
    while True:
        while sent - answered < WINDOW and time.monotonic() < deadline:
            if rate is not None and sent >= (time.monotonic() - start) * rate:
                if sent == answered:
                    time.sleep(1 / rate)
                    continue
                break  # read a reply meanwhile
            sent += 1
            ws.send_obj({"t": "typing", "id": sent, "room": ROOM})
        if sent == answered:
            break
        frame = ws.read_frame(timeout=10)
        if frame is None:
            break
        opcode, payload = frame
        if opcode == OPCODE_CLOSE:
            close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            break
        if opcode == OPCODE_BINARY:
            reply = msgpack.unpackb(payload, raw=False)
            if reply.get("t") == "reply":
                answered += 1
                codes["ok" if reply["ok"] else reply["error"]["code"]] += 1
    ws.close()
    Path(result).write_text(json.dumps({"sent": sent, "codes": codes, "close": close_code}))


def test_a_typing_flood_costs_its_sender_the_rate_limit_and_the_room_one_event_per_throttle(
    tmp_path: Path,
) -> None:
    result, paced_result = tmp_path / "flood.json", tmp_path / "paced.json"
    config = Config(typing_throttle=TYPING_THROTTLE_S, typing_ttl=2 * TYPING_THROTTLE_S)
    throttle = ("--typing-throttle", str(config.typing_throttle))
    with attack_server(
        tmp_path / "data", *throttle, "--typing-ttl", str(config.typing_ttl)
    ) as server:
        member, poster = server.client("member"), server.client("poster")
        member.ok("join", room=ROOM)
        poster.ok("join", room=ROOM)
        bystander = Bystander(server).start()
        started = time.monotonic()
        with (
            spawn_attack(
                "tests.test_attack_typing:flood_typing",
                port=server.port,
                token=server.token("eve"),
                result=str(result),
            ) as flood,
            spawn_attack(
                "tests.test_attack_typing:flood_typing",
                port=server.port,
                token=server.token("mallory"),
                result=str(paced_result),
                rate=PACED_RATE,
            ) as paced,
        ):
            assert flood.wait(timeout=60) == 0
            assert paced.wait(timeout=60) == 0
        elapsed = time.monotonic() - started
        latencies = bystander.stop()
        # The room's path, after the whole flood: every indicator relayed is read before this.
        poster.ok("send", room=ROOM, body="after the flood")
        member.event("msg", room=ROOM, body="after the flood")
        relayed = queued(member, "typing", room=ROOM, user="eve")
        paced_relayed = queued(member, "typing", room=ROOM, user="mallory")
    outcome, paced_outcome = (json.loads(r.read_text()) for r in (result, paced_result))
    print(f"flood: {outcome}; the room heard {len(relayed)} of its indicators")
    print(f"paced: {paced_outcome}; the room heard {len(paced_relayed)} of its indicators")
    print(f"attack: {elapsed:.1f} s")
    latencies.assert_flowing()
    codes = outcome["codes"]
    assert codes.get("rate_limited", 0) > 0, "the flood was never refused"
    assert outcome["close"] == 1008, "sustained abuse of the rate limit must close the connection"
    # Allowed: one burst, then the rate, for as long as the attack lasted.
    assert codes.get("ok", 0) <= config.burst + config.rate * elapsed
    # The room heard eve at most once per throttle however many she sent.
    assert 1 <= len(relayed) <= math.floor(elapsed / config.typing_throttle) + 1, relayed
    # Within the rate limit for the whole attack: every command answered, the room still
    # hears one indicator per throttle.
    paced_codes = paced_outcome["codes"]
    assert set(paced_codes) == {"ok"} and paced_outcome["close"] is None, paced_outcome
    assert paced_codes["ok"] >= PACED_RATE * ATTACK_SECONDS * 0.8, paced_outcome
    most = math.floor(elapsed / config.typing_throttle) + 1
    assert 2 <= len(paced_relayed) <= most, paced_relayed
