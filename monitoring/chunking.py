"""Chunk keys as Spark expressions, and chunk metadata.

Period chunks are calendar periods in UTC, identified by their ordinal since 1970-01-01 (so the index
of a chunk never changes when data is added). Size and count chunks follow the order
(timestamp, id) over the rows being chunked; see docs/chunking.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from monitoring.config import Chunking, Period
from monitoring.stores.tables import quote_part

CHUNK_COL = "_dl_chunk"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SECONDS = {"h": 3600, "d": 86400, "w": 7 * 86400}
_MONTHS = {"mo": 1, "q": 3, "y": 12}
_MONDAY_OFFSET = 4 * 86400  # 1970-01-05 was a Monday


@dataclass(frozen=True)
class ChunkInfo:
    """One chunk: its stable index, a readable key and its time bounds ([start, end) for periods)."""

    index: int
    key: str
    start: datetime
    end: datetime


def utc_from_micros(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1e6, tz=timezone.utc)


LAST_VALID = datetime(9000, 1, 1, tzinfo=timezone.utc)  # far below datetime's year 9999, for every period's end


def ahead(start: datetime, period: Period) -> datetime:
    """`start` plus one `period` (calendar months for mo, q, y)."""
    if period.unit in _SECONDS:
        return start + timedelta(seconds=_SECONDS[period.unit] * period.count)
    m = start.year * 12 + start.month - 1 + _MONTHS[period.unit] * period.count
    year, month = divmod(m, 12)
    if year > LAST_VALID.year:
        return LAST_VALID
    day = min(start.day, 28)  # a valid day in every month: the window's end moves by days at most
    return start.replace(year=year, month=month + 1, day=day)


def timestamp_window(chunking: Chunking, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[first, end) of the timestamps that belong to a chunk: `chunking.valid_from` to the run's time plus
    `chunking.max_ahead` (at most LAST_VALID). A row outside it (a default date such as 9999-12-31, a
    clock set to 2999) is in no chunk and counted as a data-quality result (docs/chunking.md)."""
    now = now or datetime.now(timezone.utc)
    tomorrow = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)  # one literal a day
    return chunking.valid_from, min(ahead(tomorrow, chunking.max_ahead), LAST_VALID)


def window_text(chunking: Chunking) -> str:
    first, end = timestamp_window(chunking)
    return f"[{first:%Y-%m-%d}, {end:%Y-%m-%d}) (chunking.valid_from, chunking.max_ahead {chunking.max_ahead})"


def in_window(chunking: Chunking, ts: Column) -> Column:
    """True for a timestamp inside `timestamp_window` (null for a null timestamp)."""
    first, end = timestamp_window(chunking)
    ts = ts.cast("timestamp")
    return (ts >= F.lit(first)) & (ts < F.lit(end))


def period_index(period: Period, ts: Column) -> Column:
    """Ordinal of the period holding `ts` (a timestamp column), counted from 1970-01-01 UTC."""
    if period.unit in _SECONDS:
        seconds = F.unix_seconds(ts.cast("timestamp"))
        if period.unit == "w":
            seconds = seconds - F.lit(_MONDAY_OFFSET)
        return F.floor(seconds / F.lit(_SECONDS[period.unit] * period.count)).cast("long")
    months = (F.year(ts) - 1970) * 12 + F.month(ts) - 1
    return F.floor(months / F.lit(_MONTHS[period.unit] * period.count)).cast("long")


def period_bounds(period: Period, index: int) -> tuple[datetime, datetime]:
    """[start, end) of period number `index`."""
    if period.unit in _SECONDS:
        step = _SECONDS[period.unit] * period.count
        offset = _MONDAY_OFFSET if period.unit == "w" else 0
        start = EPOCH + timedelta(seconds=index * step + offset)
        return start, start + timedelta(seconds=step)
    months = _MONTHS[period.unit] * period.count

    def month_start(m: int) -> datetime:
        return datetime(1970 + m // 12, m % 12 + 1, 1, tzinfo=timezone.utc)

    return month_start(index * months), month_start((index + 1) * months)


def period_key(period: Period, start: datetime) -> str:
    if period.unit == "h":
        return start.strftime("%Y-%m-%dT%H:00")
    if period.unit in ("d", "w"):
        return start.strftime("%Y-%m-%d")
    return start.strftime("%Y-%m")


def period_chunk(period: Period, index: int) -> ChunkInfo:
    start, end = period_bounds(period, index)
    return ChunkInfo(index, period_key(period, start), start, end)


def period_rows(period: Period, indices: list[int], ts_col: str) -> Column:
    """Rows inside the given period chunks: one [start, end) range per run of consecutive indices, so
    Delta's file statistics skip the files of every other chunk."""
    ts = F.col(quote_part(ts_col))
    cond, runs = F.lit(False), []
    for i in sorted(set(indices)):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    for first, last in runs:
        cond = cond | ((ts >= F.lit(period_bounds(period, first)[0])) & (ts < F.lit(period_bounds(period, last)[1])))
    return cond


def with_chunk_index(df: DataFrame, chunking: Chunking, ts_col: str, id_col: str,
                     keep_null_ts: bool = False) -> DataFrame:
    """`df` with the chunk index in column CHUNK_COL; rows with a null timestamp or one outside
    `timestamp_window` are left out (with `keep_null_ts` and period chunking they stay, with a null chunk
    index, for the profiling pass to count).

    Period chunks need no extra pass. Size and count chunks need the row count per day first (one
    small aggregation), then a window per day gives every row its global position in
    (timestamp, id) order. The rows of an incomplete last chunk are dropped with `incomplete: drop` and
    join the chunk before them with `incomplete: append` (NannyML's; with no complete chunk they stay one
    chunk of their own).
    """
    placed = in_window(chunking, F.col(ts_col))
    if chunking.period:
        rows = df if keep_null_ts else df.where(placed)
        return rows.withColumn(CHUNK_COL, F.when(placed, period_index(chunking.period, F.col(ts_col))))
    df = df.where(placed)
    day = F.floor(F.unix_seconds(F.col(ts_col).cast("timestamp")) / 86400).cast("long")
    counts = sorted((r[0], r[1]) for r in df.groupBy(day.alias("d")).count().collect())
    total = sum(c for _, c in counts)
    count = max(chunking.count or 1, 1)
    # `count` chunks: of ceil(total / count) rows, the last one smaller; with `append` (NannyML's
    # CountBasedChunker) of floor(total / count) rows, the remainder in the last: `count` chunks either way
    size = chunking.size or max(1, total // count if chunking.incomplete == "append" else math.ceil(total / count))
    offsets, running = {}, 0
    for d, c in counts:
        offsets[d], running = running, running + c
    if not offsets:
        return df.withColumn(CHUNK_COL, F.lit(None).cast("long"))
    offset_map = F.create_map(*[F.lit(x) for kv in offsets.items() for x in kv])
    window = Window.partitionBy(day).orderBy(F.col(ts_col), F.col(id_col))
    position = offset_map[day] + F.row_number().over(window) - 1
    out = df.withColumn(CHUNK_COL, F.floor(position / F.lit(size)).cast("long"))
    full = total // size
    if chunking.incomplete == "drop" and total % size:
        out = out.where(F.col(CHUNK_COL) < F.lit(full))
    elif chunking.incomplete == "append" and total % size and full:
        out = out.withColumn(CHUNK_COL, F.least(F.col(CHUNK_COL), F.lit(full - 1)))
    return out
