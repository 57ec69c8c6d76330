"""The run: read -> chunk (+ slice) -> sketch (one pass) -> store -> compare -> store. Wiring only;
the statistics live in `drift/`, `thresholds.py` and `sketches.py`.

Both steps reuse stored states when nothing they depend on changed (same source table version and
same settings signature), so a rerun recomputes nothing and rewrites identical values.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, replace
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from monitoring.backfill import (
    CHANGE_FEED,
    Backfill,
    LabelChanges,
    changed_ids_query,
    label_rows,
    plan_backfill,
    stored_labels_version,
)
from monitoring.chunking import ChunkInfo, in_window, period_rows, window_text, with_chunk_index
from monitoring.concept import concept_results
from monitoring.config import NANNYML, MonitorConfig, validate_against_schema
from monitoring.drift.classifier import classifier_results, sample
from monitoring.drift.compare import MetricResult, apply_thresholds, compare_slice, reference_rows
from monitoring.drift.reconstruction import (
    Reconstruction,
    continuous_states,
    fit_reconstruction,
    nannyml_kinds,
    reconstruction_results,
)
from monitoring.errors import DataError
from monitoring.faults import BEFORE_METRICS, PROFILING, failpoint
from monitoring.fine_bins import FineBins
from monitoring.fingerprints import compare_settings, fingerprints, part_of, with_predecessors
from monitoring.guards import check_labels, empty_columns, kind_problems
from monitoring.incremental import Increment, plan_increment
from monitoring.labels import LABEL, LABELLED, LabelJoin, LabelStats, join_labels
from monitoring.performance.cbpe import Calibrator, ClassCalibrators, fit_calibrator
from monitoring.performance.dle import SEED as DLE_SEED
from monitoring.performance.dle import LossModels, fit_loss_models
from monitoring.performance.estimated import estimated_results, estimation_enabled
from monitoring.performance.nannyml_calibration import needs_calibration
from monitoring.performance.realized import histograms
from monitoring.performance.results import performance_results, reference_state
from monitoring.performance.state import PerformanceState, RowModel, classes
from monitoring.performance.state import aggregate as performance_states
from monitoring.performance.state import prepare as prepare_rows
from monitoring.profiling import GROUP, ChunkProfile, ProfiledChunks, count_bins, profile_chunks
from monitoring.quality import (
    DECLARED_KIND,
    EMPTY_REFERENCE_COLUMN,
    gap_results,
    guard_results,
    null_timestamp_results,
    outside_window_results,
    prediction_checks,
    quality_results,
    reference_size_results,
    schema_changes,
    schema_of,
    schema_results,
    vanished_results,
)
from monitoring.reference import FittedReference, add_histograms, bin_edges, counted, fine_bins, merge_reference
from monitoring.registry import UNBOUNDED
from monitoring.relation import RelationBins, relation_bins, relation_results
from monitoring.run_plan import STATE_TABLES, RunInputs, plan_run, recording
from monitoring.session import few_partitions
from monitoring.sketches import CONTINUOUS, resolve_kll_impl
from monitoring.slices import WHOLE, slice_values, validate_slices, with_slices
from monitoring.stores.estimators import (
    StoredReconstruction,
    estimators_query,
    read_calibrators,
    read_estimators,
    read_loss_models,
    read_reconstruction,
    write_calibrators,
    write_loss_models,
    write_reconstruction,
)
from monitoring.stores.metrics import MetricsScope, metric_key, read_metrics, write_metrics
from monitoring.stores.profiles import (
    StoredProfiles,
    apply_states,
    load_states,
    parse_profiles,
    profiles_query,
    read_stored_profiles,
    states_query,
    write_performance,
    write_profiles,
)
from monitoring.stores.reference import (
    StoredReference,
    parse_reference,
    read_reference,
    reference_query,
    write_reference,
)
from monitoring.stores.tables import VersionedTable, collect_union, quote_part, read_delta, table_exists

log = logging.getLogger(__name__)

REFERENCE, ANALYSIS = "reference", "analysis"
STATE_FORMAT = 7  # bump when stored states or reference edges change meaning: older ones are recomputed


@dataclass(frozen=True)
class ProfileResult:
    dataset: str
    chunks: list[ChunkProfile]
    rows_written: int
    source_version: int
    seconds: float
    reused: bool = False
    backfill: Backfill | None = None  # set when stored profiles were reused and labels had landed
    labels_version: int | None = None  # label table version the performance states reflect
    increment: Increment | None = None  # set when the source changed since stored profiles were made
    schema: dict[str, str] | None = None  # column -> type of the table the rows came from
    label_stats: LabelStats | None = None  # label counts of the label join this profiling ran (None: no join)
    null_timestamps: int | None = None  # source rows without a timestamp, when this profiling counted them
    outside: int = 0  # with null_timestamps: rows whose timestamp is outside the chunking's window
    vanished: tuple[ChunkInfo, ...] = ()  # stored chunks whose rows left the source: their stored profiles kept

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
    compared: tuple[int, ...] = ()  # analysis chunks whose results this run computed (the others were kept)
    # a rerun with nothing new: the analysis chunks the run that wrote the results computed (MLflow gets
    # them again, so a rerun after a failed MLflow logging logs what it missed)
    relogged: tuple[int, ...] = ()

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


def estimators_table(config: MonitorConfig) -> str:
    return config.output.table("estimators")


def signature(config: MonitorConfig, dataset: str, slices: dict[str, list[str]] | None = None,
              model: RowModel | None = None, reconstruction: Reconstruction | None = None,
              relation: RelationBins | None = None, histograms: dict[str, tuple[float, ...]] | None = None,
              fine: dict[str, FineBins] | None = None) -> str:
    """A short hash of every setting the stored states of `dataset` depend on (for the analysis also
    the slice values taken from the reference, the models its rows were scored with and the reference
    bins of the concept-drift sums, of the exact histograms and the fine bins). The label
    table's version is not part of it: label changes are backfilled chunk by chunk (monitoring/backfill.py)."""
    ref, lab = config.reference, config.labels
    labels = [lab.table, lab.id_column, lab.label_column, lab.timestamp_column] if lab else None
    settings = {"format": STATE_FORMAT, "dataset": dataset, "columns": config.monitored_columns(),
                "kll_k": config.profile.kll_k, "top_n": config.profile.top_n,
                "chunking": [config.chunking.describe(), config.chunking.incomplete],
                "slices": [list(config.slices.expressions), config.slices.top_n], "bins": config.drift.bins,
                "reference": [ref.table, str(ref.start), str(ref.end)], "source": config.source.table,
                "slice_values": slices or {}, "labels": labels,
                "row_model": model.fingerprint() if model else None,
                "reconstruction": reconstruction.fingerprint() if reconstruction else None,
                "relation": relation.fingerprint() if relation else None,
                "histograms": sorted(histograms.items()) if histograms else None, "third_moment": _doane(config),
                "fine_bins": config.drift.fine_bins,
                "fine": sorted((c, f.to_list()) for c, f in fine.items()) if fine else None}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Tables:
    """The tables a fit or run reads, each opened once at one version (one snapshot per run)."""

    source: VersionedTable
    labels: VersionedTable | None
    reference: VersionedTable | None = None  # the reference's own table (reference.table), for a fit


def open_tables(spark: SparkSession, config: MonitorConfig, dataset: str = ANALYSIS,
                inputs: RunInputs | None = None) -> Tables:
    """The source and label tables at their current versions (as the run's plan found them), checked
    against the config (for the reference `dataset`, also the reference's own table when it has one)."""
    version = inputs.version if inputs else lambda table: None
    source = read_delta(spark, config.source.table, "source.table", version("source"))
    labels = read_delta(spark, config.labels.table, "labels.table", version("labels")) if config.labels else None
    validate_against_schema(config, source.df.schema, labels.df.schema if labels else None)
    validate_slices(source.df, config.slices.expressions)
    reference = None
    if dataset == REFERENCE and config.reference.table:
        reference = read_delta(spark, config.reference.table, "reference.table")
        validate_against_schema(config, reference.df.schema)
        validate_slices(reference.df, config.slices.expressions)
    return Tables(source, labels, reference)


def open_source(spark: SparkSession, config: MonitorConfig) -> VersionedTable:
    """The source table at its current version, checked against the config."""
    return open_tables(spark, config).source


