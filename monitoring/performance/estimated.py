"""Estimated performance results (family `estimated_performance`): CBPE (binary classification) or DLE
(regression) per reference and analysis chunk, with confidence bands, the realized metric's thresholds
(learnt from the reference chunks' realized values, as NannyML does) and alerts, plus the estimation
error where labels exist (comparison `REALIZED`: estimate - realized)."""

from __future__ import annotations

import math

from monitoring.config import MonitorConfig
from monitoring.drift.compare import ANALYSIS, NO_COMPARISON, REFERENCE, MetricResult
from monitoring.performance.cbpe import Calibrator, components, estimate
from monitoring.performance.realized import PERFORMANCE_RANGE, PerfValue
from monitoring.performance.results import BAND, PERFORMANCE, TABLE
from monitoring.performance.state import PerformanceState
from monitoring.profiling import ChunkProfile

ESTIMATED = "estimated_performance"
VS_REALIZED = "REALIZED"


def estimation_enabled(config: MonitorConfig) -> bool:
    """CBPE for binary classification, DLE for regression; both learn from labelled reference rows."""
    return config.estimation.enabled and config.labels is not None and config.problem_type in ("binary",
                                                                                               "regression")


def reference_state(chunks: list[ChunkProfile]) -> PerformanceState:
    merged = PerformanceState()
    for cp in chunks:
        if cp.performance is not None:
            merged = merged.merge(cp.performance)
    return merged


def estimated_results(reference: list[ChunkProfile], analysis: list[ChunkProfile], config: MonitorConfig,
                      calibrator: Calibrator | None, realized: list[MetricResult]) -> list[MetricResult]:
    """Estimated results of one slice; `realized` are that slice's realized results (thresholds, errors)."""
    ref = reference_state(reference)
    if config.problem_type == "regression":
        def chunk_estimates(state: PerformanceState) -> list[PerfValue]:
            return dle_estimates(state, ref)
    else:
        positive = config.outputs.positive_class
        labels = sorted({k.split("|")[1] for k in ref.values if k.startswith("cm|")} | {positive})
        comps = components(ref, positive, labels)

        def chunk_estimates(state: PerformanceState) -> list[PerfValue]:
            return estimate(state, positive, calibrator, comps, config.estimation.business_value)
    thresholds = {r.metric: (r.lower_threshold, r.upper_threshold) for r in realized
                  if r.family == PERFORMANCE and r.period == REFERENCE}
    actual = {(r.period, r.chunk.index, r.metric): r.value for r in realized if r.family == PERFORMANCE}
    out: list[MetricResult] = []
    for period, chunks in ((REFERENCE, reference), (ANALYSIS, analysis)):
        for cp in chunks:
            state = cp.performance
            if state is None:
                continue
            rows = state.get("rows")
            coverage = state.get("labelled") / rows if rows else 0.0
            for v in chunk_estimates(state):
                r = MetricResult(period, cp.chunk, cp.slice_key, cp.slice_value, TABLE, "table", ESTIMATED, v.metric,
                                 NO_COMPARISON, v.value, int(rows), sampling_error=v.sampling_error,
                                 label_coverage=coverage, note=v.note)
                lo, hi = PERFORMANCE_RANGE.get(v.metric, (float("-inf"), float("inf")))
                if v.value is not None and v.sampling_error is not None:
                    r.lower_confidence = max(lo, v.value - BAND * v.sampling_error)
                    r.upper_confidence = min(hi, v.value + BAND * v.sampling_error)
                r.lower_threshold, r.upper_threshold = thresholds.get(v.metric, (None, None))
                r.alert = v.value is not None and (
                    (r.lower_threshold is not None and v.value < r.lower_threshold)
                    or (r.upper_threshold is not None and v.value > r.upper_threshold))
                out.append(r)
                truth = actual.get((period, cp.chunk.index, v.metric))
                if truth is not None and v.value is not None:
                    out.append(MetricResult(period, cp.chunk, cp.slice_key, cp.slice_value, TABLE, "table", ESTIMATED,
                                            v.metric, VS_REALIZED, v.value - truth, int(rows), label_coverage=coverage))
    return out


def dle_estimates(state: PerformanceState, ref: PerformanceState) -> list[PerfValue]:
    """DLE metrics of one chunk from its predicted-loss sums; sampling errors from the reference's
    realized losses (NannyML: std / sqrt(n); RMSE and RMSLE by the delta method)."""
    n, n_ref = state.get("dle_n"), ref.get("n")

    def std(total: str, total_sq: str) -> float | None:
        if not n_ref:
            return None
        mean = ref.get(total) / n_ref
        return math.sqrt(max(ref.get(total_sq) / n_ref - mean * mean, 0.0))

    stds = {"ae": std("ae", "se"), "se": std("se", "se2"), "ape": std("ape", "ape2"), "sle": std("sle", "sle2")}
    out: list[PerfValue] = []
    for metric, loss, root in (("mae", "ae", False), ("mse", "se", False), ("rmse", "se", True),
                               ("mape", "ape", False), ("msle", "sle", False), ("rmsle", "sle", True)):
        if f"dle_{loss}" not in state.values or not n:
            out.append(PerfValue(metric, None, None, "no loss model or no predictions" if n else "no predictions"))
            continue
        mean, s = state.get(f"dle_{loss}") / n, stds[loss]
        if not root:
            out.append(PerfValue(metric, mean, s / math.sqrt(n) if s is not None else None))
            continue
        ref_mean = ref.get(loss) / n_ref if n_ref else 0.0
        se = math.sqrt(s * s / (4 * n * ref_mean)) if s is not None and ref_mean > 0 else None
        out.append(PerfValue(metric, math.sqrt(mean), se))
    return out
