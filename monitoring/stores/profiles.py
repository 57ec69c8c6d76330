"""Stored states: the `profiles` table (one row per monitor x dataset x chunk x slice x column) and
the schema of the `reference` table (the merged reference state per slice x column)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
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
from monitoring.errors import DataError
from monitoring.performance.state import PERFORMANCE_COLUMN, PerformanceState
from monitoring.profiling import ChunkProfile
from monitoring.sketches import ColumnProfile
from monitoring.stores.tables import chunks_in, merge_rows, replace_rows, sql_string, table_exists, table_ident

SUMS_COLUMN = ":sums"  # the row holding a chunk's sums of row expressions (ChunkProfile.sums)
LEFT_IN_TABLE = ("kll", "hll", "extra")  # what a light read leaves in the table (profiles_query)
# a full write of a year of daily chunks at 13 columns (~130 MB of sketches and sums in memory): about 8 files,
# each a range of chunks, so a replaceWhere of a few chunks rewrites one or two of them
BYTES_PER_FILE = 16 << 20
PROFILE_KEYS = ["monitor", "dataset", "chunk_index", "slice_key", "slice_value", "column_name"]

STATE_FIELDS = [
    StructField("row_count", LongType(), False),
    StructField("null_count", LongType(), False),
    StructField("nan_count", LongType(), False),
    StructField("inf_count", LongType(), False),
    StructField("valid_count", LongType(), False),
    StructField("min", DoubleType(), True),
    StructField("max", DoubleType(), True),
    StructField("mean", DoubleType(), True),
    StructField("m2", DoubleType(), True),
    StructField("m3", DoubleType(), True),
    StructField("kll", BinaryType(), True),
    StructField("kll_k", IntegerType(), True),
    StructField("categories", MapType(StringType(), LongType()), True),
    StructField("other_count", LongType(), False),
    StructField("distinct_count", LongType(), False),
    StructField("hll", BinaryType(), True),
    StructField("histogram", ArrayType(LongType(), False), True),
    StructField("histogram_edges", ArrayType(DoubleType(), False), True),
    StructField("fine_bins", ArrayType(DoubleType(), False), True),
    StructField("fine_index", ArrayType(IntegerType(), False), True),
    StructField("fine_counts", ArrayType(LongType(), False), True),
    StructField("fine_sums", ArrayType(DoubleType(), False), True),
]
_STATE_NAMES = [f.name for f in STATE_FIELDS if f.name != "kll_k"]

# where a row belongs: shared by the profiles and metrics tables (after monitor and dataset/period)
CHUNK_FIELDS = [
    StructField("chunk_index", LongType(), False),
    StructField("chunk_key", StringType(), False),
    StructField("chunk_start", TimestampType(), False),
    StructField("chunk_end", TimestampType(), False),
    StructField("slice_key", StringType(), False),
    StructField("slice_value", StringType(), False),
    StructField("column_name", StringType(), False),
]

PROFILE_SCHEMA = StructType([
    StructField("monitor", StringType(), False),
    StructField("dataset", StringType(), False),  # reference | analysis
    *CHUNK_FIELDS,
    StructField("column_kind", StringType(), False),
    *STATE_FIELDS,
    # ":performance" rows: the performance state; ":sums" rows: ChunkProfile.sums
    StructField("extra", MapType(StringType(), DoubleType()), True),
    StructField("id_min", StringType(), True),  # ":performance" rows: the chunk's prediction id range
    StructField("id_max", StringType(), True),
    StructField("labels_version", LongType(), True),  # ":performance" rows: label table version used
    StructField("source_version", LongType(), True),
    StructField("signature", StringType(), False),  # hash of the settings the states depend on
    StructField("computed_at", TimestampType(), False),
    # column and ":sums" rows: the chunk's `columns_digest()`; ":performance" rows: the digest of `extra`; a
    # light read (profiles_query) reads these instead of the sketches and maps
    StructField("digest", StringType(), True),
])
_FIELD_INDEX = {f.name: i for i, f in enumerate(PROFILE_SCHEMA.fields)}

REFERENCE_KEYS = ["monitor", "slice_key", "slice_value", "column_name"]
REFERENCE_SCHEMA = StructType([
    StructField("monitor", StringType(), False),
    StructField("slice_key", StringType(), False),
    StructField("slice_value", StringType(), False),
    StructField("column_name", StringType(), False),
    StructField("column_kind", StringType(), False),
    StructField("chunk_count", LongType(), False),
    *STATE_FIELDS,
    StructField("bin_edges", ArrayType(DoubleType(), False), True),
    StructField("source_version", LongType(), True),
    StructField("signature", StringType(), False),
    StructField("fitted_at", TimestampType(), False),
])


def state_values(p: ColumnProfile, kll_k: int) -> tuple:
    """The STATE_FIELDS of one column state, in schema order."""
    return (p.row_count, p.null_count, p.nan_count, p.inf_count, p.valid_count, p.min, p.max, p.mean, p.m2, p.m3, p.kll,
            kll_k if p.kll else None, p.categories or None, p.other_count, p.distinct_count, p.hll, p.histogram,
            p.histogram_edges, p.fine_bins, p.fine_index, p.fine_counts, p.fine_sums)


def with_missing(df: DataFrame, schema: StructType) -> DataFrame:
    """`df` (rows of a table of `schema`) with nulls for the columns of `schema` that a table written by an
    older Driftline lacks."""
    return df.withColumns({f.name: F.lit(None).cast(f.dataType) for f in schema.fields if f.name not in df.columns})


def state_from_row(r) -> dict:
    """ColumnProfile keyword arguments from a stored row."""
    state = {f: r[f] for f in _STATE_NAMES}
    state["kll"] = bytes(state["kll"]) if state["kll"] is not None else None
    state["hll"] = bytes(state["hll"]) if state["hll"] is not None else None
    state["categories"] = dict(state["categories"] or {})
    for name in ("histogram", "histogram_edges", "fine_bins", "fine_index", "fine_counts", "fine_sums"):
        state[name] = list(state[name]) if state[name] is not None else None
    return {"column": r["column_name"], "kind": r["column_kind"], **state}


def write_profiles(spark: SparkSession, table: str, monitor: str, dataset: str, chunks: list[ChunkProfile],
                   kll_k: int, source_version: int | None, signature: str,
                   only_chunks: list[int] | None = None, performance_of: list[ChunkProfile] = ()) -> int:
    """Write the chunk profiles into `table` in one commit, replacing every earlier row of this monitor and
    dataset (with `only_chunks`: of those chunk indices, so a chunk given without rows is deleted and every
    other chunk stays as it is), plus the performance rows of `performance_of` (other chunks whose label
    backfill goes into the same commit, replacing their stored ones); returns the number of rows written."""
    now = datetime.now(timezone.utc)
    rows = [_performance_row(monitor, dataset, cp, kll_k, source_version, signature, now)
            for cp in performance_of if cp.performance is not None]
    for cp in chunks:
        c = cp.chunk
        if not cp.loaded:
            raise ValueError(f"the sketches of chunk {c.key} were not read from the profiles table: load them "
                             "(load_states) before writing them back")
        digest = cp.columns_digest().hex()  # on every column and sums row of the chunk: a light read needs one
        for p in cp.columns.values():
            rows.append((monitor, dataset, c.index, c.key, c.start, c.end, cp.slice_key, cp.slice_value,
                         p.column, p.kind, *state_values(p, kll_k), None, None, None, None, source_version,
                         signature, now, digest))
        if cp.performance is not None:
            rows.append(_performance_row(monitor, dataset, cp, kll_k, source_version, signature, now))
        if cp.sums is not None:
            holder = ColumnProfile(SUMS_COLUMN, "sums", row_count=cp.row_count)
            rows.append((monitor, dataset, c.index, c.key, c.start, c.end, cp.slice_key, cp.slice_value,
                         holder.column, holder.kind, *state_values(holder, kll_k), dict(cp.sums), None, None, None,
                         source_version, signature, now, digest))
    rows.sort(key=lambda row: row[2])  # chunk order: each file holds a range of chunks (Delta skips the others)
    frame = spark.createDataFrame(rows, PROFILE_SCHEMA).coalesce(max(1, math.ceil(_size(rows) / BYTES_PER_FILE)))
    if only_chunks is None:  # every chunk of the dataset: one overwrite of its rows
        replace_rows(spark, table, frame, {"monitor": monitor, "dataset": dataset})
    elif rows or only_chunks:  # replaceWhere, not MERGE: the scope is rewritten whole (2-3x cheaper daily)
        scope = chunks_in(only_chunks, "")
        relabelled = {cp.chunk.index for cp in performance_of if cp.performance is not None}
        if relabelled:
            scope += f" OR (column_name = {sql_string(PERFORMANCE_COLUMN)} AND {chunks_in(relabelled, '')})"
        replace_rows(spark, table, frame, {"monitor": monitor, "dataset": dataset}, scope_where=scope)
    return len(rows)


def _size(rows: list[tuple]) -> int:
    """Roughly the bytes of profile rows in memory: their sketches, 16 per map entry, 200 for the rest."""
    kll, hll, extra = (_FIELD_INDEX[f] for f in LEFT_IN_TABLE)
    return sum(len(r[kll] or b"") + len(r[hll] or b"") + 16 * len(r[extra] or ()) + 200 for r in rows)


def write_performance(spark: SparkSession, table: str, monitor: str, dataset: str, chunks: list[ChunkProfile],
                      source_version: int | None, signature: str) -> int:
    """MERGE only the performance rows of `chunks` (a label backfill); every other row stays as it is."""
    now = datetime.now(timezone.utc)
    rows = [_performance_row(monitor, dataset, cp, 0, source_version, signature, now)
            for cp in chunks if cp.performance is not None]
    if rows:
        merge_rows(spark, table, spark.createDataFrame(rows, PROFILE_SCHEMA), PROFILE_KEYS)
    return len(rows)


def _performance_row(monitor: str, dataset: str, cp: ChunkProfile, kll_k: int, source_version: int | None,
                     signature: str, now: datetime) -> tuple:
    c, state = cp.chunk, cp.performance
    if not state.loaded:
        raise ValueError(f"the performance state of chunk {c.key} was not read from the profiles table: "
                         "load it (load_states) before writing it back")
    perf = ColumnProfile(PERFORMANCE_COLUMN, "performance", row_count=int(state.get("rows")),
                         valid_count=int(state.get("labelled")))
    return (monitor, dataset, c.index, c.key, c.start, c.end, cp.slice_key, cp.slice_value, perf.column, perf.kind,
            *state_values(perf, kll_k), state.values, state.id_min, state.id_max, state.labels_version,
            source_version, signature, now, state.values_digest().hex())


@dataclass(frozen=True)
class StoredProfiles:
    """What one read of the profiles table found for a monitor, per dataset: the chunk profiles (in chunk
    order) and the distinct (source_version, signature) of their rows."""

    chunks: dict[str, list[ChunkProfile]]
    signatures: dict[str, set[tuple[int, str]]]


def read_profiles(spark: SparkSession, table: str, monitor: str, dataset: str) -> list[ChunkProfile]:
    """Load the stored chunk profiles of one dataset back into mergeable states, in chunk order."""
    return read_stored_profiles(spark, table, monitor, [dataset]).chunks[dataset]


def read_stored_profiles(spark: SparkSession, table: str, monitor: str, datasets: list[str],
                         exists: bool | None = None) -> StoredProfiles:
    """The stored chunk profiles of `datasets`, in one query (`exists`: whether the table exists, when
    the caller knows)."""
    if not table_exists(spark, table, exists):
        return parse_profiles([], datasets)
    return parse_profiles(profiles_query(spark, table, monitor, datasets).collect(), datasets)


def profiles_query(spark: SparkSession, table: str, monitor: str, datasets: list[str],
                   light: tuple[str, ...] = ()) -> DataFrame:
    """The stored profile rows of `datasets` (for `parse_profiles`; the table exists). The rows of the
    datasets in `light` that carry a digest come without their sketches (KLL, HLL) and maps (sums, performance
    values), which stay in the table: a year of daily chunks holds ~60 MB of KLL sketches and millions of
    performance values, and a run needs those of the chunks it compares (`load_states`). The two kinds of
    rows are two branches of a union, so the light branch never reads those columns' data."""
    df = spark.sql(f"SELECT * FROM {table_ident(table)}")
    df = df.where((F.col("monitor") == monitor) & F.col("dataset").isin(datasets))
    df = df.withColumn("start_us", F.unix_micros("chunk_start")).withColumn("end_us", F.unix_micros("chunk_end"))
    df = with_missing(df, PROFILE_SCHEMA)
    if not light:
        return df.withColumn("light", F.lit(False))
    lean = F.col("dataset").isin(list(light)) & F.col("digest").isNotNull()
    left = {f.name: F.lit(None).cast(f.dataType) for f in PROFILE_SCHEMA.fields if f.name in LEFT_IN_TABLE}
    return df.where(~lean).withColumn("light", F.lit(False)).unionByName(
        df.where(lean).withColumns(left).withColumn("light", F.lit(True)))


