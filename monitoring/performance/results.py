"""Realized performance results of reference and analysis chunks, with confidence bands, thresholds
learnt from the reference chunks and alerts (rows of the `metrics` table, family `performance`)."""

from __future__ import annotations

from collections.abc import Callable

from monitoring.config import MonitorConfig
from monitoring.drift.compare import ANALYSIS, NO_COMPARISON, REFERENCE, MetricResult, apply_thresholds
from monitoring.performance.nannyml_errors import compatible, realized_errors, with_errors
from monitoring.performance.realized import PerfValue, realized_metrics
from monitoring.performance.state import PerformanceState
from monitoring.profiling import ChunkProfile
from monitoring.registry import PERFORMANCE, value_range

TABLE = ":table"  # column_name of table-level results
BAND = 3.0  # confidence band: value -+ 3 sampling errors (NannyML's)


def chunk_results(reference: list[ChunkProfile], analysis: list[ChunkProfile], family: str,
                  metrics: Callable[[PerformanceState], list[PerfValue]]) -> list[MetricResult]:
    """One result per metric of every reference and analysis chunk with a performance state: its label
    coverage and the band value -+ BAND sampling errors, clipped to the metric's range."""
    results: list[MetricResult] = []
    for period, chunks in ((REFERENCE, reference), (ANALYSIS, analysis)):
        for cp in chunks:
            state = cp.performance
            if state is None:
                continue
            rows = state.get("rows")
            coverage = state.get("labelled") / rows if rows else 0.0
            for v in metrics(state):
                r = MetricResult(period, cp.chunk, cp.slice_key, cp.slice_value, TABLE, "table", family,
                                 v.metric, NO_COMPARISON, v.value, int(rows), sampling_error=v.sampling_error,
                                 label_coverage=coverage, note=v.note)
                if v.value is not None and v.sampling_error is not None:
                    lo, hi = value_range(v.metric)
                    r.lower_confidence = max(lo, v.value - BAND * v.sampling_error)
                    r.upper_confidence = min(hi, v.value + BAND * v.sampling_error)
                results.append(r)
    return results


def reference_state(chunks: list[ChunkProfile]) -> PerformanceState:
    """The performance states of the reference chunks, merged."""
    merged = PerformanceState()
    for cp in chunks:
        if cp.performance is not None:
            merged = merged.merge(cp.performance)
    return merged


def performance_results(reference: list[ChunkProfile], analysis: list[ChunkProfile],
                        config: MonitorConfig) -> list[MetricResult]:
    """Realized results of one slice; with `compatibility: nannyml` their sampling errors are NannyML's
    (from the reference's components and the chunk's labelled rows, monitoring/performance/nannyml_errors.py)."""
    def metrics(state: PerformanceState) -> list[PerfValue]:
        values = realized_metrics(state, config)
        return with_errors(values, errors(state)) if errors else values

    errors = realized_errors(reference_state(reference), config) if compatible(config) else None
    results = chunk_results(reference, analysis, PERFORMANCE, metrics)
    apply_thresholds(results, config.drift)
    return results
