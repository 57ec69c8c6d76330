"""The metric registry: every metric a run can produce, once, with its family, the column kinds it
applies to, its range, the direction that is bad, its default threshold rule and its display name.

Config validation (`drift.thresholds`), the default thresholds, the clamping of thresholds and
confidence bands to a metric's range, and docs/metrics.md (`python -m monitoring.registry`) derive
from it. Defaults follow NannyML (two-sided std thresholds) except where a direction is plainly good:
performance that improves (a higher ROC AUC, a lower MAE) does not alert, and neither do counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

from monitoring.thresholds import ThresholdRule

HIGHER_IS_WORSE, LOWER_IS_WORSE, EITHER = "higher is worse", "lower is worse", "either way"
DRIFT, QUALITY, MULTIVARIATE, CONCEPT = "drift", "data_quality", "multivariate", "concept_drift"
PERFORMANCE = "performance"  # realized; the same names serve estimated performance and the concept gaps
CONTINUOUS, CATEGORICAL, TABLE = "continuous", "categorical", "table"
UNIT, POSITIVE, UNBOUNDED = (0.0, 1.0), (0.0, math.inf), (-math.inf, math.inf)

# the default rule types: learnt from the reference chunks (std) on the bad side(s), constant, or none
UPPER_STD, LOWER_STD, BOTH_STD, NONE = "upper std", "lower std", "two-sided std", "none"


@dataclass(frozen=True)
class Metric:
    """One metric. `default`: UPPER_STD, LOWER_STD, BOTH_STD, NONE, or (lower, upper) constants."""

    name: str
    family: str
    kinds: tuple[str, ...]
    value_range: tuple[float, float]
    direction: str
    default: str | tuple[float | None, float | None]
    display: str

    def rule(self, std_multiplier: float) -> ThresholdRule:
        """The default threshold rule of this metric (all columns and comparisons)."""
        m = std_multiplier
        if isinstance(self.default, tuple):
            return ThresholdRule(self.name, "constant", lower=self.default[0], upper=self.default[1])
        if self.default == NONE:
            return ThresholdRule(self.name, "none")
        return ThresholdRule(self.name, std_lower=None if self.default == UPPER_STD else m,
                             std_upper=None if self.default == LOWER_STD else m)


def _m(name, family, kinds, value_range, direction, default, display) -> Metric:
    return Metric(name, family, kinds, value_range, direction, default, display)


BOTH_KINDS = (CONTINUOUS, CATEGORICAL)
# the drift methods a config may name (`drift.continuous_methods` / `categorical_methods`)
CONTINUOUS_METHODS = ("kolmogorov_smirnov", "wasserstein", "jensen_shannon", "hellinger", "psi", "out_of_range")
# the defaults: every one but Wasserstein, whose fine bins double the profiling pass (docs/statistics.md)
DEFAULT_CONTINUOUS_METHODS = tuple(m for m in CONTINUOUS_METHODS if m != "wasserstein")
CATEGORICAL_METHODS = ("chi2", "jensen_shannon", "hellinger", "l_infinity", "total_variation", "psi", "unseen")
_SCORES = {"roc_auc": "ROC AUC", "average_precision": "average precision", "f1": "F1", "precision": "precision",
           "recall": "recall", "specificity": "specificity"}
_LOSSES = {"mae": "MAE", "mse": "MSE", "rmse": "RMSE", "mape": "MAPE", "msle": "MSLE", "rmsle": "RMSLE"}
_CHECKS = {"prediction_missing": "predictions missing", "score_out_of_range": "scores outside [0, 1]",
           "scores_not_summing_to_one": "class scores not summing to 1",
           "unknown_prediction": "predictions of unknown classes", "failed_prediction": "rows failing a check"}

METRICS: dict[str, Metric] = {m.name: m for m in (
    # univariate drift against the reference (BASELINE) and the previous chunk (CONSECUTIVE)
    _m("kolmogorov_smirnov", DRIFT, (CONTINUOUS,), UNIT, HIGHER_IS_WORSE, UPPER_STD, "Kolmogorov-Smirnov D"),
    _m("kolmogorov_smirnov_pvalue", DRIFT, (CONTINUOUS,), UNIT, LOWER_IS_WORSE, NONE, "Kolmogorov-Smirnov p-value"),
    _m("wasserstein", DRIFT, (CONTINUOUS,), POSITIVE, HIGHER_IS_WORSE, UPPER_STD, "Wasserstein distance"),
    _m("wasserstein_normalized", DRIFT, (CONTINUOUS,), POSITIVE, HIGHER_IS_WORSE, UPPER_STD,
       "Wasserstein distance / reference std"),
    _m("jensen_shannon", DRIFT, BOTH_KINDS, UNIT, HIGHER_IS_WORSE, UPPER_STD, "Jensen-Shannon distance"),
    _m("hellinger", DRIFT, BOTH_KINDS, UNIT, HIGHER_IS_WORSE, UPPER_STD, "Hellinger distance"),
    _m("psi", DRIFT, BOTH_KINDS, POSITIVE, HIGHER_IS_WORSE, UPPER_STD, "population stability index"),
    _m("chi2", DRIFT, (CATEGORICAL,), POSITIVE, HIGHER_IS_WORSE, UPPER_STD, "chi-squared statistic"),
    _m("chi2_pvalue", DRIFT, (CATEGORICAL,), UNIT, LOWER_IS_WORSE, NONE, "chi-squared p-value"),
    _m("l_infinity", DRIFT, (CATEGORICAL,), UNIT, HIGHER_IS_WORSE, UPPER_STD, "L-infinity distance"),
    _m("total_variation", DRIFT, (CATEGORICAL,), UNIT, HIGHER_IS_WORSE, UPPER_STD, "total variation distance"),
    # data quality
    _m("missing_rate", QUALITY, BOTH_KINDS, UNIT, EITHER, BOTH_STD, "missing values"),
    _m("infinite_rate", QUALITY, (CONTINUOUS,), UNIT, HIGHER_IS_WORSE, UPPER_STD, "infinite values"),
    _m("out_of_range", QUALITY, (CONTINUOUS,), UNIT, HIGHER_IS_WORSE, (None, 0.01),
       "values outside the reference range"),
    _m("unseen", QUALITY, (CATEGORICAL,), UNIT, HIGHER_IS_WORSE, (None, 0.01), "categories unseen in the reference"),
    _m("row_count", QUALITY, (TABLE,), POSITIVE, EITHER, BOTH_STD, "rows"),
    _m("schema_change", QUALITY, (TABLE,), UNIT, HIGHER_IS_WORSE, (None, 0.0), "schema changed since the fit"),
    _m("declared_kind", QUALITY, BOTH_KINDS, UNIT, HIGHER_IS_WORSE, (None, 0.0),
       "declared kind does not fit the values"),
    _m("empty_reference_column", QUALITY, BOTH_KINDS, UNIT, HIGHER_IS_WORSE, (None, 0.0),
       "no valid value in the reference"),
    _m("reference_chunks", QUALITY, (TABLE,), POSITIVE, LOWER_IS_WORSE, (3.0, None),
       "reference chunks (thresholds need 3)"),
    _m("null_timestamp_rows", QUALITY, (TABLE,), POSITIVE, HIGHER_IS_WORSE, BOTH_STD, "rows without a timestamp"),
    _m("vanished_chunks", QUALITY, (TABLE,), POSITIVE, HIGHER_IS_WORSE, (None, 0.0),
       "chunks whose rows left the source (results kept)"),
    _m("timestamp_outside_window_rows", QUALITY, (TABLE,), POSITIVE, HIGHER_IS_WORSE, (None, 0.0),
       "rows with a timestamp outside the chunking window"),
    _m("invalid_label_rate", QUALITY, (TABLE,), UNIT, EITHER, BOTH_STD, "invalid labels"),
    _m("duplicate_id_rate", QUALITY, (TABLE,), UNIT, EITHER, BOTH_STD, "duplicate prediction ids"),
    *(_m(f"{check}_rate", QUALITY, (TABLE,), UNIT, EITHER, BOTH_STD, text) for check, text in _CHECKS.items()),
    # multivariate drift
    _m("reconstruction_error", MULTIVARIATE, (TABLE,), POSITIVE, EITHER, BOTH_STD, "PCA reconstruction error"),
    _m("classifier_auc", MULTIVARIATE, (TABLE,), UNIT, HIGHER_IS_WORSE, (0.45, 0.65), "domain classifier AUC"),
    # per-feature concept drift (the realized-estimated gaps carry the performance metrics' names)
    _m("relation_change", CONCEPT, BOTH_KINDS, UNBOUNDED, HIGHER_IS_WORSE, UPPER_STD,
       "feature-target relation change (z)"),
    _m("relation_shift", CONCEPT, BOTH_KINDS, POSITIVE, HIGHER_IS_WORSE, NONE, "feature-target relation shift"),
    # performance, realized and estimated
    *(_m(name, PERFORMANCE, (TABLE,), UNIT, LOWER_IS_WORSE, LOWER_STD, text) for name, text in _SCORES.items()),
    *(_m(f"{name}_{avg}", PERFORMANCE, (TABLE,), UNIT, LOWER_IS_WORSE, LOWER_STD, f"{text} ({avg})")
      for name, text in _SCORES.items() for avg in ("macro", "weighted")),
    _m("accuracy", PERFORMANCE, (TABLE,), UNIT, LOWER_IS_WORSE, LOWER_STD, "accuracy"),
    _m("business_value", PERFORMANCE, (TABLE,), UNBOUNDED, LOWER_IS_WORSE, LOWER_STD, "business value"),
    _m("r2", PERFORMANCE, (TABLE,), (-math.inf, 1.0), LOWER_IS_WORSE, LOWER_STD, "R squared"),
    _m("brier_score", PERFORMANCE, (TABLE,), UNIT, HIGHER_IS_WORSE, UPPER_STD, "Brier score"),
    _m("calibration_error", PERFORMANCE, (TABLE,), UNIT, HIGHER_IS_WORSE, UPPER_STD, "expected calibration error"),
    _m("log_loss", PERFORMANCE, (TABLE,), POSITIVE, HIGHER_IS_WORSE, UPPER_STD, "log loss"),
    *(_m(name, PERFORMANCE, (TABLE,), POSITIVE, HIGHER_IS_WORSE, UPPER_STD, text) for name, text in _LOSSES.items()),
    *(_m(name, PERFORMANCE, (TABLE,), POSITIVE, EITHER, NONE, name.replace("_", " ") + "s")
      for name in ("true_positive", "false_positive", "false_negative", "true_negative")),
    _m("label_coverage", PERFORMANCE, (TABLE,), UNIT, LOWER_IS_WORSE, NONE, "rows with a label"),
)}

# multiclass confusion-matrix cells, `confusion_<true class>_<predicted class>`: counts, no default alert
CONFUSION = _m("confusion_*", PERFORMANCE, (TABLE,), POSITIVE, EITHER, NONE, "confusion matrix cell")


def metric(name: str) -> Metric | None:
    """The registry entry of a metric name (a confusion-matrix cell: CONFUSION), None when unknown."""
    found = METRICS.get(name)
    if found is None and name.startswith("confusion_"):
        return CONFUSION
    return found


def nannyml_rules(std_multiplier: float) -> tuple[ThresholdRule, ...]:
    """The default rules `compatibility: nannyml` puts before a config's own: NannyML 0.13.1's two-sided std
    thresholds on realized and estimated performance (Driftline's default alerts on the bad side only) and
    its constant 0 on the unseen rate (Driftline's: 1%); chi-squared alerts on its p-value below 0.05, the
    statistic itself has no thresholds (Driftline's: upper std on the statistic)."""
    m = std_multiplier
    return tuple(ThresholdRule(x.name, std_lower=m, std_upper=m) for x in METRICS.values()
                 if x.family == PERFORMANCE and x.default in (LOWER_STD, UPPER_STD)) + \
        (ThresholdRule("unseen", "constant", upper=0.0), ThresholdRule("chi2", "none"),
         ThresholdRule("chi2_pvalue", "pvalue", alpha=0.05))


def value_range(name: str) -> tuple[float, float]:
    """The metric's (lowest, highest) value; thresholds and confidence bands are clamped to it."""
    found = metric(name)
    return found.value_range if found else UNBOUNDED


def rule_names() -> list[str]:
    """What `drift.thresholds[].metric` accepts: every metric, `confusion_*` (all cells) and `*`."""
    return [*METRICS, CONFUSION.name, "*"]


GAPS = "ESTIMATED"  # the comparison of the concept-drift gaps (realized - estimated), monitoring/concept.py


@cache
def default_rules(std_multiplier: float = 3.0) -> tuple[ThresholdRule, ...]:
    """Every metric's default rule, after a two-sided std rule for anything unregistered (built once per
    multiplier: `resolve` runs per column x metric x comparison). The concept-drift
    gaps of the performance metrics are two-sided: a gap either way means the relation changed."""
    m = std_multiplier
    return (ThresholdRule("*", std_lower=m, std_upper=m),
            *(x.rule(m) for x in (*METRICS.values(), CONFUSION)),
            *(ThresholdRule(x.name, comparison=GAPS, std_lower=m, std_upper=m) for x in METRICS.values()
              if x.family == PERFORMANCE and x.default in (LOWER_STD, UPPER_STD)))


def resolve(rules: tuple[ThresholdRule, ...], name: str, column: str, comparison: str,
            std_multiplier: float = 3.0) -> ThresholdRule | None:
    """The last matching rule of the defaults followed by the configured rules."""
    found = None
    for rule in (*default_rules(std_multiplier), *rules):
        if rule.matches(name, column, comparison):
            found = rule
    return found


def markdown() -> str:
    """docs/metrics.md: the registry as a table."""
    def text(x: float) -> str:
        return "inf" if x == math.inf else "-inf" if x == -math.inf else f"{x:g}"

    def default(m: Metric) -> str:
        if isinstance(m.default, tuple):
            sides = zip(("lower", "upper"), m.default, strict=True)
            return "constant " + ", ".join(f"{side} {text(v)}" for side, v in sides if v is not None)
        return m.default

    lines = ["# Metrics", "",
             "Generated from `monitoring/registry.py` (`python -m monitoring.registry > docs/metrics.md`; a test",
             "checks it is current). Every metric a run writes is here; `drift.thresholds[].metric` takes these",
             "names (docs/config.md). Performance metrics serve realized performance, estimated performance",
             "(CBPE, DLE; thresholds: those of the realized metric) and the realized-estimated gaps of concept drift.",
             "`std` thresholds are mean -/+ `drift.std_multiplier` x std of the reference chunks' values, on the",
             "side named. The concept-drift gaps (comparison `ESTIMATED`) of performance metrics are two-sided:",
             "a gap either way means the inputs-target relation changed.", "",
             "| metric | family | columns | range | bad when | default threshold | shown as |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for m in (*METRICS.values(), CONFUSION):
        lines.append(f"| `{m.name}` | {m.family} | {', '.join(m.kinds)} | [{text(m.value_range[0])}, "
                     f"{text(m.value_range[1])}] | {m.direction} | {default(m)} | {m.display} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
