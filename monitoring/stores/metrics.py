"""The `metrics` Delta table: long format, one row per monitor x period x chunk x slice x column x
family x metric x comparison (see docs/architecture.md), written by one MERGE per run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

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
from monitoring.drift.compare import ANALYSIS, MetricResult
from monitoring.stores.profiles import CHUNK_FIELDS
from monitoring.stores.tables import merge_rows, replace_rows, table_exists, table_ident

METRIC_KEYS = ["monitor", "period", "chunk_index", "slice_key", "slice_value", "column_name", "family", "metric",
               "comparison"]

# a row is rewritten only when another column changed: these say which run last changed it, from which version
UNCOMPARED = ("run_id", "computed_at", "source_version")

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
                  source_version: int | None, scope_where: str | None = None, replace: bool = False) -> int:
    """Replace this monitor's metrics by `results` (MERGE on METRIC_KEYS; rows no longer produced are
    deleted in the same commit; with `scope_where`, only among the target rows it selects). Rows whose
    values did not change are left as they were, with the `run_id` and `computed_at` of the run that
    last changed them. `replace` (a run that recomputed everything) overwrites all of this monitor's
    rows in one cheaper commit instead. Returns the number of rows."""
    now = datetime.now(timezone.utc)
    rows = [(monitor, r.period, r.chunk.index, r.chunk.key, r.chunk.start, r.chunk.end, r.slice_key, r.slice_value,
             r.column, r.kind, r.family, r.metric, r.comparison, _num(r.value), _num(r.sampling_error),
             _num(r.lower_confidence), _num(r.upper_confidence), _num(r.lower_threshold), _num(r.upper_threshold),
             bool(r.alert), _num(r.label_coverage), r.row_count, r.note, r.inputs, run_id, source_version, now)
            for r in results]
    frame = spark.createDataFrame(rows, METRICS_SCHEMA)
    if replace:
        replace_rows(spark, table, frame, {"monitor": monitor})
    else:
        merge_rows(spark, table, frame, METRIC_KEYS, {"monitor": monitor}, scope_where=scope_where,
                   compare=[f.name for f in METRICS_SCHEMA.fields if f.name not in UNCOMPARED])
    return len(rows)


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
    rows = df.toArrow().to_pylist()  # Arrow: several times faster than Rows for a year of metrics
    chunks: dict[tuple[str, int], ChunkInfo] = {}
    results = []
    for r in rows:
        chunk = chunks.setdefault((r["period"], r["chunk_index"]), ChunkInfo(
            r["chunk_index"], r["chunk_key"], _utc(r["chunk_start"]), _utc(r["chunk_end"])))
        results.append(MetricResult(r["period"], chunk, r["slice_key"], r["slice_value"], r["column_name"],
                                    r["column_kind"], r["family"], r["metric"], r["comparison"], r["value"],
                                    r["row_count"], r["lower_threshold"], r["upper_threshold"], r["alert"],
                                    r["sampling_error"], r["lower_confidence"], r["upper_confidence"],
                                    r["label_coverage"], r["note"], r["inputs"]))
    versions = [r["source_version"] for r in rows if r["source_version"] is not None]
    newest = max(rows, key=lambda r: r["computed_at"])["run_id"] if rows else None
    latest = tuple(sorted({r["chunk_index"] for r in rows if r["run_id"] == newest and r["period"] == ANALYSIS}))
    return StoredMetrics(results, tuple(sorted({r["run_id"] for r in rows})), max(versions) if versions else None,
                         latest)
