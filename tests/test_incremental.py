"""Incremental runs: on a 1-year table of daily chunks, a day of new rows (or an update, a delete) makes
the rerun re-profile exactly the chunks those rows belong to plus the open last chunk; every other stored
profile row is left untouched (its `computed_at` is unchanged), and the metrics equal a full recompute.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from monitoring.backfill import CHANGE_FEED
from monitoring.cli import build_parser
from monitoring.incremental import plan_increment
from monitoring.pipeline import ANALYSIS, fit, metrics_table, profiles_table, run
from monitoring.quality import VANISHED_CHUNKS
from monitoring.stores.metrics import METRIC_KEYS
from monitoring.stores.tables import table_ident

from .helpers import make_config

DAYS, PER_DAY = 365, 40
START = datetime(2025, 1, 1, tzinfo=timezone.utc)
CDF = {"delta.enableChangeDataFeed": "true"}


def _day_index(day: int) -> int:
    return (START + timedelta(days=day)).toordinal() - datetime(1970, 1, 1).toordinal()


def _frames(days: range, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions and labels of `days` (day numbers from START), PER_DAY rows each, ids from the day."""
    rng = np.random.default_rng(seed)
    day = np.repeat(np.array(days), PER_DAY)
    n = len(day)
    ids = day * 1000 + np.tile(np.arange(PER_DAY), len(days))
    ts = pd.to_datetime(((START.timestamp() + day * 86400 + rng.random(n) * 86000) * 1e6).astype("int64"),
                        unit="us", utc=True)
    x = rng.normal(np.where(day > 300, 0.8, 0.0), 1.0, n)
    score = 1 / (1 + np.exp(-(x + rng.normal(0, 1, n))))
    y = (rng.random(n) < score).astype(int)
    preds = pd.DataFrame({"id": ids, "ts": ts, "x": x, "cat": rng.choice(["a", "b", "c"], n), "score": score,
                          "pred": (score >= 0.5).astype(int)})
    labels = pd.DataFrame({"id": ids, "label": y, "label_ts": ts + pd.Timedelta(days=1)})
    return preds, labels


def _append(spark, pdf: pd.DataFrame, path: str, properties: dict | None = None) -> None:
    writer = spark.createDataFrame(pdf).coalesce(1).write.format("delta").mode("append")
    for k, v in (properties or {}).items():
        writer = writer.option(k, v)
    writer.save(path)


def _config(root, source: str, labels: str, reference_end: str = "2025-01-29"):
    return make_config(source, [("x", "continuous"), ("cat", "categorical")], str(root / "out"),
                       outputs={"score": "score", "prediction": "pred"},
                       labels={"table": labels, "label_column": "label", "timestamp_column": "label_ts"},
                       reference={"start": "2025-01-01", "end": reference_end},
                       drift={"continuous_methods": ["kolmogorov_smirnov"], "categorical_methods": ["chi2"]},
                       estimation={"enabled": False})  # fewer metrics per chunk: a faster test


def _profile_times(spark, config) -> dict[int, dict[str, datetime]]:
    """chunk index -> column -> computed_at of the analysis profile rows (whole table and slices)."""
    rows = spark.sql(f"SELECT chunk_index, slice_value, column_name, computed_at FROM "
                     f"{table_ident(profiles_table(config))} WHERE dataset = '{ANALYSIS}'").collect()
    out: dict[int, dict[str, datetime]] = {}
    for r in rows:
        out.setdefault(r["chunk_index"], {})[f"{r['slice_value']}/{r['column_name']}"] = r["computed_at"]
    return out


def _metric_rows(spark, config) -> dict[tuple, dict]:
    pdf = spark.sql(f"SELECT * FROM {table_ident(metrics_table(config))}").toPandas()
    values = [c for c in pdf.columns if c not in METRIC_KEYS and c not in ("run_id", "computed_at", "source_version")]
    return {tuple(r[k] for k in METRIC_KEYS): {c: None if pd.isna(r[c]) else r[c] for c in values}
            for _, r in pdf.iterrows()}


