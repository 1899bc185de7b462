"""Every message store keeps a webhook outbox with the messages it stores: entries written with
their message, claimed under a lease, retried, buried in the dead-letter queue, revived and
deleted there, the same in the SQLite, memory and Redis stores (the promises of
``actorim.store.base``, item 7)."""

from __future__ import annotations

import doctest
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from actorim.domain.push import PushPolicy
from actorim.domain.webhooks import Endpoint, OutboxEntry
from actorim.protocol.events import encode_body
from actorim.protocol.webhooks import Webhooks
from actorim.redis.store import RedisStore
from actorim.store import MemoryStore, NewMessage, SqliteStore, Store, dm_conv, room_conv, roomadmin
from actorim.store.base import StoreError
from actorim.store.sqlite import SCHEMA_VERSION
from tests.test_embedding import Embedder, embed  # noqa: F401 (the fixture)
from tests.test_store_conformance import backend_params

pytest_plugins = ["tests.redis_server"]

REPO = Path(__file__).resolve().parents[1]
ALL = Endpoint("http://all.example/in", "s1")
PRESENCE = Endpoint("http://presence.example/in", "s2", ("user.online", "user.offline"))
PUSH = Endpoint("http://push.example/in", "s3", ("push.needed",))
POLICY = PushPolicy(window_s=10.0, grace_s=5.0, preview="full")
WEBHOOKS = Webhooks([ALL, PRESENCE, PUSH], POLICY)
LEASE = 30_000


def open_sqlite(data_dir: Path, request: pytest.FixtureRequest) -> Store:
    return SqliteStore(data_dir / "messages.db", outbox=WEBHOOKS.for_message)


def open_memory(data_dir: Path, request: pytest.FixtureRequest) -> Store:
    return MemoryStore(outbox=WEBHOOKS.for_message)


def open_redis(data_dir: Path, request: pytest.FixtureRequest) -> Store:
    client = request.getfixturevalue("redis_client")
    return RedisStore(client, namespace=data_dir.name, outbox=WEBHOOKS.for_message)


def open_redis_cluster(data_dir: Path, request: pytest.FixtureRequest) -> Store:
    client = request.getfixturevalue("redis_cluster_client")
    return RedisStore(client, namespace=data_dir.name, outbox=WEBHOOKS.for_message)


BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], Store]] = {
    "sqlite": open_sqlite,
    "memory": open_memory,
    "redis": open_redis,
    "redis-cluster": open_redis_cluster,
}


@pytest.fixture(params=backend_params(list(BACKENDS)))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = BACKENDS[request.param](tmp_path, request)
    yield opened
    opened.close()


def said(text: str, *, cid: str | None = None, ts: int = 1_000) -> NewMessage:
    body = encode_body(text)
    return NewMessage(room_conv("lobby"), "alice", "text", body, ts, cid=cid, room="lobby")


def change(kind: str, target: str, text: str | None = None, *, ts: int = 2_000) -> NewMessage:
    body = {"edit": encode_body(text), "delete": b""}.get(kind, b"+1")
    conv = room_conv("lobby")
    return NewMessage(conv, "alice", kind, body, ts, room="lobby", target=target)


def claim(store: Store, now_ms: int = 10_000, limit: int = 100) -> list[OutboxEntry]:
    return store.outbox_due(ALL.url, now_ms=now_ms, limit=limit, lease_ms=LEASE)


