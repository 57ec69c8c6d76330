"""Data quality beyond one column's distribution: failed predictions, row volume and schema changes.

- Failed predictions: per-row checks of the model's outputs, counted per chunk in the profiling pass
  (`prediction_checks`): a missing (null, NaN, +-inf) output, a score outside [0, 1], per-class scores not
  summing to 1 (|sum - 1| > SUM_TOLERANCE), a predicted class the monitor does not know. `failed_prediction`
  is a row failing any of them. Each becomes a `<check>_rate` result (share of the chunk's rows).
- Duplicate prediction ids: `duplicate_id_rate`, the share of a chunk's rows beyond the first with their
  id (counted in the profiling pass; the label join gives every copy the id's label).
- Invalid labels: `invalid_label_rate`, the share of the labels given to a chunk's rows that are invalid
  (unknown class, NaN or infinite; counted in the performance states, monitoring/labels.py).
- Row volume: `row_count` per chunk (period chunking only: size and count chunks have fixed sizes), 0 on
  the first period of each run of periods without rows between the first and the last chunk (a gap, its
  note naming the last). Rows with a null timestamp, or one outside the chunking's window
  (`chunking.timestamp_window`), are in no chunk: their numbers are `null_timestamp_rows` and
  `timestamp_outside_window_rows` results on the newest chunk, always alerting. Analysis chunks that held
  rows and have none now keep their stored results, named by one alerting `vanished_chunks` result.
- Schema: the source's columns and types at `fit` against now; a new, missing or retyped column is a
  `schema_change` result on the newest analysis chunk, with the change in its note.

Rates and counts get thresholds from the reference chunks (two-sided standard deviation, so a reference
without failures alerts on the first failed row); schema changes always alert. See docs/statistics.md.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from monitoring.chunking import period_chunk, window_text
from monitoring.config import MonitorConfig
from monitoring.drift.compare import ANALYSIS, DATA_QUALITY, NO_COMPARISON, REFERENCE, MetricResult
from monitoring.performance.results import TABLE
from monitoring.performance.state import INVALID_LABELS
from monitoring.profiling import DUPLICATE_IDS, ChunkProfile
from monitoring.sketches import finite
from monitoring.slices import WHOLE
from monitoring.stores.tables import quote_part

SUM_TOLERANCE = 1e-3  # class scores summing to 1 +- this pass (float32 storage and softmax rounding stay far below)
MISSING, OUT_OF_RANGE, NOT_ONE, UNKNOWN_CLASS = ("prediction_missing", "score_out_of_range",
                                                 "scores_not_summing_to_one", "unknown_prediction")
FAILED = "failed_prediction"
INVALID_LABEL_RATE = "invalid_label_rate"
DUPLICATE_ID_RATE = "duplicate_id_rate"
ROW_COUNT, NULL_TIMESTAMPS, OUTSIDE_WINDOW = "row_count", "null_timestamp_rows", "timestamp_outside_window_rows"
SCHEMA_CHANGE = "schema_change"
REFERENCE_CHUNKS = "reference_chunks"
DECLARED_KIND = "declared_kind"
EMPTY_REFERENCE_COLUMN = "empty_reference_column"
VANISHED_CHUNKS = "vanished_chunks"
MIN_REFERENCE_CHUNKS = 3  # std thresholds learnt from fewer reference chunks mean nothing (two: none at all)


def _missing(x: Column) -> Column:
    return finite(x).isNull()


def _outside_unit(x: Column) -> Column:
    x = x.cast("double")
    return ~_missing(x) & ((x < 0) | (x > 1))


CHECK = "failed:"  # prefix of the check counts in ChunkProfile.sums


def prediction_checks(config: MonitorConfig) -> dict[str, Column]:
    """`failed:<check>` -> 1 when the row fails the check, else 0 (summed per chunk in the profiling
    pass); the last is `failed_prediction`, a row failing any."""
    out = config.outputs
    scores = [F.col(quote_part(c)) for c in ([out.score] if out.score else list(out.class_scores.values()))]
    prediction = F.col(quote_part(out.prediction)) if out.prediction else None
    missing = [_missing(s) for s in scores]
    if prediction is not None:
        missing.append(_missing(prediction) if config.problem_type == "regression" else prediction.isNull())
    checks = {MISSING: _any(missing)}
    if scores:
        checks[OUT_OF_RANGE] = _any([_outside_unit(s) for s in scores])
    if len(scores) > 1:
        total = sum(s.cast("double") for s in scores[1:]) + scores[0].cast("double")
        checks[NOT_ONE] = ~_any([_missing(s) for s in scores]) & (F.abs(total - 1) > F.lit(SUM_TOLERANCE))
    if prediction is not None and config.problem_type == "multiclass":
        checks[UNKNOWN_CLASS] = prediction.isNotNull() & ~prediction.cast("string").isin(list(out.class_scores))
    checks[FAILED] = _any(list(checks.values()))
    return {CHECK + name: F.coalesce(flag, F.lit(False)).cast("int") for name, flag in checks.items()}


def _any(flags: list[Column]) -> Column:
    result = flags[0]
    for flag in flags[1:]:
        result = result | flag
    return result


def gap_ranges(indices: set[int]) -> list[tuple[int, int]]:
    """(first, last) of each run of chunk indices missing between the smallest and the largest of `indices`
    (periods without rows), from the sorted indices: no loop over the empty periods themselves."""
    ordered = sorted(indices)
    return [(a + 1, b - 1) for a, b in zip(ordered[:-1], ordered[1:], strict=True) if b - a > 1]


def gap_results(config: MonitorConfig, reference: list[ChunkProfile], analysis: set[int]) -> list[MetricResult]:
    """`row_count` 0 for each run of consecutive periods without rows between the first and the last chunk
    of the reference and of the analysis (whole table, period chunking only: size and count chunks have no
    gaps): one row on the gap's first period, its note naming the last, never one row per empty period."""
    period = config.chunking.period
    if period is None:
        return []
    out = []
    for kind, indices in ((REFERENCE, {c.chunk.index for c in reference}), (ANALYSIS, analysis)):
        for first, last in gap_ranges(indices):
            chunk, n = period_chunk(period, first), last - first + 1
            note = "no rows in this period" if n == 1 else \
                f"no rows in {n} periods, {chunk.key} to {period_chunk(period, last).key}"
            out.append(MetricResult(kind, chunk, WHOLE[0], WHOLE[1], TABLE, "table", DATA_QUALITY, ROW_COUNT,
                                    NO_COMPARISON, 0.0, 0, note=note))
    return out


