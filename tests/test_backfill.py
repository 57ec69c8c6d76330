"""Label backfill: labels land for two old chunks; the rerun recomputes exactly those chunks.

The source holds one Parquet file per day (daily chunks), so the files the rerun reads show which
chunks it touched: counted from the Spark UI REST API (files and rows of every scan of the source).
Values after the backfill must equal a full recompute (1e-12) and scikit-learn on the same rows.
"""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from monitoring.backfill import CHANGE_FEED
from monitoring.pipeline import fit, metrics_table, run
from monitoring.stores.metrics import METRIC_KEYS, METRICS_SCHEMA
from monitoring.stores.tables import table_ident

from .helpers import make_config
from .spark_budget import _final_ids

DAYS, PER_DAY, REF_DAYS = 10, 2000, 3
START = datetime(2025, 1, 1, tzinfo=timezone.utc)
CHANGED_DAYS = (4, 7)


def _micros(seconds: np.ndarray) -> pd.Series:
    return pd.to_datetime((seconds * 1e6).astype("int64"), unit="us", utc=True)


def _labels_frame(ids, y, ts_day, rng) -> pd.DataFrame:
    ts = START.timestamp() + ts_day * 86400 + rng.random(len(ids)) * 80000
    return pd.DataFrame({"id": ids, "label": y, "label_ts": _micros(ts)})


def _append(spark, pdf: pd.DataFrame, path: str, **options) -> None:
    writer = spark.createDataFrame(pdf).coalesce(1).write.format("delta").mode("append")
    for k, v in options.items():
        writer = writer.option(k, v)
    writer.save(path)


def _sql_executions(spark) -> list[dict]:
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/sql?details=true&planDescription=true&length=100000"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.load(resp)


def _source_scans(spark, path: str, after: int) -> list[tuple[int, int]]:
    """(files read, rows read) of every scan of the table at `path` in SQL executions after id `after`.
    Scan nodes are paired with the plan's `Location` lines in plan order (node ids follow it)."""
    scans = []
    for e in _sql_executions(spark):
        if e["id"] <= after:
            continue
        nodes = sorted((n for n in e["nodes"] if n["nodeName"].startswith("Scan parquet")), key=lambda n: n["nodeId"])
        # an adaptive plan's graph shows its final plan: pair the nodes with that plan's scans only
        plan, final = e["planDescription"], _final_ids(e["planDescription"])
        sections = [loc for node, loc in re.findall(
            r"\((\d+)\) Scan parquet[^\n]*\n(?:(?!\(\d+\) ).*\n)*?Location: ([^\n]*)", plan)
            if final is None or node in final]
        if len(nodes) != len(sections):
            continue
        for node, location in zip(nodes, sections, strict=True):
            if location.rstrip().endswith(f"[file:{path}]"):
                m = {x["name"]: int(x["value"].replace(",", "")) for x in node["metrics"]
                     if x["name"] in ("number of files read", "number of output rows")}
                scans.append((m.get("number of files read", 0), m.get("number of output rows", 0)))
    return scans


def _last_execution(spark) -> int:
    return max((e["id"] for e in _sql_executions(spark)), default=-1)


def _metric_rows(spark, config) -> dict[tuple, tuple]:
    pdf = spark.sql(f"SELECT * FROM {table_ident(metrics_table(config))}").toPandas()
    # the values, not which run wrote them: every row of a recomputed chunk carries the new run's id
    values = [c for c in pdf.columns if c not in METRIC_KEYS and c not in ("run_id", "computed_at", "source_version")]
    return {tuple(r[k] for k in METRIC_KEYS): tuple(None if pd.isna(r[c]) else r[c] for c in values)
            for _, r in pdf.iterrows()}


