"""Label backfill: when labels land, recompute the performance states of only the chunks they belong to.

1. What changed: the ids of label rows inserted, updated or deleted since the label table version the
   stored states were computed at, read from the label table's change data feed (only the new commits'
   files). Without a change data feed (not enabled, or enabled after that version) every chunk is
   recomputed; the feature profiles are reused either way.
2. Which chunks: a changed id falls inside a chunk's stored id range [id_min, id_max]. Ranges are exact
   min/max, so no affected chunk is missed; when ids are not ordered in time (random ids) ranges
   overlap and more chunks than needed are recomputed.
3. Recompute: the source rows of those chunks only (a time filter per period chunk, which Delta's file
   statistics turn into skipped files when the table is laid out in time order, as appended prediction
   logs are), joined to the labels within their id ranges. Size and count chunks are numbered over the
   whole table, so for them every chunk is recomputed.
See docs/labels.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from monitoring.config import Labels, MonitorConfig
from monitoring.labels import LabelStats
from monitoring.profiling import ChunkProfile
from monitoring.slices import WHOLE
from monitoring.stores.tables import change_feed, first_line, quote_part

CHANGE_FEED = "change data feed"


@dataclass(frozen=True)
class Backfill:
    """What one run recomputed because labels landed."""

    since: int | None  # label table version of the stored states (None: unknown)
    until: int  # label table version now
    chunks: tuple[int, ...]  # chunk indices recomputed
    changed_ids: int | None  # distinct ids with label changes (None without a change data feed)
    reason: str  # CHANGE_FEED, or why every chunk was recomputed
    label_stats: LabelStats | None = None  # the label counts of the backfill's label join


def stored_labels_version(chunks: list[ChunkProfile]) -> int | None:
    """The label version the stored whole-table performance states are consistent with: the newest one
    among them (None if any lacks one). Every write of performance states at label version L covers
    every chunk whose labels changed up to L, so chunks written earlier had no label change since."""
    versions = [c.performance.labels_version if c.performance else None for c in chunks
                if (c.slice_key, c.slice_value) == WHOLE]
    return None if not versions or None in versions else max(versions)


@dataclass(frozen=True)
class LabelChanges:
    """Changed label ids per stored chunk (`changed_ids_query`, read by another query of the run: the
    source's change feed), for label table versions `since` -> `until`."""

    since: int
    until: int
    counts: dict[int | None, int]


def changed_ids_query(spark: SparkSession, config: MonitorConfig, chunks: list[ChunkProfile], id_type: str,
                      since: int | None, until: int) -> DataFrame | None:
    """The query `plan_backfill` runs for `chunks` (rows: chunk, n), None when it runs none."""
    if since is None or since >= until or not config.chunking.period:
        return None
    ranges = _ranges(chunks)
    changed = _changed_ids(spark, config.labels, since, until)
    if not ranges:
        return changed.agg(F.count(F.lit(1)).alias("n")).select(F.lit(None).cast("long").alias("chunk"), "n")
    return _ids_per_chunk(spark, changed, ranges, id_type)


def plan_backfill(spark: SparkSession, config: MonitorConfig, chunks: list[ChunkProfile], id_type: str,
                  since: int | None, until: int, known: LabelChanges | None = None) -> Backfill:
    """The chunks whose performance states must be recomputed, label table version `since` -> `until`.
    `known`: the changed ids per chunk of these versions, already read (for these chunks or more)."""
    whole = sorted(c.chunk.index for c in chunks if (c.slice_key, c.slice_value) == WHOLE)
    if since is None or since > until:
        return Backfill(since, until, tuple(whole), None, "no label version stored with the states")
    if not config.chunking.period:
        return Backfill(since, until, tuple(whole), None, "size and count chunks are numbered over the whole table")
    if known is not None and (known.since, known.until) == (since, until):
        counts = known.counts
    else:
        try:
            query = changed_ids_query(spark, config, chunks, id_type, since, until)
            counts = {r["chunk"]: int(r["n"]) for r in query.collect()} if query is not None else {}
        except Exception as exc:  # noqa: BLE001 - any failure of the feed (none, a retyped or restored table)
            first = first_line(exc, 200)
            return Backfill(since, until, tuple(whole), None,
                            f"the change data feed of {config.labels.table} cannot say which labels changed ({first}); "
                            "if the table has none, set the table property delta.enableChangeDataFeed = true so "
                            "later runs recompute only the chunks that got labels")
    total = sum(counts.values())
    ours = {i for i, _, _ in _ranges(chunks)}
    return Backfill(since, until, tuple(sorted(k for k in counts if k is not None and k in ours)), total, CHANGE_FEED)


def _ranges(chunks: list[ChunkProfile]) -> list[tuple[int, str, str]]:
    return [(c.chunk.index, c.performance.id_min, c.performance.id_max) for c in chunks
            if (c.slice_key, c.slice_value) == WHOLE and c.performance and c.performance.id_min is not None]


def _changed_ids(spark: SparkSession, cfg: Labels, since: int, until: int) -> DataFrame:
    ids = change_feed(spark, cfg.table, since, until).select(F.col(quote_part(cfg.id_column)).alias("_dl_id"))
    return ids.where(F.col("_dl_id").isNotNull()).distinct()


def _ids_per_chunk(spark: SparkSession, changed: DataFrame, ranges: list[tuple[int, str, str]],
                   id_type: str) -> DataFrame:
    """Distinct changed ids (`changed` holds each once) per chunk whose id range holds them (chunk null: ids
    in no chunk); a small query. The bounds are cast to the id type once, not once per id and chunk."""
    bounds = spark.createDataFrame(ranges, "chunk long, lo string, hi string").select(
        "chunk", F.col("lo").cast(id_type).alias("lo"), F.col("hi").cast(id_type).alias("hi"))
    inside = (F.col("_dl_id") >= F.col("lo")) & (F.col("_dl_id") <= F.col("hi"))
    return changed.join(F.broadcast(bounds), inside, "left").groupBy("chunk").agg(F.count(F.lit(1)).alias("n"))


def label_rows(chunks: list[ChunkProfile], cfg: Labels, id_type: str) -> Column:
    """Label rows whose id lies in the id range of one of the given chunks."""
    lid = F.col(quote_part(cfg.id_column))
    cond = F.lit(False)
    for c in chunks:
        p = c.performance
        if p is not None and p.id_min is not None:
            cond = cond | ((lid >= F.lit(p.id_min).cast(id_type)) & (lid <= F.lit(p.id_max).cast(id_type)))
    return cond
