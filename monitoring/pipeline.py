"""The run: read -> chunk -> sketch (one pass) -> store. Wiring only; no statistics here."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from monitoring.chunking import with_chunk_index
from monitoring.config import MonitorConfig, validate_against_schema
from monitoring.errors import DataError
from monitoring.profile_store import read_profiles, write_profiles
from monitoring.profiling import ChunkProfile, profile_chunks
from monitoring.tables import VersionedTable, quote_part, read_delta

log = logging.getLogger(__name__)

REFERENCE, ANALYSIS = "reference", "analysis"


@dataclass(frozen=True)
class ProfileResult:
    dataset: str
    chunks: list[ChunkProfile]
    rows_written: int
    source_version: int
    seconds: float

    @property
    def row_count(self) -> int:
        return sum(c.row_count for c in self.chunks)


def profiles_table(config: MonitorConfig) -> str:
    return config.output.table("profiles")


def open_source(spark: SparkSession, config: MonitorConfig) -> VersionedTable:
    """The source table at its current version, checked against the config."""
    source = read_delta(spark, config.source.table, "source.table")
    labels_schema = read_delta(spark, config.labels.table, "labels.table").df.schema if config.labels else None
    validate_against_schema(config, source.df.schema, labels_schema)
    return source


def reference_rows(spark: SparkSession, config: MonitorConfig) -> tuple[DataFrame, int]:
    """Rows of the reference: its own table or a time range of the source (optionally both)."""
    ref = config.reference
    table = read_delta(spark, ref.table, "reference.table") if ref.table else open_source(spark, config)
    if ref.table:
        validate_against_schema(config, table.df.schema)
    df = _time_range(table.df, config, ref.start, ref.end)
    return df, table.version


def analysis_rows(spark: SparkSession, config: MonitorConfig) -> tuple[DataFrame, int]:
    """Rows to monitor: the source after the reference window when the reference is a range of it."""
    source = open_source(spark, config)
    start = config.reference.end if config.reference.table is None else None
    return _time_range(source.df, config, start, None), source.version


def _time_range(df: DataFrame, config: MonitorConfig, start, end) -> DataFrame:
    ts = F.col(quote_part(config.source.timestamp_column))
    if start is not None:
        df = df.where(ts >= F.lit(start))
    if end is not None:
        df = df.where(ts < F.lit(end))
    return df


def profile_dataset(spark: SparkSession, config: MonitorConfig, dataset: str) -> ProfileResult:
    """Profile the reference or the analysis rows per chunk and MERGE them into `profiles`."""
    started = time.monotonic()
    df, version = reference_rows(spark, config) if dataset == REFERENCE else analysis_rows(spark, config)
    chunked = with_chunk_index(df, config.chunking, config.source.timestamp_column, config.source.id_column)
    chunks = profile_chunks(chunked, config.monitored_columns(), config.chunking, config.source.timestamp_column,
                            config.profile.kll_k, config.profile.top_n)
    if dataset == REFERENCE and not chunks:
        raise DataError(f"the reference of monitor '{config.monitor}' holds no rows "
                        f"(reference: {config.reference}); widen reference.start/end or fill the table")
    written = write_profiles(spark, profiles_table(config), config.monitor, dataset, chunks, config.profile.kll_k,
                             version)
    result = ProfileResult(dataset, chunks, written, version, time.monotonic() - started)
    log.info("%s: profiled %d chunks, %d rows, %d columns in %.1fs (source version %d)", dataset, len(chunks),
             result.row_count, len(config.monitored_columns()), result.seconds, version)
    return result


def fit(spark: SparkSession, config: MonitorConfig) -> ProfileResult:
    """Build and store the reference profiles (per reference chunk; merged on use)."""
    return profile_dataset(spark, config, REFERENCE)


def load_reference(spark: SparkSession, config: MonitorConfig) -> list[ChunkProfile]:
    chunks = read_profiles(spark, profiles_table(config), config.monitor, REFERENCE)
    if not chunks:
        raise DataError(f"monitor '{config.monitor}' has no reference in {profiles_table(config)}; "
                        "run `driftline fit --config ...` first")
    return chunks


def run(spark: SparkSession, config: MonitorConfig) -> ProfileResult:
    """Profile the analysis chunks (drift and performance come on top of these states)."""
    load_reference(spark, config)
    return profile_dataset(spark, config, ANALYSIS)