def null_timestamp_results(count: int, config: MonitorConfig, newest: ChunkProfile) -> list[MetricResult]:
    """An alerting `null_timestamp_rows` row on the newest analysis chunk when rows of the source have no
    timestamp (they belong to no chunk, so no other result counts them)."""
    if not count:
        return []
    ts = config.source.timestamp_column
    return [_newest_alert(newest, ts, "table", NULL_TIMESTAMPS, count,
                          f"{count} rows of {config.source.table} have a null {ts}: they are in no chunk and left out "
                          "of every other result")]


def outside_window_results(count: int, config: MonitorConfig, newest: ChunkProfile) -> list[MetricResult]:
    """An alerting `timestamp_outside_window_rows` row on the newest analysis chunk when rows of the source
    have a timestamp outside the chunking's window (e.g. a default date 9999-12-31): one row, whatever
    the dates, instead of a chunk (and a gap row per empty period) up to them."""
    if not count:
        return []
    ts = config.source.timestamp_column
    return [_newest_alert(newest, ts, "table", OUTSIDE_WINDOW, count,
                          f"{count} rows of {config.source.table} have a {ts} outside {window_text(config.chunking)}: "
                          "they are in no chunk and left out of every other result; fix the timestamps upstream or "
                          "widen the window")]


def vanished_results(vanished: tuple, config: MonitorConfig, newest: ChunkProfile) -> list[MetricResult]:
    """An alerting `vanished_chunks` row on the newest chunk when analysis chunks that held rows have none now
    (the source was overwritten or their rows deleted): their stored results are kept, not deleted."""
    if not vanished:
        return []
    span = vanished[0].key if len(vanished) == 1 else f"{vanished[0].key} to {vanished[-1].key}"
    return [_newest_alert(newest, TABLE, "table", VANISHED_CHUNKS, len(vanished),
                          f"{len(vanished)} chunks of {config.source.table} that held rows have none now ({span}): "
                          "the table was rewritten or their rows deleted. Their stored results are kept; run with "
                          "--full to recompute from the rows as they are")]


