"""Thresholds learnt from the reference (standard deviation), constant, or p-value; alerts.

A rule names a metric and optionally columns and a comparison; the last rule that matches a result
decides its thresholds. Defaults are in DEFAULT_RULES and docs/statistics.md.
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
        return (self.metric in (metric, "*") and (not self.columns or column in self.columns)
                and (self.comparison is None or self.comparison == comparison))


DISTANCES = ("kolmogorov_smirnov", "wasserstein", "wasserstein_normalized", "jensen_shannon", "hellinger", "psi",
             "chi2", "l_infinity", "total_variation")


COUNTS = ("true_positive", "false_positive", "false_negative", "true_negative", "label_coverage")


def default_rules(std_multiplier: float = 3.0) -> tuple[ThresholdRule, ...]:
    """Any metric (realized performance): two-sided std; counts and label coverage: none; distances:
    upper std; p-values: none; out-of-range and unseen shares: constant 1%; missing rate: two-sided std;
    schema changes: always; per-feature concept drift: upper std of `relation_change`, none for the
    `relation_shift` it is read with; domain classifier AUC: constant 0.45 / 0.65 (NannyML's)."""
    return (
        ThresholdRule("*", std_lower=std_multiplier, std_upper=std_multiplier),
        *(ThresholdRule(m, "none") for m in COUNTS),
        *(ThresholdRule(m, std_upper=std_multiplier) for m in DISTANCES),
        ThresholdRule("kolmogorov_smirnov_pvalue", "none"),
        ThresholdRule("chi2_pvalue", "none"),
        ThresholdRule("out_of_range", "constant", upper=0.01),
        ThresholdRule("unseen", "constant", upper=0.01),
        ThresholdRule("missing_rate", "std", std_lower=std_multiplier, std_upper=std_multiplier),
        ThresholdRule("schema_change", "constant", upper=0.0),
        ThresholdRule("relation_change", std_upper=std_multiplier),
        ThresholdRule("relation_shift", "none"),
        ThresholdRule("classifier_auc", "constant", lower=0.45, upper=0.65),
    )


def resolve(rules: tuple[ThresholdRule, ...], metric: str, column: str, comparison: str,
            std_multiplier: float = 3.0) -> ThresholdRule | None:
    """The last matching rule of the defaults followed by the configured rules."""
    found = None
    for rule in (*default_rules(std_multiplier), *rules):
        if rule.matches(metric, column, comparison):
            found = rule
    return found


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
