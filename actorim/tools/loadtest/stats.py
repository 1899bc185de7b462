"""What a load test measured: latency histograms, counters, lost messages, the final metrics.

Each process keeps a `Tally`; the runner merges them (histograms merge by adding bucket counts,
so percentiles over all processes are exact to the bucket, not averages of percentiles) and
`summarize` turns the total into the flat metrics that the report prints and thresholds test.

>>> h = Histogram()
>>> for us in (1_000, 2_000, 3_000, 100_000):
...     h.record(us)
>>> h.quantile(0.5), h.max
(2015, 100000)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "LATENCY_METRICS",
    "METRICS",
    "Histogram",
    "Tally",
    "expected_deliveries",
    "lost_deliveries",
    "summarize",
]

SUB_BUCKET_BITS = 6
"""64 buckets per power of two: a recorded value is known to within 1/64 (1.6 %) of itself.

Values below 128 (microseconds) are kept exactly; the whole range of a 64-bit integer then
needs fewer than 4,000 buckets, so a histogram stays small enough to send between processes.
"""

_SUB_BUCKETS = 1 << SUB_BUCKET_BITS
_EXACT_BELOW = 2 * _SUB_BUCKETS


def _bucket(value: int) -> int:
    if value < _EXACT_BELOW:
        return value
    shift = value.bit_length() - SUB_BUCKET_BITS - 1
    return (shift + 1) * _SUB_BUCKETS + (value >> shift) - _SUB_BUCKETS


def _bucket_high(index: int) -> int:
    """The largest value that falls in bucket ``index``."""
    if index < _EXACT_BELOW:
        return index
    shift = index // _SUB_BUCKETS - 1
    mantissa = index % _SUB_BUCKETS + _SUB_BUCKETS
    return ((mantissa + 1) << shift) - 1


class Histogram:
    """Counts of non-negative integers (microseconds of latency) in log-linear buckets.

    Quantiles report the top of the bucket holding the value (never below the true value,
    never above the recorded maximum); the mean and the maximum are exact.
    """

    __slots__ = ("_counts", "count", "max", "total")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.max = 0

    def record(self, value: int) -> None:
        """Add one value; negative values (a clock stepped back) count as 0."""
        value = max(value, 0)
        index = _bucket(value)
        counts = self._counts
        counts[index] = counts.get(index, 0) + 1
        self.count += 1
        self.total += value
        self.max = max(self.max, value)

    def merge(self, other: Histogram) -> None:
        for index, count in other._counts.items():
            self._counts[index] = self._counts.get(index, 0) + count
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> int | None:
        """The value below or at which a fraction ``q`` of the values lie; None when empty."""
        if not 0 <= q <= 1:
            raise ValueError(f"quantile must be within 0 and 1, got {q}")
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self._counts):
            seen += self._counts[index]
            if seen >= rank:
                return min(_bucket_high(index), self.max)
        return self.max

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": [[i, c] for i, c in sorted(self._counts.items())],
            "total": self.total,
            "max": self.max,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Histogram:
        histogram = cls()
        histogram._counts = {int(i): int(c) for i, c in data["counts"]}
        histogram.count = sum(histogram._counts.values())
        histogram.total = int(data["total"])
        histogram.max = int(data["max"])
        return histogram


def expected_deliveries(room_acked: int, own_acked: int) -> int:
    """Deliveries one member of a room should get: every acknowledged message but its own."""
    return room_acked - own_acked


def lost_deliveries(expected: int, received: int) -> int:
    """Deliveries that never came; extra ones (a send that failed yet went through) offset none."""
    return max(0, expected - received)


@dataclass(slots=True)
class Tally:
    """Everything one process counted; merged across processes with `merge`.

    Sends and deliveries count only measured messages (due after the warm-up); connections,
    joins and errors count over the whole run.
    """

    clients: int = 0
    connected: int = 0
    joined: int = 0
    operations: int = 0
    """Connects, joins and measured sends attempted: the denominator of the error rate."""
    sent: int = 0
    acked: int = 0
    throttled: int = 0
    """``rate_limited`` replies in ``--max`` mode, where they pace the senders."""
    received: int = 0
    expected: int = 0
    lost: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency: Histogram = field(default_factory=Histogram)
    """Delivery latency (µs): from the due time of a send to its arrival at a member."""
    ack_latency: Histogram = field(default_factory=Histogram)
    """Reply latency (µs): from the due time of a send to the server's acknowledgement."""

    def error(self, kind: str, count: int = 1) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + count

    def merge(self, other: Tally) -> None:
        for name in _COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for kind, count in other.errors.items():
            self.error(kind, count)
        self.latency.merge(other.latency)
        self.ack_latency.merge(other.ack_latency)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: getattr(self, name) for name in _COUNTERS}
        data["errors"] = dict(self.errors)
        data["latency"] = self.latency.to_json()
        data["ack_latency"] = self.ack_latency.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tally:
        tally = cls()
        for name in _COUNTERS:
            setattr(tally, name, int(data[name]))
        tally.errors = {str(k): int(v) for k, v in data["errors"].items()}
        tally.latency = Histogram.from_json(data["latency"])
        tally.ack_latency = Histogram.from_json(data["ack_latency"])
        return tally

    @classmethod
    def total(cls, tallies: Iterable[Tally]) -> Tally:
        merged = cls()
        for tally in tallies:
            merged.merge(tally)
        return merged


