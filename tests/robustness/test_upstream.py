"""Upstream tables that misbehave (issue 22): far-future timestamps, an emptied source, a feature that turns
all +-inf, a reference column without a valid value, a 1-row chunk, a retyped label id (and its RESTORE),
an unbounded slice expression, a config whose `spark:` section would run a command, credentials in
tracking URIs, a dead tracking server.

One small binary monitor with labels and daily chunks (days 0-2 the reference, 3-5 the analysis, 300
rows a day, both tables with the change data feed); each test copies its tables and changes them as an
upstream job would. Expected values are the clean run's own stored values (the same rows must give the
same numbers) or counts of the rows written.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pyspark.sql import functions as F

from monitoring.chunking import LAST_VALID, period_bounds, period_chunk, timestamp_window
from monitoring.cli import EXIT_REPORTING, main
from monitoring.config import Chunking, Period, parse_config
from monitoring.drift.compare import ANALYSIS, DRIFT
from monitoring.errors import ConfigError, ReportingError
from monitoring.incidents import incidents
from monitoring.pipeline import fit, metrics_table, run
from monitoring.quality import (
    EMPTY_REFERENCE_COLUMN,
    OUTSIDE_WINDOW,
    ROW_COUNT,
    VANISHED_CHUNKS,
    gap_results,
)
from monitoring.redact import MASK, redact
from monitoring.reporting.mlflow_log import log_run
from monitoring.slices import WHOLE, check_expression
from monitoring.stores.metrics import read_metrics

from ..helpers import daily_ts

PER_DAY, DAYS, DAY0, INF_DAY = 300, 6, 20089, 5  # DAY0: 2025-01-01 as a daily chunk index; x is +inf on INF_DAY
FEATURES = (("x", "continuous"), ("z", "continuous"), ("c", "categorical"))
CDF = {"delta.enableChangeDataFeed": "true"}


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(22)
    day = np.repeat(np.arange(DAYS), PER_DAY)
    n = len(day)
    x = np.where(day == INF_DAY, np.inf, rng.normal(0.0, 1.0, n))
    z = np.where(day < 3, np.nan, rng.normal(5.0, 1.0, n))  # no valid reference value at all
    preds = pd.DataFrame({"id": np.arange(n, dtype="int64"), "ts": daily_ts(rng, day), "x": x, "z": z,
                          "c": rng.choice(["a", "b", "c"], n), "score": rng.random(n)})
    labels = pd.DataFrame({"id": preds["id"], "label": (rng.random(n) < preds["score"]).astype(int),
                           "label_ts": preds["ts"]})
    return preds, labels


def _write(spark, df: pd.DataFrame, path: str) -> str:
    writer = spark.createDataFrame(df).write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    for key, value in CDF.items():
        writer = writer.option(key, value)
    writer.save(os.path.abspath(path))  # the JVM does not share Python's working directory
    return path


def _config(**extra) -> dict:
    """Relative table paths: each test runs in its own copy of the fitted monitor (`copy`), and the stored
    states name the tables as the config does, so a copy reuses them."""
    return {"monitor": "upstream", "problem_type": "binary",
            "source": {"table": "./preds", "id_column": "id", "timestamp_column": "ts"},
            "features": [{"name": n, "kind": k} for n, k in FEATURES], "outputs": {"score": "score"},
            "labels": {"table": "./labels", "label_column": "label", "timestamp_column": "label_ts"},
            "estimation": {"enabled": False}, "chunking": {"period": "1d"},
            "reference": {"start": "2025-01-01", "end": "2025-01-04"},
            "output": {"path": "./out"}, "mlflow": {"enabled": False}, **extra}


@pytest.fixture(scope="module")
def fitted(spark, tmp_path_factory):
    """The monitor fitted and run once on clean tables, in its own directory: (directory, rows, results)."""
    root, cwd = tmp_path_factory.mktemp("upstream"), os.getcwd()
    os.chdir(root)
    try:
        preds, labels = _frames()
        _write(spark, preds, "./preds")
        _write(spark, labels, "./labels")
        config = parse_config(_config())
        fit(spark, config)
        return root, preds, run(spark, config)
    finally:
        os.chdir(cwd)


@pytest.fixture
def copy(fitted, tmp_path, monkeypatch):
    """A copy of the fitted monitor's tables (sources and results) to change as an upstream job would:
    (config, rows, the clean run's results), the working directory set to the copy."""
    root, preds, clean = fitted
    shutil.copytree(root, tmp_path / "m")
    monkeypatch.chdir(tmp_path / "m")
    return parse_config(_config()), preds, clean


def _values(results, period: str = ANALYSIS) -> dict[tuple, float]:
    """Stored values by (chunk, slice, column, metric, comparison) of one period."""
    return {(r.chunk.index, r.slice_key, r.slice_value, r.column, r.metric, r.comparison): r.value
            for r in results if r.period == period}


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert (value is None and b[key] is None) or value == pytest.approx(b[key], rel=1e-9, abs=1e-12), key


def test_far_future_rows_cost_one_quality_row(spark, copy):
    """One row dated 9999-12-31 and five dated 2999-06-01: no OverflowError, no chunk or gap row up to them,
    one alerting `timestamp_outside_window_rows` row; every other value as in the clean run; `--full` and a
    rerun give the same rows."""
    config, _, clean = copy
    dates = [datetime(9999, 12, 31, tzinfo=timezone.utc)] + [datetime(2999, 6, 1, tzinfo=timezone.utc)] * 5
    far = spark.createDataFrame([(10_000 + i, ts, 0.0, 0.0, "a", 0.5) for i, ts in enumerate(dates)],
                                "id long, ts timestamp, x double, z double, c string, score double")
    far.write.format("delta").mode("append").save(os.path.abspath(config.source.table))
    after = run(spark, config)
    (row,) = [r for r in after.metrics if r.metric == OUTSIDE_WINDOW]
    assert row.value == 6 and row.alert and row.chunk.index == DAY0 + DAYS - 1 and "9999" not in row.note
    assert max(r.chunk.index for r in after.metrics) == DAY0 + DAYS - 1
    expected = _values(clean.metrics)
    got = {k: v for k, v in _values(after.metrics).items() if k[4] != OUTSIDE_WINDOW}
    _same(expected, got)
    full = run(spark, config, refresh=True)
    _same(_values(after.metrics), _values(full.metrics))
    stored = read_metrics(spark, metrics_table(config), config.monitor).results
    _same(_values(full.metrics), _values(stored))


def test_timestamp_window_and_period_bounds_stay_inside_datetime():
    chunking = Chunking(Period(1, "mo"), max_ahead=Period(9000, "y"))
    first, end = timestamp_window(chunking, datetime(2026, 12, 3, tzinfo=timezone.utc))
    assert first == datetime(1970, 1, 1, tzinfo=timezone.utc) and end == LAST_VALID
    default = timestamp_window(Chunking(Period(1, "d")), datetime(2026, 12, 3, 15, tzinfo=timezone.utc))[1]
    assert default == datetime(2027, 12, 4, tzinfo=timezone.utc)
    last = (LAST_VALID.year - 1970) * 12 - 1  # the last monthly chunk inside the window
    assert period_bounds(Period(1, "mo"), last)[1] == LAST_VALID


def test_empty_periods_are_reported_as_ranges():
    """A gap of 100,000 empty days is one row naming its first and last day, not 100,000 rows."""
    config = parse_config(_config())
    rows = gap_results(config, [], {DAY0, DAY0 + 1, DAY0 + 3, DAY0 + 100_004})
    assert [(r.chunk.index, r.value, r.metric) for r in rows] == [(DAY0 + 2, 0.0, ROW_COUNT),
                                                                   (DAY0 + 4, 0.0, ROW_COUNT)]
    assert rows[0].note == "no rows in this period"
    last = period_chunk(config.chunking.period, DAY0 + 100_003).key
    assert rows[1].note == f"no rows in 100000 periods, {period_chunk(config.chunking.period, DAY0 + 4).key} to {last}"


def test_an_emptied_source_keeps_the_history_and_alerts(spark, copy):
    """The source overwritten with its reference rows only: the run exits normally with one alerting
    `vanished_chunks` row; every stored analysis result and profile stays; a rerun changes nothing."""
    config, preds, clean = copy
    reference_rows = preds[preds["ts"] < pd.Timestamp("2025-01-04", tz="UTC")]
    _write(spark, reference_rows, config.source.table)
    after = run(spark, config)
    (row,) = [r for r in after.metrics if r.metric == VANISHED_CHUNKS]
    assert row.value == 3 and row.alert and "2025-01-04 to 2025-01-06" in row.note
    assert row.chunk.index == DAY0 + DAYS - 1
    stored = read_metrics(spark, metrics_table(config), config.monitor).results
    kept = {k: v for k, v in _values(stored).items() if k[4] != VANISHED_CHUNKS}
    _same(_values(clean.metrics), kept)
    profiles = spark.read.format("delta").load(os.path.abspath(f"{config.output.path}/profiles"))
    assert profiles.where(F.col("dataset") == ANALYSIS).select("chunk_index").distinct().count() == 3
    again = run(spark, config)
    _same(_values(after.metrics), _values(again.metrics))


def test_non_finite_feature_and_empty_reference_column_alert(fitted):
    """x all +inf on day 5: an `infinite_rate` of 1 that alerts, an incident for x. z has no valid reference
    value: an `empty_reference_column` alert naming the key, on the newest chunk."""
    _, preds, result = fitted
    rates = {r.chunk.index - DAY0: r for r in result.metrics
             if r.metric == "infinite_rate" and r.column == "x" and (r.slice_key, r.slice_value) == WHOLE}
    day = (preds["ts"] - pd.Timestamp("2025-01-01", tz="UTC")).dt.days
    for d, r in rates.items():
        assert r.value == pytest.approx(np.isinf(preds.loc[day == d, "x"]).mean(), abs=1e-12), d
    assert rates[INF_DAY].value == 1.0 and rates[INF_DAY].alert
    assert not any(r.alert for d, r in rates.items() if d != INF_DAY)
    (empty,) = [r for r in result.metrics if r.metric == EMPTY_REFERENCE_COLUMN]
    assert empty.column == "z" and empty.alert and "features[1]" in empty.note and "NaN" in empty.note
    found = incidents(result.metrics, parse_config(_config()))
    assert {"x", "z"} <= {i.subject for i in found}


def test_a_one_row_chunk_notes_instead_of_alerting(spark, copy):
    """A partial day of one row (a shifted value at that) is too small to compare: drift values are stored
    with a note, none alerts."""
    config, _, _ = copy
    one = spark.createDataFrame([(50_000, datetime(2025, 1, 7, 3, tzinfo=timezone.utc), 40.0, 0.0, "zz", 0.99)],
                                "id long, ts timestamp, x double, z double, c string, score double")
    one.write.format("delta").mode("append").save(os.path.abspath(config.source.table))
    result = run(spark, config)
    small = [r for r in result.metrics if r.chunk.index == DAY0 + DAYS and r.family == DRIFT]
    assert small and not any(r.alert for r in small)
    assert all("drift.min_chunk_rows 50" in r.note for r in small)


def test_a_retyped_label_id_is_a_config_error_and_restore_recovers(spark, copy):
    """Label ids rewritten as text: the run stops with an error naming both types (no Spark stack trace);
    after a RESTORE a plain run (no --full) gives the values of before, although the change data feed now
    spans the retyped versions."""
    config, _, clean = copy
    table = os.path.abspath(config.labels.table)
    labels = spark.read.format("delta").load(table)
    version = spark.sql(f"DESCRIBE HISTORY delta.`{table}`").agg(F.max("version")).first()[0]
    labels.withColumn("id", F.col("id").cast("string")).write.format("delta").mode("overwrite") \
        .option("overwriteSchema", "true").save(table)
    with pytest.raises(ConfigError) as err:
        run(spark, config)
    assert err.value.key == "labels.id_column" and "string" in str(err.value) and "bigint" in str(err.value)
    spark.sql(f"RESTORE TABLE delta.`{table}` TO VERSION AS OF {version}")
    restored = run(spark, config)
    _same(_values(clean.metrics), _values(restored.metrics))
    text = spark.createDataFrame(pd.DataFrame({"id": ["id-123"], "label": [1],
                                               "label_ts": [pd.Timestamp("2025-01-05")]}))
    text.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(table)
    with pytest.raises(ConfigError, match="cast one table's id to the other's type"):
        run(spark, config)


@pytest.mark.parametrize("expression", ["lpad(c, 400000000, 'x')", "rpad(c, length(c) * 100000000, 'x')",
                                        "format_number(x, 1000000)", "regexp_extract(c, '(a+)+$', 0)",
                                        "c rlike '(a+)+$'", "concat(c, '" + "x" * 2000 + "')"])
def test_slice_expressions_are_bounded_in_cost(expression):
    with pytest.raises(ConfigError) as err:
        check_expression(expression, ["c", "x"], "slices.expressions[0]")
    assert err.value.key == "slices.expressions[0]"
    check_expression("lpad(c, 8, '0')", ["c"], "slices.expressions[0]")  # a bounded padding stays allowed


@pytest.mark.parametrize(("settings", "refused"), [
    ({"spark.driver.extraJavaOptions": "-XX:OnOutOfMemoryError='touch /tmp/driftline-pwned'"}, "runs a command"),
    ({"spark.driver.extraJavaOptions": "-javaagent:/tmp/agent.jar"}, "-javaagent"),
    ({"spark.executor.extraJavaOptions": "-Xmx1g"}, "not a setting a config may give"),
    ({"spark.jars.packages": "org.example:evil:1.0"}, "not a setting a config may give"),
    ({"spark.sql.extensions": "org.example.Evil"}, "not a setting a config may give"),
    ({"spark.hadoop.net.topology.script.file.name": "/tmp/x.sh"}, "not a setting a config may give"),
])
def test_the_spark_section_takes_no_code(settings, refused):
    with pytest.raises(ConfigError) as err:
        parse_config(_config(spark=settings))
    (key,) = settings
    assert err.value.key == f'spark["{key}"]' and refused in str(err.value)
    allowed = {"spark.master": "local[2]", "spark.driver.memory": "2g", "spark.sql.shuffle.partitions": "4",
               "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xss4m",
               "spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net": "k"}
    assert parse_config(_config(spark=allowed)).spark == allowed


@pytest.mark.parametrize("uri", ["https://ghp_0123456789abcdef@mlflow.example.com/",
                                 "http://user:p@ss@w0rd@127.0.0.1:5000/", "http://user:secret-value@host:1/x"])
def test_credentials_in_uris_are_masked_whole(uri):
    masked = redact(f"logging to {uri} failed")
    assert MASK in masked and "ghp_" not in masked and "ss@w0rd" not in masked and "secret-value" not in masked
    assert redact("abfss://container@account.dfs.core.windows.net/x") == \
        "abfss://container@account.dfs.core.windows.net/x"  # a storage URL's container is no credential


def test_a_dead_tracking_server_fails_fast(spark, copy):
    """Nothing listens on the port, or a socket accepts and never answers: MLflow logging gives up within
    30 s (MLflow's own retries take minutes), and the results stay in the Delta table."""
    config, _, result = copy
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    try:
        for port in (dead_port, silent.getsockname()[1]):
            data = _config()
            data["mlflow"] = {"tracking_uri": f"http://user:pw-{port}@127.0.0.1:{port}", "experiment": "dead"}
            started = time.monotonic()
            with pytest.raises(ReportingError) as err:
                log_run(parse_config(data), "dead", result.metrics, {}, {})
            assert time.monotonic() - started < 30
            assert "driftline report" in str(err.value) and f"pw-{port}" not in str(err.value)
        # the job as scheduled: `driftline run` (nothing new: stored results, then MLflow) exits 4 in seconds
        data = _config()
        data["mlflow"] = {"tracking_uri": f"http://127.0.0.1:{dead_port}", "experiment": "dead"}
        Path("monitor.yaml").write_text(yaml.safe_dump(data))
        started = time.monotonic()
        assert main(["run", "--config", "monitor.yaml"]) == EXIT_REPORTING
        assert time.monotonic() - started < 30
    finally:
        silent.close()
    assert read_metrics(spark, metrics_table(config), config.monitor).results
