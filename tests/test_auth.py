"""Tokens: who a connection is, until when, and which rooms it may join."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from actorim.domain.auth import (
    MAX_TOKEN_CHARS,
    Identity,
    TokenAuthority,
    TokenError,
    generate_secret,
    valid_user_id,
    weak_secret,
)

SECRET = "s" * 40
NOW = 1_700_000_000


@pytest.fixture
def authority() -> TokenAuthority:
    return TokenAuthority(SECRET)


def forge(claims: dict[str, object], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def test_minted_token_verifies_to_the_same_user_rooms_and_expiry(authority: TokenAuthority) -> None:
    token = authority.mint("alice", rooms=["lobby", "team:*"], ttl_s=60, now=NOW, token_id="t1")
    identity = authority.verify(token, now=NOW + 30)
    assert identity == Identity(
        user="alice",
        rooms=("lobby", "team:*"),
        expires_at=NOW + 60,
        issued_at=NOW,
        token_id="t1",
    )


def test_every_minted_token_has_an_id_of_its_own_to_revoke_it_by(
    authority: TokenAuthority,
) -> None:
    ids = {authority.verify(authority.mint("alice", now=NOW), now=NOW).token_id for _ in range(3)}
    assert len(ids) == 3 and None not in ids


@pytest.mark.parametrize(
    ("claim", "value"), [("jti", 7), ("jti", ""), ("jti", "x" * 129), ("iat", "yesterday")]
)
def test_malformed_jti_or_iat_is_refused(
    authority: TokenAuthority, claim: str, value: object
) -> None:
    # PyJWT refuses a jti that is not a string itself, calling it the "JWT ID".
    with pytest.raises(TokenError, match=f"'{claim}'|JWT ID"):
        authority.verify(forge({"sub": "alice", claim: value}), now=NOW)


def test_token_without_ttl_never_expires(authority: TokenAuthority) -> None:
    token = authority.mint("alice", ttl_s=None, now=NOW)
    assert authority.verify(token, now=NOW + 10 * 365 * 86400).expires_at is None


@pytest.mark.parametrize(
    ("verify_at", "leeway_s", "accepted"),
    [
        (NOW + 59, 0, True),
        (NOW + 60, 0, False),  # expired from the second 'exp' names
        (NOW + 3600, 0, False),
        (NOW + 65, 10, True),  # clock skew tolerated up to the leeway
        (NOW + 70, 10, False),
    ],
)
def test_expiry_is_judged_against_the_injected_clock(
    verify_at: int, leeway_s: float, accepted: bool
) -> None:
    authority = TokenAuthority(SECRET, leeway_s=leeway_s)
    token = authority.mint("alice", ttl_s=60, now=NOW)
    if accepted:
        assert authority.verify(token, now=verify_at).user == "alice"
    else:
        with pytest.raises(TokenError, match="expired"):
            authority.verify(token, now=verify_at)


def test_token_minted_in_the_future_of_the_real_clock_verifies_at_that_time(
    authority: TokenAuthority,
) -> None:
    far_future = 4_000_000_000
    token = authority.mint("alice", ttl_s=60, now=far_future)
    assert authority.verify(token, now=far_future + 1).user == "alice"


def test_token_not_valid_yet_is_refused(authority: TokenAuthority) -> None:
    token = forge({"sub": "alice", "nbf": NOW + 100})
    with pytest.raises(TokenError, match="not valid yet"):
        authority.verify(token, now=NOW)
    assert authority.verify(token, now=NOW + 100).user == "alice"


def test_token_signed_with_another_secret_is_refused() -> None:
    token = TokenAuthority("o" * 40).mint("alice", now=NOW)
    with pytest.raises(TokenError, match="bad signature"):
        TokenAuthority(SECRET).verify(token, now=NOW)


def test_unsigned_token_is_refused(authority: TokenAuthority) -> None:
    token = jwt.encode({"sub": "alice"}, None, algorithm="none")
    with pytest.raises(TokenError, match="only HS256"):
        authority.verify(token, now=NOW)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b.c",
        "a.b",
        _b64({"alg": "HS256"}) + ".%%%." + "sig",
        "x" * (MAX_TOKEN_CHARS + 1),
    ],
    ids=["empty", "no-dots", "garbage-segments", "two-segments", "bad-payload", "too-long"],
)
def test_malformed_token_is_refused_with_a_message(authority: TokenAuthority, token: str) -> None:
    with pytest.raises(TokenError) as refused:
        authority.verify(token, now=NOW)
    assert refused.value.message
    assert "malformed" in refused.value.message or "missing token" in refused.value.message


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({}, "no 'sub'"),
        ({"sub": ""}, "not a valid user id"),
        ({"sub": 42}, "not a valid user id"),
        ({"sub": "has space"}, "not a valid user id"),
        ({"sub": "a" * 129}, "not a valid user id"),
        ({"sub": "alice", "exp": "tomorrow"}, "'exp' must be a number"),
        ({"sub": "alice", "exp": True}, "'exp' must be a number"),
        ({"sub": "alice", "rooms": "lobby"}, "'rooms' claim must be"),
        ({"sub": "alice", "rooms": [1, 2]}, "'rooms' claim entry 1"),
        ({"sub": "alice", "rooms": [""]}, "'rooms' claim entry ''"),
        ({"sub": "alice", "rooms": ["te*m"]}, "'prefix:\\*' pattern"),
        ({"sub": "alice", "rooms": [":*"]}, "'prefix:\\*' pattern"),
        ({"sub": "alice", "rooms": ["x"] * 1001}, "at most 1000"),
    ],
)
def test_token_with_invalid_claims_is_refused_naming_the_claim(
    authority: TokenAuthority, claims: dict[str, object], message: str
) -> None:
    with pytest.raises(TokenError, match=message):
        authority.verify(forge(claims), now=NOW)


def test_token_with_nan_expiry_is_refused(authority: TokenAuthority) -> None:
    token = jwt.PyJWS().encode(b'{"sub": "alice", "exp": NaN}', SECRET, algorithm="HS256")
    with pytest.raises(TokenError, match="'exp' must be a number"):
        authority.verify(token, now=NOW)


@pytest.mark.parametrize(
    ("rooms", "room", "allowed"),
    [
        (None, "anything", True),
        (["*"], "anything", True),
        (["lobby"], "lobby", True),
        (["lobby"], "lobby2", False),
        (["lobby"], "lob", False),
        (["team:*"], "team:red", True),
        (["team:*"], "team:red:sub", True),
        (["team:*"], "team", False),
        (["team:*"], "team:", False),
        (["team:*"], "teams:red", False),
        (["team:*"], "xteam:red", False),
        (["a.b:*"], "aXb:red", False),  # the prefix is literal, not a regex
        (["lobby", "team:*", "ops:*"], "ops:alerts", True),
        (["lobby", "team:*", "ops:*"], "dev:alerts", False),
        ([], "lobby", False),
    ],
)
def test_rooms_claim_decides_which_rooms_may_be_joined(
    authority: TokenAuthority, rooms: list[str] | None, room: str, allowed: bool
) -> None:
    identity = authority.verify(authority.mint("alice", rooms=rooms, now=NOW), now=NOW)
    assert identity.may_join(room) is allowed


def test_token_without_rooms_claim_allows_every_room(authority: TokenAuthority) -> None:
    identity = authority.verify(forge({"sub": "alice"}), now=NOW)
    assert identity.rooms is None
    assert identity.may_join("lobby")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"user": "bad user"}, "user id"),
        ({"user": "alice", "ttl_s": 0}, "ttl_s"),
        ({"user": "alice", "rooms": "lobby"}, "single string"),
        ({"user": "alice", "rooms": ["a*b"]}, "pattern"),
    ],
)
def test_minting_an_invalid_token_fails_at_once(
    authority: TokenAuthority, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        authority.mint(now=NOW, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("user", "valid"),
    [
        ("alice", True),
        ("a", True),
        ("user@example.com", True),
        ("org:team.member_1-x", True),
        ("a" * 128, True),
        ("", False),
        ("a" * 129, False),
        ("al ice", False),
        ("alice/bob", False),
        ("é", False),
    ],
)
def test_user_ids_follow_the_documented_alphabet(user: str, valid: bool) -> None:
    assert valid_user_id(user) is valid


def test_generated_secrets_are_strong_and_distinct() -> None:
    first, second = generate_secret(), generate_secret()
    assert first != second
    assert not weak_secret(first)
    assert TokenAuthority(first).verify(TokenAuthority(first).mint("alice")).user == "alice"


@pytest.mark.parametrize(("secret", "weak"), [("short", True), ("x" * 31, True), ("x" * 32, False)])
def test_secrets_under_256_bits_are_weak(secret: str, weak: bool) -> None:
    assert weak_secret(secret) is weak


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        TokenAuthority("")
