"""Thresholds learnt from the reference (standard deviation), constant, or p-value; alerts.

A rule names a metric (or `prefix*`, `*`) and optionally columns and a comparison; the last rule that
matches a result decides its thresholds. The defaults come from the metric registry
(monitoring/registry.py, docs/metrics.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

THRESHOLD_TYPES = ("std", "constant", "pvalue", "none")


@dataclass(frozen=True)
class ThresholdRule:
    """`std`: mean -/+ multiplier x std of the reference chunks' values (a None multiplier leaves that
    side open); `constant`: fixed lower/upper; `pvalue`: alert when the value (a p-value) < alpha;
    `none`: never alert."""

    metric: str
    type: str = "std"
    columns: tuple[str, ...] = ()
    comparison: str | None = None
    std_lower: float | None = None
    std_upper: float | None = 3.0
    lower: float | None = None
    upper: float | None = None
    alpha: float = 0.05

    def matches(self, metric: str, column: str, comparison: str) -> bool:
        named = self.metric == metric or (self.metric.endswith("*") and metric.startswith(self.metric[:-1]))
        return named and (not self.columns or column in self.columns) and (
            self.comparison is None or self.comparison == comparison)


@dataclass(frozen=True)
class Bounds:
    lower: float | None
    upper: float | None

    def alert(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return (self.lower is not None and value < self.lower) or (self.upper is not None and value > self.upper)


NO_BOUNDS = Bounds(None, None)


def bounds(rule: ThresholdRule | None, reference_values: list[float | None],
           value_range: tuple[float, float]) -> Bounds:
    """Threshold values for one metric of one column; std thresholds need two reference values."""
    if rule is None or rule.type == "none":
        return NO_BOUNDS
    if rule.type == "constant":
        return Bounds(rule.lower, rule.upper)
    if rule.type == "pvalue":
        return Bounds(rule.alpha, None)
    values = np.array([v for v in reference_values if v is not None and math.isfinite(v)], float)
    if len(values) < 2:
        return NO_BOUNDS
    mean, std = float(values.mean()), float(values.std())
    lo, hi = value_range

    def clamp(x: float) -> float:
        return min(max(x, lo), hi)

    lower = clamp(mean - rule.std_lower * std) if rule.std_lower is not None else None
    upper = clamp(mean + rule.std_upper * std) if rule.std_upper is not None else None
    return Bounds(lower, upper)