@pytest.fixture(scope="module")
def landed(spark, tmp_path_factory):
    rng = np.random.default_rng(11)
    root = tmp_path_factory.mktemp("backfill")
    source, labels = str(root / "preds"), str(root / "labels")
    n = DAYS * PER_DAY
    day = np.repeat(np.arange(DAYS), PER_DAY)
    ids = np.arange(n)
    y = (rng.random(n) < 0.3).astype(int)
    score = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.5 * y - 0.8)))
    ts = _micros(START.timestamp() + day * 86400 + rng.random(n) * 86000)
    preds = pd.DataFrame({"id": ids, "ts": ts, "x": rng.normal(size=n), "score": score,
                          "pred": (score >= 0.5).astype(int)})
    for d in range(DAYS):  # one file per day: files read = chunks read
        _append(spark, preds[day == d], source)
    share = np.where(day >= 7, 0.3, 0.7)  # recent days partly labelled
    first = rng.random(n) < share
    for d in range(DAYS):  # label files ordered by id, so an id range skips the others
        rows = first & (day == d)
        _append(spark, _labels_frame(ids[rows], y[rows], day[rows] + 20, rng), labels,
                **({"delta.enableChangeDataFeed": "true"} if d == 0 else {}))
    config = make_config(source, [("x", "continuous")], str(root / "out"),
                         outputs={"score": "score", "prediction": "pred"},
                         labels={"table": labels, "label_column": "label", "timestamp_column": "label_ts"},
                         reference={"start": "2025-01-01", "end": "2025-01-04"})
    fit(spark, config)
    first_run = run(spark, config)
    before = _metric_rows(spark, config)

    # labels land for two old chunks: the rest of their ids, and a newer (correcting) label for some
    late = np.isin(day, CHANGED_DAYS) & ~first
    fix = np.isin(day, CHANGED_DAYS) & first & (rng.random(n) < 0.05)
    new = pd.concat([_labels_frame(ids[late], y[late], day[late] + 40, rng),
                     _labels_frame(ids[fix], y[fix], day[fix] + 40, rng)])
    _append(spark, new, labels)
    mark = _last_execution(spark)
    second = run(spark, config)
    scans = _source_scans(spark, source, mark)
    after = _metric_rows(spark, config)
    mark = _last_execution(spark)
    full = run(spark, config, refresh=True)
    full_scans = _source_scans(spark, source, mark)
    truth = {"day": day, "y": y, "score": score, "pred": preds["pred"].to_numpy(), "labelled": first | late,
             "corrected": int(fix.sum()), "landed": int(late.sum() + fix.sum())}
    return config, first_run, second, full, before, after, scans, full_scans, truth


def _perf(result) -> dict[tuple, object]:
    return {(r.chunk.index, r.slice_key, r.slice_value, r.metric): r for r in result.metrics
            if r.family == "performance" and r.period == "analysis"}


def test_backfill_recomputes_only_the_chunks_whose_labels_landed(landed):
    _, first_run, second, _, before, after, _, _, _ = landed
    chunks = {c.chunk.key: c.chunk.index for c in second.profiles.whole}
    changed = {chunks[f"2025-01-{d + 1:02d}"] for d in CHANGED_DAYS}
    plan = second.profiles.backfill
    assert plan is not None and plan.reason == CHANGE_FEED
    assert set(plan.chunks) == changed
    assert second.profiles.reused and first_run.profiles.backfill is None

    assert set(before) == set(after)  # same rows
    moved = {k for k in before if before[k] != after[k]}
    index = METRIC_KEYS.index("chunk_index")
    family = METRIC_KEYS.index("family")
    assert moved, "no metrics row changed"
    # realized metrics, the estimated ones' coverage and estimate-vs-realized rows, and the concept-drift
    # gaps (realized - estimated), of those chunks only
    assert {k[index] for k in moved} == changed
    assert {k[family] for k in moved} == {"performance", "estimated_performance", "concept_drift"}
    coverage = [f.name for f in METRICS_SCHEMA.fields if f.name not in METRIC_KEYS].index("label_coverage")
    assert coverage < [f.name for f in METRICS_SCHEMA.fields if f.name not in METRIC_KEYS].index("run_id")
    for k in moved:
        assert after[k][coverage] > before[k][coverage]  # coverage went up; rows untouched elsewhere


