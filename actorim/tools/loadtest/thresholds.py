"""Pass/fail conditions on a run's metrics, written ``metric<op>number`` (``p99_ms<200``).

They play the part of k6 thresholds in CI: `actorim bench` exits with status 1 when any fails.
A latency threshold fails when nothing was measured, so a run that delivered nothing cannot
pass ``p99_ms<200`` by having no 99th percentile.

>>> threshold = Threshold.parse("error_rate < 0.01")
>>> threshold.check({"error_rate": 0.002}).passed
True
>>> Threshold.parse("p99_ms<200").check({"p99_ms": None}).describe()
'FAIL  p99_ms<200  (p99_ms: nothing measured)'
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from actorim.tools.loadtest.stats import METRICS

__all__ = ["Threshold", "ThresholdResult"]

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}

_EXPRESSION = re.compile(r"\s*([a-z0-9_]+)\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*")


@dataclass(frozen=True, slots=True)
class ThresholdResult:
    threshold: Threshold
    value: float | None
    passed: bool

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        metric = self.threshold.metric
        shown = "nothing measured" if self.value is None else f"{metric} = {self.value:g}"
        if self.value is None:
            return f"{verdict}  {self.threshold}  ({metric}: {shown})"
        return f"{verdict}  {self.threshold}  ({shown})"


@dataclass(frozen=True, slots=True)
class Threshold:
    metric: str
    op: str
    limit: float

    @classmethod
    def parse(cls, text: str) -> Threshold:
        """Raises ValueError naming the problem and, for an unknown metric, the known ones."""
        match = _EXPRESSION.fullmatch(text)
        if match is None:
            raise ValueError(
                f"threshold {text!r} is not METRIC<OP>NUMBER (OP one of < <= > >= == !=), "
                "e.g. p99_ms<200"
            )
        metric, op, number = match.groups()
        if metric not in METRICS:
            raise ValueError(
                f"threshold {text!r}: unknown metric {metric!r}; known: {', '.join(METRICS)}"
            )
        try:
            limit = float(number)
        except ValueError:
            raise ValueError(f"threshold {text!r}: {number!r} is not a number") from None
        if not math.isfinite(limit):
            raise ValueError(f"threshold {text!r}: the limit must be a finite number")
        return cls(metric, op, limit)

    def check(self, metrics: Mapping[str, float | int | None]) -> ThresholdResult:
        value = metrics.get(self.metric)
        if value is None:
            return ThresholdResult(self, None, False)
        return ThresholdResult(self, value, _OPERATORS[self.op](value, self.limit))

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.limit:g}"
