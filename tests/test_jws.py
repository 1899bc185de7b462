"""The lean HS256 verifier accepts and refuses exactly the tokens PyJWT does.

A property test over generated tokens: valid ones, expired and not-yet-valid ones, other and
absent algorithms (``none`` among them), tampered signatures, bad and non-canonical base64,
extra or missing segments, odd headers (``kid``, ``crit``, ``b64``), odd claims (``aud``,
``jti``, ``rooms``), huge headers, and text that is not UTF-8. Each is verified by
``TokenAuthority`` (on `actorim.domain.jws`) and by the same checks on PyJWT's ``decode``, the
verifier it replaced; both must refuse it, or both accept it with the same identity.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from typing import Any

import jwt
import pytest

from actorim.domain.auth import MAX_TOKEN_CHARS, Identity, TokenAuthority, TokenError
from actorim.domain.jws import JwsError, Refusal, verify_hs256

SECRET = "property-test-secret-0123456789abcdef"
KEY = SECRET.encode()
NOW = 1_700_000_000
LEEWAY = 5


class PyJwtAuthority(TokenAuthority):
    """``TokenAuthority`` verifying with PyJWT's ``decode``, as it did before the lean verifier."""

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(
                token,
                SECRET,
                algorithms=["HS256"],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_sub": False,
                },
            )
        except Exception as exc:  # UnicodeEncodeError too: PyJWT lets it out
            raise TokenError(f"refused by PyJWT: {exc!r}") from None
        assert isinstance(claims, dict)
        return claims


def _b64(data: bytes, rng: random.Random) -> str:
    text = base64.urlsafe_b64encode(data).decode()
    return text if rng.random() < 0.1 else text.rstrip("=")


def _json(value: object, rng: random.Random) -> bytes:
    separators = (",", ":") if rng.random() < 0.5 else (", ", ": ")
    return json.dumps(value, separators=separators).encode()


def _header(rng: random.Random) -> bytes:
    header: dict[str, Any] = {}
    roll = rng.random()
    if roll < 0.6:
        header["alg"] = "HS256"
    elif roll < 0.9:
        header["alg"] = rng.choice(
            ["none", "None", "HS384", "HS512", "RS256", "", "hs256", None, 1]
        )
    if rng.random() < 0.5:
        header["typ"] = "JWT"
    if rng.random() < 0.1:
        header["kid"] = rng.choice(["k1", 7, None, ["k"]])
    if rng.random() < 0.1:
        header["crit"] = rng.choice([["b64"], [], ["exp"], "b64", [1], ["b64", "x"]])
    if rng.random() < 0.1:
        header["b64"] = rng.choice([True, False, 0, "false"])
    if rng.random() < 0.05:
        header["pad"] = "x" * rng.choice([100, 3000, 9000])
    if rng.random() < 0.05:
        return rng.choice([b"[]", b"null", b"not json", b'"HS256"', b"{", b"[" * 5000])
    return _json(header, rng)


def _claims(rng: random.Random) -> bytes:
    claims: dict[str, Any] = {}
    if rng.random() < 0.9:
        odd = rng.choice(["bob@example", "", "bad user", 5, None])
        claims["sub"] = "carol" if rng.random() < 0.8 else odd
    for name in ("exp", "nbf", "iat"):
        if rng.random() < 0.4:
            claims[name] = (
                NOW + rng.choice([rng.randint(-20, 20), rng.uniform(-20, 20)])
                if rng.random() < 0.8
                else rng.choice(["soon", True, None, 10**30, [NOW]])
            )
    if rng.random() < 0.3:
        claims["jti"] = rng.choice(["t1", "", 3, None, "j" * 200])
    if rng.random() < 0.1:
        claims["aud"] = rng.choice(["them", "", [], ["x"], None, 0])
    if rng.random() < 0.2:
        claims["rooms"] = rng.choice([["lobby"], ["team:*"], ["*"], "lobby", [""], [1], []])
    if rng.random() < 0.05:
        garbage: list[bytes] = [b"[]", b"1", b"{", b"\xff\xfe", b"[" * 5000, b'{"exp": NaN}']
        garbage.append(b'{"sub":"\xed\xa0\x80"}')  # a surrogate, which json.loads passes through
        text = '{"sub": "carol"}'
        garbage += [text.encode(name) for name in ("utf-16-le", "utf-16", "utf-32", "utf-8-sig")]
        return rng.choice(garbage)
    return _json(claims, rng)


