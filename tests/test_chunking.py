"""Chunk keys against independent computations (Python datetime, numpy lexsort)."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from monitoring.chunking import CHUNK_COL, period_bounds, period_chunk, with_chunk_index
from monitoring.config import Chunking, Period


@pytest.mark.parametrize("text,ts,start,end", [
    ("1mo", "2025-03-15T10:00:00", "2025-03-01", "2025-04-01"),
    ("3mo", "2025-05-31T23:59:59", "2025-04-01", "2025-07-01"),
    ("1q", "2025-12-31T23:00:00", "2025-10-01", "2026-01-01"),
    ("1y", "2024-02-29T00:00:00", "2024-01-01", "2025-01-01"),
    ("1w", "2025-01-01T12:00:00", "2024-12-30", "2025-01-06"),  # a Wednesday; weeks start on Monday
    ("1d", "2025-01-01T00:00:00", "2025-01-01", "2025-01-02"),
    ("6h", "2025-01-01T13:00:00", "2025-01-01T12:00:00", "2025-01-01T18:00:00"),
])
def test_period_index_and_bounds(spark, text, ts, start, end):
    period = Period.parse(text, "chunking.period")
    df = spark.createDataFrame(pd.DataFrame({"id": [1], "ts": [pd.Timestamp(ts)]}))
    index = with_chunk_index(df, Chunking(period=period), "ts", "id").collect()[0][CHUNK_COL]
    utc = timezone.utc
    assert period_bounds(period, index) == (datetime.fromisoformat(start).replace(tzinfo=utc),
                                            datetime.fromisoformat(end).replace(tzinfo=utc))
    assert period_chunk(period, index).start.isoformat().startswith(start[:10])


@pytest.mark.parametrize("chunking,expected_chunks", [
    (Chunking(size=700), 15), (Chunking(size=700, incomplete="drop"), 14),
    (Chunking(size=700, incomplete="append"), 14), (Chunking(size=20_000, incomplete="append"), 1),
    (Chunking(count=4), 4), (Chunking(count=3, incomplete="append"), 3)])
def test_size_and_count_chunks_follow_timestamp_then_id(spark, chunking, expected_chunks):
    rng = np.random.default_rng(3)
    n = 10_000
    # many ties on the timestamp, over several days
    ts = pd.to_datetime(1_735_689_600 + rng.integers(0, 5, n) * 86400 + rng.integers(0, 3, n), unit="s")
    ids = rng.permutation(n)
    df = spark.createDataFrame(pd.DataFrame({"id": ids, "ts": ts}))
    got = with_chunk_index(df, chunking, "ts", "id").toPandas()
    order = np.lexsort((ids, ts.values))
    if chunking.size:
        size = chunking.size
    else:  # NannyML's CountBasedChunker rounds down and appends the remainder
        size = n // chunking.count if chunking.incomplete == "append" else int(np.ceil(n / chunking.count))
    expected = pd.Series(np.arange(n) // size, index=ids[order])
    if chunking.incomplete == "drop":
        expected = expected[expected < n // size]
    elif chunking.incomplete == "append":  # NannyML's SizeBasedChunker: the remainder joins the last full chunk
        expected = expected.clip(upper=max(n // size - 1, 0))
    got = got.set_index("id")[CHUNK_COL]
    assert len(got) == len(expected)
    assert (got.loc[expected.index].values == expected.values).all()
    assert got.nunique() == expected_chunks
