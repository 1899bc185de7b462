"""Heavy store work asked for by some clients must not cost anyone else: large history pages
and floods of receipts, each within the connection's rate limit, beside a bystander pair.

The server runs in its own process with the SQLite store at its default ``synchronous=FULL``
(every commit synced: the expensive, real setting). Its data is seeded straight into the
database file before it starts, so the tests spend their time on the attack, not the set-up.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import msgpack
import pytest

from actorim.store import SqliteStore, dm_conv, room_conv
from actorim.store.base import NewMessage
from tests.attack import Bystander, attack_server, spawn_attack
from tests.support import Client

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
    began = time.monotonic()
    next_tick = time.monotonic()
    for start in range(0, max(len(w) for w in work), RECEIPTS_PER_TICK):
        for client, todo, ids in zip(clients, work, sent, strict=True):
            for t, mid in todo[start : start + RECEIPTS_PER_TICK]:
                command_id = next(client.ids)
                client.send_obj({"t": t, "id": command_id, "mid": mid})
                ids.append(command_id)
        next_tick += RECEIPT_TICK_S
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print("sent", sum(map(len, sent)), "in", time.monotonic() - began)
    for client, ids in zip(clients, sent, strict=True):
        for command_id in ids:
            reply = client.reply_to(command_id, timeout=60)
            assert reply["ok"] or reply["error"]["code"] == "overloaded", reply
        client.close()
    print("answered in", time.monotonic() - began, flush=True)


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

BIG_BODY_CHARS = 30_000  # a body near half the 64 KiB frame limit
BIG_MESSAGES = 100  # one full page at the largest limit
HISTORY_CONNECTIONS = 4
HISTORY_REQUESTS = 25  # per connection: 100 in all, well within the burst of 200 commands


def _history(client: Client, room: str) -> int:
    command_id = next(client.ids)
    client.send_obj({"t": "history", "id": command_id, "room": room, "limit": 100})
    return command_id


def history_pull(port: int, token: str, room: str, requests: int, connections: int) -> None:
    """Several connections of one user each ask for the latest page of ``room`` over and over,
    one request at a time; each reply is a page or ``rate_limited``."""
    url = f"ws://127.0.0.1:{port}/ws"
    clients = [Client(url, json_frames=True) for _ in range(connections)]
    for client in clients:
        client.connect(token)
    pending: dict[int, Client] = {}
    for client in clients:
        pending[_history(client, room)] = client
    sent = len(clients)
    while pending:
        command_id, client = next(iter(pending.items()))
        del pending[command_id]
        reply = client.reply_to(command_id, timeout=60)
        assert reply["ok"] or reply["error"]["code"] == "rate_limited", reply
        if sent < requests * connections:
            pending[_history(client, room)] = client
            sent += 1
    for client in clients:
        client.close()


@pytest.mark.timeout(ATTACK_TIMEOUT_S + 60)
def test_large_history_pages_do_not_hold_up_other_users(tmp_path: Path) -> None:
    data_dir = tmp_path / "server"
    ts = int(time.time() * 1000)
    body = msgpack.packb("x" * BIG_BODY_CHARS)
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
