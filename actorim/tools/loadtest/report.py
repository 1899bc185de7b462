"""The final word on a run: a table for people, or one JSON object for scripts.

The JSON's ``metrics`` keys are the metric names thresholds use, so a script reading the JSON
and a ``--threshold`` on the command line speak of the same numbers.
"""

from __future__ import annotations

import json
from typing import Any

from actorim.tools.loadtest.runner import Outcome

__all__ = ["BUSY_WORKER_CPU", "render_json", "render_table", "to_json"]

BUSY_WORKER_CPU = 0.8
"""A worker process busier than this share of a CPU may be slowing the run down itself."""


def _settings(outcome: Outcome) -> dict[str, Any]:
    options = outcome.options
    layout = options.layout
    return {
        "clients": layout.clients,
        "processes": layout.processes,
        "rooms": layout.rooms,
        "senders": layout.senders,
        "rate": options.rate,
        "max": options.rate is None,
        "window": options.window if options.rate is None else None,
        "duration_s": options.duration_s,
        "warmup_s": options.warmup_s,
        "ramp_s": options.ramp_s,
        "size": options.size,
        "tokens": options.token_source,
    }


def to_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "url": outcome.options.url,
        "settings": _settings(outcome),
        "metrics": outcome.metrics,
        "errors": dict(sorted(outcome.tally.errors.items())),
        "thresholds": [
            {"threshold": str(r.threshold), "value": r.value, "passed": r.passed}
            for r in outcome.thresholds
        ],
        "passed": outcome.passed,
    }


def render_json(outcome: Outcome) -> str:
    return json.dumps(to_json(outcome), sort_keys=False)


def _count(n: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("s") else "s")
    return f"{n:,} {noun if n == 1 else plural}"


def _number(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def render_table(outcome: Outcome) -> str:
    options, m = outcome.options, outcome.metrics
    layout = options.layout
    pace = "as fast as allowed" if options.rate is None else f"{options.rate:g} msg/s"
    lines = [
        f"actorim bench {options.url}",
        f"  {_count(layout.clients, 'client')} in {_count(layout.processes, 'process')}, "
        f"{_count(layout.rooms, 'room')}, "
        f"{_count(layout.senders, 'sender')}, {pace}, {options.size}-byte bodies, "
        f"{options.duration_s:g} s measured after {options.warmup_s:g} s of warm-up",
        "",
        f"  connections  {_number(m['connected'])} of {_number(m['clients'])} connected",
        f"  sends        {_number(m['sent'])} sent, {_number(m['acked'])} acknowledged "
        f"({_number(m['sends_per_s'])}/s), {_number(m['throttled'])} throttled",
        f"  deliveries   {_number(m['deliveries'])} of {_number(m['expected'])} expected "
        f"({_number(m['deliveries_per_s'])}/s), {_number(m['lost'])} lost",
        "  latency ms   "
        + "  ".join(f"{k} {_number(m[k + '_ms'], 2)}" for k in ("avg", "p50", "p90", "p99", "max")),
        "  ack ms       "
        + "  ".join(f"{k} {_number(m['ack_' + k + '_ms'], 2)}" for k in ("avg", "p50", "p99")),
        f"  errors       {_errors(outcome)}",
        f"  bench        {_busy(m['worker_cpu'])}",
    ]
    if outcome.thresholds:
        lines += ["", "  thresholds"]
        lines += [f"    {result.describe()}" for result in outcome.thresholds]
    return "\n".join(lines)


def _busy(worker_cpu: float | int | None) -> str:
    if worker_cpu is None:
        return "-"
    line = f"busiest worker process used {worker_cpu:.0%} of a CPU"
    if worker_cpu >= BUSY_WORKER_CPU:
        line += ": the tool may be the bottleneck, add --processes (or machines)"
    return line


def _errors(outcome: Outcome) -> str:
    errors = outcome.tally.errors
    if not errors:
        return "none"
    listed = ", ".join(f"{kind} {count:,}" for kind, count in sorted(errors.items()))
    return f"{listed} (error rate {outcome.metrics['error_rate']:.2%})"
