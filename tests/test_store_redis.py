"""What the Redis message store adds to the promises every store keeps (those are proved in
test_store_conformance.py): acknowledged messages survive Redis being killed and restarted on its
append-only file, every new message is published once where the cluster bus listens, a
conversation's keys stay on one hash slot, and prune needs no SCAN."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
import redis
from redis.crc import key_slot

from actorim.redis.store import RedisStore, StoreKeys, decode_published, encode_published
from actorim.store import NewMessage, StoredMessage, StoreError, dm_conv, room_conv

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytest_plugins = ["tests.redis_server"]

StartRedis = Callable[..., "RedisServer"]

# How long a subscriber waits for a message that must come.
PUBLISH_TIMEOUT = 5.0


def room_msg(
    text: str = "hi",
    *,
    room: str = "lobby",
    sender: str = "alice",
    ts: int = 1_000,
    cid: str | None = None,
) -> NewMessage:
    return NewMessage(room_conv(room), sender, "text", text.encode(), ts, cid=cid, room=room)


def direct(sender: str, to: str, *, ts: int = 1_000, cid: str | None = None) -> NewMessage:
    return NewMessage(dm_conv(sender, to), sender, "text", b"psst", ts, cid=cid, to=to)


def seqs(messages: list[StoredMessage]) -> list[int]:
    return [m.seq for m in messages]


def published(stored: StoredMessage) -> StoredMessage:
    """``stored`` as a subscriber sees it: the published form has no duplicate flag."""
    return decode_published(encode_published(stored))


@pytest.fixture
def store(redis_client: redis.Redis) -> Iterator[RedisStore]:
    store = RedisStore(redis_client, namespace="im")
    yield store
    store.close()


@pytest.fixture
def subscriber(redis_client: redis.Redis) -> Iterator[redis.client.PubSub]:
    pubsub = redis_client.pubsub()
    yield pubsub
    pubsub.close()


def subscribe(pubsub: redis.client.PubSub, *channels: str) -> None:
    """Subscribe and wait until Redis confirmed every channel."""
    pubsub.subscribe(*channels)
    for _ in channels:
        confirmation = pubsub.get_message(timeout=PUBLISH_TIMEOUT)
        assert confirmation is not None and confirmation["type"] == "subscribe"


def next_published(pubsub: redis.client.PubSub) -> tuple[str, StoredMessage]:
    """The next message on a subscribed channel."""
    message = pubsub.get_message(timeout=PUBLISH_TIMEOUT)
    assert message is not None, "nothing was published"
    assert message["type"] == "message"
    return message["channel"].decode(), decode_published(message["data"])


# -- durability -----------------------------------------------------------------------------


def test_acknowledged_messages_survive_redis_being_killed_and_restarted(
    redis_server: StartRedis,
) -> None:
    server = redis_server()
    client = server.client()
    store = RedisStore(client, namespace="im")
    epoch = store.epoch()
    stored = store.append_batch([room_msg("one", cid="c1"), direct("alice", "bob", cid="c2")])
    stored += store.append_batch([room_msg("two")])
    store.mark(stored[1].mid, "bob", "delivered")
    [pending] = store.append_batch([direct("carol", "bob")])

    server.kill()  # SIGKILL right after the appends returned: nothing more reaches the disk
    server.start()  # the same port and directory: Redis replays its append-only file

    try:
        assert [store.get(m.mid) for m in stored] == stored
        page, complete = store.since(room_conv("lobby"), 0, limit=10)
        assert complete and page == [stored[0], stored[2]]
        assert store.epoch() == epoch
        assert store.pending_for("bob", limit=10) == [pending]
        assert store.mark(stored[1].mid, "bob", "delivered") is None
        [again] = store.append_batch([room_msg("one", cid="c1")])
        assert again.duplicate and again.mid == stored[0].mid
        assert store.append_batch([room_msg("three")])[0].seq == 3
    finally:
        store.close()
        client.close()


def test_calls_while_redis_is_down_raise_store_error_and_work_once_it_is_back(
    redis_server: StartRedis,
) -> None:
    server = redis_server()
    client = server.client(retries=False)
    store = RedisStore(client, namespace="im")
    store.append_batch([room_msg()])
    server.stop()

    with pytest.raises(StoreError, match=f"Redis at 127.0.0.1:{server.port} did not answer"):
        store.append_batch([room_msg(cid="c1")])
    with pytest.raises(StoreError, match="check that Redis is running"):
        store.since(room_conv("lobby"), 0, limit=10)
    with pytest.raises(StoreError):
        store.pending_for("bob", limit=10)

    server.start()
    try:
        assert store.append_batch([room_msg(cid="c1")])[0].seq == 2
    finally:
        store.close()
        client.close()


def test_redis_that_refuses_writes_stores_nothing_and_leaves_no_gap(
    redis_server: StartRedis,
) -> None:
    server = redis_server()
    client = server.client()
    store = RedisStore(client, namespace="im")
    store.append_batch([room_msg()])
    client.config_set("maxmemory", 1)  # with noeviction: every write is refused (OOM)
    try:
        with pytest.raises(StoreError, match="maxmemory"):
            store.append_batch([room_msg()])
        client.config_set("maxmemory", 0)
        assert store.last_seq(room_conv("lobby")) == 1
        assert store.append_batch([room_msg()])[0].seq == 2
    finally:
        store.close()
        client.close()


def test_store_on_redis_without_a_synced_append_only_file_warns(
    redis_server: StartRedis, caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_server()
    client = server.client()
    try:
        with caplog.at_level(logging.WARNING, logger="actorim.store"):
            RedisStore(client).close()
            # The store's own warnings only: the hub monitor may report a slow start on a
            # loaded machine, which says nothing about the append-only file.
            assert not [r for r in caplog.records if r.name == "actorim.store"]
            client.config_set("appendfsync", "everysec")
            RedisStore(client).close()
        assert "appendfsync=everysec" in caplog.text
        assert "set appendonly yes and appendfsync always" in caplog.text
    finally:
        client.close()


def test_wiping_redis_gives_the_store_a_new_epoch(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    epoch = store.epoch()
    store.append_batch([room_msg()])
    assert store.epoch() == epoch
    redis_client.flushall()
    assert store.epoch() != epoch
    assert store.append_batch([room_msg()])[0].seq == 1


# -- publishing -----------------------------------------------------------------------------


def test_new_message_is_published_on_its_conversation_channel_once(
    store: RedisStore, subscriber: redis.client.PubSub
) -> None:
    channel = store.keys.conversation_channel(room_conv("lobby"))
    assert channel == "im:{r:lobby}"
    subscribe(subscriber, channel)

    [first] = store.append_batch([room_msg("one", cid="c1")])
    [resent, second] = store.append_batch([room_msg("one", cid="c1"), room_msg("two")])

    assert resent.duplicate
    assert next_published(subscriber) == (channel, first)
    assert next_published(subscriber) == (channel, second)  # the resend was not published


def test_direct_message_is_published_to_the_conversation_and_both_users(
    store: RedisStore, subscriber: redis.client.PubSub
) -> None:
    keys = store.keys
    channels = {
        keys.conversation_channel(dm_conv("alice", "bob")),
        keys.user_channel("alice"),
        keys.user_channel("bob"),
    }
    subscribe(subscriber, *channels)

    [msg] = store.append_batch([direct("alice", "bob", cid="c1")])
    store.append_batch([direct("alice", "bob", cid="c1")])
    [later] = store.append_batch([direct("bob", "alice")])

    seen = [next_published(subscriber) for _ in range(6)]
    # Each channel's messages come in order: the resend was published on none of them.
    assert sorted(seen[:3]) == sorted((channel, published(msg)) for channel in channels)
    assert sorted(seen[3:]) == sorted((channel, published(later)) for channel in channels)


def test_published_form_carries_every_field_and_refuses_anything_else() -> None:
    msg = StoredMessage("065svpb80000000000", "d:a|b", 7, 1_000, "a", "text", b"\xff\x00", None,
                        None, "b")  # fmt: skip
    assert decode_published(encode_published(msg)) == msg
    for garbage in (b"", b"\x93\x01\x02\x03", encode_published(msg)[:-3], b"\x81\xa3mid\x01"):
        with pytest.raises(ValueError, match="not a published message"):
            decode_published(garbage)


# -- layout ---------------------------------------------------------------------------------


def test_a_conversations_keys_share_its_slot_and_a_recipients_keys_theirs(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    store.append_batch([room_msg(cid="c1"), direct("alice", "bob", cid="c2")])
    keys = {k.decode() for k in redis_client.keys("im:*")}

    def slots(tag: str) -> set[int]:
        return {key_slot(k.encode()) for k in keys if f"{{{tag}}}" in k}

    assert {k for k in keys if "{r:lobby}" in k} == {
        f"im:{{r:lobby}}:{name}" for name in ("seq", "log", "cids", "mids", "age", "unread", "own")
    }
    assert {k for k in keys if "{u:bob}" in k} == {
        f"im:{{u:bob}}:{name}" for name in ("inbox", "pending", "order", "partners")
    }
    for tag, channel in [
        ("r:lobby", store.keys.conversation_channel("r:lobby")),
        ("d:alice|bob", store.keys.conversation_channel("d:alice|bob")),
        ("u:bob", store.keys.user_channel("bob")),
    ]:
        assert slots(tag) == {key_slot(channel.encode())}, tag
    assert "im:{d:alice|bob}:receipts" in keys
    assert {k for k in keys if "{u:alice}" in k} == {
        "im:{u:alice}:partners",
        "im:{u:alice}:authored",
    }, "a sender gets no index of their own but their partners and where they wrote"
    assert slots("u:alice") == {key_slot(store.keys.user_channel("alice").encode())}


def test_messages_stored_before_the_authored_sets_are_found_after_the_backfill(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    store.append_batch([room_msg("a1", room="left"), room_msg("a2", room="left")])
    store.append_batch([room_msg("b", room="left", sender="bob"), direct("alice", "bob")])
    store.append_batch([room_msg("gone", room="gone")])
    [gone] = store.authored(room_conv("gone"), "alice", limit=1)
    store.append_batch([NewMessage(gone.conv, "alice", "delete", b"", 2_000, room="gone",
                                   target=gone.mid)])  # fmt: skip
    # As written by a version without the sets.
    redis_client.delete(store.keys.authored("alice"), store.keys.authored("bob"))
    assert store.authored_conversations("alice", limit=10) == []

    assert store.backfill_authored(batch=1) == 3  # alice in two conversations, bob in one
    alice = store.keys.authored("alice")
    assert redis_client.zrange(alice, 0, -1, withscores=True) == [
        (dm_conv("alice", "bob").encode(), 1.0),
        (room_conv("left").encode(), 2.0),  # her latest there
    ]
    assert store.authored_conversations("bob", limit=10) == [room_conv("left")]
    assert store.backfill_authored() == 3  # idempotent
    assert len(redis_client.zrange(alice, 0, -1)) == 2
    with pytest.raises(ValueError, match="batch"):
        store.backfill_authored(batch=0)


def test_the_backfill_command_fills_the_authored_sets_of_a_namespace(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    store.append_batch([room_msg("a1", room="left"), direct("bob", "alice")])
    redis_client.delete(store.keys.authored("alice"), store.keys.authored("bob"))
    port = redis_client.connection_pool.connection_kwargs["port"]
    command = [sys.executable, "-m", "actorim", "backfill-authored"]
    done = subprocess.run(
        [*command, "--redis-url", f"redis://127.0.0.1:{port}/0", "--redis-namespace", "im"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == "2 (user, conversation) entries written\n"
    assert store.authored_conversations("alice", limit=10) == [room_conv("left")]
    assert store.authored_conversations("bob", limit=10) == [dm_conv("alice", "bob")]
    missing = subprocess.run(command, capture_output=True, text=True, env={}, check=False)
    assert missing.returncode == 2 and "--redis-url or ACTORIM_REDIS_URL" in missing.stderr


def test_a_stale_authored_entry_is_skipped_and_forgotten_once_read(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    # A second step that wrote the entry after the one that should have removed it, or a lost
    # one: the set names a conversation where the user has nothing left.
    store.append_batch([room_msg("here", room="here")])
    alice = store.keys.authored("alice")
    redis_client.zadd(alice, {room_conv("ghost"): 0, room_conv("empty"): 0})
    assert store.authored_conversations("alice", limit=1) == [room_conv("here")]
    assert redis_client.zcard(alice) == 1


def test_a_late_removal_from_an_authored_set_keeps_what_a_later_message_wrote(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    # Second steps run in any order: the removal a delete at seq 1 reported may come after the
    # entry a later message (seq 2) wrote; the scores are seqs, so the entry stays.
    store.append_batch([room_msg("one", room="x"), room_msg("two", room="x")])
    alice = store.keys.authored("alice")
    assert redis_client.zscore(alice, room_conv("x")) == 2
    pipe = redis_client.pipeline()
    store._unauthor(pipe, "alice", room_conv("x"), 1)
    pipe.execute()
    assert redis_client.zscore(alice, room_conv("x")) == 2
    store._unauthor(pipe, "alice", room_conv("x"), 2)
    pipe.execute()
    assert redis_client.zscore(alice, room_conv("x")) is None


def test_membership_is_kept_per_user_and_per_room_not_under_one_tag(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    store.join_room("alice", "lobby", max_rooms=10)
    store.join_room("bob", "team", max_rooms=10)
    store.update_room("bob", "team", title="Team")
    keys = {k.decode() for k in redis_client.keys("im:*")}
    assert keys == {
        "im:{u:alice}:rooms",
        "im:{u:bob}:rooms",
        "im:{r:lobby}:roster",
        "im:{r:lobby}:info",
        "im:{r:team}:roster",
        "im:{r:team}:info",
        "im:directory",
        "im:epoch",
    }
    assert key_slot(b"im:{r:team}:roster") == key_slot(b"im:{r:team}:info")
    assert key_slot(b"im:{u:alice}:rooms") != key_slot(b"im:{u:bob}:rooms")


def test_stores_in_different_namespaces_share_nothing(redis_client: redis.Redis) -> None:
    one, two = RedisStore(redis_client, namespace="one"), RedisStore(redis_client, namespace="two")
    [msg] = one.append_batch([direct("alice", "bob", cid="c1")])
    assert one.epoch() != two.epoch()
    assert two.last_seq(dm_conv("alice", "bob")) == 0
    assert two.get(msg.mid) is None and two.pending_for("bob", limit=10) == []
    assert not two.append_batch([direct("alice", "bob", cid="c1")])[0].duplicate


@pytest.mark.parametrize("namespace", ["", "a{b}", "with space", "x" * 65])
def test_namespace_that_could_break_the_key_layout_is_refused(namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        StoreKeys(namespace)


def test_client_that_decodes_responses_is_refused(redis_session: RedisServer) -> None:
    client = redis_session.client(decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisStore(client)
    client.close()


# -- de-duplication, pending and retention --------------------------------------------------


def test_cid_is_recognised_within_its_conversation_only(store: RedisStore) -> None:
    lobby, other, dm = store.append_batch(
        [room_msg(cid="c1"), room_msg(room="other", cid="c1"), direct("alice", "bob", cid="c1")]
    )
    assert not (other.duplicate or dm.duplicate)
    assert len({lobby.mid, other.mid, dm.mid}) == 3
    assert store.append_batch([room_msg(room="other", cid="c1")])[0].mid == other.mid


def test_resend_restores_a_pending_entry_the_first_append_could_not_write(
    store: RedisStore, redis_client: redis.Redis, subscriber: redis.client.PubSub
) -> None:
    [msg] = store.append_batch([direct("alice", "bob", cid="c1")])
    # As if the connection broke between the message's script and its recipient's index.
    redis_client.delete(*store.keys.user("bob"))
    subscribe(subscriber, store.keys.user_channel("bob"))

    [again] = store.append_batch([direct("alice", "bob", cid="c1")])

    assert again.duplicate and again.mid == msg.mid
    assert store.pending_for("bob", limit=10) == [msg]
    assert next_published(subscriber) == (store.keys.user_channel("bob"), msg)


def test_pending_skips_and_forgets_messages_whose_conversation_lost_them(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    gone, kept = store.append_batch([direct("alice", "bob"), direct("carol", "bob")])
    # As if a prune removed the conversation's messages but not the recipient's index entry.
    redis_client.delete(*store.keys.conversation(dm_conv("alice", "bob")))

    assert store.pending_for("bob", limit=1) == [kept]
    inbox = store.keys.user("bob")[0]
    assert redis_client.hkeys(inbox) == [kept.mid.encode()]
    assert store.mark(gone.mid, "bob", "read") is None


def test_appends_keep_a_busy_conversation_within_the_stores_retention(
    redis_client: redis.Redis,
) -> None:
    store = RedisStore(redis_client, namespace="im", retention_count=3, max_age_ms=10_000)
    first = store.append_batch([direct("alice", "bob", cid=f"c{i}", ts=1_000) for i in range(4)])
    assert seqs(store.since(dm_conv("alice", "bob"), 0, limit=10)[0]) == [2, 3, 4]
    assert store.pending_for("bob", limit=10) == first[1:]
    inbox = store.keys.user("bob")[0]
    assert sorted(redis_client.hkeys(inbox)) == sorted(m.mid.encode() for m in first[1:])
    assert not store.append_batch([direct("alice", "bob", cid="c0", ts=1_000)])[0].duplicate

    store.append_batch([direct("alice", "bob", ts=11_500)])  # c1..c3 (ts 1000) are too old now
    page, complete = store.since(dm_conv("alice", "bob"), 0, limit=10)
    assert seqs(page) == [5, 6] and not complete
    assert store.get(first[1].mid) is None


def test_small_prune_budget_takes_the_conversation_with_the_oldest_messages_first(
    store: RedisStore,
) -> None:
    store.append_batch(
        [room_msg(room="b", ts=ts) for ts in (1_000, 1_001, 1_002)]
        + [room_msg(room="a", ts=ts) for ts in (1_500, 1_501)]
    )

    def prune() -> int:
        return store.prune(now_ms=12_000, max_age_ms=10_000, budget=2)

    assert prune() == 2  # b's two oldest
    assert seqs(store.history(room_conv("b"), limit=10)[0]) == [3]
    assert prune() == 2  # b's last, then a's oldest
    assert seqs(store.history(room_conv("b"), limit=10)[0]) == []
    assert seqs(store.history(room_conv("a"), limit=10)[0]) == [2]
    assert [prune(), prune()] == [1, 0]


def test_prune_finds_conversations_without_scanning_the_keyspace(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    for room in ("a", "b", "c"):
        store.append_batch([room_msg(room=room, ts=1_000 + i) for i in range(5)])
    redis_client.config_resetstat()

    assert store.prune(now_ms=1_000, max_count=2, max_age_ms=10_000) == 9
    assert store.prune(now_ms=20_000, max_age_ms=10_000) == 6

    used = {name.removeprefix("cmdstat_") for name in redis_client.info("commandstats")}
    assert used & {"scan", "keys", "sscan", "hscan", "zscan"} == set()


def test_missing_redis_server_skips_here_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.redis_server as helper

    monkeypatch.setattr(helper.shutil, "which", lambda name: None)
    monkeypatch.setattr(helper.os, "access", lambda path, mode: False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="redis-server is not installed"):
        helper.find_redis_server()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="redis-server is not installed"):
        helper.find_redis_server()


def test_store_made_from_a_url_closes_its_own_client(redis_session: RedisServer) -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{redis_session.port}/0", namespace="url")
    assert store.append_batch([room_msg()])[0].seq == 1
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.last_seq(room_conv("lobby"))


def _every_value(client: redis.Redis) -> list[bytes]:
    """Everything a client can read back from every key, by each key's own read commands."""
    values: list[bytes] = []
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == b"stream":
            values += [v for _, fields in client.xrange(key) for v in fields.values()]
        elif kind == b"zset":
            values += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"hash":
            values += list(client.hgetall(key).values())
        elif kind == b"string":
            values.append(client.get(key) or b"")
    return values