def reference_size_results(chunks: int, config: MonitorConfig, newest: ChunkProfile) -> list[MetricResult]:
    """An alerting `reference_chunks` row on the newest analysis chunk when the reference holds fewer than
    MIN_REFERENCE_CHUNKS chunks: std thresholds come from the spread of the reference chunks' values, so
    most metrics then have no threshold (one chunk) or a meaningless one, and never alert."""
    if chunks >= MIN_REFERENCE_CHUNKS:
        return []
    return [_newest_alert(newest, TABLE, "table", REFERENCE_CHUNKS, chunks,
                          f"the reference holds {chunks} chunk(s) of {config.chunking.describe()}; thresholds learnt "
                          f"from it need at least {MIN_REFERENCE_CHUNKS}: widen reference.start/end or cut smaller "
                          "chunks (chunking), or set constant drift.thresholds",
                          lower=float(MIN_REFERENCE_CHUNKS), upper=None)]


def guard_results(metric: str, problems: list[tuple[str, str]], newest: ChunkProfile) -> list[MetricResult]:
    """An alerting `metric` row (DECLARED_KIND, EMPTY_REFERENCE_COLUMN) per column of `problems` (column, what
    to do; monitoring/guards.py), on the newest analysis chunk; the note says what to do."""
    return [_newest_alert(newest, column, "kind", metric, 1, what) for column, what in problems]


def _newest_alert(newest: ChunkProfile, column: str, kind: str, metric: str, value: float, note: str,
                  lower: float | None = None, upper: float | None = 0.0) -> MetricResult:
    """One always-alerting data-quality row on the newest analysis chunk (a count or flag no per-chunk
    result holds), its note saying what happened and what to do."""
    return MetricResult(ANALYSIS, newest.chunk, newest.slice_key, newest.slice_value, column, kind, DATA_QUALITY,
                        metric, NO_COMPARISON, float(value), newest.row_count, lower_threshold=lower,
                        upper_threshold=upper, alert=True, note=note)


def quality_results(reference: list[ChunkProfile], analysis: list[ChunkProfile],
                    config: MonitorConfig) -> list[MetricResult]:
    """`row_count` (period chunking) and the failed-prediction rates of every chunk of one slice,
    reference chunks first (their values set the thresholds); thresholds are applied by the caller."""
    results = []
    for period, chunks in ((REFERENCE, reference), (ANALYSIS, analysis)):
        for cp in chunks:
            values: dict[str, float | None] = {}
            if config.chunking.period:
                values[ROW_COUNT] = float(cp.row_count)
            for name, failed in (cp.sums or {}).items():
                if name.startswith(CHECK):
                    values[f"{name[len(CHECK):]}_rate"] = failed / cp.row_count if cp.row_count else None
            if cp.sums and DUPLICATE_IDS in cp.sums:
                values[DUPLICATE_ID_RATE] = cp.sums[DUPLICATE_IDS] / cp.row_count if cp.row_count else None
            if config.labels and cp.performance is not None:
                invalid = cp.performance.get(INVALID_LABELS)
                given = invalid + cp.performance.get("labelled")
                values[INVALID_LABEL_RATE] = invalid / given if given else None
            results += [MetricResult(period, cp.chunk, cp.slice_key, cp.slice_value, TABLE, "table", DATA_QUALITY,
                                     metric, NO_COMPARISON, value, cp.row_count) for metric, value in values.items()]
    return results


def schema_of(struct) -> dict[str, str]:
    """column -> type (Spark's simple string) of a pyspark StructType."""
    return {f.name: f.dataType.simpleString() for f in struct.fields}


def schema_changes(fitted: dict[str, str], current: dict[str, str]) -> list[tuple[str, str]]:
    """(column, what changed) for every column added, missing or retyped since the fit, in column order."""
    changes = [(c, f"added ({t})") for c, t in current.items() if c not in fitted]
    changes += [(c, f"missing (was {t})") for c, t in fitted.items() if c not in current]
    changes += [(c, f"retyped {t} -> {current[c]}") for c, t in fitted.items() if c in current and current[c] != t]
    return sorted(changes)


def schema_results(changes: list[tuple[str, str]], newest: ChunkProfile) -> list[MetricResult]:
    """One alerting `schema_change` row per changed column, on the newest analysis chunk."""
    return [_newest_alert(newest, column, "schema", SCHEMA_CHANGE, 1, change) for column, change in changes]
