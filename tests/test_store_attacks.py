"""Heavy store work asked for by some clients must not cost anyone else: large history pages
and floods of receipts, each within the connection's rate limit, beside a bystander pair.

The server runs in its own process with the SQLite store at its default ``synchronous=FULL``
(every commit synced: the expensive, real setting). Its data is seeded straight into the
database file before it starts, so the tests spend their time on the attack, not the set-up.
"""

from __future__ import annotations

import json
import random
import struct
import time
from pathlib import Path

import msgpack
import pytest

from actorim.store import SqliteStore, dm_conv, room_conv
from actorim.store.base import NewMessage
from tests.attack import Bystander, attack_server, spawn_attack
from tests.support import OPCODE_TEXT, Client, RawWebSocket

pytestmark = pytest.mark.process  # the server and the attackers run as processes

# The file the server's SQLite store uses inside its data directory (actorim/node.py).
DB_NAME = "actorim.sqlite3"

ATTACK_TIMEOUT_S = 120.0  # the attacker bounds its own loops; this only catches a hang


def seed(data_dir: Path, messages: list[NewMessage]) -> list[str]:
    """Store ``messages`` in the server's database before it starts; their mids, in order."""
    store = SqliteStore(data_dir / DB_NAME, synchronous="NORMAL")
    try:
        return [stored.mid for stored in store.append_batch(messages)]
    finally:
        store.close()


# -- receipts -----------------------------------------------------------------------------------

RECEIPT_ACCOUNTS = 14
RECEIPT_CONNECTIONS = 8  # per account, of the 20 a user may hold
RECEIPT_SECONDS = 3  # how long the flood lasts
RECEIPT_TICK_S = 0.1
RECEIPTS_PER_TICK = 10  # per connection: 100 a second, the default rate limit
# Each direct message gets an ack then a read, both of which advance its receipt (a write).
DMS_PER_CONNECTION = int(RECEIPT_SECONDS / RECEIPT_TICK_S * RECEIPTS_PER_TICK) // 2


def receipt_flood(port: int, tokens: list[str], mids_file: str) -> None:
    """Each connection (connected with ``tokens[i]``) acks, then reads, each of its direct
    messages (``mids[i]`` of the JSON file), at exactly the rate limit; every reply must
    succeed."""
    mids: list[list[str]] = json.loads(Path(mids_file).read_text())
    url = f"ws://127.0.0.1:{port}/ws"
    clients = []
    for token in tokens:
        client = Client(url)
        client.connect(token)
        clients.append(client)
    work = [[(t, mid) for mid in own for t in ("ack", "read")] for own in mids]
    sent: list[list[int]] = [[] for _ in clients]
    next_tick = time.monotonic()
    for start in range(0, max(len(w) for w in work), RECEIPTS_PER_TICK):
        for client, todo, ids in zip(clients, work, sent, strict=True):
            for t, mid in todo[start : start + RECEIPTS_PER_TICK]:
                command_id = next(client.ids)
                client.send_obj({"t": t, "id": command_id, "mid": mid})
                ids.append(command_id)
        next_tick += RECEIPT_TICK_S
        time.sleep(max(0.0, next_tick - time.monotonic()))
    for client, ids in zip(clients, sent, strict=True):
        for command_id in ids:
            reply = client.reply_to(command_id, timeout=60)
            assert reply["ok"] or reply["error"]["code"] == "overloaded", reply
        client.close()


@pytest.mark.timeout(ATTACK_TIMEOUT_S + 60)
def test_a_flood_of_receipts_does_not_hold_up_other_users_sends(tmp_path: Path) -> None:
    seed_value = 7
    print(f"seed {seed_value}")
    rng = random.Random(seed_value)
    accounts = [f"reader{i}" for i in range(RECEIPT_ACCOUNTS)]
    connections = RECEIPT_ACCOUNTS * RECEIPT_CONNECTIONS
    owners = [accounts[index % RECEIPT_ACCOUNTS] for index in range(connections)]
    ts = int(time.time() * 1000)
    dms: list[tuple[int, NewMessage]] = []
    for n in range(DMS_PER_CONNECTION):
        for index in rng.sample(range(connections), connections):
            user = owners[index]
            body = msgpack.packb(f"hi {n}")
            message = NewMessage(dm_conv("writer", user), "writer", "text", body, ts, to=user)
            dms.append((index, message))
    data_dir = tmp_path / "server"
    stored = seed(data_dir, [message for _, message in dms])
    mids: list[list[str]] = [[] for _ in range(connections)]
    for (index, _), mid in zip(dms, stored, strict=True):
        mids[index].append(mid)
    mids_file = tmp_path / "mids.json"
    mids_file.write_text(json.dumps(mids))
    with attack_server(data_dir, "--store-sync", "FULL") as server:
        bystander = Bystander(server).start()
        with spawn_attack(
            "tests.test_store_attacks:receipt_flood",
            port=server.port,
            tokens=[server.token(user) for user in owners],
            mids_file=str(mids_file),
        ) as attack:
            assert attack.wait(timeout=ATTACK_TIMEOUT_S) == 0
        bystander.measure_for(0.5)
        bystander.stop().assert_flowing()


