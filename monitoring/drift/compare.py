"""Comparisons of chunk states: BASELINE (chunk vs the whole reference) and CONSECUTIVE (chunk vs the
previous chunk), for reference chunks (to learn thresholds) and analysis chunks, then thresholds and
alerts. Reference chunks are compared leave-one-out: with the reference minus themselves, so their
values show what an unchanged analysis chunk would score (see docs/statistics.md)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from monitoring.chunking import ChunkInfo
from monitoring.config import NANNYML, Drift
from monitoring.drift.distributions import CategoryCounts, WeightedSample, quantile_edges
from monitoring.drift.methods import QUALITY_METHODS, categorical_metrics, continuous_metrics
from monitoring.fine_bins import NANNYML_MIN_ROWS, FineBins, FineCounts, nannyml_wasserstein
from monitoring.fine_bins import wasserstein as fine_wasserstein
from monitoring.profiling import ChunkProfile
from monitoring.registry import DRIFT, resolve, value_range
from monitoring.registry import QUALITY as DATA_QUALITY
from monitoring.sketches import CONTINUOUS, ColumnProfile, pooled_std
from monitoring.thresholds import bounds

BASELINE, CONSECUTIVE, NO_COMPARISON = "BASELINE", "CONSECUTIVE", "NONE"
REFERENCE, ANALYSIS = "reference", "analysis"


@dataclass
class MetricResult:
    """One value of one metric for one column of one chunk (and slice), with thresholds and alert."""

    period: str
    chunk: ChunkInfo
    slice_key: str
    slice_value: str
    column: str
    kind: str
    family: str
    metric: str
    comparison: str
    value: float | None
    row_count: int
    lower_threshold: float | None = None
    upper_threshold: float | None = None
    alert: bool = False
    sampling_error: float | None = None
    lower_confidence: float | None = None
    upper_confidence: float | None = None
    label_coverage: float | None = None
    note: str | None = None
    inputs: str | None = None  # fingerprint of what the value was computed from (monitoring/fingerprints.py)


Dist = WeightedSample | CategoryCounts


def _dist(p: ColumnProfile | None) -> Dist | None:
    if p is None or p.valid_count == 0:
        return None
    if p.kind == CONTINUOUS:
        return WeightedSample.from_kll(p.kll, p.mean, (p.min, p.max))
    return CategoryCounts.of(p.categories, p.other_count)


def exact_counts(p: ColumnProfile | None, edges: np.ndarray | None) -> np.ndarray | None:
    """The exact bin counts of a continuous state, when they were counted in `edges`."""
    if p is None or edges is None or not p.counted_in(edges):
        return None
    return np.asarray(p.histogram, float)


def fine_counts(p: ColumnProfile | None, spec: FineBins | None) -> FineCounts | None:
    """The fine-bin counts and sums of a continuous state, when they were counted in `spec`."""
    if p is None or spec is None or not p.fine_counted_in(spec.to_list()):
        return None
    return FineCounts.of(spec, p.fine_index, p.fine_counts, p.fine_sums)


def _total(parts: list) -> object | None:
    """The sum of `parts` (count arrays or FineCounts), None when there is none or one is unknown."""
    if not parts or any(x is None for x in parts):
        return None
    out = parts[0]
    for x in parts[1:]:
        out = out + x
    return out


def _distance(fine: tuple[FineBins | None, FineCounts | None, FineCounts | None], nannyml: bool) -> float | None:
    """The Wasserstein distance from both sides' fine bins (None when either is unknown or empty): NannyML's
    binned estimate when `nannyml` (a comparison with the whole reference under `compatibility: nannyml`)
    and the reference holds at least NannyML's 10,000 values, else `fine_bins.wasserstein`."""
    spec, ref, cur = fine
    if spec is None or ref is None or cur is None or ref.n <= 0 or cur.n <= 0:
        return None
    if nannyml and ref.n >= NANNYML_MIN_ROWS:
        return nannyml_wasserstein(spec, ref, cur)
    return fine_wasserstein(spec, ref, cur)