def _sign(signing_input: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.75:
        digest = hmac.digest(KEY, signing_input.encode(), hashlib.sha256)
    elif roll < 0.85:
        digest = hmac.digest(b"another-secret-0123456789abcdefgh", signing_input.encode(), "sha256")
    elif roll < 0.9:
        digest = hmac.digest(KEY, signing_input.encode(), hashlib.sha384)
    else:
        digest = b""
    return _b64(digest, rng)


def _mangle(token: str, rng: random.Random) -> str:
    """One of the ways a token arrives broken or tampered with."""
    at = rng.randrange(len(token) + 1)
    choice = rng.randrange(11)
    if choice == 0:  # one character replaced (a tampered signature, header or payload)
        return token[:at] + rng.choice("AQgw_-.=!") + token[at + 1 :]
    if choice == 1:  # the last character's stray bits: non-canonical base64
        return token[:-1] + rng.choice("BCDEFGHIJKLMNOPRSTUVWXYZ")
    if choice == 2:
        return token + rng.choice(["=", "==", "===", ".", ".x", "A"])
    if choice == 3:
        return ".".join(token.split(".")[: rng.randint(0, 2)])
    if choice == 4:
        odd = rng.choice(["\u00e9", "\ud800", " ", "\n", "\x00", "+", "/"])
        return token[:at] + odd + token[at:]
    if choice == 5:
        return token[:at]
    if choice == 6:
        head, _, rest = token.partition(".")
        return head + "=." + rest
    if choice == 7:
        return token.replace(".", "..", 1)
    if choice == 8:
        parts = token.split(".")
        return ".".join(parts[:2]) + "."  # signature stripped: what alg "none" sends
    if choice == 9:
        return token.upper() if rng.random() < 0.1 else token[::-1]
    return token


def _token(rng: random.Random) -> str:
    signing_input = _b64(_header(rng), rng) + "." + _b64(_claims(rng), rng)
    token = signing_input + "." + _sign(signing_input, rng)
    if rng.random() < 0.3:
        token = _mangle(token, rng)
    return token


def _outcome(authority: TokenAuthority, token: str) -> Identity | str:
    try:
        return authority.verify(token, now=NOW)
    except TokenError:
        return "refused"


def test_lean_verifier_accepts_and_refuses_the_same_tokens_as_pyjwt() -> None:
    rng = random.Random(random.getrandbits(64))  # seeded by conftest, which prints the seed
    lean = TokenAuthority(SECRET, leeway_s=LEEWAY)
    reference = PyJwtAuthority(SECRET, leeway_s=LEEWAY)
    accepted = 0
    for _ in range(4000):
        token = _token(rng)
        expected = _outcome(reference, token)
        assert _outcome(lean, token) == expected, f"token {token!r}"
        accepted += expected != "refused"
    # The generator must exercise both sides, not only refusals.
    assert 150 < accepted < 3000, accepted


@pytest.mark.parametrize(
    ("token", "refusal"),
    [
        ("\ud800.e30.", Refusal.MALFORMED),  # no UTF-8 form: PyJWT raised UnicodeEncodeError
        ("e30.e30", Refusal.MALFORMED),
        ("eyJhbGciOiJub25lIn0.e30.", Refusal.ALGORITHM),  # {"alg":"none"}
        ("e30.e30.", Refusal.ALGORITHM),  # no alg
        ("eyJhbGciOiJIUzI1NiJ9.e30.AAAA", Refusal.SIGNATURE),
        ("eyJhbGciOiJIUzI1NiJ9!.e30.", Refusal.MALFORMED),
        ("eyJhbGciOiJIUzI1NiJ9.e30====.", Refusal.MALFORMED),
    ],
)
def test_each_kind_of_bad_token_is_refused_as_such(token: str, refusal: Refusal) -> None:
    with pytest.raises(JwsError) as caught:
        verify_hs256(token, KEY)
    assert caught.value.refusal is refusal


def test_a_token_that_is_not_utf8_text_is_refused_not_crashed_on() -> None:
    """PyJWT raised UnicodeEncodeError on a lone surrogate, which is not a TokenError. The
    server's codec already refuses such text (1007), but ``verify`` is public API."""
    with pytest.raises(TokenError, match="malformed token"):
        TokenAuthority(SECRET).verify("\ud800" * 3 + ".e30.e30")


def test_verifying_costs_no_more_than_the_token_length_bounds() -> None:
    """The longest token accepted for decoding, made of one header, is refused by its
    signature: nothing about it is decoded twice or kept."""
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","x":"' + b"y" * 6000 + b'"}').rstrip(b"=")
    token = header.decode() + ".e30.AAAA"
    assert len(token) <= MAX_TOKEN_CHARS
    with pytest.raises(TokenError, match="bad signature"):
        TokenAuthority(SECRET).verify(token)


def test_a_public_key_is_refused_as_an_hmac_secret() -> None:
    with pytest.raises(ValueError, match="cannot be an HMAC key"):
        TokenAuthority("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----")