@dataclass(frozen=True)
class DatasetSource:
    rows: DataFrame  # the dataset's rows
    table: DataFrame  # every row of the table they come from
    window: Column | None  # which rows of `table` are the dataset's (None: all)
    version: int


def dataset_source(config: MonitorConfig, tables: Tables, dataset: str) -> DatasetSource:
    """The rows of the reference (its own table or a time range of the source) or of the analysis (the
    source after the reference window when the reference is a range of it), every row of the table they
    come from, and its version."""
    ref = config.reference
    if dataset == REFERENCE:
        table = tables.reference or tables.source
        window = _time_range(config, ref.start, ref.end)
    else:
        table = tables.source
        window = _time_range(config, ref.end if ref.table is None else None, None)
    return DatasetSource(table.df if window is None else table.df.where(window), table.df, window, table.version)


def _time_range(config: MonitorConfig, start, end) -> Column | None:
    ts = F.col(quote_part(config.source.timestamp_column))
    bounds = ([ts >= F.lit(start)] if start is not None else []) + ([ts < F.lit(end)] if end is not None else [])
    return reduce(lambda a, b: a & b, bounds) if bounds else None


def dataset_table(config: MonitorConfig, dataset: str) -> str:
    """The table a dataset's rows come from."""
    return config.reference.table if dataset == REFERENCE and config.reference.table else config.source.table


def profile_dataset(spark: SparkSession, config: MonitorConfig, dataset: str,
                    slices: dict[str, list[str]] | None = None, refresh: bool = False,
                    model: RowModel | None = None, reconstruction: Reconstruction | None = None,
                    relation: RelationBins | None = None, stored: StoredProfiles | None = None,
                    write: bool = True, tables: Tables | None = None, label_states: bool = True,
                    histograms: dict[str, tuple[float, ...]] | None = None,
                    fine: dict[str, FineBins] | None = None) -> ProfileResult:
    """Profile the reference or the analysis rows per chunk and slice and MERGE them into `profiles`
    (`model` scores rows for the performance states, `reconstruction` for the multivariate drift,
    `relation` bins the residual sums of the per-feature concept drift).

    Stored profiles made with the same settings are reused: all of them when the source version is
    unchanged, else all but the chunks whose rows changed since and the open last chunk (see
    monitoring/incremental.py). The performance states of reused chunks whose labels changed are then
    recomputed (the label backfill). `refresh` recomputes every chunk. `stored`: the profiles table as
    the caller read it (else it is read here). `write=False` leaves newly profiled chunks for the caller
    to store (fit stores them once, after its label pass). `tables`: the tables as the caller opened them
    (else they are opened here). `label_states=False` leaves the performance states of newly profiled
    chunks unset (fit computes them in its label pass, with the reference's bins). `histograms`: the
    reference's bin edges per continuous column, counted exactly in the chunks profiled (the analysis)."""
    started = time.monotonic()
    tables = tables or open_tables(spark, config, dataset)
    source = dataset_source(config, tables, dataset)
    df, version = source.rows, source.version
    labels = tables.labels
    sig = signature(config, dataset, slices, model, reconstruction, relation, histograms, fine)
    table = profiles_table(config)
    sums = prediction_checks(config) | (reconstruction.sums() if reconstruction else {})
    if not refresh and stored is None:
        stored = read_stored_profiles(spark, table, config.monitor, [dataset])
    stored_states = set() if refresh else stored.signatures[dataset]
    since = max(v for v, _ in stored_states) if stored_states else None
    increment = None
    same = not refresh and {s for _, s in stored_states} == {sig} and since is not None
    if same:
        stored = stored.chunks[dataset]
        if since == version:
            backfill = _backfill(spark, config, dataset, df, labels, stored, version, sig, model, relation) \
                if labels else None
            log.info("%s: source version %d already profiled with these settings; reusing %d stored chunk profiles",
                     dataset, version, len(stored))
            return ProfileResult(dataset, stored, 0, version, time.monotonic() - started, reused=True,
                                 backfill=backfill, labels_version=labels.version if labels else None,
                                 schema=schema_of(df.schema), label_stats=backfill.label_stats if backfill else None)
        labelled = _label_changes_query(spark, config, df, labels, stored) if labels else None
        increment = plan_increment(spark, config, dataset_table(config, dataset), stored, since, version,
                                   also={"labels": labelled} if labelled is not None else None)
        if increment.chunks is None:
            log.warning("%s: re-profiling every chunk: %s", dataset, increment.reason)
        else:
            return replace(_profile_increment(spark, config, dataset, df, labels, stored, increment, sig, model,
                                              relation, sums, started, histograms, fine),
                             schema=schema_of(df.schema))
    if slices is None:
        slices = slice_values(df, config.slices.expressions, config.slices.top_n)
    # the analysis's labels are joined against the whole source, so that their unmatched ids are labels of
    # no prediction at all (not the reference's); other rows leave right after the join. With period
    # chunking its profiling pass also counts the source's rows without a timestamp.
    count_nulls = dataset == ANALYSIS and bool(config.chunking.period)
    profiled = df
    if count_nulls and source.window is not None:
        profiled = source.table.where(source.window | F.col(quote_part(config.source.timestamp_column)).isNull())
    chunks, stats = _profile(config, profiled, labels if label_states else None, slices, model, relation, sums,
                             join_source=(source.table, source.window) if dataset == ANALYSIS else None,
                             keep_null_ts=count_nulls, histograms=histograms, fine=fine)
    if dataset == REFERENCE and not chunks:
        raise DataError(f"the reference of monitor '{config.monitor}' holds no rows "
                        f"(reference: {config.reference}); widen reference.start/end or fill the table")
    kept, vanished = _vanished(chunks, stored if same and dataset == ANALYSIS else [])
    if vanished:
        load_states(spark, table, config.monitor, dataset, kept)  # written back below
        chunks = ProfiledChunks(sorted(chunks + kept, key=lambda c: (c.chunk.index, c.slice_key, c.slice_value)),
                                chunks.null_timestamps, chunks.outside)
    written = write_profiles(spark, table, config.monitor, dataset, chunks, config.profile.kll_k, version, sig) \
        if write else 0
    result = ProfileResult(dataset, chunks, written, version, time.monotonic() - started,
                           labels_version=labels.version if labels else None, increment=increment,
                           schema=schema_of(df.schema), label_stats=stats,
                           null_timestamps=chunks.null_timestamps if count_nulls else None,
                           outside=chunks.outside if count_nulls else 0, vanished=vanished)
    log.info("%s: profiled %d chunks (%d with slices), %d rows, %d columns in %.1fs (source version %d)", dataset,
             len(result.whole), len(chunks), result.row_count, len(config.monitored_columns()), result.seconds,
             version)
    return result


def _doane(config: MonitorConfig) -> bool:
    """Whether continuous bins are NannyML's Doane bins (`compatibility: nannyml`): profiles then hold the
    third central moment they are computed from."""
    return config.drift.compatibility == NANNYML


def _profile(config: MonitorConfig, df: DataFrame, labels: VersionedTable | None, slices: dict[str, list[str]],
             model: RowModel | None, relation: RelationBins | None, sums: dict[str, Column],
             label_filter: Column | None = None, join_source: tuple[DataFrame, Column | None] | None = None,
             keep_null_ts: bool = False, also: dict[str, DataFrame] | None = None,
             histograms: dict[str, tuple[float, ...]] | None = None,
             fine: dict[str, FineBins] | None = None) -> tuple[ProfiledChunks, LabelStats | None]:
    """The scan: chunk profiles of `df`'s own rows (no labels needed) with the per-chunk `sums`, then,
    when there are labels, every label-dependent state from one query over the one label join
    (the label rows `label_filter` keeps), with the label counts observed on the way. `join_source`:
    (table, which of its rows are `df`'s) to join the labels against instead of `df`. `keep_null_ts`: `df`
    holds the rows without a timestamp too, for the moments aggregation to count. `also`: small frames read
    by the profiling query (`ProfiledChunks.also`). `histograms`: edges of the exact bin counts; `fine`: the
    fine bins counted (Wasserstein)."""
    chunks = profile_chunks(_chunked(config, df, slices, keep_null_ts), config.monitored_columns(), config.chunking,
                            config.source.timestamp_column, config.profile.kll_k, config.profile.top_n,
                            kll_impl=resolve_kll_impl(df.sparkSession, config.profile.kll),
                            sums=sums, id_col=config.source.id_column, also=also, histograms=histograms,
                            third_moment=_doane(config), fine=fine)
    failpoint(PROFILING)
    if not labels:
        return chunks, None
    rows, keep = (df, None) if join_source is None else join_source
    states, stats = _label_states(config, rows, labels, slices, model, relation, label_filter=label_filter, keep=keep)
    for cp in chunks:
        cp.performance = _with_ids(states.get((cp.chunk.index, cp.slice_key, cp.slice_value)), *(cp.id_range or ()))
    return chunks, stats


