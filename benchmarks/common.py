"""What the benchmark data generators share: a year of timestamps in append (id) order."""

from __future__ import annotations

YEAR_START = 1_735_689_600  # 2025-01-01 UTC


def year_timestamps(rows: int):
    """Row `id` of `rows` spread over 2025 in id order, as a timestamp column."""
    from pyspark.sql import functions as F

    return F.timestamp_seconds(F.lit(YEAR_START) + (F.col("id") + F.rand(1)) * (365 * 86400 / rows))
