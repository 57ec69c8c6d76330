"""The `metrics` Delta table: long format, one row per monitor x period x chunk x slice x column x
family x metric x comparison (see docs/architecture.md), written by one replaceWhere per run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from monitoring.chunking import ChunkInfo
from monitoring.drift.compare import ANALYSIS, REFERENCE, MetricResult
from monitoring.stores.profiles import CHUNK_FIELDS
from monitoring.stores.tables import chunks_in, quote_part, replace_rows, sql_string, table_exists, table_ident

METRIC_KEYS = ["monitor", "period", "chunk_index", "slice_key", "slice_value", "column_name", "family", "metric",
               "comparison"]

ROWS_PER_FILE = 50_000  # a full write of a year of daily chunks: two files, each a range of chunks

METRICS_SCHEMA = StructType([
    StructField("monitor", StringType(), False),
    StructField("period", StringType(), False),  # reference | analysis
    *CHUNK_FIELDS,
    StructField("column_kind", StringType(), True),
    StructField("family", StringType(), False),  # drift | data_quality | performance | ...
    StructField("metric", StringType(), False),
    StructField("comparison", StringType(), False),  # BASELINE | CONSECUTIVE | NONE
    StructField("value", DoubleType(), True),
    StructField("sampling_error", DoubleType(), True),
    StructField("lower_confidence", DoubleType(), True),
    StructField("upper_confidence", DoubleType(), True),
    StructField("lower_threshold", DoubleType(), True),
    StructField("upper_threshold", DoubleType(), True),
    StructField("alert", BooleanType(), False),
    StructField("label_coverage", DoubleType(), True),
    StructField("row_count", LongType(), True),
    StructField("note", StringType(), True),  # why a value is null (too few labels, one class only, ...)
    StructField("inputs", StringType(), True),  # fingerprint of the states and settings behind the value
    StructField("run_id", StringType(), False),
    StructField("source_version", LongType(), True),
    StructField("computed_at", TimestampType(), False),
])


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def write_metrics(spark: SparkSession, table: str, monitor: str, run_id: str, results: list[MetricResult],
                  source_version: int | None, scope: MetricsScope | None = None) -> int:
    """Write `results` as this monitor's rows in one commit. Without `scope` (a run that computed every
    chunk) they replace all of the monitor's rows. With it they replace the rows `scope` names and the
    stored rows with the keys of the results it does not name (a notice on a stored chunk); other rows
    stay. The rows go out in chunk order, so a file holds a range of chunks and an incremental write
    rewrites only the files of the chunks it replaces (Delta's replaceWhere skips the others by their
    statistics; a MERGE with a delete clause rewrites every file). Returns the number of rows."""
    now = datetime.now(timezone.utc)
    ordered = sorted(results, key=lambda r: (r.period, r.chunk.index))
    rows = [(monitor, r.period, r.chunk.index, r.chunk.key, r.chunk.start, r.chunk.end, r.slice_key, r.slice_value,
             r.column, r.kind, r.family, r.metric, r.comparison, _num(r.value), _num(r.sampling_error),
             _num(r.lower_confidence), _num(r.upper_confidence), _num(r.lower_threshold), _num(r.upper_threshold),
             bool(r.alert), _num(r.label_coverage), r.row_count, r.note, r.inputs, run_id, source_version, now)
            for r in ordered]
    frame = spark.createDataFrame(rows, METRICS_SCHEMA).coalesce(max(1, math.ceil(len(rows) / ROWS_PER_FILE)))
    replace_rows(spark, table, frame, {"monitor": monitor},
                 scope_where=None if scope is None else scope.where(ordered))
    return len(rows)


@dataclass(frozen=True)
class MetricsScope:
    """The stored rows an incremental run replaces: the reference rows when `reference`, and the analysis
    rows of `chunks` (recomputed or vanished)."""

    chunks: frozenset[int]
    reference: bool = False

    def covers(self, r: MetricResult) -> bool:
        return (r.period == REFERENCE and self.reference) or (r.period == ANALYSIS and r.chunk.index in self.chunks)

    def where(self, results: list[MetricResult]) -> str:
        """SQL over the table's columns: the rows this scope names, and those with the keys of `results`
        outside it (every written row must match the replaceWhere)."""
        parts = [f"period = {sql_string(ANALYSIS)} AND {chunks_in(self.chunks, '')}"]
        if self.reference:
            parts.append(f"period = {sql_string(REFERENCE)}")
        for r in results:
            if not self.covers(r):
                parts.append(" AND ".join(f"{quote_part(k)} <=> {_literal(v)}"
                                          for k, v in zip(METRIC_KEYS[1:], metric_key(r), strict=True)))
        return " OR ".join(f"({p})" for p in parts)


def metric_key(r: MetricResult) -> tuple:
    """The row's METRIC_KEYS after `monitor`, in that order."""
    return r.period, r.chunk.index, r.slice_key, r.slice_value, r.column, r.family, r.metric, r.comparison


def _literal(value: str | int | None) -> str:
    return "NULL" if value is None else sql_string(value) if isinstance(value, str) else str(int(value))


def _utc(ts: datetime) -> datetime:
    """Arrow gives the session time zone's (UTC) aware timestamps; naive ones are read as UTC."""
    return ts.astimezone(timezone.utc) if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class StoredMetrics:
    results: list[MetricResult]
    run_ids: tuple[str, ...]  # the runs that last changed the rows
    source_version: int | None
    latest: tuple[int, ...] = ()  # the analysis chunks with rows the newest of those runs wrote


def read_metrics(spark: SparkSession, table: str, monitor: str, exists: bool | None = None) -> StoredMetrics:
    """This monitor's rows of the metrics table back as results (the source of truth for re-logging)."""
    if not table_exists(spark, table, exists):
        return StoredMetrics([], (), None)
    df = spark.sql(f"SELECT * FROM {table_ident(table)}").where(F.col("monitor") == monitor)
    if "inputs" not in df.columns:  # tables written before fingerprints
        df = df.withColumn("inputs", F.lit(None).cast("string"))
    arrow = df.toArrow()  # Arrow, read column by column: several times faster than Rows for a year of metrics

    def column(name: str) -> list:
        return arrow.column(name).to_pylist()

    keys = list(zip(column("period"), column("chunk_index"), strict=True))
    first: dict[tuple[str, int], int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    at = pa.array(list(first.values()), pa.int64())  # the chunks' times: converted once per chunk, not per row
    bounds = zip(*(arrow.column(c).take(at).to_pylist() for c in ("chunk_key", "chunk_start", "chunk_end")),
                 strict=True)
    chunks = {k: ChunkInfo(k[1], key, _utc(start), _utc(end))
              for k, (key, start, end) in zip(first, bounds, strict=True)}
    results = [MetricResult(k[0], chunks[k], *fields) for k, *fields in zip(keys, *(column(c) for c in (
        "slice_key", "slice_value", "column_name", "column_kind", "family", "metric", "comparison", "value",
        "row_count", "lower_threshold", "upper_threshold", "alert", "sampling_error", "lower_confidence",
        "upper_confidence", "label_coverage", "note", "inputs")), strict=True)]
    versions = pc.max(arrow.column("source_version")).as_py()
    run_ids = column("run_id")
    newest = run_ids[pc.index(arrow.column("computed_at"), pc.max(arrow.column("computed_at"))).as_py()] \
        if run_ids else None
    latest = tuple(sorted({k[1] for k, run in zip(keys, run_ids, strict=True) if run == newest and k[0] == ANALYSIS}))
    return StoredMetrics(results, tuple(sorted(set(run_ids))), versions, latest)
