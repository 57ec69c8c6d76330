"""The run: read -> chunk (+ slice) -> sketch (one pass) -> store -> compare -> store. Wiring only;
the statistics live in `drift/`, `thresholds.py` and `sketches.py`.

Both steps reuse stored states when nothing they depend on changed (same source table version and
same settings signature), so a rerun recomputes nothing and rewrites identical values.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from monitoring.chunking import with_chunk_index
from monitoring.config import MonitorConfig, validate_against_schema
from monitoring.drift.compare import MetricResult, compare_slice
from monitoring.errors import DataError
from monitoring.labels import LabelStats, join_labels, label_stats
from monitoring.metrics_store import write_metrics
from monitoring.performance.results import performance_results
from monitoring.performance.state import aggregate as performance_states
from monitoring.profile_store import read_profiles, stored_signatures, write_profiles
from monitoring.profiling import GROUP, ChunkProfile, profile_chunks
from monitoring.reference import FittedReference, merge_reference, read_reference, write_reference
from monitoring.slices import WHOLE, slice_values, validate_slices, with_slices
from monitoring.tables import VersionedTable, quote_part, read_delta

log = logging.getLogger(__name__)

REFERENCE, ANALYSIS = "reference", "analysis"
STATE_FORMAT = 2  # bump when stored states or reference edges change meaning: older ones are recomputed


@dataclass(frozen=True)
class ProfileResult:
    dataset: str
    chunks: list[ChunkProfile]
    rows_written: int
    source_version: int
    seconds: float
    reused: bool = False

    @property
    def whole(self) -> list[ChunkProfile]:
        """The whole-table chunk profiles (no slices)."""
        return [c for c in self.chunks if (c.slice_key, c.slice_value) == WHOLE]

    @property
    def row_count(self) -> int:
        return sum(c.row_count for c in self.whole)


@dataclass(frozen=True)
class RunResult:
    run_id: str
    profiles: ProfileResult
    reference: FittedReference
    metrics: list[MetricResult]
    labels: LabelStats | None = None

    @property
    def source_version(self) -> int:
        return self.profiles.source_version

    @property
    def chunks(self) -> list[ChunkProfile]:
        return self.profiles.chunks


def profiles_table(config: MonitorConfig) -> str:
    return config.output.table("profiles")


def reference_table(config: MonitorConfig) -> str:
    return config.output.table("reference")


def metrics_table(config: MonitorConfig) -> str:
    return config.output.table("metrics")


def signature(config: MonitorConfig, dataset: str, slices: dict[str, list[str]] | None = None,
              labels_version: int | None = None) -> str:
    """A short hash of every setting the stored states of `dataset` depend on (for the analysis also
    the slice values taken from the reference; with labels, the label table version)."""
    ref, lab = config.reference, config.labels
    labels = [lab.table, lab.id_column, lab.label_column, lab.timestamp_column] if lab else None
    settings = {"format": STATE_FORMAT, "dataset": dataset, "columns": config.monitored_columns(),
                "kll_k": config.profile.kll_k, "top_n": config.profile.top_n,
                "chunking": [config.chunking.describe(), config.chunking.incomplete],
                "slices": [list(config.slices.expressions), config.slices.top_n], "bins": config.drift.bins,
                "reference": [ref.table, str(ref.start), str(ref.end)], "source": config.source.table,
                "slice_values": slices or {},
                "labels": [labels, f"labels@{labels_version}" if labels_version is not None else ""]}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def open_source(spark: SparkSession, config: MonitorConfig) -> VersionedTable:
    """The source table at its current version, checked against the config."""
    source = read_delta(spark, config.source.table, "source.table")
    labels_schema = read_delta(spark, config.labels.table, "labels.table").df.schema if config.labels else None
    validate_against_schema(config, source.df.schema, labels_schema)
    validate_slices(source.df, config.slices.expressions)
    return source


def reference_rows(spark: SparkSession, config: MonitorConfig) -> tuple[DataFrame, int, int | None]:
    """Rows of the reference: its own table or a time range of the source (optionally both), with
    labels joined when configured; the table version and the label table version they come from."""
    ref = config.reference
    table = read_delta(spark, ref.table, "reference.table") if ref.table else open_source(spark, config)
    if ref.table:
        validate_against_schema(config, table.df.schema)
        validate_slices(table.df, config.slices.expressions)
    df = _time_range(table.df, config, ref.start, ref.end)
    return _with_labels(spark, config, df, table.version)


def analysis_rows(spark: SparkSession, config: MonitorConfig) -> tuple[DataFrame, int, int | None]:
    """Rows to monitor: the source after the reference window when the reference is a range of it."""
    source = open_source(spark, config)
    start = config.reference.end if config.reference.table is None else None
    return _with_labels(spark, config, _time_range(source.df, config, start, None), source.version)


def _with_labels(spark: SparkSession, config: MonitorConfig, df: DataFrame,
                 version: int) -> tuple[DataFrame, int, int | None]:
    if not config.labels:
        return df, version, None
    labels = read_delta(spark, config.labels.table, "labels.table")
    joined = join_labels(df, labels.df, config.labels, config.source.id_column, config.problem_type == "regression")
    return joined, version, labels.version


def _time_range(df: DataFrame, config: MonitorConfig, start, end) -> DataFrame:
    ts = F.col(quote_part(config.source.timestamp_column))
    if start is not None:
        df = df.where(ts >= F.lit(start))
    if end is not None:
        df = df.where(ts < F.lit(end))
    return df


def profile_dataset(spark: SparkSession, config: MonitorConfig, dataset: str,
                    slices: dict[str, list[str]] | None = None, refresh: bool = False) -> ProfileResult:
    """Profile the reference or the analysis rows per chunk and slice and MERGE them into `profiles`;
    stored profiles are reused when the source version and the settings are unchanged."""
    started = time.monotonic()
    df, version, labels_version = (reference_rows if dataset == REFERENCE else analysis_rows)(spark, config)
    sig, table = signature(config, dataset, slices, labels_version), profiles_table(config)
    if not refresh and stored_signatures(spark, table, config.monitor, dataset) == {(version, sig)}:
        chunks = read_profiles(spark, table, config.monitor, dataset)
        log.info("%s: source version %d already profiled with these settings; reusing %d stored chunk profiles",
                 dataset, version, len(chunks))
        return ProfileResult(dataset, chunks, 0, version, time.monotonic() - started, reused=True)
    if slices is None:
        slices = slice_values(df, config.slices.expressions, config.slices.top_n)
    chunked = with_slices(with_chunk_index(df, config.chunking, config.source.timestamp_column,
                                           config.source.id_column), slices)
    chunks = profile_chunks(chunked, config.monitored_columns(), config.chunking, config.source.timestamp_column,
                            config.profile.kll_k, config.profile.top_n)
    if config.labels:
        states = performance_states(chunked, config, GROUP)
        for cp in chunks:
            cp.performance = states.get((cp.chunk.index, cp.slice_key, cp.slice_value))
    if dataset == REFERENCE and not chunks:
        raise DataError(f"the reference of monitor '{config.monitor}' holds no rows "
                        f"(reference: {config.reference}); widen reference.start/end or fill the table")
    written = write_profiles(spark, table, config.monitor, dataset, chunks, config.profile.kll_k, version, sig)
    result = ProfileResult(dataset, chunks, written, version, time.monotonic() - started)
    log.info("%s: profiled %d chunks (%d with slices), %d rows, %d columns in %.1fs (source version %d)", dataset,
             len(result.whole), len(chunks), result.row_count, len(config.monitored_columns()), result.seconds,
             version)
    return result


def fit(spark: SparkSession, config: MonitorConfig, refresh: bool = False) -> FittedReference:
    """Build and store the reference: chunk profiles, then merged states and bin edges per slice."""
    profiles = profile_dataset(spark, config, REFERENCE, refresh=refresh)
    ref = FittedReference(profiles.chunks, source_version=profiles.source_version,
                          signature=signature(config, REFERENCE))
    stored, version, sig = read_reference(spark, reference_table(config), config.monitor)
    if profiles.reused and stored and (version, sig) == (ref.source_version, ref.signature):
        ref.columns = stored
        return ref
    ref.columns = merge_reference(profiles.chunks, config.drift.bins, config.profile.top_n)
    write_reference(spark, reference_table(config), config.monitor, ref, config.profile.kll_k)
    return ref


def load_reference(spark: SparkSession, config: MonitorConfig) -> FittedReference:
    chunks = read_profiles(spark, profiles_table(config), config.monitor, REFERENCE)
    columns, version, sig = read_reference(spark, reference_table(config), config.monitor)
    if not chunks or not columns:
        raise DataError(f"monitor '{config.monitor}' has no reference in {reference_table(config)}; "
                        "run `driftline fit --config ...` first")
    if sig != signature(config, REFERENCE):
        raise DataError(f"the stored reference of monitor '{config.monitor}' was fitted with other settings "
                        "(columns, chunking, slices, bins or reference window changed); run `driftline fit` again")
    return FittedReference(chunks, columns, version, sig)


def run(spark: SparkSession, config: MonitorConfig, run_id: str | None = None,
        refresh: bool = False) -> RunResult:
    """Profile the analysis chunks, compare them with the reference, store the metrics."""
    reference = load_reference(spark, config)
    profiles = profile_dataset(spark, config, ANALYSIS, reference.slice_values(), refresh)
    started = time.monotonic()
    results: list[MetricResult] = []
    columns = config.monitored_columns()
    for key in reference.slices():
        analysis = [cp for cp in profiles.chunks if (cp.slice_key, cp.slice_value) == key]
        results += compare_slice(reference.chunks_of(key), analysis, columns, reference.edges(key), config.drift)
        if config.labels:
            results += performance_results(reference.chunks_of(key), analysis, config)
    run_id = run_id or uuid.uuid4().hex
    written = write_metrics(spark, metrics_table(config), config.monitor, run_id, results, profiles.source_version)
    log.info("compared %d slices: %d metric rows in %.1fs", len(reference.slices()), written,
             time.monotonic() - started)
    stats = None
    if config.labels:
        source = read_delta(spark, config.source.table, "source.table").df
        labels = read_delta(spark, config.labels.table, "labels.table").df
        stats = label_stats(source, labels, config.labels, config.source.id_column)
    return RunResult(run_id, profiles, reference, results, stats)