def load_states(spark: SparkSession, table: str, monitor: str, dataset: str, chunks: list[ChunkProfile]) -> None:
    """Read back what `profiles_query(light=...)` left in the table (sketches, sums, performance values) for
    those of `chunks` that lack it, in one query (none when nothing is missing)."""
    query = states_query(spark, table, monitor, dataset, chunks)
    if query is not None:
        apply_states(query.toArrow().to_pylist(), chunks, table)


def states_query(spark: SparkSession, table: str, monitor: str, dataset: str,
                 chunks: list[ChunkProfile]) -> DataFrame | None:
    """The stored rows holding what a light read left in the table for those of `chunks` that lack it
    (for `apply_states`); None when none does."""
    indices = sorted({c.chunk.index for c in chunks if _missing(c)})
    if not indices:
        return None
    return spark.sql(f"SELECT chunk_index, slice_key, slice_value, column_name, {', '.join(LEFT_IN_TABLE)} "
                     f"FROM {table_ident(table)}").where(
        (F.col("monitor") == monitor) & (F.col("dataset") == dataset) & F.col("chunk_index").isin(indices))


def _missing(c: ChunkProfile) -> bool:
    return not c.loaded or (c.performance is not None and not c.performance.loaded)


def apply_states(rows: list[dict], chunks: list[ChunkProfile], table: str) -> None:
    """Fill in `chunks` from the rows of `states_query`; a chunk whose states read back do not give their
    stored digest raises (another writer replaced them meanwhile)."""
    todo = {(c.chunk.index, c.slice_key, c.slice_value): c for c in chunks if _missing(c)}
    for r in rows:
        c = todo.get((r["chunk_index"], r["slice_key"], r["slice_value"]))
        if c is None:
            continue
        if r["column_name"] == PERFORMANCE_COLUMN:
            if c.performance is not None and not c.performance.loaded:
                c.performance.values, c.performance.digest = dict(r["extra"] or []), None
        elif c.loaded:
            continue
        elif r["column_name"] == SUMS_COLUMN:
            c.sums = dict(r["extra"] or [])
        elif r["column_name"] in c.columns:
            column = c.columns[r["column_name"]]
            column.kll = bytes(r["kll"]) if r["kll"] is not None else None
            column.hll = bytes(r["hll"]) if r["hll"] is not None else None
    changed = [c.chunk.key for c in todo.values() if c.performance is not None and not c.performance.loaded]
    for c in todo.values():
        if not c.loaded:
            stored, c.digest = c.digest, None
            if c.columns_digest() != stored:
                changed.append(c.chunk.key)
    if changed:
        raise DataError(f"the stored states of chunks {', '.join(changed[:5])} vanished from or changed in {table} "
                        "while this run read it (another writer?); run again")