def test_backfilled_values_equal_a_full_recompute_and_sklearn(landed):
    _, _, second, full, _, _, _, _, t = landed
    got, want = _perf(second), _perf(full)
    assert set(got) == set(want)
    for key, r in want.items():
        for attr in ("value", "sampling_error", "label_coverage", "lower_threshold", "upper_threshold"):
            a, b = getattr(got[key], attr), getattr(r, attr)
            assert (a is None and b is None) or a == pytest.approx(b, rel=1e-12, abs=1e-12), (key, attr)
    chunks = {c.chunk.key: c.chunk.index for c in second.profiles.whole}
    for d in CHANGED_DAYS:
        rows = (t["day"] == d) & t["labelled"]
        m = {k[3]: v for k, v in got.items() if k[:3] == (chunks[f"2025-01-{d + 1:02d}"], "", "")}
        assert m["label_coverage"].value == pytest.approx(1.0, abs=1e-12)
        assert m["accuracy"].value == pytest.approx(skm.accuracy_score(t["y"][rows], t["pred"][rows]), abs=1e-12)
        assert m["roc_auc"].value == pytest.approx(skm.roc_auc_score(t["y"][rows], t["score"][rows]), abs=1e-3)


def test_backfill_reads_only_the_changed_chunks(landed):
    _, _, second, _, _, _, scans, full_scans, t = landed
    analysis_days = DAYS - REF_DAYS
    # the null-timestamp count of every run reads no file: Delta's per-file null counts skip them all
    scans, full_scans = ([(files, rows) for files, rows in found if files] for found in (scans, full_scans))
    # a full recompute reads every analysis file (and the label counts every file of the table)
    assert full_scans and all(files >= analysis_days and rows >= analysis_days * PER_DAY
                              for files, rows in full_scans), full_scans
    assert scans, "the backfill run read no source rows at all"
    assert all(files == len(CHANGED_DAYS) and rows == len(CHANGED_DAYS) * PER_DAY for files, rows in scans), scans
    stats = second.labels
    assert "recomputed chunks" in stats.scope and stats.unknown_ids == 0
    assert stats.duplicates == t["corrected"]  # the corrected ids now hold two labels each
    assert second.profiles.backfill.changed_ids == t["landed"]


def test_without_a_change_data_feed_every_chunk_is_recomputed(spark, tmp_path):
    """A label table without the change data feed: the run says why and recomputes the performance of
    every chunk (feature profiles still reused); coverage then reflects all labels."""
    rng = np.random.default_rng(12)
    n = 3 * PER_DAY
    day = np.repeat(np.arange(3), PER_DAY)
    ts = _micros(START.timestamp() + day * 86400 + rng.random(n) * 86000)
    score = rng.random(n)
    y = (rng.random(n) < score).astype(int)
    source, labels = str(tmp_path / "preds"), str(tmp_path / "labels")
    _append(spark, pd.DataFrame({"id": np.arange(n), "ts": ts, "x": rng.normal(size=n), "score": score}), source)
    half = np.arange(n) % 2 == 0
    _append(spark, pd.DataFrame({"id": np.arange(n)[half], "label": y[half], "label_ts": ts[half]}), labels)
    config = make_config(source, [("x", "continuous")], str(tmp_path / "out"),
                         labels={"table": labels, "label_column": "label", "timestamp_column": "label_ts"},
                         reference={"start": "2025-01-01", "end": "2025-01-02"})
    fit(spark, config)
    run(spark, config)
    _append(spark, pd.DataFrame({"id": np.arange(n)[~half], "label": y[~half], "label_ts": ts[~half]}), labels)
    result = run(spark, config)
    plan = result.profiles.backfill
    assert result.profiles.reused and plan.reason != CHANGE_FEED and "enableChangeDataFeed" in plan.reason
    assert set(plan.chunks) == {c.chunk.index for c in result.profiles.whole} and len(plan.chunks) == 2
    coverage = [r.value for r in result.metrics if r.metric == "label_coverage" and r.period == "analysis"
                and r.slice_key == "" and r.family == "performance"]
    assert coverage == [1.0, 1.0]