def _concat(dists: list[Dist]) -> Dist | None:
    if not dists:
        return None
    return (WeightedSample if isinstance(dists[0], WeightedSample) else CategoryCounts).concat(dists)


def _metrics(reference: Dist, current: Dist, edges: np.ndarray | None, std: float, config: Drift,
             rows: int | None = None, counts: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
             fine: tuple = (None, None, None), whole: bool = False):
    """`rows`: the current chunk's rows, nulls included (`compatibility: nannyml` divides the unseen count
    by them; by default the non-null values are the denominator). `counts`: both sides' exact counts in the
    bins of `edges`, when known (else the binned methods read the bins' mass from the KLL sketches). `fine`:
    (fine bins, reference's, current's fine counts), when known (Wasserstein); `whole`: the reference is the
    whole reference."""
    if isinstance(reference, WeightedSample):
        if edges is None or not len(edges):
            edges = quantile_edges(reference, config.bins)
        binned = None
        if counts[0] is not None and counts[1] is not None and counts[0].sum() > 0 and counts[1].sum() > 0:
            binned = (counts[0] / counts[0].sum(), counts[1] / counts[1].sum())
        return continuous_metrics(reference, current, edges, std, config.continuous_methods, config.psi_epsilon,
                                  binned, _distance(fine, whole and config.compatibility == NANNYML))
    return categorical_metrics(reference, current, config.categorical_methods, config.psi_epsilon,
                               rows if config.compatibility == NANNYML else None)


def compare_slice(reference: list[ChunkProfile], analysis: list[ChunkProfile], columns: list[tuple[str, str]],
                  edges: dict[str, np.ndarray], config: Drift,
                  stored_reference: list[MetricResult] | None = None,
                  fine: dict[str, FineBins] | None = None) -> list[MetricResult]:
    """All drift and data-quality results of one slice, thresholds and alerts applied. `stored_reference`:
    this slice's reference rows as a run with the same inputs stored them (`reference_rows`); they are
    taken instead of comparing every reference chunk with the others again (the thresholds come from
    their values, as from freshly computed ones). `fine`: the whole reference's fine bins per column."""
    fine = fine or {}
    results: list[MetricResult] = list(stored_reference or [])
    sequence = [(REFERENCE, cp) for cp in reference] + [(ANALYSIS, cp) for cp in analysis]

    def add(period: str, cp: ChunkProfile, column: str, kind: str, family: str, comparison: str,
            values: dict[str, float | None]) -> None:
        p = cp.columns.get(column)
        for metric, value in values.items():
            results.append(MetricResult(period, cp.chunk, cp.slice_key, cp.slice_value, column, kind, family,
                                        metric, comparison, value, p.row_count if p else cp.row_count))

    for column, kind in columns:
        ref_profiles = [cp.columns[column] for cp in reference if column in cp.columns]
        dists = [_dist(cp.columns.get(column)) for _, cp in sequence]
        ref_dists = dists[:len(reference)]
        present = [d for d in ref_dists if d is not None]
        whole = _concat(present)
        std = pooled_std(ref_profiles) if kind == CONTINUOUS else 0.0
        bins = edges.get(column)  # the whole reference's: every binned comparison of the column uses them
        counts = [exact_counts(cp.columns.get(column), bins) for _, cp in sequence]
        ref_counts = [c for c, d in zip(counts[:len(reference)], ref_dists, strict=True) if d is not None]
        whole_counts = _total(ref_counts)
        spec = fine.get(column)
        sums = [fine_counts(cp.columns.get(column), spec) for _, cp in sequence]
        whole_sums = _total([f for f, d in zip(sums[:len(reference)], ref_dists, strict=True) if d is not None])
        for i, ((period, cp), dist) in enumerate(zip(sequence, dists, strict=True)):
            if period == REFERENCE and stored_reference:
                continue
            p = cp.columns.get(column)
            if p is not None and p.row_count:
                add(period, cp, column, kind, DATA_QUALITY, NO_COMPARISON, {"missing_rate": p.missing_rate} | (
                    {"infinite_rate": p.infinite_rate} if kind == CONTINUOUS else {}))
            if dist is None or whole is None:
                continue
            rows = p.row_count if p is not None else None
            if period == REFERENCE and config.compatibility != NANNYML:  # leave-one-out (docs/statistics.md)
                others = _concat([d for j, d in enumerate(ref_dists) if j != i and d is not None])
                rest = whole_counts - counts[i] if whole_counts is not None and counts[i] is not None else None
                rest_sums = whole_sums - sums[i] if whole_sums is not None and sums[i] is not None else None
                baseline = _metrics(others, dist, bins, std, config, rows, (rest, counts[i]),
                                    (spec, rest_sums, sums[i])) if others is not None else None
            else:  # NannyML compares a reference chunk with the whole reference, itself included
                baseline = _metrics(whole, dist, bins, std, config, rows, (whole_counts, counts[i]),
                                    (spec, whole_sums, sums[i]), whole=True)
            if baseline is not None:
                quality = {m: baseline.pop(m) for m in QUALITY_METHODS if m in baseline}
                add(period, cp, column, kind, DRIFT, BASELINE, baseline)
                add(period, cp, column, kind, DATA_QUALITY, BASELINE, quality)
            previous = dists[i - 1] if i > 0 else None
            if previous is not None:
                consecutive = _metrics(previous, dist, bins, std, config, rows, (counts[i - 1], counts[i]),
                                       (spec, sums[i - 1], sums[i]))
                add(period, cp, column, kind, DRIFT, CONSECUTIVE,
                    {m: v for m, v in consecutive.items() if m not in QUALITY_METHODS})
    apply_thresholds(results, config)
    for r in results:
        if r.period == ANALYSIS and r.row_count is not None and r.row_count < config.min_chunk_rows:
            r.alert = False
            r.note = f"a chunk of {r.row_count} rows (< drift.min_chunk_rows {config.min_chunk_rows}) is too small " \
                     "to compare: no alert"
    return results