# -- history ------------------------------------------------------------------------------------

# A body of 15,000 small numbers: 15 KB stored, 30 KB as JSON, well within the 64 KiB frame
# limit, and slow to decode and encode (an object per number): a page of 100 takes the server
# about 150 ms of CPU, and its 3 MB of JSON fit the 4 MiB outbox.
BIG_BODY_ITEMS = 15_000
BIG_MESSAGES = 100  # one full page at the largest limit
HISTORY_CONNECTIONS = 16
HISTORY_REQUESTS = 7  # per connection: about 100 in all, well within the burst of 200 commands


def history_pull(port: int, token: str, room: str, requests: int, connections: int) -> None:
    """Several JSON connections of one user each ask for the latest page of ``room``
    ``requests`` times, one request in flight per connection; each reply is a page or
    ``rate_limited``. Replies are only glanced at, so that the attacker keeps up."""
    sockets = [RawWebSocket("127.0.0.1", port) for _ in range(connections)]
    for ws in sockets:
        _json_command(ws, "connect", token=token)
        _glance_at_reply(ws)
    for _ in range(requests):
        for ws in sockets:
            _json_command(ws, "history", room=room, limit=100)
        for ws in sockets:
            _glance_at_reply(ws)
    for ws in sockets:
        ws.close()


def _json_command(ws: RawWebSocket, t: str, **args: object) -> None:
    command = {"t": t, "id": next(ws.ids), **args}
    ws.send_frame(OPCODE_TEXT, json.dumps(command).encode())


def _glance_at_reply(ws: RawWebSocket) -> None:
    while True:
        opcode, payload = _read_frame_fast(ws)
        assert opcode == OPCODE_TEXT, (opcode, payload[:100])
        if b'"ok":true' in payload[:64]:
            return  # a page (the reply's first keys are t, id, ok)
        reply = json.loads(payload)
        if reply.get("t") == "reply":
            assert reply["error"]["code"] == "rate_limited", reply
            return


def _read_frame_fast(ws: RawWebSocket) -> tuple[int, bytes]:
    """``ws.read_frame`` for megabyte frames: the payload is received in place, not by
    growing a bytes object chunk by chunk."""
    header = _receive(ws, 2)
    length = header[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", _receive(ws, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", _receive(ws, 8))[0]
    return header[0] & 0x0F, _receive(ws, length)


def _receive(ws: RawWebSocket, size: int) -> bytes:
    data = bytearray(size)
    view = memoryview(data)
    got = min(size, len(ws.buffer))
    view[:got] = ws.buffer[:got]
    ws.buffer = ws.buffer[got:]
    while got < size:
        received = ws.sock.recv_into(view[got:])
        assert received, "the server closed the connection"
        got += received
    return bytes(data)


@pytest.mark.timeout(ATTACK_TIMEOUT_S + 60)
def test_large_history_pages_do_not_hold_up_other_users(tmp_path: Path) -> None:
    data_dir = tmp_path / "server"
    ts = int(time.time() * 1000)
    body = msgpack.packb([0] * BIG_BODY_ITEMS)
    seed(
        data_dir,
        [
            NewMessage(room_conv("big"), "poster", "text", body, ts + n, room="big")
            for n in range(BIG_MESSAGES)
        ],
    )
    with attack_server(data_dir, "--store-sync", "FULL") as server:
        bystander = Bystander(server).start()
        with spawn_attack(
            "tests.test_store_attacks:history_pull",
            port=server.port,
            token=server.token("puller"),
            room="big",
            requests=HISTORY_REQUESTS,
            connections=HISTORY_CONNECTIONS,
        ) as attack:
            assert attack.wait(timeout=ATTACK_TIMEOUT_S) == 0
        bystander.measure_for(0.5)
        bystander.stop().assert_flowing()
