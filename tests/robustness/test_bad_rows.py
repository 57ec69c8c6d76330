"""Bad rows of a binary monitor with labels, each recorded and reported instead of silently dropped or
counted: a day without rows, rows with a null timestamp, rows written out of time order (and late rows
of a day already profiled), NaN and +-inf values, duplicate prediction ids, labels of an unknown class,
a day labelled with a single class. The expected values are counted with pandas/numpy on the same rows;
performance is checked against scikit-learn on the valid labels.

Days 0-2 (2025-01-01..03) are the reference, 400 rows each; day 3 has NaN and +-inf in `x`; day 4 is
labelled with one class; day 5 has no rows; day 6 repeats 30 ids; 25 labels of day 7 are "maybe"; 7 rows
have no timestamp. The table is written newest days first, rows shuffled, in two commits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType, TimestampType
from sklearn.metrics import roc_auc_score

from monitoring.config import parse_config, validate_against_schema
from monitoring.errors import ConfigError
from monitoring.labels import INVALID, LABEL, join_labels
from monitoring.performance.results import PERFORMANCE
from monitoring.pipeline import fit, run
from monitoring.quality import DUPLICATE_ID_RATE, INVALID_LABEL_RATE, NULL_TIMESTAMPS, ROW_COUNT
from monitoring.slices import WHOLE

from ..helpers import write_delta

PER_DAY, DAYS, NON_FINITE, ONE_CLASS, EMPTY, DUPLICATED, MISLABELLED = 400, 8, 3, 4, 5, 6, 7
N_DUPLICATES, N_UNKNOWN, N_NULL_TS, N_NAN, N_INF = 30, 25, 7, 12, 8
DAY0 = 20089  # 2025-01-01 as days since 1970-01-01: the index of daily chunk 0


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(41)
    day = np.repeat([d for d in range(DAYS) if d != EMPTY], PER_DAY)
    n = len(day)
    micros = ((1735689600 + day * 86400 + rng.random(n) * 86000) * 1e6).astype("int64")
    x = rng.normal(0, 1, n)
    preds = pd.DataFrame({"id": np.arange(n), "ts": pd.to_datetime(micros, unit="us", utc=True), "x": x,
                          "score": 1 / (1 + np.exp(-(x + rng.normal(0, 1, n))))})
    labels = pd.DataFrame({"id": preds["id"], "label": (rng.random(n) < 1 / (1 + np.exp(-x))).astype(int).astype(str),
                           "label_ts": preds["ts"]})
    odd = np.flatnonzero(day == NON_FINITE)
    x[odd[:N_NAN]] = np.nan
    x[odd[N_NAN:N_NAN + N_INF]] = np.where(np.arange(N_INF) % 2, np.inf, -np.inf)
    preds["x"] = x
    labels.loc[day == ONE_CLASS, "label"] = "1"
    dup = np.flatnonzero(day == DUPLICATED)
    preds.loc[dup[-N_DUPLICATES:], "id"] = preds.loc[dup[:N_DUPLICATES], "id"].to_numpy()
    labels = labels[labels["id"].isin(preds["id"])]  # one label per id
    unknown = labels.index[day[labels.index] == MISLABELLED][:N_UNKNOWN]
    labels.loc[unknown, "label"] = "maybe"
    no_ts = pd.DataFrame({"id": np.arange(n, n + N_NULL_TS), "x": 0.0, "score": 0.5,
                          "ts": pd.Series([pd.NaT] * N_NULL_TS, dtype=preds["ts"].dtype)})
    preds = pd.concat([preds, no_ts], ignore_index=True)
    return preds.sample(frac=1.0, random_state=3).reset_index(drop=True), labels


@pytest.fixture(scope="module")
def monitored(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_rows")
    preds, labels = _frames()
    newest_first = preds["ts"].isna() | (preds["ts"] >= pd.Timestamp("2025-01-05", tz="UTC"))
    table = str(root / "preds")
    for part in (preds[newest_first], preds[~newest_first]):
        # pandas' NaN reaches Spark as null: set the NaN in Spark
        sdf = spark.createDataFrame(part.assign(_nan=part["x"].isna()))
        sdf = sdf.withColumn("x", F.when(F.col("_nan"), F.lit(float("nan"))).otherwise(F.col("x"))).drop("_nan")
        sdf.write.format("delta").mode("append").save(table)
    label_table = write_delta(spark, labels, str(root / "labels"))
    config = parse_config({
        "monitor": "bad_rows", "problem_type": "binary",
        "source": {"table": table, "id_column": "id", "timestamp_column": "ts"},
        "features": [{"name": "x", "kind": "continuous"}], "outputs": {"score": "score"},
        "labels": {"table": label_table, "label_column": "label", "timestamp_column": "label_ts",
                   "min_labelled": 50},
        "estimation": {"enabled": False},
        "chunking": {"period": "1d"}, "reference": {"start": "2025-01-01", "end": "2025-01-04"},
        "output": {"path": str(root / "out")}, "mlflow": {"enabled": False}})
    fit(spark, config)
    return config, preds, labels, run(spark, config)


def _whole(result, metric: str) -> dict[int, object]:
    return {r.chunk.index - DAY0: r for r in result.metrics
            if r.metric == metric and (r.slice_key, r.slice_value) == WHOLE and r.period == "analysis"}


def _day_counts(preds: pd.DataFrame) -> pd.Series:
    return preds.dropna(subset=["ts"]).groupby((preds["ts"] - pd.Timestamp("2025-01-01", tz="UTC")).dt.days).size()


def test_day_without_rows_is_a_zero_row_count_that_alerts(monitored):
    _, preds, _, result = monitored
    counts = _whole(result, ROW_COUNT)
    expected = _day_counts(preds)
    assert sorted(counts) == [3, 4, 5, 6, 7]
    for day, r in counts.items():  # out-of-order writes: every row still in its day's chunk
        assert r.value == expected.get(day, 0), day
    gap = counts[EMPTY]
    assert gap.value == 0 and gap.alert and gap.note == "no rows in this period"
    assert gap.chunk.key == "2025-01-06"
    assert not [r for r in result.metrics if r.chunk.index - DAY0 == EMPTY and r.metric != ROW_COUNT]
    assert not any(r.alert for d, r in counts.items() if d != EMPTY)


def test_null_timestamps_are_counted_on_the_newest_chunk(monitored):
    config, _, _, result = monitored
    (r,) = [r for r in result.metrics if r.metric == NULL_TIMESTAMPS]
    assert r.chunk.index - DAY0 == DAYS - 1 and r.value == N_NULL_TS and r.alert
    assert r.column == "ts" and f"{N_NULL_TS} rows" in r.note


def test_nan_and_inf_are_counted_and_left_out_of_statistics(monitored):
    _, preds, _, result = monitored
    day = (preds["ts"] - pd.Timestamp("2025-01-01", tz="UTC")).dt.days
    x = preds.loc[day == NON_FINITE, "x"].to_numpy()
    finite = x[np.isfinite(x)]
    (profile,) = [c.columns["x"] for c in result.profiles.whole if c.chunk.index - DAY0 == NON_FINITE]
    assert (profile.nan_count, profile.inf_count, profile.valid_count) == (N_NAN, N_INF, len(finite))
    assert profile.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert (profile.min, profile.max) == (finite.min(), finite.max())
    assert profile.m2 == pytest.approx(((finite - finite.mean()) ** 2).sum(), rel=1e-9)
    (missing,) = [r for r in result.metrics if r.metric == "missing_rate" and r.column == "x"
                  and r.chunk.index - DAY0 == NON_FINITE and (r.slice_key, r.slice_value) == WHOLE]
    assert missing.value == pytest.approx(N_NAN / PER_DAY) and missing.alert  # NaN is missing; inf is not


def test_single_class_chunk_has_no_auc_and_says_why(monitored):
    _, _, _, result = monitored
    realized = {r.metric: r for r in result.metrics if r.family == PERFORMANCE and r.comparison == "NONE"
                and r.chunk.index - DAY0 == ONE_CLASS and (r.slice_key, r.slice_value) == WHOLE}
    assert realized["roc_auc"].value is None and "one class" in realized["roc_auc"].note
    assert realized["accuracy"].value is not None  # defined with one class


def test_duplicate_ids_are_a_rate_that_alerts(monitored):
    _, preds, _, result = monitored
    rates = _whole(result, DUPLICATE_ID_RATE)
    day = (preds["ts"] - pd.Timestamp("2025-01-01", tz="UTC")).dt.days
    for d, r in rates.items():
        rows = preds[day == d]
        assert r.value == pytest.approx((len(rows) - rows["id"].nunique()) / len(rows), abs=1e-12), d
        assert r.alert == (d == DUPLICATED), d
    assert rates[DUPLICATED].value == pytest.approx(N_DUPLICATES / PER_DAY)


def test_unknown_label_class_is_reported_and_left_out_of_performance(monitored):
    _, preds, labels, result = monitored
    rates = _whole(result, INVALID_LABEL_RATE)
    assert rates[MISLABELLED].value == pytest.approx(N_UNKNOWN / PER_DAY) and rates[MISLABELLED].alert
    assert not any(r.value or r.alert for d, r in rates.items() if d != MISLABELLED)
    day = (preds["ts"] - pd.Timestamp("2025-01-01", tz="UTC")).dt.days
    rows = preds[day == MISLABELLED].merge(labels, on="id")
    valid = rows[rows["label"] != "maybe"]
    (auc,) = [r for r in result.metrics if r.metric == "roc_auc" and r.family == PERFORMANCE and r.comparison == "NONE"
              and r.chunk.index - DAY0 == MISLABELLED and (r.slice_key, r.slice_value) == WHOLE]
    assert auc.value == pytest.approx(roc_auc_score(valid["label"].astype(int), valid["score"]), abs=1e-3)
    assert auc.label_coverage == pytest.approx(len(valid) / PER_DAY)


def test_late_rows_of_a_profiled_day_are_profiled_on_rerun(spark, monitored):
    config, preds, _, _ = monitored
    rng = np.random.default_rng(5)
    noon = pd.Timestamp("2025-01-05 12:00", tz="UTC")
    seconds = pd.to_timedelta(rng.integers(0, 3600, 50), "s")
    late = pd.DataFrame({"id": np.arange(10**6, 10**6 + 50), "ts": noon + seconds,
                         "x": rng.normal(0, 1, 50), "score": rng.random(50)})
    spark.createDataFrame(late).write.format("delta").mode("append").save(config.source.table)
    result = run(spark, config)
    counts = _whole(result, ROW_COUNT)
    assert counts[4].value == _day_counts(preds).get(4) + 50 and counts[4].alert
    assert counts[EMPTY].value == 0 and counts[EMPTY].alert
    stored = spark.read.format("delta").load(f"{config.output.path}/metrics")
    assert stored.groupBy("period", "chunk_index", "slice_key", "slice_value", "column_name", "family", "metric",
                          "comparison").count().where("count > 1").count() == 0


_REGRESSION = {"monitor": "m", "problem_type": "regression",
               "source": {"table": "t", "id_column": "id", "timestamp_column": "ts"},
               "features": [{"name": "x", "kind": "continuous"}], "outputs": {"prediction": "p"},
               "labels": {"table": "l", "label_column": "label", "timestamp_column": "label_ts"},
               "chunking": {"period": "1d"}, "reference": {"start": "2025-01-01", "end": "2025-01-02"},
               "output": {"path": "unused"}}


def test_invalid_labels_flagged_not_scored(spark):
    """Regression labels NaN or infinite, and classification labels outside the known classes, are invalid:
    no label for the row, INVALID set; whole floating-point labels read as integers (1.0 is class 1)."""
    labels = spark.createDataFrame([(1, 1.0), (2, float("nan")), (3, float("inf")), (4, 0.0), (5, 2.5)],
                                   "id long, label double").selectExpr("*", "timestamp'2025-01-01' AS label_ts")
    preds = spark.createDataFrame([(i,) for i in range(1, 7)], "id long")
    cfg = parse_config(_REGRESSION)

    def joined(regression: bool, known=None) -> dict[int, tuple]:
        rows = join_labels(preds, labels, cfg.labels, "id", regression, known).rows.collect()
        return {r["id"]: (r[LABEL], r[INVALID]) for r in rows}

    assert joined(True) == {1: (1.0, False), 2: (None, True), 3: (None, True), 4: (0.0, False), 5: (2.5, False),
                            6: (None, False)}
    assert joined(False, ["0", "1"]) == {1: ("1", False), 2: (None, True), 3: (None, True), 4: ("0", False),
                                         5: (None, True), 6: (None, False)}


def test_label_column_of_the_wrong_type_is_a_config_error():
    cfg = parse_config(_REGRESSION)
    source = StructType([StructField("id", DoubleType()), StructField("ts", TimestampType()),
                         StructField("x", DoubleType()), StructField("p", DoubleType())])
    labels = StructType([StructField("id", DoubleType()), StructField("label", StringType()),
                         StructField("label_ts", TimestampType())])
    with pytest.raises(ConfigError, match=r"labels\.label_column.*'label'.*string"):
        validate_against_schema(cfg, source, labels)
    binary = {k: v for k, v in _REGRESSION.items() if k != "labels"} | {
        "problem_type": "binary", "outputs": {"score": "p", "negative_class": 1}}
    with pytest.raises(ConfigError, match="outputs.negative_class"):
        parse_config(binary)