def _profile_increment(spark: SparkSession, config: MonitorConfig, dataset: str, df: DataFrame,
                       labels: VersionedTable | None, stored: list[ChunkProfile], increment: Increment, sig: str,
                       model: RowModel | None, relation: RelationBins | None, sums: dict[str, Column],
                       started: float, histograms: dict[str, tuple[float, ...]] | None = None,
                       fine: dict[str, FineBins] | None = None) -> ProfileResult:
    """Re-profile the chunks of `increment` (the rows of their periods only), keep every other stored chunk,
    write the new rows in one commit (a re-profiled chunk without rows keeps its stored profile: `_vanished`), then
    backfill the labels of the kept chunks."""
    redo = set(increment.chunks)
    rows = df.where(period_rows(config.chunking.period, sorted(redo), config.source.timestamp_column))
    label_filter = _id_range(config, rows, increment, stored) if labels else None
    fresh, stats = [], None
    if redo:  # the changed rows and the stored rows of the open chunk: shuffled into as few partitions
        expected = (increment.changed_rows or 0) + sum(c.row_count for c in stored if c.chunk.index in redo
                                                       and (c.slice_key, c.slice_value) == WHOLE)
        # the chunk before each re-profiled one is compared with it (CONSECUTIVE): the profiling query reads
        # the states a light read left in the table for those
        before = _predecessors(stored, redo)
        query = states_query(spark, profiles_table(config), config.monitor, dataset, before)
        with few_partitions(spark, expected):
            fresh, stats = _profile(config, rows, labels, _stored_slices(stored), model, relation, sums, label_filter,
                                    also={"states": query} if query is not None else None, histograms=histograms,
                                    fine=fine)
        apply_states(fresh.also.get("states", []), before, profiles_table(config))
    vanished = _vanished(fresh, [c for c in stored if c.chunk.index in redo])[1] if dataset == ANALYSIS else ()
    gone = {c.index for c in vanished}  # kept as stored, labels included: their rows are no longer there
    redo -= gone
    kept = [c for c in stored if c.chunk.index not in redo]
    present = [c for c in kept if c.chunk.index not in gone]
    known = None  # the label change feed, read by the query of the source's (plan_increment)
    if labels and "labels" in increment.also:
        known = LabelChanges(stored_labels_version(stored), labels.version,
                             {r["chunk"]: int(r["n"]) for r in increment.also["labels"]})
    backfill = _backfill(spark, config, dataset, df, labels, present, increment.until, sig, model, relation,
                         write=False, known=known) if labels and present else None
    # one commit: the re-profiled chunks and the backfilled performance rows, so the stored label version
    # (the newest) never runs ahead of a chunk whose labels changed
    relabelled = [c for c in present if backfill and c.chunk.index in set(backfill.chunks)]
    written = write_profiles(spark, profiles_table(config), config.monitor, dataset, fresh, config.profile.kll_k,
                             increment.until, sig, only_chunks=sorted(redo), performance_of=relabelled)
    chunks = sorted(kept + fresh, key=lambda c: (c.chunk.index, c.slice_key, c.slice_value))
    result = ProfileResult(dataset, chunks, written, increment.until, time.monotonic() - started, backfill=backfill,
                           labels_version=labels.version if labels else None, increment=increment,
                           label_stats=stats or (backfill.label_stats if backfill else None), vanished=vanished)
    keys = [c.chunk.key for c in fresh if (c.slice_key, c.slice_value) == WHOLE]
    log.info("%s: source version %d -> %d: %d changed rows; re-profiled %d chunks (%s), reused %d, in %.1fs",
             dataset, increment.since, increment.until, increment.changed_rows, len(keys), ", ".join(keys),
             len({c.chunk.index for c in kept}), result.seconds)
    return result


def _predecessors(stored: list[ChunkProfile], redo: set[int]) -> list[ChunkProfile]:
    """The stored chunks (each slice) just before a chunk of `redo` that are not in `redo` themselves."""
    out = []
    for key in {(c.slice_key, c.slice_value) for c in stored}:
        chunks = sorted((c for c in stored if (c.slice_key, c.slice_value) == key), key=lambda c: c.chunk.index)
        indices = [c.chunk.index for c in chunks]
        for i in redo:
            at = bisect.bisect_left(indices, i)
            if at and indices[at - 1] not in redo:
                out.append(chunks[at - 1])
    return out


def _label_changes_query(spark: SparkSession, config: MonitorConfig, df: DataFrame, labels: VersionedTable,
                         stored: list[ChunkProfile]) -> DataFrame | None:
    """The label backfill's change-feed read over the stored chunks (since their label version), for the
    query that reads the source's change feed to carry too; None when the backfill reads none (or cannot:
    it then finds out and says why on its own)."""
    try:
        return changed_ids_query(spark, config, stored, _id_type(config, df), stored_labels_version(stored),
                                 labels.version)
    except Exception:  # noqa: BLE001 - plan_backfill reads the feed again and reports its failure
        return None


def _vanished(fresh: list[ChunkProfile],
              stored: list[ChunkProfile]) -> tuple[list[ChunkProfile], tuple[ChunkInfo, ...]]:
    """The stored chunk profiles (every slice) of the chunks that held rows when stored but have none in
    `fresh` (the source was rewritten or their rows deleted), and those chunks: the run keeps them and says
    so (`quality.vanished_results`) instead of deleting their history; `--full` recomputes from the rows as
    they are now."""
    now = {c.chunk.index for c in fresh}
    gone = [c for c in stored if c.chunk.index not in now and c.row_count]
    chunks = {c.chunk.index: c.chunk for c in gone}
    return gone, tuple(chunks[i] for i in sorted(chunks))


def _id_range(config: MonitorConfig, rows: DataFrame, increment: Increment, stored: list[ChunkProfile]) -> Column:
    """Label rows whose id lies within the ids of `rows`, the rows of the chunks `increment` re-profiles:
    Delta's file statistics then skip the label files of other ids instead of scanning the whole label
    table. Those rows are the changed ones (their id range came with the change feed) and the stored rows
    of those chunks (the id range stored with their performance state); when a stored chunk has none,
    one small job over `rows` finds the range."""
    lid = F.col(quote_part(config.labels.id_column))
    redo = set(increment.chunks or ())
    whole = [c for c in stored if c.chunk.index in redo and (c.slice_key, c.slice_value) == WHOLE]
    if any(c.performance is None or c.performance.id_min is None for c in whole):
        ids = F.col(quote_part(config.source.id_column))
        lo, hi = rows.agg(F.min(ids), F.max(ids)).first()
        return F.lit(False) if lo is None else (lid >= F.lit(lo)) & (lid <= F.lit(hi))
    cond = label_rows(whole, config.labels, _id_type(config, rows))
    if increment.changed_ids is not None:
        lo, hi = increment.changed_ids
        cond = cond | ((lid >= F.lit(lo)) & (lid <= F.lit(hi)))
    return cond


def _id_type(config: MonitorConfig, df: DataFrame) -> str:
    """The SQL type of the source's id column in `df` (what stored id ranges, kept as text, are cast to)."""
    return df.schema[config.source.id_column].dataType.simpleString()


def _joined(config: MonitorConfig, df: DataFrame, labels: VersionedTable, label_filter: Column | None = None,
            keep: Column | None = None) -> LabelJoin:
    """The latest-label join of `df` (built once per scan; only its rows `keep` selects come out) with the
    label counts it observes."""
    label_rows = labels.df if label_filter is None else labels.df.where(label_filter)
    scope = "whole label table" if label_filter is None else "labels in the id ranges of the recomputed chunks"
    return join_labels(df, label_rows, config.labels, config.source.id_column, config.problem_type == "regression",
                       config.outputs.label_classes(config.problem_type), scope, keep)