def _last_commit(spark, table: str):
    return spark.sql(f"DESCRIBE HISTORY {table_ident(table)} LIMIT 1").first()


def _assert_same_metrics(a: dict, b: dict) -> None:
    """Same rows and values; the same fingerprints, but for the performance families': a daily run sums a
    chunk's label states over fewer shuffle partitions than a full run, which moves their last bits (float
    addition order) and so their digest (docs/incremental.md)."""
    assert a.keys() == b.keys()
    family = METRIC_KEYS.index("family")
    for key, row in a.items():
        for col, v in row.items():
            w = b[key][col]
            if col == "inputs" and key[family] in ("performance", "estimated_performance", "concept_drift"):
                continue
            if isinstance(v, float) and w is not None:
                assert w == pytest.approx(v, rel=1e-9, abs=1e-12), (key, col)
            else:
                assert v == w, (key, col)


@pytest.fixture(scope="module")
def year(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("incremental")
    source, labels = str(root / "preds"), str(root / "labels")
    preds, labs = _frames(range(DAYS), 1)
    _append(spark, preds, source, CDF)
    _append(spark, labs, labels, CDF)
    config = _config(root, source, labels)
    fit(spark, config)
    first = run(spark, config)
    return config, source, labels, first


def test_new_day_reprofiles_that_day_and_the_open_chunk(spark, year):
    config, source, labels, first = year
    assert first.profiles.increment is None and len(first.profiles.whole) == DAYS - 28
    assert first.profiles.whole[-1].chunk.index == _day_index(DAYS - 1)
    before = _profile_times(spark, config)

    preds, labs = _frames(range(DAYS, DAYS + 1), 2)  # 2026-01-01
    _append(spark, preds, source)
    late = labs.assign(label=1 - labs["label"])  # the new day's labels, and corrected labels for day 100
    fixed = _frames(range(100, 101), 1)[1].head(10).assign(label_ts=pd.Timestamp("2026-01-02", tz="UTC"))
    _append(spark, pd.concat([late, fixed]), labels)
    result = run(spark, config)

    step = result.profiles.increment
    opened, new = _day_index(DAYS - 1), _day_index(DAYS)
    assert step.reason == CHANGE_FEED and step.chunks == (opened, new)
    assert step.changed_rows == PER_DAY and step.until == step.since + 1
    assert result.profiles.backfill.chunks == (_day_index(100),)  # late labels: performance only
    after = _profile_times(spark, config)
    assert set(after) == set(before) | {new}
    # feature rows rewritten; performance rows all carry the new label version (backfill), values unchanged
    touched = {i for i in after for c in after[i]
               if not c.endswith(":performance") and after[i][c] != before.get(i, {}).get(c)}
    assert touched == {opened, new}
    # compared: the new chunk and the one whose performance changed, and the open chunk if its rebuilt
    # states differ at all; the stored results of every other chunk are kept
    assert {new, _day_index(100)} <= set(result.compared) <= {opened, new, _day_index(100)}
    assert len(first.compared) == DAYS - 28
    # one commit per state table: the profiles' scope rewritten whole (replaceWhere); the stored reference
    # rows stand (same inputs), so the metrics write holds the compared chunks' rows only and replaces theirs
    profiles_commit = _last_commit(spark, profiles_table(config))
    assert profiles_commit["operation"] == "WRITE" and profiles_commit["operationParameters"]["mode"] == "Overwrite"
    metrics_commit = _last_commit(spark, metrics_table(config))
    compared = [r for r in result.metrics if r.period == ANALYSIS and r.chunk.index in set(result.compared)]
    assert metrics_commit["operation"] == "WRITE" and any(r.period == "reference" for r in result.metrics)
    assert "chunk_index IN" in metrics_commit["operationParameters"]["predicate"]
    written = metrics_commit["operationMetrics"]
    assert int(written["numOutputRows"]) - int(written["numCopiedRows"]) == len(compared)

    # the sketches, sums and performance values of the chunks kept as stored stayed in the table (their
    # digests tell they did not change); those of the compared chunks and the chunk before each are there
    order = sorted({c.chunk.index for c in result.chunks})
    read = set(result.compared) | {order[order.index(i) - 1] for i in result.compared if order.index(i)}
    compared_chunks = [c for c in result.chunks if c.chunk.index in read]
    kept_chunks = [c for c in result.chunks if c.chunk.index not in read | set(step.chunks)]
    assert all(c.loaded and c.performance.loaded for c in compared_chunks) and len(compared_chunks) >= 4
    assert all(c.columns["x"].kll for c in compared_chunks)
    assert not any(c.loaded or c.performance.loaded for c in kept_chunks) and len(kept_chunks) > 300
    assert not any(c.columns["x"].kll for c in kept_chunks)

    incremental = _metric_rows(spark, config)
    full = run(spark, config, refresh=True)
    assert full.profiles.increment is None and not full.profiles.reused
    _assert_same_metrics(incremental, _metric_rows(spark, config))



def test_update_and_delete_reprofile_their_chunks(spark, year):
    """An update re-profiles its day; a day whose rows are all deleted keeps its stored profile (its history
    stays, issue 22) and is named by an alerting `vanished_chunks` result."""
    config, source, _, _ = year
    ident = table_ident(source)
    spark.sql(f"UPDATE {ident} SET x = x + 100 WHERE id = 200005")  # a row of day 200
    spark.sql(f"DELETE FROM {ident} WHERE id >= 250000 AND id < 251000")  # all of day 250
    times = _profile_times(spark, config)
    last = max(times)
    result = run(spark, config)
    step = result.profiles.increment
    assert step.chunks == tuple(sorted({_day_index(200), _day_index(250), last}))
    assert step.changed_rows == 2 + PER_DAY  # update pre- and post-image, the deleted rows
    assert _profile_times(spark, config)[_day_index(250)] == times[_day_index(250)]  # not rewritten
    assert [c.index for c in result.profiles.vanished] == [_day_index(250)]
    (gone,) = [r for r in result.metrics if r.metric == VANISHED_CHUNKS]
    assert gone.value == 1 and gone.alert and result.profiles.vanished[0].key in gone.note
    x = {c.chunk.index: c.columns["x"] for c in result.profiles.whole}
    pdf = spark.read.format("delta").load(source).where("id >= 200000 AND id < 201000").toPandas()
    assert x[_day_index(200)].max == pytest.approx(pdf["x"].max(), rel=1e-12)
    assert x[_day_index(200)].mean == pytest.approx(pdf["x"].mean(), rel=1e-9)
    assert {_day_index(200), _day_index(201)} <= set(result.compared)  # day 201: its CONSECUTIVE drift


def test_without_change_feed_every_chunk_is_reprofiled(spark, tmp_path):
    source, labels = str(tmp_path / "preds"), str(tmp_path / "labels")
    preds, labs = _frames(range(8), 3)
    _append(spark, preds, source)
    _append(spark, labs, labels)
    config = _config(tmp_path, source, labels, reference_end="2025-01-04")
    fit(spark, config)
    run(spark, config)
    preds, _ = _frames(range(8, 9), 4)
    _append(spark, preds, source)
    result = run(spark, config)
    step = result.profiles.increment
    assert step.chunks is None and "enableChangeDataFeed" in step.reason
    assert len(result.profiles.whole) == 9 - 3 and not result.profiles.reused


def test_size_chunks_and_cli_flag(spark, year):
    config, source, labels, first = year
    sized = make_config(source, [("x", "continuous")], "unused", chunking={"size": 100})
    step = plan_increment(spark, sized, source, first.profiles.chunks, 1, 2)
    assert step.chunks is None and "size and count" in step.reason
    assert build_parser().parse_args(["run", "--config", "c.yaml", "--full"]).refresh
    assert build_parser().parse_args(["run", "--config", "c.yaml"]).refresh is False