def test_each_stored_message_and_change_makes_one_entry_per_endpoint_that_wants_it(
    store: Store,
) -> None:
    [sent] = store.append_batch([said("hi", cid="c1")])
    [edit] = store.append_batch([change("edit", sent.mid, "hi!")])
    [react] = store.append_batch([change("react", sent.mid, ts=2_500)])
    assert react.seq == 3
    [gone] = store.append_batch([change("delete", sent.mid, ts=3_000)])
    direct = NewMessage(
        dm_conv("bob", "alice"), "bob", "text", encode_body("psst"), 4_000, to="alice"
    )
    [dm] = store.append_batch([direct])
    entries = claim(store)
    assert [(e.type, e.event) for e in entries] == [
        ("message.created", "ev_" + sent.mid),
        ("message.edited", "ev_" + edit.mid),
        ("message.deleted", "ev_" + gone.mid),
        ("message.created", "ev_" + dm.mid),
    ]
    data = [json.loads(e.data) for e in entries]
    assert data[0] == {
        "mid": sent.mid, "room": "lobby", "from": "alice", "seq": 1, "ts": 1_000,
        "kind": "text", "body": "hi", "cid": "c1",
    }  # fmt: skip
    assert data[1]["body"] == "hi!" and data[1]["change"] == edit.mid and data[1]["mid"] == sent.mid
    assert "body" not in data[2] and data[2]["seq"] == 4
    assert data[3]["to"] == "alice" and data[3]["from"] == "bob"
    assert all(e.attempts == 0 and e.dead is None and e.endpoint == ALL.url for e in entries)
    presence = store.outbox_due(PRESENCE.url, now_ms=10_000, limit=100, lease_ms=LEASE)
    assert presence == []


def test_a_resend_a_refused_change_and_an_unchanged_reaction_add_nothing(store: Store) -> None:
    [sent] = store.append_batch([said("hi", cid="c1")])
    [first] = claim(store)
    store.outbox_done(first)
    [again] = store.append_batch([said("hi", cid="c1")])
    assert again.duplicate
    [refused] = store.append_batch([change("edit", "0000000000000000xx", "no")])
    assert refused.refused == "unknown"
    store.append_batch([change("unreact", sent.mid)])
    assert claim(store) == []


def test_a_claim_leases_the_soonest_due_entries_until_the_lease_runs_out(store: Store) -> None:
    store.append_batch([said(f"m{n}", ts=1_000 + n) for n in range(3)])
    first = claim(store, limit=2)
    assert [json.loads(e.data)["seq"] for e in first] == [1, 2]
    [third] = claim(store, limit=2)
    assert json.loads(third.data)["seq"] == 3
    assert claim(store, now_ms=10_000 + LEASE - 1) == []
    assert [e.key for e in claim(store, now_ms=10_000 + LEASE)] == [e.key for e in [*first, third]]


def test_retry_reschedules_and_bury_moves_to_the_dead_letter_queue(store: Store) -> None:
    store.append_batch([said("a", ts=1_000), said("b", ts=1_001)])
    a, b = claim(store)
    store.outbox_retry(a.retried(due=50_000, error="HTTP 500"))
    store.outbox_bury(b.buried(now=20_000, error="connection refused"))
    assert claim(store, now_ms=49_999) == []
    [again] = claim(store, now_ms=50_000)
    assert (again.key, again.attempts, again.error) == (a.key, 1, "HTTP 500")
    [dead] = store.dead_list(limit=10)
    assert (dead.key, dead.attempts, dead.dead, dead.error) == (
        b.key,
        1,
        20_000,
        "connection refused",
    )
    # A dead entry is not delivered, retried or forgotten by the dispatcher's calls.
    store.outbox_done(dead)
    store.outbox_retry(dead.retried(due=0, error="x"))
    assert store.dead_list(limit=10) == [dead]
    assert [e.key for e in claim(store, now_ms=10**9)] == [a.key]


def test_dead_entries_page_by_key_and_are_revived_or_deleted_once(store: Store) -> None:
    store.append_batch([said(f"m{n}", ts=1_000 + n) for n in range(5)])
    for entry in claim(store):
        store.outbox_bury(entry.buried(now=30_000, error="gone"))
    keys = [e.key for e in store.dead_list(limit=10)]
    assert keys == sorted(keys) and len(keys) == 5
    assert [e.key for e in store.dead_list(limit=2)] == keys[:2]
    assert [e.key for e in store.dead_list(limit=10, after=keys[1])] == keys[2:]
    assert store.dead_retry(keys[0], now_ms=40_000)
    assert not store.dead_retry(keys[0], now_ms=40_000)
    assert store.dead_delete(keys[1])
    assert not store.dead_delete(keys[1])
    assert not store.dead_delete(keys[0])  # live again, not dead
    assert not store.dead_retry("no-such-key", now_ms=40_000)
    assert [e.key for e in store.dead_list(limit=10)] == keys[2:]
    [revived] = claim(store, now_ms=40_000)
    assert (revived.key, revived.attempts, revived.dead) == (keys[0], 0, None)


