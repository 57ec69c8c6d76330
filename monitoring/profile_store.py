"""The `profiles` Delta table: one row per monitor x dataset x chunk x slice x column."""

from __future__ import annotations

from datetime import datetime, timezone

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BinaryType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from monitoring.chunking import ChunkInfo, utc_from_micros
from monitoring.profiling import ChunkProfile
from monitoring.sketches import ColumnProfile
from monitoring.tables import merge_rows, table_exists, table_ident

PROFILE_KEYS = ["monitor", "dataset", "chunk_index", "slice_key", "slice_value", "column_name"]

PROFILE_SCHEMA = StructType([
    StructField("monitor", StringType(), False),
    StructField("dataset", StringType(), False),  # reference | analysis
    StructField("chunk_index", LongType(), False),
    StructField("chunk_key", StringType(), False),
    StructField("chunk_start", TimestampType(), False),
    StructField("chunk_end", TimestampType(), False),
    StructField("slice_key", StringType(), False),
    StructField("slice_value", StringType(), False),
    StructField("column_name", StringType(), False),
    StructField("column_kind", StringType(), False),
    StructField("row_count", LongType(), False),
    StructField("null_count", LongType(), False),
    StructField("nan_count", LongType(), False),
    StructField("inf_count", LongType(), False),
    StructField("valid_count", LongType(), False),
    StructField("min", DoubleType(), True),
    StructField("max", DoubleType(), True),
    StructField("mean", DoubleType(), True),
    StructField("m2", DoubleType(), True),
    StructField("kll", BinaryType(), True),
    StructField("kll_k", IntegerType(), True),
    StructField("categories", MapType(StringType(), LongType()), True),
    StructField("other_count", LongType(), False),
    StructField("distinct_count", LongType(), False),
    StructField("hll", BinaryType(), True),
    StructField("source_version", LongType(), True),
    StructField("computed_at", TimestampType(), False),
])

_STATE_FIELDS = ["row_count", "null_count", "nan_count", "inf_count", "valid_count", "min", "max", "mean", "m2",
                 "kll", "categories", "other_count", "distinct_count", "hll"]


def write_profiles(spark: SparkSession, table: str, monitor: str, dataset: str, chunks: list[ChunkProfile],
                   kll_k: int, source_version: int | None) -> int:
    """MERGE the chunk profiles into `table`; returns the number of rows written."""
    now = datetime.now(timezone.utc)
    rows = []
    for cp in chunks:
        c = cp.chunk
        for p in cp.columns.values():
            rows.append((monitor, dataset, c.index, c.key, c.start, c.end, cp.slice_key, cp.slice_value,
                         p.column, p.kind, p.row_count, p.null_count, p.nan_count, p.inf_count, p.valid_count,
                         p.min, p.max, p.mean, p.m2, p.kll, kll_k if p.kll else None, p.categories or None,
                         p.other_count, p.distinct_count, p.hll, source_version, now))
    if rows:
        merge_rows(spark, table, spark.createDataFrame(rows, PROFILE_SCHEMA), PROFILE_KEYS)
    return len(rows)


def read_profiles(spark: SparkSession, table: str, monitor: str, dataset: str) -> list[ChunkProfile]:
    """Load stored chunk profiles back into mergeable states, in chunk order."""
    if not table_exists(spark, table):
        return []
    df = spark.sql(f"SELECT * FROM {table_ident(table)}")
    df = df.where((F.col("monitor") == monitor) & (F.col("dataset") == dataset))
    df = df.withColumn("start_us", F.unix_micros("chunk_start")).withColumn("end_us", F.unix_micros("chunk_end"))
    chunks: dict[tuple[int, str, str], ChunkProfile] = {}
    for r in df.collect():
        key = (r["chunk_index"], r["slice_key"], r["slice_value"])
        if key not in chunks:
            start, end = utc_from_micros(r["start_us"]), utc_from_micros(r["end_us"])
            info = ChunkInfo(r["chunk_index"], r["chunk_key"], start, end)
            chunks[key] = ChunkProfile(info, r["row_count"], slice_key=r["slice_key"], slice_value=r["slice_value"])
        state = {f: r[f] for f in _STATE_FIELDS}
        state["kll"] = bytes(state["kll"]) if state["kll"] is not None else None
        state["hll"] = bytes(state["hll"]) if state["hll"] is not None else None
        state["categories"] = dict(state["categories"] or {})
        column = ColumnProfile(column=r["column_name"], kind=r["column_kind"], **state)
        chunks[key].columns[column.column] = column
    return [chunks[k] for k in sorted(chunks)]
