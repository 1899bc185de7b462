"""Verifying an HS256-signed compact JWS (a JWT) with nothing but the standard library.

A connection storm verifies one token per client, and PyJWT's general ``jwt.decode`` (options
merged on every call, an algorithm object and a key prepared per token, a wall-clock read for
claims checked elsewhere) cost more than a third of the work of a WebSocket upgrade.
:func:`verify_hs256` does the same checks as ``jwt.decode(token, key, algorithms=["HS256"])``
with ``exp``, ``nbf``, ``iat`` and ``sub`` left to the caller, in the same order, and refuses
exactly the tokens PyJWT refuses (``tests/test_jws.py`` compares the two over thousands of
generated tokens):

- three segments, each canonical unpadded base64url (at most two trailing ``=`` accepted);
- a header that is a JSON object, naming ``alg`` ``HS256``; a ``kid`` must be a string; a
  ``crit`` must list only extensions understood (``b64``, present in the header); a payload
  that is not base64-encoded (``b64: false``, RFC 7797) is refused;
- an HMAC-SHA256 signature over ``header.payload``, compared in constant time;
- a payload that is a JSON object, with no ``aud`` (no audience is configured, so a token
  meant for one is not for us) and, if it has a ``jti``, a string one.

The caller bounds the token's length before calling (it comes from unauthenticated peers).

>>> key = b"k" * 32
>>> token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9."
>>> token += sign_hs256(token[:-1].encode(), key)
>>> verify_hs256(token, key)
{'sub': 'alice'}
>>> verify_hs256(token[:-2] + "AA", key)
Traceback (most recent call last):
...
actorim.domain.jws.JwsError: Signature verification failed
"""

from __future__ import annotations

import binascii
import hmac
import json
import re
from base64 import urlsafe_b64encode
from enum import Enum
from typing import Any

__all__ = ["HS256", "JwsError", "Refusal", "sign_hs256", "verify_hs256"]

HS256 = "HS256"

_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*")
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
# The last character of a canonical segment leaves no stray bits: after 2 characters of a group
# (4 bits too many) it is one of 4 characters, after 3 (2 bits) one of 16 (RFC 4648 §3.5).
_LAST_OF = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}
_PADDING = {0: b"", 2: b"==", 3: b"="}
# The digest's name, not hashlib.sha256: given the constructor, hmac.digest takes a slower path
# (about 11 µs instead of 3).
_SHA256 = "sha256"
_DECODER = json.JSONDecoder()
_UNDERSTOOD_CRITICAL = frozenset({"b64"})


class Refusal(Enum):
    """Why a token was refused, in PyJWT's categories (its exception classes)."""

    MALFORMED = "malformed"  # DecodeError
    ALGORITHM = "algorithm"  # InvalidAlgorithmError
    SIGNATURE = "signature"  # InvalidSignatureError
    INVALID = "invalid"  # any other InvalidTokenError


class JwsError(Exception):
    """A refused token: ``refusal`` says in which way, the message (PyJWT's words) what."""

    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.message = message


def sign_hs256(signing_input: bytes, key: bytes) -> str:
    """The base64url HMAC-SHA256 of ``signing_input``: the third segment of a token."""
    digest = hmac.digest(key, signing_input, _SHA256)
    return urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_hs256(token: str, key: bytes) -> dict[str, Any]:
    """The claims of ``token`` once its form and signature are checked; :class:`JwsError` if not."""
    try:
        raw = token.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, as JSON's "\ud800" decodes to
        raise _malformed("Invalid token type. Token must be UTF-8") from None
    signing_input, dot, crypto_segment = raw.rpartition(b".")
    header_segment, dot2, payload_segment = signing_input.partition(b".")
    if not dot or not dot2:
        raise _malformed("Not enough segments")
    header = _json_object(_segment(header_segment, "header"), "header")
    b64 = header.get("b64", True)
    if b64 is False and payload_segment:
        raise _malformed("Payload segment must be empty when 'b64' is false.")
    payload = _segment(payload_segment, "payload") if b64 is not False else b""
    signature = _segment(crypto_segment, "crypto")
    _check_header(header)
    if "alg" not in header:
        raise JwsError(Refusal.ALGORITHM, "Algorithm not specified")
    if header["alg"] != HS256:
        raise JwsError(Refusal.ALGORITHM, "The specified alg value is not allowed")
    if not hmac.compare_digest(hmac.digest(key, signing_input, _SHA256), signature):
        raise JwsError(Refusal.SIGNATURE, "Signature verification failed")
    claims = _json_object(payload, "payload")
    if claims.get("aud"):
        raise JwsError(Refusal.INVALID, "Invalid audience")
    if "jti" in claims and not isinstance(claims["jti"], str):
        raise JwsError(Refusal.INVALID, "JWT ID must be a string")
    return claims


def _malformed(message: str) -> JwsError:
    return JwsError(Refusal.MALFORMED, message)


def _segment(segment: bytes, name: str) -> bytes:
    """A segment's bytes, if it is canonical base64url (as PyJWT >= 2.12 requires)."""
    stripped = segment.rstrip(b"=") if segment.endswith(b"=") else segment
    padding = len(segment) - len(stripped)
    tail = len(stripped) % 4
    if (
        padding > 2
        or (padding and len(segment) % 4)
        or tail == 1
        or _BASE64URL.fullmatch(stripped) is None
        or (tail and stripped[-1] not in _LAST_OF[tail])
    ):
        raise _malformed(f"Invalid {name} padding")
    return binascii.a2b_base64(stripped.translate(_TO_STANDARD) + _PADDING[tail])


def _json_object(data: bytes, name: str) -> dict[str, Any]:
    try:
        if data[:1] == b"{" and data[1:2] != b"\x00":
            # What json.loads does with bytes that start so (UTF-8, surrogates passed through),
            # without its detection of UTF-16 and UTF-32, which such bytes cannot be.
            value = _DECODER.decode(data.decode("utf-8", "surrogatepass"))
        else:
            value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _malformed(f"Invalid {name} string: {exc}") from None
    if not isinstance(value, dict):
        raise _malformed(f"Invalid {name} string: must be a json object")
    return value


def _check_header(header: dict[str, Any]) -> None:
    """``kid``, ``crit`` and ``b64`` as RFC 7515 §4.1.11 and RFC 7797 ask (and PyJWT checks)."""
    if "kid" in header and not isinstance(header["kid"], str):
        raise JwsError(Refusal.INVALID, "Key ID header parameter must be a string")
    if "crit" in header:
        crit = header["crit"]
        if not isinstance(crit, list) or not crit:
            raise JwsError(Refusal.INVALID, "Invalid 'crit' header: must be a non-empty list")
        for ext in crit:
            if not isinstance(ext, str):
                raise JwsError(Refusal.INVALID, "Invalid 'crit' header: values must be strings")
            if ext not in _UNDERSTOOD_CRITICAL:
                raise JwsError(Refusal.INVALID, f"Unsupported critical extension: {ext}")
            if ext not in header:
                raise JwsError(Refusal.INVALID, f"Critical extension '{ext}' is missing")
    if header.get("b64", True) is False:
        # RFC 7797: the payload travels apart from the token; no client of ours sends one so.
        raise _malformed("a token whose payload is not base64url-encoded is not accepted")
