"""Odd data the job meets unattended: each case asserts the message or the recorded degradation, and
that a rejected run leaves no table behind.

Five daily chunks (days 0-2 the reference) of one monitor whose column names hold spaces, dots, quotes,
backticks and non-ASCII letters; the same rows under plain names must give exactly the same results. In
it: a constant column that jumps below its reference value on day 4, a column that is all null on day 4.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from monitoring.errors import ConfigError, DataError
from monitoring.pipeline import fit, run
from monitoring.slices import WHOLE

from ..helpers import make_config, write_delta

DAYS, PER_DAY, REFERENCE = 5, 400, {"start": "2025-01-01", "end": "2025-01-04"}
ODD = {"x": "my col.x", "c": "naïve `cat` 'q\"", "k": "const value", "z": "âge"}


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(23)
    day = np.repeat(np.arange(DAYS), PER_DAY)
    n = len(day)
    micros = ((1735689600 + day * 86400 + rng.random(n) * 86000) * 1e6).astype("int64")
    z = rng.normal(40, 10, n)
    z[day == 4] = np.nan
    return pd.DataFrame({"id": np.arange(n), "ts": pd.to_datetime(micros, unit="us", utc=True),
                         "x": rng.normal(0, 1, n), "c": rng.choice(["a", "b", "c"], n),
                         "k": np.where(day == 4, 0.0, 1.0), "z": z, "score": rng.random(n)})


def _monitor(spark, root, frame: pd.DataFrame, names: dict[str, str]):
    table = str(root / "preds")
    # Delta keeps spaces and the like in column names only with column mapping
    (spark.createDataFrame(frame.rename(columns=names)).write.format("delta")
     .option("delta.columnMapping.mode", "name").option("delta.minReaderVersion", "2")
     .option("delta.minWriterVersion", "5").save(table))
    kinds = {"x": "continuous", "c": "categorical", "k": "continuous", "z": "continuous"}
    config = make_config(table, [(names.get(c, c), kind) for c, kind in kinds.items()], str(root / "out"),
                         reference=REFERENCE)
    fit(spark, config)
    return run(spark, config)


@pytest.fixture(scope="module")
def odd_and_plain(spark, tmp_path_factory):
    frame = _frame()
    odd = _monitor(spark, tmp_path_factory.mktemp("odd"), frame, ODD)
    plain = _monitor(spark, tmp_path_factory.mktemp("plain"), frame, {})
    return odd, plain


def _values(result, rename: dict[str, str] | None = None) -> dict[tuple, float | None]:
    back = {v: k for k, v in (rename or {}).items()}
    return {(r.period, r.chunk.index, back.get(r.column, r.column), r.family, r.metric, r.comparison): r.value
            for r in result.metrics if (r.slice_key, r.slice_value) == WHOLE}


def test_odd_column_names_give_the_same_results(odd_and_plain):
    odd, plain = odd_and_plain
    assert {r.column for r in odd.metrics} >= set(ODD.values())
    assert _values(odd, ODD) == _values(plain)


def _day(result, column: str, metric: str, day: int, comparison: str = "BASELINE"):
    (row,) = [r for r in result.metrics if (r.column, r.metric, r.comparison, r.period, r.slice_key) ==
              (column, metric, comparison, "analysis", "") and r.chunk.index - 20089 == day]
    return row


def test_constant_column_moving_below_its_value_alerts(odd_and_plain):
    _, plain = odd_and_plain
    same, moved = _day(plain, "k", "jensen_shannon", 3), _day(plain, "k", "jensen_shannon", 4)
    assert same.value == pytest.approx(0.0, abs=1e-12) and not same.alert
    assert moved.value == pytest.approx(1.0) and moved.alert
    assert _day(plain, "k", "kolmogorov_smirnov", 4).value == pytest.approx(1.0)


def test_all_null_column_in_a_chunk_is_reported_not_compared(odd_and_plain):
    _, plain = odd_and_plain
    missing = _day(plain, "z", "missing_rate", 4, "NONE")
    assert missing.value == 1.0 and missing.alert and missing.family == "data_quality"
    assert not [r for r in plain.metrics if r.column == "z" and r.family == "drift" and r.comparison == "BASELINE"
                and r.period == "analysis" and r.chunk.index - 20089 == 4]  # nothing to compare: no value
    profile = next(cp for cp in plain.profiles.whole if cp.chunk.index - 20089 == 4).columns["z"]
    assert (profile.row_count, profile.null_count + profile.nan_count, profile.valid_count) == (PER_DAY, PER_DAY, 0)


def test_a_million_distinct_categories_are_capped_and_counted(spark, tmp_path):
    n = 1_000_000
    df = (spark.range(n).withColumn("ts", F.timestamp_seconds(F.lit(1735689600) + F.col("id") % 3 * 86400 + 5))
          .withColumn("user", F.concat(F.lit("u"), F.col("id").cast("string"))).withColumn("score", F.rand(1)))
    df.write.format("delta").save(str(tmp_path / "preds"))
    config = make_config(str(tmp_path / "preds"), [("user", "categorical")], str(tmp_path / "out"),
                         reference={"start": "2025-01-01", "end": "2025-01-03"}, multivariate={"enabled": False},
                         profile={"top_n": 50})
    ref = fit(spark, config)
    state = ref.columns[WHOLE]["user"].state
    assert len(state.categories) == 50 and state.valid_count == 2 * n // 3 + 1
    assert sum(state.categories.values()) + state.other_count == state.valid_count
    # the HLL estimate (lg_k 12: 1.6% relative standard error), within 3.5 standard errors
    assert state.distinct_count == pytest.approx(state.valid_count, rel=0.056)
    result = run(spark, config)
    # every analysis user is new, but a reference cut to its top 50 cannot tell: no value rather than ~0
    unseen = _day(result, "user", "unseen", 2)
    assert unseen.value is None and not unseen.alert
    chunk = next(cp for cp in result.profiles.whole if cp.chunk.index - 20089 == 2).columns["user"]
    assert len(chunk.categories) == 50 and chunk.distinct_count == n // 3  # exact within one chunk


def test_rejected_config_leaves_no_table(spark, tmp_path):
    table = write_delta(spark, _frame(), str(tmp_path / "preds"))
    out = tmp_path / "out"
    renamed = make_config(table, [("x_renamed", "continuous")], str(out), reference=REFERENCE)
    with pytest.raises(ConfigError, match="x_renamed"):
        fit(spark, renamed)
    empty = make_config(table, [("x", "continuous")], str(out), reference={"start": "2030-01-01", "end": "2030-01-02"})
    with pytest.raises(DataError, match="reference.*holds no rows"):
        fit(spark, empty)
    assert not out.exists() or not any(out.iterdir())