def parse_profiles(rows: list, datasets: list[str]) -> StoredProfiles:
    """The chunk profiles of `datasets` from the rows of `profiles_query`, in chunk order."""
    out = StoredProfiles({d: [] for d in datasets}, {d: set() for d in datasets})
    chunks: dict[tuple[str, int, str, str], ChunkProfile] = {}
    for r in rows:
        out.signatures[r["dataset"]].add((r["source_version"], r["signature"]))
        key = (r["dataset"], r["chunk_index"], r["slice_key"], r["slice_value"])
        if key not in chunks:
            start, end = utc_from_micros(r["start_us"]), utc_from_micros(r["end_us"])
            info = ChunkInfo(r["chunk_index"], r["chunk_key"], start, end)
            chunks[key] = ChunkProfile(info, r["row_count"], slice_key=r["slice_key"], slice_value=r["slice_value"])
        if r["light"] and r["column_name"] != PERFORMANCE_COLUMN:
            chunks[key].digest = bytes.fromhex(r["digest"])  # profiles_query(light=...)
        if r["column_name"] == PERFORMANCE_COLUMN:
            left = r["light"]
            chunks[key].performance = PerformanceState(
                None if left else dict(r["extra"] or {}), r["id_min"], r["id_max"], r["labels_version"],
                bytes.fromhex(r["digest"]) if left else None)
            continue
        if r["column_name"] == SUMS_COLUMN:
            chunks[key].sums = None if r["light"] else dict(r["extra"] or {})
            continue
        column = ColumnProfile(**state_from_row(r))
        chunks[key].columns[column.column] = column
    for k in sorted(chunks):
        out.chunks[k[0]].append(chunks[k])
    return out