def test_deleted_body_cannot_be_read_back_from_any_key(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    [msg] = store.append_batch([room_msg("ORIGINAL-5c1d")])
    edit = NewMessage(
        msg.conv, "alice", "edit", b"EDITED-9e0b", 1_001, room="lobby", target=msg.mid
    )
    store.append_batch([edit, room_msg("after", ts=1_002)])
    assert any(b"EDITED-9e0b" in value for value in _every_value(redis_client))
    gone = NewMessage(msg.conv, "alice", "delete", b"", 1_003, room="lobby", target=msg.mid)
    store.append_batch([gone])
    for value in _every_value(redis_client):
        assert b"ORIGINAL-5c1d" not in value and b"EDITED-9e0b" not in value


def test_prune_rewrites_a_log_so_a_deleted_body_leaves_redis_memory_and_snapshots(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    # More than the rewrite's 100 entries a step.
    msgs = store.append_batch([room_msg(f"m{i}", ts=1_000) for i in range(150)])
    [secret] = store.append_batch([room_msg("SNAPSHOT-SECRET-71", ts=1_010)])
    store.append_batch([room_msg("after", ts=1_011)])
    gone = NewMessage(secret.conv, "alice", "delete", b"", 1_012, room="lobby", target=secret.mid)
    store.append_batch([gone])
    log = store.keys.conversation(secret.conv)[1]
    # XDEL only flags the entry: a snapshot of the stream (DUMP, as RDB writes it) still has it.
    assert b"SNAPSHOT-SECRET-71" in (redis_client.dump(log) or b"")
    assert store.prune(now_ms=2_000, max_age_ms=10**12) == 0
    assert b"SNAPSHOT-SECRET-71" not in (redis_client.dump(log) or b"")
    # Nothing else changed: every message and change is still there, in order.
    replay, complete = store.since(secret.conv, 0, limit=200)
    assert complete and [m.seq for m in replay] == list(range(1, 154))
    page = store.history(secret.conv, limit=200)[0]
    assert [m.mid for m in page][:150] == [m.mid for m in msgs] and page[150].deleted
    [later] = store.append_batch([room_msg("later", ts=1_013)])
    assert later.seq == 154


def test_a_change_is_published_once_on_its_conversation_channel(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    [msg] = store.append_batch([room_msg()])
    pubsub = redis_client.pubsub()
    pubsub.subscribe(store.keys.conversation_channel(msg.conv))
    assert pubsub.get_message(timeout=PUBLISH_TIMEOUT)["type"] == "subscribe"  # type: ignore[index]
    edit = NewMessage(
        msg.conv, "alice", "edit", b"v2", 1_001, cid="e", room="lobby", target=msg.mid
    )
    [event] = store.append_batch([edit])
    [again] = store.append_batch([edit])
    assert again.duplicate
    got = pubsub.get_message(timeout=PUBLISH_TIMEOUT)
    assert got is not None and decode_published(got["data"]) == published(event)
    store.append_batch([room_msg("barrier", ts=1_002)])
    barrier = pubsub.get_message(timeout=PUBLISH_TIMEOUT)
    assert barrier is not None and decode_published(barrier["data"]).body == b"barrier"
    pubsub.close()


def test_pipelines_send_no_script_exists_and_a_restarted_redis_gets_the_scripts_on_reconnect(
    redis_server: StartRedis,
) -> None:
    """A store on a client of ``make_client`` runs its scripts in pipelines as plain EVALSHA:
    its connections loaded them when they connected (redis-py's pipeline would ask SCRIPT
    EXISTS before each one, a round trip more per commit). A Redis that restarted, its script
    cache empty, gets them again as the connections reconnect: no call fails with NOSCRIPT."""
    server = redis_server()
    store = RedisStore.from_url(f"redis://127.0.0.1:{server.port}/0", namespace="im")
    admin = server.client()
    try:
        store.append_batch([room_msg("warm")])
        admin.config_resetstat()
        for n in range(10):
            store.append_batch([room_msg(f"m{n}"), direct("alice", "bob")])
        store.latest([room_conv("lobby")], "alice")
        store.counts("bob", [room_conv("lobby")], cap=100)
        stats = admin.info("commandstats")
        assert "cmdstat_script|exists" not in stats, stats.get("cmdstat_script|exists")
        assert stats["cmdstat_evalsha"]["calls"] >= 20

        admin.close()
        server.kill()
        server.start()  # the same port and directory: the data is back, the script cache not
        assert server.client().script_exists(*(s.sha for s in store._scripts())) == [False] * len(
            store._scripts()
        )
        [after] = store.append_batch([room_msg("after")])
        assert after.seq == 12
        page, complete = store.since(room_conv("lobby"), 10, limit=10)
        assert complete and [m.seq for m in page] == [11, 12]
    finally:
        store.close()