def _chunked(config: MonitorConfig, df: DataFrame, slices: dict[str, list[str]],
             keep_null_ts: bool = False) -> DataFrame:
    src = config.source
    return with_slices(with_chunk_index(df, config.chunking, src.timestamp_column, src.id_column, keep_null_ts),
                       slices)


def _backfill(spark: SparkSession, config: MonitorConfig, dataset: str, df: DataFrame, labels: VersionedTable,
              chunks: list[ChunkProfile], version: int, sig: str, model: RowModel | None,
              relation: RelationBins | None, write: bool = True, known: LabelChanges | None = None) -> Backfill | None:
    """Recompute the performance states of the chunks whose labels changed since they were computed and
    update `chunks` in place; MERGE those rows into `profiles` unless `write` is false (the caller writes
    them with its own rows, in one commit). None when no label landed."""
    since = stored_labels_version(chunks)
    if since == labels.version:
        return None
    id_type = _id_type(config, df)
    plan = plan_backfill(spark, config, chunks, id_type, since, labels.version, known)
    targets = [c for c in chunks if c.chunk.index in set(plan.chunks)]
    recompute = {id(c) for c in targets}
    if plan.reason == CHANGE_FEED:
        whole = [c for c in targets if (c.slice_key, c.slice_value) == WHOLE]
        rows = df.where(period_rows(config.chunking.period, [c.chunk.index for c in whole],
                                    config.source.timestamp_column))
        label_filter = label_rows(whole, config.labels, id_type)
    else:
        log.warning("%s: recomputing the performance of every chunk: %s", dataset, plan.reason)
        rows, label_filter = df, None
    states = {}
    if targets:
        # the session's shuffle partitions, as the run that stored these chunks' states: the same partition
        # count adds the same sums in the same order, so a chunk whose labels did not change keeps its digest
        states, stats = _label_states(config, rows, labels, _stored_slices(chunks), model, relation,
                                      label_filter=label_filter)
        plan = replace(plan, label_stats=stats)
    for c in chunks:
        if id(c) in recompute or c.performance is None:
            ids = (c.performance.id_min, c.performance.id_max) if c.performance else ()
            c.performance = _with_ids(states.get((c.chunk.index, c.slice_key, c.slice_value)), *ids)
    if write:
        write_performance(spark, profiles_table(config), config.monitor, dataset,
                          [c for c in chunks if id(c) in recompute], version, sig)
    log.info("%s: labels %s -> %s: recomputed the performance of %d chunks (%s)", dataset, since, labels.version,
             len(plan.chunks), plan.reason)
    return plan


def _label_states(config: MonitorConfig, df: DataFrame, labels: VersionedTable, slices: dict[str, list[str]],
                  model: RowModel | None, relation: RelationBins | None, sums: dict[str, Column] | None = None,
                  label_filter: Column | None = None, keep: Column | None = None,
                  by: str | None = None) -> tuple[dict[tuple, PerformanceState], LabelStats]:
    """Performance states per chunk x slice (x `by`, the dataset of a shared scan) of `df`'s rows (those `keep`
    selects) joined with their latest labels (the label rows `label_filter` keeps), with `model`'s outputs,
    the residual sums of the per-feature concept drift when `relation` is given and the `sums` of row
    expressions, and the label counts the join observed: one query. The per-row inputs are computed before
    the join (performance.state.prepare), so the join carries them instead of every feature."""
    join = _joined(config, prepare_rows(df, model, relation, sums, keep), labels, label_filter, keep)
    states = performance_states(_chunked(config, join.rows, slices), config, GROUP + ([by] if by else []),
                                labels.version, model, relation, sums, twin=_chunked(config, join.twin, slices))
    return states, join.counts.stats()


def _with_ids(state: PerformanceState | None, lo: str | None = None, hi: str | None = None) -> PerformanceState | None:
    """`state` with the chunk's prediction id range (the profiling pass found it; the label aggregation
    does not compute it)."""
    if state is not None:
        state.id_min, state.id_max = lo, hi
    return state