def reference_rows(stored: list[MetricResult], columns: list[tuple[str, str]],
                   inputs: str) -> dict[tuple[str, str], list[MetricResult]] | None:
    """The stored reference rows of `compare_slice` (drift and data quality of `columns`) by slice, when
    every stored reference row was computed from `inputs` (the run's settings fingerprint, which covers the
    fitted reference: monitoring/fingerprints.py); else None (they are computed again)."""
    ref = [r for r in stored if r.period == REFERENCE]
    if not ref or any(r.inputs != inputs for r in ref):
        return None
    names = {c for c, _ in columns}
    out: dict[tuple[str, str], list[MetricResult]] = defaultdict(list)
    for r in ref:
        if r.family in (DRIFT, DATA_QUALITY) and r.column in names:
            out[(r.slice_key, r.slice_value)].append(r)
    return out


def apply_thresholds(results: list[MetricResult], config: Drift,
                     range_of: Callable[[str], tuple[float, float]] = value_range) -> None:
    """Thresholds per column x metric x comparison from the reference chunks' values; alert flags."""
    groups: dict[tuple[str, str, str], list[MetricResult]] = defaultdict(list)
    for r in results:
        groups[(r.column, r.metric, r.comparison)].append(r)
    for (column, metric, comparison), rows in groups.items():
        rule = resolve(config.thresholds, metric, column, comparison, config.std_multiplier)
        reference_values = [r.value for r in rows if r.period == REFERENCE]
        b = bounds(rule, reference_values, range_of(metric))
        for r in rows:
            r.lower_threshold, r.upper_threshold, r.alert = b.lower, b.upper, b.alert(r.value)
