"""The token lifecycle's decisions, fed events with no server: when to ask for a refresh and
when to close, which identities a revocation names, and how long revocations are kept."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from actorim.domain.auth import Identity
from actorim.domain.session import Session
from actorim.domain.tokens import (
    Revocation,
    RevocationList,
    TokenPolicy,
    token_revocation,
    user_revocation,
)
from actorim.local.revocations import MemoryRevocations, SqliteRevocations
from actorim.redis.revocations import RedisRevocations, decode_revocation

POLICY = TokenPolicy(notice_s=60, grace_s=30)
EXP = 10_000


@pytest.mark.parametrize(
    ("now", "asked", "due"),
    [
        (EXP - 61, False, None),  # more than the notice left
        (EXP - 60, False, "ask"),  # the notice starts
        (EXP - 5, False, "ask"),  # less left than the notice: asked at once
        (EXP - 5, True, None),  # asked once per token
        (EXP + 29, True, None),  # within the grace
        (EXP + 30, True, "close"),  # the grace ran out
        (EXP + 30, False, "close"),  # never asked (the sweep was late): closed all the same
    ],
)
def test_policy_asks_before_exp_and_closes_after_the_grace(
    now: float, asked: bool, due: str | None
) -> None:
    assert POLICY.due(EXP, asked=asked, now=now) == due


def test_a_token_without_exp_is_never_due() -> None:
    assert POLICY.due(None, asked=False, now=10**12) is None


def identity(user: str = "alice", *, iat: int | None = 100, jti: str | None = "t1") -> Identity:
    return Identity(user, None, None, issued_at=iat, token_id=jti)


def test_a_token_revocation_names_that_token_only_and_ends_at_its_until() -> None:
    revoked = RevocationList()
    assert revoked.add(Revocation.of_token("t1", until=500))
    assert revoked.revokes(identity(jti="t1"), now=499)
    assert not revoked.revokes(identity(jti="t2"), now=499)
    assert not revoked.revokes(identity(jti="t1"), now=500)


def test_a_user_revocation_names_tokens_issued_at_or_before_its_time_and_those_without_iat() -> (
    None
):
    revoked = RevocationList()
    revoked.add(Revocation.of_user("alice", before=100, until=900))
    assert revoked.revokes(identity(iat=100), now=200)  # the same second counts as before
    assert revoked.revokes(identity(iat=None), now=200)
    assert not revoked.revokes(identity(iat=101), now=200)
    assert not revoked.revokes(identity("bob", iat=50), now=200)


def test_user_revocations_merge_to_the_latest_time_and_the_longest_keep() -> None:
    revoked = RevocationList()
    revoked.add(Revocation.of_user("alice", before=100, until=900))
    assert revoked.add(Revocation.of_user("alice", before=200, until=500))
    assert not revoked.add(Revocation.of_user("alice", before=150, until=800))  # covered
    assert revoked.revokes(identity(iat=200), now=850)
    assert len(revoked) == 1


def test_prune_drops_the_revocations_whose_tokens_have_all_expired() -> None:
    revoked = RevocationList()
    revoked.add(Revocation.of_token("t1", until=500))
    revoked.add(Revocation.of_user("alice", before=100, until=900))
    assert revoked.prune(600) == 1 and len(revoked) == 1
    assert revoked.prune(900) == 1 and len(revoked) == 0


def test_revocations_without_an_expiry_are_kept_for_the_keep_time() -> None:
    assert token_revocation("t1", expires_at=None, now=1_000, keep_s=50).until == 1_050
    assert token_revocation("t1", expires_at=2_000, now=1_000, keep_s=50).until == 2_000
    by_user = user_revocation("alice", before=None, until=None, now=1_000, keep_s=50)
    assert (by_user.before, by_user.until) == (1_000, 1_050)


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "token", "subject": "", "until": 1},
        {"kind": "user", "subject": "bad user", "before": 1, "until": 2},
        {"kind": "user", "subject": "alice", "before": None, "until": 2},
        {"kind": "token", "subject": "t", "until": float("nan")},
        {"kind": "group", "subject": "t", "until": 1},
    ],
)
def test_a_map_that_is_not_a_revocation_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Revocation.from_map(data)


def test_a_revocation_survives_its_map() -> None:
    revocation = Revocation.of_user("alice", before=100, until=900)
    assert Revocation.from_map(revocation.to_map()) == revocation


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_local_revocation_stores_keep_what_is_in_force_and_drop_the_expired(
    kind: str, tmp_path: Path
) -> None:
    path = tmp_path / "revocations.sqlite3"
    store = MemoryRevocations() if kind == "memory" else SqliteRevocations(path)
    soon = time.time() + 3600  # adding drops what expired by the wall clock
    store.add(Revocation.of_token("gone", until=time.time() - 1))
    store.add(Revocation.of_token("t1", until=soon + 500))
    store.add(Revocation.of_token("t1", until=soon + 400))  # an earlier expiry keeps the later
    store.add(Revocation.of_user("alice", before=100, until=soon + 900))
    assert sorted(r.subject for r in store.current(soon + 450)) == ["alice", "t1"]
    assert [r.subject for r in store.current(soon + 600)] == ["alice"]
    store.close()
    if kind == "sqlite":
        reopened = SqliteRevocations(path)
        assert [r.subject for r in reopened.current(soon + 600)] == ["alice"]
        reopened.close()


def test_refreshed_session_takes_the_new_identity_and_names_the_rooms_it_no_longer_allows() -> None:
    session: Session[str] = Session()
    session.authenticated(Identity("alice", None, 100))
    session.connected("s")
    session.joining("lobby", "L")
    session.joining("team:red", "T")
    fresh = Identity("alice", ("lobby",), 200)
    assert session.refreshed(fresh) == ["team:red"]
    assert session.identity is fresh
    with pytest.raises(ValueError, match="own user"):
        session.refreshed(Identity("mallory", None, 300))


def test_the_module_examples_hold() -> None:
    import doctest

    import actorim.domain.tokens

    assert doctest.testmod(actorim.domain.tokens).failed == 0


def test_redis_revocations_are_kept_announced_and_dropped_once_expired(redis_client: Any) -> None:
    store = RedisRevocations(redis_client, namespace="revoke")
    pubsub = redis_client.pubsub()
    pubsub.subscribe("revoke:{revocations}")
    confirmed = pubsub.get_message(timeout=5)  # subscribed before anything is published
    assert confirmed is not None and confirmed["type"] == "subscribe"
    soon = time.time() + 3600
    store.add(Revocation.of_token("gone", until=time.time() - 1))
    store.add(Revocation.of_user("alice", before=100, until=soon))
    heard = []
    while len(heard) < 2:
        message = pubsub.get_message(timeout=5)
        assert message is not None, "a revocation was not announced"
        heard.append(decode_revocation(message["data"]))
    assert [r.subject for r in heard if r is not None] == ["gone", "alice"]
    assert [r.subject for r in store.current(time.time())] == ["alice"]
    assert redis_client.hlen("revoke:{revocations}:kept") == 1  # the expired one is gone
    pubsub.close()
