"""Incremental profiling: after the source table changed, re-profile only the chunks whose rows changed.

1. Since when: the stored profiles of a dataset are consistent with the source version of their newest
   rows (every run writes at least the open chunk at the version it read), so `since` is that version.
2. What changed: the rows inserted, updated or deleted in versions (since, now], read from the source
   table's change data feed (only the new commits' files); their timestamps give the period chunks
   they belong to (an update's pre-image marks the chunk a row left).
3. Plus the open chunk: the newest stored chunk, whose period may still be filling.
4. Everything else is reused from `profiles`. Every chunk is recomputed instead (with the reason) when
   there is no change data feed covering the versions, or when chunks are size or count chunks (a
   row added anywhere moves every later chunk boundary). See docs/incremental.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from monitoring.backfill import CHANGE_FEED
from monitoring.chunking import in_window, period_index
from monitoring.config import MonitorConfig
from monitoring.profiling import ChunkProfile
from monitoring.slices import WHOLE
from monitoring.stores.tables import change_feed, collect_union, first_line, quote_part


@dataclass(frozen=True)
class Increment:
    """What one run re-profiled because the source table changed."""

    since: int  # source version the stored profiles reflect
    until: int  # source version now
    chunks: tuple[int, ...] | None  # chunk indices re-profiled; None: every chunk (see reason)
    changed_rows: int | None  # change-feed rows (inserts, deletes, update pre- and post-images)
    reason: str  # CHANGE_FEED, or why every chunk was recomputed
    changed_ids: tuple | None = None  # (lowest, highest) id among the changed rows; None: no such row
    also: dict[str, list[dict]] = field(default_factory=dict, compare=False, repr=False)  # plan_increment(also=)


def plan_increment(spark: SparkSession, config: MonitorConfig, table: str, stored: list[ChunkProfile],
                   since: int, until: int, also: dict[str, DataFrame] | None = None) -> Increment:
    """The chunks of `stored` (profiles of table version `since`) to re-profile at version `until`. `also`:
    small frames collected by the same query (the label change feed's), their rows in `Increment.also`
    (empty when that query failed: the caller reads them on its own)."""
    period = config.chunking.period
    if period is None:
        return Increment(since, until, None, None, "size and count chunks are numbered over the whole table")
    ts, ids = F.col(quote_part(config.source.timestamp_column)), F.col(quote_part(config.source.id_column))
    try:
        changes = change_feed(spark, table, since, until).where(in_window(config.chunking, ts))
        counted = changes.groupBy(period_index(period, ts).alias("chunk")).agg(
            F.count(F.lit(1)).alias("n"), F.min(ids).alias("lo"), F.max(ids).alias("hi"))
        found = _collect(counted, also or {})
    except Exception as exc:  # noqa: BLE001 - any failure of the feed (none, a retyped or restored table): recompute
        first = first_line(exc, 200)
        return Increment(since, until, None, None,
                         f"the change data feed of {table} for versions {since + 1}..{until} cannot say which rows "
                         f"changed ({first}); if the table has none, set the table property "
                         "delta.enableChangeDataFeed = true so later runs re-profile only new chunks")
    rows = found.pop(_CHANGES)
    counts = {int(r["chunk"]): int(r["n"]) for r in rows}
    lows, highs = [r["lo"] for r in rows if r["lo"] is not None], [r["hi"] for r in rows if r["hi"] is not None]
    whole = [c.chunk.index for c in stored if (c.slice_key, c.slice_value) == WHOLE]
    open_chunk = {max(whole)} if whole else set()
    return Increment(since, until, tuple(sorted(set(counts) | open_chunk)), sum(counts.values()), CHANGE_FEED,
                     (min(lows), max(highs)) if lows else None, found)


_CHANGES = "_dl_changes"


def _collect(changes: DataFrame, also: dict[str, DataFrame]) -> dict[str, list[dict]]:
    """The rows of `changes` and of `also`, from one query; when that query fails with `also`, the rows of
    `changes` alone (and none of `also`), so a failure of another feed does not pass for this one's."""
    if also:
        try:
            return collect_union({_CHANGES: changes} | also)
        except Exception:  # noqa: BLE001 - retried without `also` below; its own failure is the caller's
            pass
    return {_CHANGES: [r.asDict() for r in changes.collect()]}