def _stored_slices(chunks: list[ChunkProfile]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in chunks:
        if (c.slice_key, c.slice_value) != WHOLE:
            out.setdefault(c.slice_key, []).append(c.slice_value)
    return out


def fit(spark: SparkSession, config: MonitorConfig, refresh: bool = False, analysis: bool = False) -> FittedReference:
    """Build and store the reference: chunk profiles of the reference rows (the first pass, no labels),
    merged states and bin edges per slice and the PCA of the reconstruction error; then one label pass
    (performance states with the per-feature residual sums in the reference's bins, reconstruction-error
    sums), the estimation models fitted on its states (CBPE calibrators, DLE loss models), and for a
    model applied to every row (multiclass calibrators, DLE) a second label pass with its outputs.

    `analysis` (`run --fit`): when the analysis rows will be profiled from scratch too, the same passes
    profile them (`shares_scan`), and the run that follows stores them (`FittedModels.analysis`)."""
    tables = open_tables(spark, config, REFERENCE)
    if analysis and shares_scan(spark, config, refresh):
        log.info("fit: profiling the reference and the analysis rows of %s in one scan (%d columns)",
                 config.source.table, len(config.monitored_columns()))
        return _fit_with_analysis(spark, config, tables)
    log.info("fit: profiling the reference rows of %s (%d columns)", config.reference.table or config.source.table,
             len(config.monitored_columns()))
    profiles = profile_dataset(spark, config, REFERENCE, refresh=refresh, write=False, tables=tables,
                               label_states=False)
    # the schema runs compare with: the source's (the reference's own table may hold other columns, e.g. labels)
    schema = schema_of(tables.source.df.schema) if config.reference.table else profiles.schema
    ref = FittedReference(profiles.chunks, source_version=profiles.source_version,
                          signature=signature(config, REFERENCE), schema=schema)
    stored = read_reference(spark, reference_table(config), config.monitor) if profiles.reused else None
    kept = stored is not None and bool(stored.columns) and (
        stored.source_version, stored.signature, stored.schema) == (ref.source_version, ref.signature, ref.schema)
    ref.columns = stored.columns if kept else merge_reference(profiles.chunks, config.drift.bins,
                                                              config.profile.top_n, _doane(config),
                                                              config.drift.fine_bins)
    df, labels = dataset_source(config, tables, REFERENCE).rows, tables.labels
    edges, fine = bin_edges(ref.columns), fine_bins(ref.columns)
    recounted = not counted(ref.chunks, edges, fine)
    if recounted:  # the exact counts in the bins just learnt: one more pass over the reference rows
        count_bins(_chunked(config, df, _stored_slices(ref.chunks)), config.monitored_columns(), edges, ref.chunks,
                   fine=fine)
        add_histograms(ref.columns, ref.chunks)
    if recounted or not kept:
        write_reference(spark, reference_table(config), config.monitor, ref, config.profile.kll_k)
    relation = relation_bins(ref.columns.get(WHOLE, {}), config)
    reconstruction = _fit_reconstruction(spark, config, ref, df) if config.reconstruction_columns() else None
    mark = relation.mark() if relation else None
    unlabelled = labels is not None and any(cp.performance is None for cp in ref.chunks)
    stale_relation = mark is not None and any(
        cp.performance is not None and cp.performance.get("labelled") and mark not in cp.performance.values
        for cp in ref.chunks)
    stored_pca = _label_pass(spark, config, ref, df, labels, None, relation, reconstruction) \
        if unlabelled or stale_relation or reconstruction is not None else None
    check_labels(config, ref)
    estimators = _fit_estimators(spark, config, ref, _joined(config, df, labels).twin if labels else None) \
        if estimation_enabled(config) else Estimators()
    model = estimators.row_model
    if model is not None:
        _label_pass(spark, config, ref, df, labels, model, relation, None)
    if not profiles.reused or unlabelled or model is not None or stale_relation or recounted:  # one commit
        write_profiles(spark, profiles_table(config), config.monitor, REFERENCE, ref.chunks, config.profile.kll_k,
                       ref.source_version, ref.signature)
    if stored_pca is not None or not config.reconstruction_columns():  # else the stored PCA stands: runs read it
        ref.models = FittedModels(estimators, stored_pca)
    return ref


def _label_pass(spark: SparkSession, config: MonitorConfig, ref: FittedReference, df: DataFrame,
                labels: VersionedTable | None, model: RowModel | None, relation: RelationBins | None,
                reconstruction: Reconstruction | None) -> StoredReconstruction | None:
    """One aggregation over the reference rows (label-joined when there are labels): the performance
    states with the row model's outputs and the residual sums of `relation`, and the reconstruction
    error sums of a new PCA fit; updates `ref.chunks`, stores the PCA and returns it as stored."""
    slices = _stored_slices(ref.chunks)
    sums = reconstruction.sums() if reconstruction else {}
    log.info("fit: %s over the reference rows%s", "joining the labels" if labels is not None else "summing",
             " with the row model's outputs" if model is not None else "")
    if labels is not None:
        states, _ = _label_states(config, df, labels, slices, model, relation, sums)
        per_chunk = {key: {k: state.values.pop(k, 0.0) for k in sums} for key, state in states.items()}
        for cp in ref.chunks:
            key, old = (cp.chunk.index, cp.slice_key, cp.slice_value), cp.performance
            ids = cp.id_range or ((old.id_min, old.id_max) if old else ())
            cp.performance = _with_ids(states[key], *ids) if key in states else cp.performance
    else:
        rows = _chunked(config, df, slices).groupBy(*GROUP).agg(
            *[F.sum(e).alias(f"s{i}") for i, e in enumerate(sums.values())]).collect()
        per_chunk = {(int(r[GROUP[0]]), r[GROUP[1]], r[GROUP[2]]): {k: float(r[f"s{i}"] or 0.0)
                                                                     for i, k in enumerate(sums)} for r in rows}
    if reconstruction is None:
        return None
    write_reconstruction(spark, estimators_table(config), config.monitor, reconstruction, per_chunk,
                         ref.source_version, ref.signature)
    return StoredReconstruction(reconstruction, per_chunk, ref.source_version, ref.signature)


DATASET = "_dl_dataset"  # the column naming each row's dataset in a shared scan


def shares_scan(spark: SparkSession, config: MonitorConfig, refresh: bool) -> bool:
    """Whether a `run --fit` profiles the reference and the analysis in the same passes: both are time
    ranges of the source cut into periods (so their chunks are those of the source), and the analysis
    is profiled from scratch (`refresh`, or no profiles stored yet)."""
    ref = config.reference
    return bool(config.chunking.period) and ref.table is None and ref.end is not None and (
        refresh or not table_exists(spark, profiles_table(config)))


def _fit_with_analysis(spark: SparkSession, config: MonitorConfig, tables: Tables) -> FittedReference:
    """`fit` and the analysis's profiling in the same passes over the source (`shares_scan`): one profiling
    pass tags each row with its dataset and profiles the chunks of both; the reference merged from its
    chunks gives the bins of one label pass over both (plus the reconstruction-error sums of the PCA
    fitted in between); with a row model (multiclass calibrators, DLE) the first label pass covers the
    reference only and a second, with the model, both. Stores the reference, its profiles and the
    estimation models as `fit` does; the analysis chunks travel in `FittedModels.analysis`."""
    started = time.monotonic()
    ref_cfg, source = config.reference, tables.source
    windows = {REFERENCE: _time_range(config, ref_cfg.start, ref_cfg.end),
               ANALYSIS: _time_range(config, ref_cfg.end, None)}
    dataset = F.when(windows[REFERENCE], F.lit(REFERENCE)).when(windows[ANALYSIS], F.lit(ANALYSIS))
    table = source.df.withColumn(DATASET, dataset)
    ts = F.col(quote_part(config.source.timestamp_column))
    slices = slice_values(table.where(windows[REFERENCE]), config.slices.expressions, config.slices.top_n)
    chunks = profile_chunks(
        _chunked(config, table.where(F.col(DATASET).isNotNull() | ts.isNull()), slices, keep_null_ts=True),
        config.monitored_columns(), config.chunking, config.source.timestamp_column, config.profile.kll_k,
        config.profile.top_n, kll_impl=resolve_kll_impl(spark, config.profile.kll), sums=prediction_checks(config),
        id_col=config.source.id_column, by=DATASET, third_moment=_doane(config))
    failpoint(PROFILING)
    parts = {REFERENCE: [], ANALYSIS: []}
    for cp in chunks:
        parts[cp.dataset].append(replace(cp, dataset=""))
    if not parts[REFERENCE]:
        raise DataError(f"the reference of monitor '{config.monitor}' holds no rows "
                        f"(reference: {config.reference}); widen reference.start/end or fill the table")
    ref = FittedReference(parts[REFERENCE], source_version=source.version, signature=signature(config, REFERENCE),
                          schema=schema_of(source.df.schema))
    ref.columns = merge_reference(ref.chunks, config.drift.bins, config.profile.top_n, _doane(config),
                                  config.drift.fine_bins)
    # the exact counts of both datasets in the bins just learnt: one more pass over the rows
    count_bins(_chunked(config, table.where(F.col(DATASET).isNotNull()), slices), config.monitored_columns(),
               bin_edges(ref.columns), chunks, by=DATASET, fine=fine_bins(ref.columns))
    add_histograms(ref.columns, ref.chunks)
    write_reference(spark, reference_table(config), config.monitor, ref, config.profile.kll_k)
    relation = relation_bins(ref.columns.get(WHOLE, {}), config)
    reference_rows = table.where(windows[REFERENCE])
    reconstruction = _fit_reconstruction(spark, config, ref, reference_rows) if config.reconstruction_columns() \
        else None
    labels = tables.labels
    row_model = estimation_enabled(config) and (config.problem_type != "binary")
    # the first label pass: both datasets, or the reference only when a row model is fitted on it first
    keep = F.col(DATASET) == REFERENCE if labels is not None and row_model else F.col(DATASET).isNotNull()
    sums, stats = _shared_label_pass(config, table, keep, labels, slices, None, relation, reconstruction, parts)
    stored_pca = None
    if reconstruction is not None:
        per_chunk = {key[:3]: value for key, value in sums.items() if key[3] == REFERENCE}
        write_reconstruction(spark, estimators_table(config), config.monitor, reconstruction, per_chunk,
                             ref.source_version, ref.signature)
        stored_pca = StoredReconstruction(reconstruction, per_chunk, ref.source_version, ref.signature)
    check_labels(config, ref)
    estimators = _fit_estimators(spark, config, ref, _joined(config, reference_rows, labels).twin if labels else None) \
        if estimation_enabled(config) else Estimators()
    if estimators.row_model is not None:
        sums, stats = _shared_label_pass(config, table, F.col(DATASET).isNotNull(), labels, slices,
                                         estimators.row_model, relation, reconstruction, parts)
    for cp in parts[ANALYSIS]:  # the analysis's reconstruction-error sums, as its profiling pass would hold them
        key = (cp.chunk.index, cp.slice_key, cp.slice_value, ANALYSIS)
        if key in sums:
            cp.sums = (cp.sums or {}) | sums[key]
    write_profiles(spark, profiles_table(config), config.monitor, REFERENCE, ref.chunks, config.profile.kll_k,
                   ref.source_version, ref.signature)
    analysis = ProfiledChunks(parts[ANALYSIS], chunks.null_timestamps, chunks.outside)
    result = ProfileResult(ANALYSIS, analysis, 0, source.version, time.monotonic() - started,
                           labels_version=labels.version if labels else None, schema=schema_of(source.df.schema),
                           label_stats=stats, null_timestamps=chunks.null_timestamps, outside=chunks.outside)
    ref.models = FittedModels(estimators, stored_pca, result)
    log.info("reference and analysis: profiled %d + %d chunks (%d + %d with slices), %d + %d rows, %d columns in one "
             "shared scan, in %.1fs (source version %d)", len(ref.chunks_of(WHOLE)), len(result.whole),
             len(ref.chunks), len(analysis), sum(c.row_count for c in ref.chunks_of(WHOLE)), result.row_count,
             len(config.monitored_columns()), result.seconds, source.version)
    return ref


def _shared_label_pass(config: MonitorConfig, table: DataFrame, keep: Column, labels: VersionedTable | None,
                       slices: dict[str, list[str]], model: RowModel | None, relation: RelationBins | None,
                       reconstruction: Reconstruction | None, parts: dict[str, list[ChunkProfile]],
                       ) -> tuple[dict[tuple, dict[str, float]], LabelStats | None]:
    """One aggregation over the rows of `table` that `keep` selects, per chunk x slice x dataset: with labels,
    the performance states (set on the chunks of `parts` it covers) with `model`'s outputs and `relation`'s
    residual sums; returns the reconstruction-error sums by (chunk index, slice key, slice value, dataset)
    and the label counts."""
    sums = reconstruction.sums() if reconstruction else {}
    found: dict[tuple, dict[str, float]] = {}
    stats = None
    log.info("fit: %s%s", "joining the labels" if labels is not None else "summing the reconstruction errors",
             " with the row model's outputs" if model is not None else "")
    if labels is not None:
        states, stats = _label_states(config, table, labels, slices, model, relation, sums, keep=keep, by=DATASET)
        for key, state in states.items():
            found[key] = {k: state.values.pop(k, 0.0) for k in sums}
        for name, chunks in parts.items():
            for cp in chunks:
                key = (cp.chunk.index, cp.slice_key, cp.slice_value, name)
                if key in states:
                    cp.performance = _with_ids(states[key], *(cp.id_range or ()))
    elif sums:
        rows = _chunked(config, table.where(keep), slices).groupBy(*GROUP, DATASET).agg(
            *[F.sum(e).alias(f"s{i}") for i, e in enumerate(sums.values())]).collect()
        found = {(int(r[GROUP[0]]), r[GROUP[1]], r[GROUP[2]], r[DATASET]): {k: float(r[f"s{i}"] or 0.0)
                                                                             for i, k in enumerate(sums)} for r in rows}
    return found, stats


def _reconstruction_settings(config: MonitorConfig) -> str:
    return json.dumps([config.reconstruction_columns(), config.multivariate.n_components,
                       config.drift.compatibility])


def _fit_reconstruction(spark: SparkSession, config: MonitorConfig, ref: FittedReference,
                        df: DataFrame) -> Reconstruction | None:
    """Fit the PCA of the reconstruction error on the reference rows (one aggregation); None when the
    stored fit was made on the same reference with the same settings (its sums are kept too)."""
    stored = read_reconstruction(read_estimators(spark, estimators_table(config), config.monitor))
    settings = _reconstruction_settings(config)
    if stored is not None and _current(stored, ref, settings):
        return None
    columns = config.reconstruction_columns()
    states = {c: rc.state for c, rc in ref.columns[WHOLE].items()}
    if config.drift.compatibility == NANNYML:  # NannyML infers the reconstruction's kinds from the types
        declared, columns = dict(columns), nannyml_kinds(columns, schema_of(df.schema))
        states |= continuous_states(df, [c for c, k in columns if k == CONTINUOUS and declared[c] != CONTINUOUS])
    model = fit_reconstruction(df, states, columns, config.multivariate.n_components, settings)
    log.info("reconstruction error: PCA of %d columns keeps %d components (%.1f%% of the variance)", len(columns),
             model.components, 100 * model.explained_variance)
    return model


def _fit_estimators(spark: SparkSession, config: MonitorConfig, ref: FittedReference,
                    joined: DataFrame) -> Estimators:
    """Fit and store the estimation models: the binary CBPE calibrator (applied to the score bins of the
    stored states), or the model the second label pass applies to every reference row (multiclass
    calibrators, DLE loss models)."""
    if config.problem_type == "regression":
        return Estimators(row_model=_fit_loss_models(spark, config, ref, joined))
    calibrators = _fit_calibrators(spark, config, ref, joined)
    if config.problem_type == "binary":
        return Estimators(calibrator=calibrators[classes(config)[0][0]])
    return Estimators(row_model=ClassCalibrators(tuple(classes(config)), tuple(calibrators.values())))


def _fit_calibrators(spark: SparkSession, config: MonitorConfig, ref: FittedReference,
                     joined: DataFrame) -> dict[str, Calibrator]:
    """Isotonic calibration of each class score (binary: the positive class) on the labelled reference
    rows of all chunks, one vs rest. Under `compatibility: nannyml` with `auto`, whether a class is
    calibrated is NannyML's decision on the labelled reference rows themselves (`_nannyml_decisions`)."""
    state = reference_state(ref.chunks_of(WHOLE))
    mode = config.estimation.calibration
    decided = _nannyml_decisions(config, joined) if mode == "auto" and config.drift.compatibility == NANNYML \
        else {}
    calibrators = {}
    for cls, _ in classes(config):
        pos, neg, sums = histograms(state, cls)
        chosen = mode if cls not in decided else "always" if decided[cls] else "never"
        calibrators[cls] = cal = fit_calibrator(pos, neg, sums, chosen)
        log.info("CBPE calibration of class %s (%s): %s (expected calibration error %s raw, %s calibrated on "
                 "held-out rows)", cls, mode, "applied" if cal.applied else "not applied", cal.ece_raw,
                 cal.ece_calibrated)
    write_calibrators(spark, estimators_table(config), config.monitor, calibrators, mode, ref.source_version,
                      ref.signature)
    return calibrators


def _nannyml_decisions(config: MonitorConfig, joined: DataFrame) -> dict[str, bool]:
    """Per class, NannyML's `needs_calibration` on the labelled reference rows with every class score, in
    prediction id order (NannyML takes the reference frame's order; its splits depend on it). The rows are
    collected: one label and one score per class each."""
    pairs = classes(config)
    order = config.source.id_column or config.source.timestamp_column
    rows = joined.where(F.col(LABELLED) & reduce(lambda a, b: a & b, [F.col(quote_part(c)).isNotNull()
                                                                       for _, c in pairs]))
    frame = rows.select(F.col(quote_part(order)).alias("_dl_order"), F.col(LABEL).cast("string").alias("y"),
                        *[F.col(quote_part(c)).cast("double").alias(f"p{i}") for i, (_, c) in enumerate(pairs)]
                        ).orderBy("_dl_order").toPandas()
    return {cls: needs_calibration((frame["y"] == str(cls)).to_numpy(float), frame[f"p{i}"].to_numpy(float))
            for i, (cls, _) in enumerate(pairs)}


def _fit_loss_models(spark: SparkSession, config: MonitorConfig, ref: FittedReference,
                     joined: DataFrame) -> LossModels:
    """DLE: train the loss models on a sample of the labelled reference rows and store them."""
    prediction = config.outputs.prediction
    labelled = joined.where(F.col(LABELLED) & F.col(quote_part(prediction)).isNotNull())
    available = sum(c.performance.get("n") for c in ref.chunks_of(WHOLE) if c.performance)
    cap = config.estimation.loss_model_rows
    if available > cap:
        labelled = labelled.sample(fraction=min(1.0, 1.1 * cap / available), seed=DLE_SEED).limit(cap)
    if not available:
        raise DataError(f"monitor '{config.monitor}': no labelled reference rows to train the DLE loss models on; "
                        "add labels for the reference period or set estimation.enabled: false")
    features = tuple((f.name, f.kind) for f in config.features)
    frame = labelled.select(*[F.col(quote_part(n)) for n, _ in features], F.col(quote_part(prediction)),
                            F.col(LABEL)).toPandas()
    models = fit_loss_models(frame, features, prediction, LABEL)
    write_loss_models(spark, estimators_table(config), config.monitor, models, ref.source_version, ref.signature)
    log.info("DLE: %d loss models trained on %d labelled reference rows", len(models.models), models.training_rows)
    return models


@dataclass(frozen=True)
class Estimators:
    """The stored estimation models a run uses: the binary CBPE calibrator (applied to the states) and
    the model applied to every row in the profiling pass (multiclass calibrators, DLE loss models)."""

    calibrator: Calibrator | None = None
    row_model: RowModel | None = None


@dataclass(frozen=True)
class FittedModels:
    """What a fit just stored besides the reference, kept in memory for the run that follows it in the
    same process (`run --fit`): the estimation models and the reconstruction PCA (None when off)."""

    estimators: Estimators
    reconstruction: StoredReconstruction | None
    analysis: ProfileResult | None = None  # the analysis chunks profiled by a shared scan, not yet stored


def _current(stored: StoredReconstruction, reference: FittedReference, settings: str) -> bool:
    """Whether a stored reconstruction fit was made on this reference with these settings."""
    return (stored.reference_version, stored.signature, stored.model.settings) == (
        reference.source_version, reference.signature, settings)


def load_reconstruction(config: MonitorConfig, reference: FittedReference,
                        stored: list) -> StoredReconstruction | None:
    """The stored reconstruction fit of this reference and settings; None when the monitor has it off."""
    if not config.reconstruction_columns():
        return None
    table = estimators_table(config)
    found = read_reconstruction(stored)
    if found is None or not _current(found, reference, _reconstruction_settings(config)):
        raise DataError(f"monitor '{config.monitor}' has no reconstruction-error PCA fitted with these settings in "
                        f"{table}; run `driftline fit --config ...` again (or set multivariate.enabled: false)")
    return found


def load_estimators(config: MonitorConfig, reference: FittedReference, rows: list) -> Estimators:
    """The estimation models of the stored estimator `rows` (monitoring/stores/estimators.py)."""
    if not estimation_enabled(config):
        return Estimators()
    table, stored = estimators_table(config), None
    if config.problem_type == "regression":
        found = read_loss_models(rows)
        if found is not None and found[1] == reference.signature:
            stored = Estimators(row_model=found[0])
    else:
        pairs = classes(config)
        cals = read_calibrators(rows, [c for c, _ in pairs], config.estimation.calibration, reference.signature)
        if cals is not None:
            stored = Estimators(calibrator=cals[pairs[0][0]]) if config.problem_type == "binary" else \
                Estimators(row_model=ClassCalibrators(tuple(pairs), tuple(cals[c] for c, _ in pairs)))
    if stored is None:
        kind = "DLE loss models" if config.problem_type == "regression" else "CBPE calibrators"
        raise DataError(f"monitor '{config.monitor}' has no {kind} fitted with these settings in {table}; "
                        "run `driftline fit --config ...` again")
    return stored


def load_reference(config: MonitorConfig, stored_profiles: StoredProfiles, stored: StoredReference) -> FittedReference:
    """The fitted reference from its stored chunk profiles and merged states; a clear error when there is
    none or it was fitted with other settings."""
    chunks = stored_profiles.chunks[REFERENCE]
    if not chunks or not stored.columns:
        raise DataError(f"monitor '{config.monitor}' has no reference in {reference_table(config)}; "
                        "run `driftline fit --config ...` first")
    if stored.signature != signature(config, REFERENCE):
        raise DataError(f"the stored reference of monitor '{config.monitor}' was fitted with other settings "
                        "(columns, chunking, slices, bins or reference window changed); run `driftline fit` again")
    return FittedReference(chunks, stored.columns, stored.source_version, stored.signature, stored.schema)


def run(spark: SparkSession, config: MonitorConfig, run_id: str | None = None,
        refresh: bool = False, fitted: FittedReference | None = None) -> RunResult:
    """Profile the analysis chunks, compare them with the reference, store the metrics (one log line per
    stage with its counts and time). When nothing the stored results depend on changed since the run
    that wrote them (monitoring/run_plan.py), they are returned without a scan. `fitted`: the reference
    `fit` just returned in this process (`run --fit`), used as it is instead of read back."""
    started = time.monotonic()
    plan = plan_run(spark, config, STATE_FORMAT, metrics_table(config))
    inputs = plan.inputs
    if not refresh and plan.unchanged:
        return _stored_run(spark, config, inputs, started)
    # one query reads the stored states: the profiles (the analysis's only when they may be reused), the
    # reference and the estimators, each unless `fit` handed it over
    exists = {t: inputs.version(t) is not None for t in STATE_TABLES}
    models = fitted.models if fitted is not None else None
    scanned = models.analysis if models is not None else None  # profiled by fit's shared scan
    datasets = ([] if fitted else [REFERENCE]) + ([] if refresh or scanned else [ANALYSIS])
    queries = {}
    if datasets and exists["profiles"]:
        # the analysis chunks' performance values stay in the table: read for the chunks whose results change
        queries["profiles"] = profiles_query(spark, profiles_table(config), config.monitor, datasets, light=(ANALYSIS,))
    if not fitted and exists["reference"]:
        queries["reference"] = reference_query(spark, reference_table(config), config.monitor)
    if models is None and exists["estimators"] and (estimation_enabled(config) or config.reconstruction_columns()):
        queries["estimators"] = estimators_query(spark, estimators_table(config), config.monitor)
    rows = collect_union(queries)
    stored_profiles = parse_profiles(rows.get("profiles", []), datasets) if datasets else None
    reference = fitted or load_reference(config, stored_profiles, parse_reference(rows.get("reference", [])))
    if models is not None:
        estimators, reconstruction = models.estimators, models.reconstruction
    else:
        estimator_rows = rows.get("estimators", [])
        estimators = load_estimators(config, reference, estimator_rows)
        reconstruction = load_reconstruction(config, reference, estimator_rows)
    relation = relation_bins(reference.columns.get(WHOLE, {}), config)
    edges, fine = bin_edges(reference.columns), fine_bins(reference.columns)
    log.info("stage 1/3 reference: %d chunks, %d slices, estimation models: %s; loaded in %.1fs",
             len(reference.chunks_of(WHOLE)), len(reference.slices()),
             "yes" if estimators.calibrator or estimators.row_model else "none", time.monotonic() - started)
    log.info("stage 2/3 %s the analysis rows of %s",
             "storing the shared scan's profiles of" if scanned else "profiling", config.source.table)
    # the domain classifier samples the reference rows too, which may live in a table of their own
    tables = open_tables(spark, config, REFERENCE if config.classifier_columns() else ANALYSIS, inputs)
    pca = reconstruction.model if reconstruction else None
    with recording(spark, inputs.marker(config.monitor)):  # its profiles commit: see monitoring/run_plan.py
        if scanned is not None:
            sig = signature(config, ANALYSIS, reference.slice_values(), estimators.row_model, pca, relation, edges,
                            fine)
            profiles = replace(scanned, rows_written=write_profiles(
                spark, profiles_table(config), config.monitor, ANALYSIS, scanned.chunks, config.profile.kll_k,
                scanned.source_version, sig))
        else:
            profiles = profile_dataset(spark, config, ANALYSIS, reference.slice_values(), refresh, estimators.row_model,
                                       pca, relation, stored_profiles, tables=tables, histograms=edges, fine=fine)
    started = time.monotonic()
    changes = schema_changes(reference.schema, profiles.schema) if reference.schema is not None else []
    null_timestamps, outside = (profiles.null_timestamps, profiles.outside) if profiles.null_timestamps is not None \
        else _unplaced(config, tables.source.df)
    if outside:
        log.warning("%d rows of %s have a %s outside %s: they belong to no chunk and are left out", outside,
                    config.source.table, config.source.timestamp_column, window_text(config.chunking))
    if null_timestamps:
        log.warning("%d rows of %s have a null %s: they belong to no chunk and are left out", null_timestamps,
                    config.source.table, config.source.timestamp_column)
    settings = compare_settings(config, reference.signature, reference.source_version, changes, null_timestamps,
                                outside)
    prints = fingerprints(profiles.chunks, settings)
    everything = [] if refresh else read_metrics(spark, metrics_table(config), config.monitor,
                                                 plan.metrics_version is not None).results
    stored = [r for r in everything if r.period == ANALYSIS]
    stale, kept = _stale_chunks(prints, stored)
    # the chunks compared and the one before each (CONSECUTIVE), per slice: their stored states are read whole
    compared = {key: with_predecessors([cp for cp in profiles.chunks if (cp.slice_key, cp.slice_value) == key], stale)
                for key in reference.slices()}
    load_states(spark, profiles_table(config), config.monitor, ANALYSIS, [cp for v in compared.values() for cp in v])
    results: list[MetricResult] = []
    columns = config.monitored_columns()
    # the reference chunks' drift rows, stored by a run with these inputs, are not computed again; when every
    # stored reference row has these inputs, the reference rows computed here equal them and are not written
    stored_reference = reference_rows(everything, columns, settings)
    reference_stored = stored_reference is not None
    stored_reference = stored_reference or {}
    for key in reference.slices():
        ref = reference.chunks_of(key)
        analysis = [cp for cp in compared[key] if cp.chunk.index in stale]
        drift = compare_slice(ref, compared[key], columns, reference.edges(key), config.drift,
                              stored_reference.get(key), fine)
        results += [r for r in drift if r.period == REFERENCE or r.chunk.index in stale]
        quality = quality_results(ref, analysis, config)
        if key == WHOLE:  # periods without rows: computed from the chunk indices, so rewritten every run
            quality += gap_results(config, ref, {cp.chunk.index for cp in profiles.whole})
        if reconstruction:
            quality += reconstruction_results(ref, analysis, reconstruction.reference_sums, reconstruction.model)
        apply_thresholds(quality, config.drift)
        results += quality
        if config.labels:
            realized = performance_results(ref, analysis, config)
            concept = relation_results(ref, analysis, relation) if relation else []
            if estimation_enabled(config):
                estimated = estimated_results(ref, analysis, config, estimators.calibrator, realized)
                concept += concept_results(realized + estimated)
                results += estimated
            apply_thresholds(concept, config.drift, lambda _: UNBOUNDED)  # gaps and z-scores: any sign
            results += realized + concept
    if config.classifier_columns():
        results += _domain_classifier(config, tables, reference, profiles, stale)
    newest = max(profiles.whole, key=lambda c: c.chunk.index, default=None)
    if changes and newest is not None and newest.chunk.index in stale:
        log.warning("the schema of %s changed since the fit: %s", config.source.table,
                    "; ".join(f"{c}: {what}" for c, what in changes))
        results += schema_results(changes, newest)
    notices = vanished_results(profiles.vanished, config, newest) if newest is not None else []
    if notices:
        log.warning("%s", notices[0].note)
    results += notices  # every run while the rows are gone: the newest chunk may be stored, not recomputed
    if newest is not None and newest.chunk.index in stale:
        results += null_timestamp_results(null_timestamps, config, newest)
        results += outside_window_results(outside, config, newest)
        results += reference_size_results(len(reference.chunks_of(WHOLE)), config, newest)
        results += guard_results(DECLARED_KIND, kind_problems(config, reference), newest)
        results += guard_results(EMPTY_REFERENCE_COLUMN, empty_columns(config, reference), newest)
    for r in results:  # gap rows have no profile: they depend on the settings only
        r.inputs = settings if r.period == REFERENCE else \
            prints.get((r.slice_key, r.slice_value, r.chunk.index, part_of(r.family)), settings)
    run_id = run_id or uuid.uuid4().hex
    # the write replaces the rows of recomputed or vanished chunks, and the reference rows unless the stored
    # ones stand (same inputs); kept rows stay
    vanished = {r.chunk.index for r in stored} - {k[2] for k in prints}
    written_rows = [r for r in results if r.period != REFERENCE] if reference_stored else results
    scope = MetricsScope(frozenset(stale | vanished), reference=not reference_stored) if stored else None
    if scope is not None:  # rows outside the scope (gap rows, computed every run) only when they changed
        before = {metric_key(r): r for r in stored}
        written_rows = [r for r in written_rows if scope.covers(r) or before.get(metric_key(r)) != r]
    failpoint(BEFORE_METRICS)
    written = 0
    if stale or vanished or notices or not stored:  # else every stored row stands: nothing to commit
        with recording(spark, inputs.marker(config.monitor)):
            written = write_metrics(spark, metrics_table(config), config.monitor, run_id, written_rows,
                                    profiles.source_version, scope)
    results += kept
    log.info("stage 3/3 compared %d of %d chunks x %d slices (kept the stored results of the others: same "
             "inputs), wrote %d metric rows to %s in %.1fs", len(stale), len(profiles.whole), len(reference.slices()),
             written, metrics_table(config), time.monotonic() - started)
    return RunResult(run_id, profiles, reference, results, profiles.label_stats, tuple(sorted(stale)))


def _stored_run(spark: SparkSession, config: MonitorConfig, inputs: RunInputs, started: float) -> RunResult:
    """The results stored by the last run, whose inputs are this run's: one read of the metrics table. Its
    reference and profiles hold the chunks the results name, with their row counts and no states (MLflow
    gets every metric of them but the profiles' means)."""
    found = read_metrics(spark, metrics_table(config), config.monitor, True)
    stored = found.results
    shells: dict[tuple[str, str, str, int], ChunkProfile] = {}
    for r in stored:
        shell = shells.setdefault((r.period, r.slice_key, r.slice_value, r.chunk.index),
                                  ChunkProfile(r.chunk, 0, slice_key=r.slice_key, slice_value=r.slice_value))
        shell.row_count = max(shell.row_count, r.row_count or 0)

    def chunks(period: str) -> list[ChunkProfile]:  # gap rows (periods without rows) name no chunk
        return [c for k, c in sorted(shells.items(), key=lambda kv: (kv[0][3], kv[0][1], kv[0][2]))
                if k[0] == period and c.row_count]

    ref = chunks(REFERENCE)
    reference = FittedReference(ref, {(c.slice_key, c.slice_value): {} for c in ref},
                                signature=signature(config, REFERENCE))
    analysis = chunks(ANALYSIS)
    profiles = ProfileResult(ANALYSIS, analysis, 0, inputs.version("source"), time.monotonic() - started,
                             reused=True, labels_version=inputs.version("labels"))
    log.info("nothing changed since the last run (source version %s, labels version %s, same settings and "
             "stored states): its %d stored results stand; read in %.1fs", inputs.version("source"),
             inputs.version("labels"), len(stored), time.monotonic() - started)
    return RunResult(uuid.uuid4().hex, profiles, reference, stored, relogged=found.latest)


def _unplaced(config: MonitorConfig, source: DataFrame) -> tuple[int, int]:
    """Rows of the source without a timestamp and rows with one outside the chunking's window, when no
    profiling pass of this run counted them: one aggregation over the rows Delta's per-file statistics
    cannot rule out (a null, or a value outside the window)."""
    ts = F.col(quote_part(config.source.timestamp_column))
    placed = in_window(config.chunking, ts)
    row = source.where(ts.isNull() | ~placed).agg(F.count(F.lit(1)).alias("n"), F.count(ts).alias("outside")).first()
    return int(row["n"]) - int(row["outside"]), int(row["outside"])


def _domain_classifier(config: MonitorConfig, tables: Tables, reference: FittedReference,
                       profiles: ProfileResult, stale: set[int]) -> list[MetricResult]:
    """The domain classifier's AUC of the whole-table analysis chunks in `stale`, from one sampling job
    over the reference and those chunks (their periods only, with period chunking)."""
    chunks = {c.chunk.index: (c.chunk, c.row_count) for c in profiles.whole if c.chunk.index in stale}
    if not chunks:
        return []
    log.info("domain classifier: sampling the reference and %d chunks, then %d cross-validated fits", len(chunks),
             len(chunks))
    started, src, settings = time.monotonic(), config.source, config.multivariate.classifier
    columns = config.classifier_columns()
    reference_rows = dataset_source(config, tables, REFERENCE).rows
    analysis = dataset_source(config, tables, ANALYSIS).rows
    if config.chunking.period:
        analysis = analysis.where(period_rows(config.chunking.period, sorted(chunks), src.timestamp_column))
    rows = sample(reference_rows, with_chunk_index(analysis, config.chunking, src.timestamp_column, src.id_column),
                  {i: n for i, (_, n) in chunks.items()}, sum(c.row_count for c in reference.chunks_of(WHOLE)),
                  columns, src.id_column, settings.sample_rows)
    results = classifier_results(rows, chunks, columns, settings.folds)
    apply_thresholds(results, config.drift)
    log.info("domain classifier: %d chunks, %d sampled rows, %d-fold AUC in %.1fs", len(chunks), len(rows),
             settings.folds, time.monotonic() - started)
    return results


def _stale_chunks(prints: dict[tuple[str, str, int, str], str],
                  stored: list[MetricResult]) -> tuple[set[int], list[MetricResult]]:
    """The chunk indices whose results must be computed (in some slice a fingerprint of their inputs
    differs from the stored rows', or they have no stored rows), and the stored results of the others."""
    stored_prints: dict[tuple[str, str, int, str], set[str | None]] = {}
    for r in stored:
        stored_prints.setdefault((r.slice_key, r.slice_value, r.chunk.index, part_of(r.family)), set()).add(r.inputs)
    current = {k[2] for k in prints}
    stale = {k[2] for k, fp in prints.items() if stored_prints.get(k) != {fp}}
    stale |= {k[2] for k in stored_prints if k not in prints and k[2] in current}
    kept = [r for r in stored if r.chunk.index not in stale and r.chunk.index in current]
    return stale, kept