_COUNTERS = (
    "clients",
    "connected",
    "joined",
    "operations",
    "sent",
    "acked",
    "throttled",
    "received",
    "expected",
    "lost",
)

LATENCY_METRICS = (
    "avg_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "ack_avg_ms",
    "ack_p50_ms",
    "ack_p99_ms",
)
"""Metrics that have no value when nothing was measured (no delivery, no acknowledgement)."""

METRICS = (
    "clients",
    "connected",
    "sent",
    "acked",
    "throttled",
    "deliveries",
    "expected",
    "lost",
    "lost_rate",
    "errors",
    "error_rate",
    "sends_per_s",
    "deliveries_per_s",
    *LATENCY_METRICS,
    "worker_cpu",
)
"""Every metric of a run, in report order; thresholds may test any of them."""


def _ms(microseconds: float | None) -> float | None:
    return None if microseconds is None else round(microseconds / 1000, 3)


def summarize(
    tally: Tally, duration_s: float, *, worker_cpu: float | None = None
) -> dict[str, float | int | None]:
    """The metrics of a run from its merged tally and its measured duration.

    ``worker_cpu`` is the share of one CPU the busiest worker process used while sending:
    near 1 the tool itself, not the server, may be what limits the run.
    """
    errors = sum(tally.errors.values())
    latency, acks = tally.latency, tally.ack_latency
    return {
        "clients": tally.clients,
        "connected": tally.connected,
        "sent": tally.sent,
        "acked": tally.acked,
        "throttled": tally.throttled,
        "deliveries": tally.received,
        "expected": tally.expected,
        "lost": tally.lost,
        "lost_rate": round(tally.lost / tally.expected, 6) if tally.expected else 0.0,
        "errors": errors,
        "error_rate": round(errors / tally.operations, 6) if tally.operations else 0.0,
        "sends_per_s": round(tally.acked / duration_s, 1),
        "deliveries_per_s": round(tally.received / duration_s, 1),
        "avg_ms": _ms(latency.mean()),
        "p50_ms": _ms(latency.quantile(0.5)),
        "p90_ms": _ms(latency.quantile(0.9)),
        "p99_ms": _ms(latency.quantile(0.99)),
        "max_ms": _ms(latency.max) if latency.count else None,
        "ack_avg_ms": _ms(acks.mean()),
        "ack_p50_ms": _ms(acks.quantile(0.5)),
        "ack_p99_ms": _ms(acks.quantile(0.99)),
        "worker_cpu": None if worker_cpu is None else round(worker_cpu, 3),
    }
