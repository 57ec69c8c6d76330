"""The profiling pass launches a fixed number of Spark jobs, whatever the number of columns or chunks.

Counted from the Spark UI REST API (the jobs the application really ran), not from the code.
"""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pandas as pd

from monitoring.chunking import with_chunk_index
from monitoring.config import Chunking, Period
from monitoring.profiling import profile_chunks
from monitoring.slices import with_slices


def _jobs_in_group(spark, group: str) -> int:
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/jobs"
    with urllib.request.urlopen(url, timeout=30) as resp:
        jobs = json.load(resp)
    return sum(1 for j in jobs if j.get("jobGroup") == group)


def _profile_jobs(spark, df, columns, days: int, group: str) -> int:
    chunking = Chunking(period=Period(1, "d"))
    chunked = with_slices(with_chunk_index(df, chunking, "ts", "id"), {})
    spark.sparkContext.setJobGroup(group, group)
    try:
        chunks = profile_chunks(chunked, columns, chunking, "ts", 200, 20)
    finally:
        spark.sparkContext.setJobGroup("", "")
    assert len(chunks) == days and all(len(c.columns) == len(columns) for c in chunks)
    return _jobs_in_group(spark, group)


def test_job_count_independent_of_columns_and_chunks(spark):
    rng = np.random.default_rng(0)
    n = 20_000
    pdf = pd.DataFrame({"id": np.arange(n)})
    for i in range(12):
        pdf[f"x{i}"] = rng.normal(size=n)
    for i in range(4):
        pdf[f"c{i}"] = rng.choice(list("abcdef"), n)
    df = spark.createDataFrame(pdf)

    def with_days(days: int):
        return df.selectExpr("*", f"timestamp_seconds(1735689600 + (id % {days}) * 86400 + id % 1000) AS ts")

    small = _profile_jobs(spark, with_days(2), [("x0", "continuous"), ("c0", "categorical")], 2, "few")
    many_cols = [(f"x{i}", "continuous") for i in range(12)] + [(f"c{i}", "categorical") for i in range(4)]
    large = _profile_jobs(spark, with_days(9), many_cols, 9, "many")
    assert small >= 1
    assert large == small, f"{small} jobs for 2 columns x 2 chunks but {large} for 16 columns x 9 chunks"


def test_moments_of_many_columns_are_stacked_and_exact(spark):
    """40 continuous columns pass spark.sql.codegen.maxFields: their moments are aggregated in stacked groups
    of columns (one row per group), and every count and moment still matches numpy on the same rows
    (mean and m2 to 1e-9 relative, counts exactly), including a column far from zero and null, NaN and inf."""
    from monitoring.profiling import SlotLayout

    NAN_MARK = -12345.5
    rng = np.random.default_rng(3)
    n, width = 3_000, 40
    pdf = pd.DataFrame({"id": np.arange(n)})
    for i in range(width):
        x = rng.normal(loc=1e6 if i == 7 else i, scale=1 + i, size=n)
        x[rng.random(n) < 0.05] = np.nan
        x[rng.random(n) < 0.01] = np.inf
        pdf[f"x{i}"] = np.where(np.isnan(x), NAN_MARK, x)  # pandas' NaN would reach Spark as null
    nulls = rng.random((n, width)) < 0.03
    df = spark.createDataFrame(pdf).selectExpr(
        "id", "timestamp_seconds(1735689600 + id) AS ts",
        *[f"CASE WHEN id IN ({','.join(map(str, np.flatnonzero(nulls[:, i]).tolist()))}) THEN NULL "
          f"WHEN x{i} = {NAN_MARK} THEN CAST('NaN' AS DOUBLE) ELSE x{i} END AS x{i}"
          for i in range(width)])
    chunking = Chunking(size=1_000)
    chunks = profile_chunks(with_slices(with_chunk_index(df, chunking, "ts", "id"), {}),
                            [(f"x{i}", "continuous") for i in range(width)], chunking, "ts", 200, 20)
    assert SlotLayout.fit(width, 8, int(spark.conf.get("spark.sql.codegen.maxFields"))).groups > 1
    assert [c.row_count for c in chunks] == [1_000] * 3
    for k, chunk in enumerate(chunks):
        rows = slice(k * 1_000, (k + 1) * 1_000)
        for i in range(width):
            x, null = pdf[f"x{i}"].replace(NAN_MARK, np.nan).to_numpy()[rows], nulls[rows, i]
            finite = x[~null & np.isfinite(x)]
            p = chunk.columns[f"x{i}"]
            assert (p.null_count, p.nan_count, p.inf_count, p.valid_count) == (
                int(null.sum()), int(np.isnan(x[~null]).sum()), int(np.isinf(x[~null]).sum()), finite.size), f"x{i}"
            assert abs(p.mean - finite.mean()) <= 1e-9 * abs(finite.mean()) + 1e-12, f"x{i}"
            m2 = ((finite - finite.mean()) ** 2).sum()
            assert abs(p.m2 - m2) <= 1e-9 * m2, f"x{i}"
