"""Drift that matters: the monitored columns ranked by how much their drift is likely to hurt the model.

Per column (whole table, BASELINE drift of the analysis chunks):
- `drift`: on the newest analysis chunk, the largest ratio value / upper threshold over the column's
  headline-ranked drift metrics (1 = at its threshold, above 1 = alerting);
- `importance`: the feature importance from the config (`features[].importance`), when given;
- `correlation`: Pearson r, over the analysis chunks, between the column's headline drift metric and the
  performance change |performance - reference mean| (realized where the chunk has it, else estimated;
  NannyML's CorrelationRanker), when at least 3 chunks have both.

`score` = drift x weight, the weight being the importance when the config gives importances (a feature
without one weighs 0, a model output 1: output drift is the model's own behaviour), else |correlation|
when known, else 1. Columns are listed by score, alerting ones first. See docs/statistics.md.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from monitoring.config import MonitorConfig
from monitoring.drift.compare import ANALYSIS, BASELINE, DRIFT, REFERENCE, MetricResult
from monitoring.slices import WHOLE

# drift metrics in the order a column's headline is chosen (the first one it has)
HEADLINE = ("kolmogorov_smirnov", "jensen_shannon", "l_infinity", "hellinger", "total_variation", "psi",
            "wasserstein_normalized", "chi2")
PERFORMANCE_HEADLINE = {"binary": "roc_auc", "multiclass": "roc_auc_macro", "regression": "rmse"}
MIN_CHUNKS = 3


@dataclass(frozen=True)
class RankedColumn:
    column: str
    alerted: bool  # the newest analysis chunk alerts on a BASELINE drift metric of this column
    drift: float | None
    importance: float | None
    correlation: float | None
    score: float


def rank_drift(results: list[MetricResult], config: MonitorConfig) -> list[RankedColumn]:
    """The columns with BASELINE drift results, most harmful first (module docstring)."""
    by_column: dict[str, list[MetricResult]] = defaultdict(list)
    for r in results:
        if (r.period, r.family, r.comparison, r.slice_key, r.slice_value) == (ANALYSIS, DRIFT, BASELINE, *WHOLE):
            by_column[r.column].append(r)
    importances = {f.name: f.importance for f in config.features}
    weighted = any(v is not None for v in importances.values())
    performance = _performance_change(results, config)
    ranked = []
    for column, rows in by_column.items():
        newest = max(r.chunk.index for r in rows)
        latest = [r for r in rows if r.chunk.index == newest]
        ratios = [r.value / r.upper_threshold for r in latest
                  if r.metric in HEADLINE and r.value is not None and r.upper_threshold]
        drift = max(ratios) if ratios else None
        headline = next((m for m in HEADLINE if any(r.metric == m for r in rows)), None)
        series = {r.chunk.index: r.value for r in rows if r.metric == headline and r.value is not None}
        correlation = _pearson(series, performance)
        if weighted:
            weight = (importances[column] or 0.0) if column in importances else 1.0
        else:
            weight = abs(correlation) if correlation is not None else 1.0
        ranked.append(RankedColumn(column, any(r.alert for r in latest), drift,
                                   importances.get(column), correlation, (drift or 0.0) * weight))
    return sorted(ranked, key=lambda c: (not c.alerted, -c.score, c.column))


def _performance_change(results: list[MetricResult], config: MonitorConfig) -> dict[int, float]:
    """chunk index -> |performance - mean of the reference chunks'| of the headline metric, realized where
    the chunk has a value, else estimated."""
    metric = PERFORMANCE_HEADLINE[config.problem_type]
    values: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for r in results:
        if r.metric == metric and (r.slice_key, r.slice_value) == WHOLE and r.comparison == "NONE" and \
                r.value is not None and r.family in ("performance", "estimated_performance"):
            values[(r.family, r.period)][r.chunk.index] = r.value
    out = {}
    for family in ("performance", "estimated_performance"):
        reference = values[(family, REFERENCE)]
        if not reference:
            continue
        base = float(np.mean(list(reference.values())))
        for index, v in values[(family, ANALYSIS)].items():
            out.setdefault(index, abs(v - base))
    return out


def _pearson(a: dict[int, float], b: dict[int, float]) -> float | None:
    common = sorted(set(a) & set(b))
    if len(common) < MIN_CHUNKS:
        return None
    x, y = np.array([a[i] for i in common]), np.array([b[i] for i in common])
    if x.std() == 0 or y.std() == 0:
        return None
    r = float(np.corrcoef(x, y)[0, 1])
    return r if math.isfinite(r) else None
