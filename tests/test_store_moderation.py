"""Every store keeps room roles, bans, mutes and audit logs the same way (the moderation part
of ``actorim.store.base.Store``): SQLite, memory and Redis, and a SQLite data directory of an
older schema migrated to the moderation step."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from actorim.domain.moderation import FOREVER_MS, AuditEntry, Standing
from actorim.domain.webhooks import OutboxEntry
from actorim.store import SqliteStore, Store
from actorim.store.sqlite import SCHEMA_VERSION
from tests.test_store_conformance import BACKENDS, backend_params
from tests.test_store_sqlite import schema_4_data_directory

pytest_plugins = ["tests.redis_server"]


@pytest.fixture(params=backend_params(list(BACKENDS)))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    data_dir = tmp_path / "store"
    data_dir.mkdir()
    opened = BACKENDS[request.param](data_dir, request)
    yield opened
    opened.close()


def entry(n: int, action: str = "mute", *, room: str = "lobby", target: str = "bob") -> AuditEntry:
    return AuditEntry(f"a{n:04d}", room, 1_000 + n, "al", action, target, f"why {n}", 0)


def test_a_user_without_a_kept_standing_is_left_out(store: Store) -> None:
    assert store.standings("lobby", ["al", "bob"]) == {}
    assert store.mutes_of("bob") == {}
    assert store.audit("lobby", limit=10) == []


def test_a_standing_is_kept_per_room_and_user_with_its_audit_entry(store: Store) -> None:
    muted = Standing("member", 0, 5_000)
    store.moderate("lobby", "bob", muted, entry(1))
    store.moderate("lobby", "cy", Standing("moderator"), entry(2, "role", target="cy"))
    store.moderate("side", "bob", Standing(banned_until=FOREVER_MS), entry(3, "ban", room="side"))
    assert store.standings("lobby", ["bob", "cy", "dee"]) == {
        "bob": muted,
        "cy": Standing("moderator"),
    }
    assert store.standings("side", ["bob"]) == {"bob": Standing(banned_until=FOREVER_MS)}
    assert store.mutes_of("bob") == {"lobby": 5_000}
    assert [e.id for e in store.audit("lobby", limit=10)] == ["a0002", "a0001"]
    assert store.audit("side", limit=10) == [entry(3, "ban", room="side")]


def test_the_default_standing_is_forgotten_and_an_unmute_leaves_no_mute(store: Store) -> None:
    store.moderate("lobby", "bob", Standing(muted_until=5_000), entry(1))
    store.moderate("lobby", "bob", Standing(), entry(2, "unmute"))
    assert store.standings("lobby", ["bob"]) == {}
    assert store.mutes_of("bob") == {}
    assert len(store.audit("lobby", limit=10)) == 2


def test_the_audit_log_pages_newest_first_below_a_cursor(store: Store) -> None:
    for n in range(7):
        store.moderate("lobby", "bob", Standing(muted_until=n + 1), entry(n))
    first = store.audit("lobby", limit=3)
    assert [e.id for e in first] == ["a0006", "a0005", "a0004"]
    second = store.audit("lobby", before=first[-1].id, limit=3)
    assert [e.id for e in second] == ["a0003", "a0002", "a0001"]
    assert [e.id for e in store.audit("lobby", before="a0001", limit=3)] == ["a0000"]
    assert store.audit("lobby", before="a0000", limit=3) == []


def test_an_entry_keeps_every_field(store: Store) -> None:
    full = AuditEntry("a1", "lobby", 7, "al", "delete", "bob", "spam ✓", 0, mid="m1")
    role = AuditEntry("a2", "lobby", 8, "system", "role", "cy", "", 0, role="moderator")
    ban = AuditEntry("a3", "lobby", 9, "al", "ban", "bob", "", FOREVER_MS)
    store.moderate("lobby", "bob", Standing(), full)
    store.moderate("lobby", "cy", Standing("moderator"), role)
    store.moderate("lobby", "bob", Standing(banned_until=FOREVER_MS), ban)
    assert store.audit("lobby", limit=5) == [ban, role, full]


def test_a_moderation_keeps_its_webhook_events_in_the_outbox(store: Store) -> None:
    event = OutboxEntry("ev_a1.x", "ev_a1", "moderation.muted", 5, "http://h.example/", b"{}", 5)
    store.moderate("lobby", "bob", Standing(muted_until=9), entry(1), [event])
    assert [
        e.key for e in store.outbox_due("http://h.example/", now_ms=5, limit=5, lease_ms=9)
    ] == ["ev_a1.x"]


def test_a_schema_4_data_directory_migrates_to_keep_moderation(tmp_path: Path) -> None:
    path = schema_4_data_directory(tmp_path)
    store = SqliteStore(path)
    try:
        assert store.standings("lobby", ["alice"]) == {}
        store.moderate("lobby", "alice", Standing("owner"), entry(1, "role", target="alice"))
        assert store.standings("lobby", ["alice"]) == {"alice": Standing("owner")}
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()
