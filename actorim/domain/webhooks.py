"""Webhooks as values and decisions, with no I/O: the endpoints an operator configures, the
outbox entries the stores keep, the signature a receiver checks, and the retry schedule.

An *event* (``message.created``, ``user.online``, ...) has an id that receivers de-duplicate
by. It is delivered to each endpoint that wants its type as one *outbox entry*: the unit the
store keeps, the dispatcher claims, retries and finally delivers or buries in the dead-letter
queue. So a dead endpoint holds up only its own entries, never another endpoint's.

The request a receiver gets is an envelope (``id``, ``type``, ``created``, ``attempt``,
``data``) signed like Stripe's webhooks: the header ``Actorim-Signature: t=<unix seconds>,
v1=<hex HMAC-SHA256 of "<t>.<body>" under the endpoint's secret>``.

>>> header = signature("whsec", 1700000000, b'{"id":"ev_1"}')
>>> header.startswith("t=1700000000,v1=")
True
>>> verify("whsec", header, b'{"id":"ev_1"}', now=1700000100)
True
>>> verify("other", header, b'{"id":"ev_1"}', now=1700000100)
False
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from actorim.domain.push import PUSH_EVENT

__all__ = [
    "DEFAULT_BACKOFF_BASE_S",
    "DEFAULT_BACKOFF_CAP_S",
    "DEFAULT_MAX_ATTEMPTS",
    "EVENT_TYPES",
    "MERGED_TYPES",
    "OPT_IN_TYPES",
    "SIGNATURE_HEADER",
    "SIGNATURE_TOLERANCE_S",
    "Endpoint",
    "OutboxEntry",
    "RetryPolicy",
    "entries_for",
    "entry_key",
    "envelope",
    "parse_endpoints",
    "signature",
    "verify",
]

EVENT_TYPES: tuple[str, ...] = (
    "message.created",
    "message.edited",
    "message.deleted",
    "user.online",
    "user.offline",
    "moderation.kicked",
    "moderation.banned",
    "moderation.unbanned",
    "moderation.muted",
    "moderation.unmuted",
    "moderation.deleted",
    PUSH_EVENT,
    "room.member_added",
    "room.member_removed",
)
"""The event types a node emits. A new one is a line here and its payload builder in
``actorim.protocol.webhooks.PAYLOADS``."""

OPT_IN_TYPES: frozenset[str] = frozenset({PUSH_EVENT})
"""Event types an endpoint gets only when its ``events`` name them: a push gateway is an
endpoint of its own, and an endpoint that takes every event is not flooded with pushes."""

MERGED_TYPES: frozenset[str] = frozenset({PUSH_EVENT})
"""Event types whose entries coalesce: a new entry under a kept key replaces the kept one's
``data`` while that one waits for its first due time (see ``OutboxEntry.merges``)."""

SIGNATURE_HEADER = "Actorim-Signature"
"""The request header that carries the timestamp and the signature."""

SIGNATURE_TOLERANCE_S = 300
"""How old a signed timestamp a receiver should accept (``verify``): replays of a captured
request are refused after five minutes."""

DEFAULT_MAX_ATTEMPTS = 8
"""Deliveries of an entry before it moves to the dead-letter queue."""

DEFAULT_BACKOFF_BASE_S = 1.0
"""The first retry waits up to this long; each later one up to twice as long as the one
before (full jitter)."""

DEFAULT_BACKOFF_CAP_S = 300.0
"""The longest one retry waits: with the defaults, eight attempts span at most about
four minutes."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A receiver: its ``url``, the ``secret`` requests are signed with, and the event types
    it wants (``events``; empty: every type but the ``OPT_IN_TYPES``)."""

    url: str
    secret: str
    events: tuple[str, ...] = ()

    def wants(self, event_type: str) -> bool:
        if event_type in OPT_IN_TYPES:
            return event_type in self.events
        return not self.events or event_type in self.events


def parse_endpoints(value: Any) -> tuple[Endpoint, ...]:
    """The endpoints of the ``webhooks`` setting: a JSON list (text, or already decoded) of
    ``{"url", "secret", "events"?}``; raises ValueError naming what is wrong.

    >>> parse_endpoints('[{"url": "https://h.example/in", "secret": "s"}]')
    (Endpoint(url='https://h.example/in', secret='s', events=()),)
    """
    if isinstance(value, str):
        if not value.strip():
            return ()
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"is not JSON: {exc}") from None
    if isinstance(value, Endpoint):
        return (value,)
    if not isinstance(value, list | tuple):
        raise ValueError("must be a list of {url, secret, events?}")
    endpoints: list[Endpoint] = []
    for n, item in enumerate(value):
        if isinstance(item, Endpoint):
            endpoints.append(item)
            continue
        if not isinstance(item, Mapping):
            raise ValueError(f"entry {n} must be an object {{url, secret, events?}}")
        unknown = sorted(set(item) - {"url", "secret", "events"})
        if unknown:
            raise ValueError(f"entry {n} has an unknown field {unknown[0]!r}")
        url, secret, events = item.get("url"), item.get("secret"), item.get("events", [])
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"entry {n}: url must be an http:// or https:// URL")
        if not isinstance(secret, str) or not secret:
            raise ValueError(f"entry {n}: secret must be a non-empty string")
        if not isinstance(events, list) or any(e not in EVENT_TYPES for e in events):
            raise ValueError(f"entry {n}: events must be a list of {', '.join(EVENT_TYPES)}")
        endpoints.append(Endpoint(url, secret, tuple(events)))
    urls = [e.url for e in endpoints]
    if len(set(urls)) != len(urls):
        raise ValueError("an endpoint url is listed twice")
    return tuple(endpoints)


def endpoints_json(endpoints: Iterable[Endpoint]) -> str:
    """``endpoints`` as the ``webhooks`` setting's JSON (what ``parse_endpoints`` reads)."""
    return json.dumps(
        [
            {"url": e.url, "secret": e.secret, **({"events": list(e.events)} if e.events else {})}
            for e in endpoints
        ]
    )


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One event on its way to one endpoint, as the store keeps it.

    ``key`` is unique (the event id and the endpoint's url), ``event`` the event's id (what
    receivers de-duplicate by), ``data`` the payload's JSON. ``attempts`` counts deliveries
    tried, ``due`` (ms) is when the next may go, ``error`` says why the last one failed, and
    ``dead`` (ms) is when the entry moved to the dead-letter queue (None: it is still live).
    """

    key: str
    event: str
    type: str
    ts: int
    endpoint: str
    data: bytes
    attempts: int = 0
    due: int = 0
    error: str = ""
    dead: int | None = None

    @property
    def merges(self) -> bool:
        """Whether this entry, added under a key already kept, replaces that entry's ``data``
        (a pending push taking its latest message) instead of being dropped as a repeat: while
        the kept one is live and still due at the same time (neither claimed nor retried, which
        both move its due time)."""
        return self.type in MERGED_TYPES

    def row(self) -> tuple[str, str, str, int, str, bytes, int, int, str, int | None]:
        """The fields in order, as the stores keep them (``OutboxEntry(*row)`` again)."""
        return (
            self.key,
            self.event,
            self.type,
            self.ts,
            self.endpoint,
            self.data,
            self.attempts,
            self.due,
            self.error,
            self.dead,
        )

    def retried(self, *, due: int, error: str) -> OutboxEntry:
        """The entry after a failed delivery that will be tried again at ``due``."""
        return replace(self, attempts=self.attempts + 1, due=due, error=error)

    def buried(self, *, now: int, error: str) -> OutboxEntry:
        """The entry after its last failed delivery: in the dead-letter queue."""
        return replace(self, attempts=self.attempts + 1, error=error, dead=now)

    def revived(self, *, now: int) -> OutboxEntry:
        """A dead entry sent back to the outbox: due now, its attempts counted afresh."""
        return replace(self, attempts=0, due=now, dead=None)

    def as_json(self) -> dict[str, Any]:
        """The entry as the server API lists the dead-letter queue."""
        return {
            "id": self.key,
            "event": self.event,
            "type": self.type,
            "created": self.ts,
            "endpoint": self.endpoint,
            "attempts": self.attempts,
            "error": self.error,
            "dead": self.dead,
            "data": json.loads(self.data),
        }


def entry_key(event_id: str, url: str) -> str:
    """The outbox key of event ``event_id`` for the endpoint at ``url``: the event id, so keys
    sort by time, then a short digest of the url."""
    return f"{event_id}.{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def entries_for(
    endpoints: Iterable[Endpoint], event_id: str, event_type: str, ts: int, data: bytes
) -> list[OutboxEntry]:
    """The outbox entries of one event: one per endpoint that wants its type, due at once."""
    return [
        OutboxEntry(entry_key(event_id, e.url), event_id, event_type, ts, e.url, data, due=ts)
        for e in endpoints
        if e.wants(event_type)
    ]


def envelope(entry: OutboxEntry, attempt: int) -> bytes:
    """The request body of delivery number ``attempt`` (from 1) of ``entry``."""
    head = json.dumps(
        {"id": entry.event, "type": entry.type, "created": entry.ts, "attempt": attempt},
        separators=(",", ":"),
    )
    return head[:-1].encode() + b',"data":' + entry.data + b"}"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Actorim-Signature`` header of ``body`` sent at ``timestamp`` (unix seconds)."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    secret: str, header: str, body: bytes, *, now: float, tolerance: float = SIGNATURE_TOLERANCE_S
) -> bool:
    """Whether ``header`` signs ``body`` under ``secret`` within ``tolerance`` seconds of
    ``now``: what a receiver checks before it trusts a request."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).split(",v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed delivery is tried again, and when it is given up.

    Retry ``n`` (from 1: the wait after the n-th failed attempt) waits a random time in
    ``[0, min(cap, base * 2**(n-1))]`` (exponential back-off with full jitter: receivers that
    came back at the same instant are not hit at once). After ``max_attempts`` failed
    attempts the entry moves to the dead-letter queue.

    >>> policy = RetryPolicy(base=1.0, cap=10.0, max_attempts=8)
    >>> [policy.ceiling(n) for n in (1, 2, 3, 4, 5)]
    [1.0, 2.0, 4.0, 8.0, 10.0]
    >>> policy.delay(3, rand=lambda a, b: b), policy.exhausted(7), policy.exhausted(8)
    (4.0, False, True)
    """

    base: float = DEFAULT_BACKOFF_BASE_S
    cap: float = DEFAULT_BACKOFF_CAP_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    _rand: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def __post_init__(self) -> None:
        if not self.base > 0 or self.cap < self.base:
            raise ValueError(f"need 0 < base <= cap, got base={self.base} cap={self.cap}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry ``retry`` (from 1)."""
        if retry > 64:
            return self.cap
        return min(self.cap, self.base * 2.0 ** (retry - 1))

    def delay(self, retry: int, rand: Callable[[float, float], float] | None = None) -> float:
        """The wait before retry ``retry``: uniform in ``[0, ceiling(retry)]``."""
        return float((rand or self._rand)(0.0, self.ceiling(retry)))

    def exhausted(self, attempts: int) -> bool:
        """Whether an entry that failed ``attempts`` times goes to the dead-letter queue."""
        return attempts >= self.max_attempts