def test_added_entries_are_kept_once_by_key(store: Store) -> None:
    entries = WEBHOOKS.for_presence("bob", "online", 5_000)
    assert [e.endpoint for e in entries] == [ALL.url, PRESENCE.url]
    store.outbox_add(entries)
    store.outbox_add(entries)
    [claimed] = store.outbox_due(PRESENCE.url, now_ms=5_000, limit=10, lease_ms=LEASE)
    assert (claimed.type, json.loads(claimed.data)) == (
        "user.online",
        {"user": "bob", "status": "online", "ts": 5_000},
    )
    store.outbox_done(claimed)
    assert store.outbox_due(PRESENCE.url, now_ms=10**9, limit=10, lease_ms=LEASE) == []


def dm(text: str, ts: int, sender: str = "alice", to: str = "bob") -> NewMessage:
    return NewMessage(dm_conv(sender, to), sender, "text", encode_body(text), ts, to=to)


def claim_pushes(store: Store, now_ms: int) -> list[OutboxEntry]:
    return store.outbox_due(PUSH.url, now_ms=now_ms, limit=100, lease_ms=LEASE)


def test_messages_of_one_window_join_one_pending_push_that_carries_the_latest(
    store: Store,
) -> None:
    """Direct messages and mentions make a pending push.needed per recipient and window, due
    the grace after the window: a later message of the window replaces the kept message
    until the push is claimed, and a later window makes a push of its own."""
    mention = NewMessage(
        room_conv("lobby"), "carol", "text", encode_body("@bob look"), 12_000,
        room="lobby", mentions=("bob",),
    )  # fmt: skip
    store.append_batch([dm("one", 10_500), dm("two", 11_000)])
    store.append_batch([mention, dm("self", 13_000, "bob", "bob"), dm("three", 14_000)])
    assert claim_pushes(store, POLICY.due_of(10_500) - 1) == []
    [push] = claim_pushes(store, POLICY.due_of(10_500))
    assert (push.type, push.ts) == ("push.needed", 10_000)
    data = json.loads(push.data)
    assert data["user"] == "bob" and data["conversation"] == {"with": "alice"}
    assert data["message"]["body"] == "three" and data["message"]["from"] == "alice"
    store.append_batch([dm("four", 15_000)])  # claimed: the kept message stays
    store.outbox_retry(push.retried(due=POLICY.due_of(10_500) + 1, error="HTTP 500"))
    [again] = claim_pushes(store, POLICY.due_of(10_500) + 1)
    assert again.key == push.key and json.loads(again.data)["message"]["body"] == "three"
    store.append_batch([dm("later", 20_000)])
    [later] = claim_pushes(store, POLICY.due_of(20_000))
    assert later.key != push.key and json.loads(later.data)["message"]["body"] == "later"
    store.append_batch([replace(mention, ts=30_000)])
    [alone] = claim_pushes(store, POLICY.due_of(30_000))
    assert json.loads(alone.data)["conversation"] == {"room": "lobby"}
    assert [e.type for e in claim(store, now_ms=10**9)] == ["message.created"] * 8


def test_sqlite_outbox_entries_are_committed_with_their_message(tmp_path: Path) -> None:
    path = tmp_path / "messages.db"
    store = SqliteStore(path, outbox=WEBHOOKS.for_message)
    [sent] = store.append_batch([said("kept")])
    store.close()
    reopened = SqliteStore(path, outbox=WEBHOOKS.for_message)
    try:
        assert [e.event for e in claim(reopened)] == ["ev_" + sent.mid]
    finally:
        reopened.close()


