"""``actorim bench``: load-test an actorim server over its own protocol.

Many clients, spread over several processes so the tool is not the bottleneck, join rooms and
send at a rate (or as fast as the server allows) for a while; the run reports deliveries per
second, delivery latency percentiles, errors and lost messages, and thresholds on those turn
into an exit status for CI. docs/loadtest.md is the user's guide.

The parts: `plan` (who sends what when), `stats` (histograms, tallies, metrics),
`thresholds`, `throttle`, `wsclient` (client-side WebSocket), `wire` (message bodies and the
runner's pipe protocol), `worker` (one process of clients), `runner`, `progress`, `report`.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TextIO

from actorim.tools.loadtest.options import BenchOptions, add_flags, is_loopback, options_from
from actorim.tools.loadtest.runner import BenchAborted, Outcome, run_bench
from actorim.tools.loadtest.stats import METRICS, Histogram, Tally, summarize
from actorim.tools.loadtest.thresholds import Threshold, ThresholdResult

__all__ = [
    "EXIT_ABORTED",
    "EXIT_INTERRUPTED",
    "EXIT_THRESHOLD_FAILED",
    "METRICS",
    "BenchAborted",
    "BenchOptions",
    "Histogram",
    "Outcome",
    "Tally",
    "Threshold",
    "ThresholdResult",
    "add_flags",
    "is_loopback",
    "options_from",
    "run_bench",
    "run_command",
    "summarize",
]

EXIT_THRESHOLD_FAILED = 1
"""Exit status when the run completed but a ``--threshold`` does not hold."""

EXIT_ABORTED = 3
"""Exit status when the run could not be carried out (no client joined, a worker died).
Status 2 stays argparse's: bad flags."""

EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C, as a shell reports a process ended by SIGINT."""


def run_command(
    args: argparse.Namespace, env: Mapping[str, str], *, stdout: TextIO, stderr: TextIO
) -> int:
    """``actorim bench``: raises ValueError for bad flags, returns the exit status otherwise."""
    from actorim.tools.loadtest.report import BUSY_WORKER_CPU, render_json, render_table

    options = options_from(args, env)
    for warning in options.warnings():
        print(f"actorim bench: warning: {warning}", file=stderr)
    try:
        outcome = run_bench(options, stderr=stderr)
    except BenchAborted as exc:
        print(f"actorim bench: {exc}", file=stderr)
        return EXIT_ABORTED
    except KeyboardInterrupt:
        print("actorim bench: interrupted; the worker processes were stopped", file=stderr)
        return EXIT_INTERRUPTED
    print(render_json(outcome) if options.json else render_table(outcome), file=stdout)
    busy = outcome.metrics["worker_cpu"]
    if busy is not None and busy >= BUSY_WORKER_CPU:
        print(
            f"actorim bench: warning: a worker process used {busy:.0%} of a CPU: the tool may "
            "have limited the run; give it more --processes",
            file=stderr,
        )
    failed = [result for result in outcome.thresholds if not result.passed]
    if failed:
        print(
            f"actorim bench: {len(failed)} threshold(s) failed: "
            + "; ".join(result.describe().removeprefix("FAIL  ") for result in failed),
            file=stderr,
        )
        return EXIT_THRESHOLD_FAILED
    return 0
