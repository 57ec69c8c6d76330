"""Estimated performance results (family `estimated_performance`): CBPE (binary and multiclass
classification) or DLE (regression) per reference and analysis chunk, with confidence bands, the
realized metric's thresholds (learnt from the reference chunks' realized values, as NannyML does) and
alerts, plus the estimation error where labels exist (comparison `REALIZED`: estimate - realized)."""

from __future__ import annotations

import math

from monitoring.config import MonitorConfig
from monitoring.drift.compare import REFERENCE, MetricResult
from monitoring.performance.cbpe import Calibrator, estimate, estimate_multiclass
from monitoring.performance.nannyml_errors import LOSSES, components, loss_errors, multiclass_components
from monitoring.performance.realized import PerfValue
from monitoring.performance.results import PERFORMANCE, TABLE, chunk_results, reference_state
from monitoring.performance.state import PerformanceState
from monitoring.profiling import ChunkProfile
from monitoring.thresholds import NO_BOUNDS, Bounds

ESTIMATED = "estimated_performance"
VS_REALIZED = "REALIZED"


def estimation_enabled(config: MonitorConfig) -> bool:
    """CBPE for classification, DLE for regression; both learn from labelled reference rows."""
    return config.estimation.enabled and config.labels is not None


def estimated_results(reference: list[ChunkProfile], analysis: list[ChunkProfile], config: MonitorConfig,
                      calibrator: Calibrator | None, realized: list[MetricResult]) -> list[MetricResult]:
    """Estimated results of one slice; `realized` are that slice's realized results (thresholds, errors).
    `calibrator`: binary CBPE's (multiclass probabilities were calibrated in the profiling pass)."""
    ref = reference_state(reference)
    if config.problem_type == "regression":
        def chunk_estimates(state: PerformanceState) -> list[PerfValue]:
            return dle_estimates(state, ref)
    elif config.problem_type == "multiclass":
        labels = list(config.outputs.class_scores)
        multi = multiclass_components(ref, labels)

        def chunk_estimates(state: PerformanceState) -> list[PerfValue]:
            return estimate_multiclass(state, labels, multi, config.estimation.business_value)
    else:
        positive = config.outputs.positive_class
        labels = sorted({k.split("|")[1] for k in ref.values if k.startswith("cm|")} | {positive})
        comps = components(ref, positive, labels)

        def chunk_estimates(state: PerformanceState) -> list[PerfValue]:
            return estimate(state, positive, calibrator, comps, config.estimation.business_value)
    thresholds = {r.metric: Bounds(r.lower_threshold, r.upper_threshold) for r in realized
                  if r.family == PERFORMANCE and r.period == REFERENCE}
    actual = {(r.period, r.chunk.index, r.metric): r.value for r in realized if r.family == PERFORMANCE}
    out: list[MetricResult] = []
    for r in chunk_results(reference, analysis, ESTIMATED, chunk_estimates):
        b = thresholds.get(r.metric, NO_BOUNDS)
        r.lower_threshold, r.upper_threshold, r.alert = b.lower, b.upper, b.alert(r.value)
        out.append(r)
        truth = actual.get((r.period, r.chunk.index, r.metric))
        if truth is not None and r.value is not None:
            out.append(MetricResult(r.period, r.chunk, r.slice_key, r.slice_value, TABLE, "table", ESTIMATED,
                                    r.metric, VS_REALIZED, r.value - truth, r.row_count,
                                    label_coverage=r.label_coverage))
    return out


def dle_estimates(state: PerformanceState, ref: PerformanceState) -> list[PerfValue]:
    """DLE metrics of one chunk from its predicted-loss sums; sampling errors from the reference's
    realized losses (`nannyml_errors.loss_errors`)."""
    n = state.get("dle_n")
    errors = loss_errors(ref, n)
    out: list[PerfValue] = []
    for metric, loss, root in LOSSES:
        if f"dle_{loss}" not in state.values or not n:
            out.append(PerfValue(metric, None, None, "no loss model or no predictions" if n else "no predictions"))
            continue
        mean = state.get(f"dle_{loss}") / n
        out.append(PerfValue(metric, math.sqrt(mean) if root else mean, errors[metric]))
    return out
