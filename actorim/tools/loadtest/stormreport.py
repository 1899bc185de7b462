"""The final word on a reconnect storm: a table for people, or one JSON object for scripts."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from actorim.tools.loadtest.stormoptions import StormOutcome

__all__ = ["render_json", "render_table", "to_json"]


def to_json(outcome: StormOutcome) -> dict[str, Any]:
    data = asdict(outcome)
    options = data.pop("options")
    options.pop("json")
    options.pop("keep")
    return {"settings": options, **data, "passed": outcome.passed, "failures": outcome.failures}


def render_json(outcome: StormOutcome) -> str:
    return json.dumps(to_json(outcome), sort_keys=True)


def render_table(outcome: StormOutcome) -> str:
    o = outcome.options
    where = f"{o.nodes} nodes on one Redis" if o.redis_url else "one SQLite node, restarted"
    rows = [
        ("scenario", f"{o.clients} clients in {o.room_count} rooms, {where}"),
        ("drain", f"closes over {o.drain_seconds:g} s, hints from 0 to {o.spread:g} s"),
        ("node A's old process", outcome.drained_exit),
        ("joined / recovered", f"{outcome.joined} / {outcome.recovered}"),
        ("all recovered, from the drain", _seconds(outcome.all_recovered_s)),
    ]
    if not o.redis_url:
        rows.append(("all recovered, from listening", _seconds(outcome.from_listen_s)))
    rows += [
        (
            "recovery p50 / p99",
            f"{_seconds(outcome.recovery_p50_s)} / "
            f"{_seconds(outcome.recovery_p99_s)} (from the drain)",
        ),
        ("last close, from the drain", _seconds(outcome.closed_last_s)),
        ("mean hinted delay", _seconds(outcome.hint_mean_s)),
        ("reconnect attempts", str(outcome.attempts)),
        ("published", f"{outcome.published} ({outcome.publish_retries} retried)"),
        ("lost, among recovered clients", f"{outcome.lost} ({outcome.clients_losing} clients)"),
        (
            "clients not back",
            f"{outcome.not_back} (missing {outcome.missed_while_away} messages while away)",
        ),
        ("duplicated", f"{outcome.duplicated} ({outcome.clients_doubling} clients)"),
    ]
    rows += [(f"server CPU, {name}", f"{cpu:.2f} s") for name, cpu in outcome.server_cpu_s.items()]
    if outcome.errors:
        listed = ", ".join(f"{k} {v}" for k, v in sorted(outcome.errors.items()))
        rows.append(("client errors", listed))
    failures = outcome.failures
    rows.append(("verdict", f"FAIL: {', '.join(failures)}" if failures else "PASS"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"