def test_schema_4_data_directory_migrates_to_an_empty_outbox_that_then_fills(
    tmp_path: Path,
) -> None:
    path = tmp_path / "messages.db"
    path.write_bytes((REPO / "tests" / "data" / "messages-v4.db").read_bytes())
    store = SqliteStore(path, outbox=WEBHOOKS.for_message)
    try:
        assert claim(store) == [] and store.dead_list(limit=10) == []
        [sent] = store.append_batch([said("after the upgrade", ts=1_700_000_000_100)])
        assert sent.seq == 7  # three messages, an edit, a delete and a reaction before it
        [entry] = claim(store, now_ms=1_800_000_000_000)
        assert json.loads(entry.data)["body"] == "after the upgrade"
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


def test_the_examples_in_the_webhook_modules_hold() -> None:
    import actorim.domain.push
    import actorim.domain.webhooks
    import actorim.protocol.webhooks
    import actorim.redis.outbox

    modules = (
        actorim.domain.push,
        actorim.domain.webhooks,
        actorim.protocol.webhooks,
        actorim.redis.outbox,
    )
    for module in modules:
        assert doctest.testmod(module).failed == 0, module.__name__


def _refuse_outbox_writes(path: Path, refuse: bool) -> None:
    """Make every write to the SQLite outbox fail (a real SQLite error), or stop doing so."""
    with sqlite3.connect(path) as conn:
        if refuse:
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON webhook_outbox "
                "BEGIN SELECT RAISE(ABORT, 'the disk is full'); END"
            )
        else:
            conn.execute("DROP TRIGGER refuse")


def test_a_membership_change_is_kept_with_its_webhook_event_or_not_at_all(
    tmp_path: Path,
) -> None:
    path = tmp_path / "messages.db"
    store = SqliteStore(path, outbox=WEBHOOKS.for_message)
    rooms: dict[str, Any] = {"store": store, "webhooks": WEBHOOKS, "now_ms": 1_000}
    try:
        roomadmin.create_room(
            room="ops", title="", topic="", public=True, members=["al"], max_rooms=10, **rooms
        )
        claim(store)
        _refuse_outbox_writes(path, True)
        with pytest.raises(StoreError):
            roomadmin.add_member(room="ops", user="bo", max_rooms=10, **rooms)
        with pytest.raises(StoreError):
            roomadmin.remove_member(room="ops", user="al", **rooms)
        with pytest.raises(StoreError):
            roomadmin.delete_room(room="ops", **rooms)
        with pytest.raises(StoreError):
            roomadmin.create_room(
                room="dev", title="", topic="", public=True, members=["al"], max_rooms=10, **rooms
            )
        assert store.members_of("ops", limit=10) == (["al"], False)
        assert store.rooms_of("al") == ["ops"] and store.room_info(["dev"]) == {}
        _refuse_outbox_writes(path, False)
        roomadmin.add_member(room="ops", user="bo", max_rooms=10, **rooms)
        assert [e.type for e in claim(store)] == ["room.member_added"]
    finally:
        store.close()


def test_a_join_or_leave_whose_webhook_event_cannot_be_kept_changes_nothing(
    embed: Embedder,  # noqa: F811
) -> None:
    # The endpoint is never reached: the events stay in the outbox, where the test reads them.
    node = embed.node(store="sqlite", webhooks=(Endpoint("http://127.0.0.1:9/in", "s1"),))
    host, port = node.listen("127.0.0.1", 0)
    al = embed.client(f"ws://{host}:{port}/ws", node, "al")
    path = embed.data_dir / "actorim.sqlite3"
    _refuse_outbox_writes(path, True)
    assert al.error("join", room="ops")["code"] == "internal"
    assert al.ok("conversations")["conversations"] == []
    _refuse_outbox_writes(path, False)
    al.ok("join", room="ops")
    _refuse_outbox_writes(path, True)
    assert al.error("leave", room="ops")["code"] == "internal"
    assert [c["room"] for c in al.ok("conversations")["conversations"]] == ["ops"]
