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
