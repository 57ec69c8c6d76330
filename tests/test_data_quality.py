"""Every data-quality alert on a crafted chunk, its value checked against numpy on the same rows.

Binary monitor, reference days 0-3 (clean, 480-520 rows a day), analysis days 4-8:
day 4 clean; day 5 30% of `x` null and 20% of `cat` an unseen category; day 6 10% of `x` far out of the
reference range, 5% of scores above 1 and 3% of scores null; day 7 a fifth of the usual rows; day 8 clean.
Multiclass monitor on the same days: day 5 4% of rows whose class scores sum to 1.2, day 6 2% of rows
predicting a class the monitor does not know. Then the source's schema changes (a column added, one
dropped, one retyped) and the next run reports each on the newest chunk.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from monitoring.config import parse_config
from monitoring.pipeline import fit, run

from .helpers import metric_key, write_delta

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
ROWS = {0: 480, 1: 500, 2: 520, 3: 510, 4: 500, 5: 500, 6: 500, 7: 100, 8: 500}
CLEAN = {4, 8}


def _frame(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    day = np.concatenate([np.full(n, d) for d, n in ROWS.items()])
    n = len(day)
    x = rng.normal(0, 1, n)
    cat = rng.choice(["a", "b", "c"], n)
    score = 1 / (1 + np.exp(-x))
    logits = np.column_stack([x, np.zeros(n), -x])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = np.array(["a", "b", "c"], dtype=object)[probs.argmax(axis=1)]
    pick = rng.random(n)
    x = np.where((day == 5) & (pick < 0.3), np.nan, x)
    cat = np.where((day == 5) & (rng.random(n) < 0.2), "new", cat).astype(object)
    x = np.where((day == 6) & (pick < 0.1), 100.0, x)
    score = np.where((day == 6) & (pick >= 0.9) & (pick < 0.95), 1.5, score)
    score = np.where((day == 6) & (pick >= 0.95) & (pick < 0.98), np.nan, score)
    probs[(day == 5) & (pick > 0.96)] *= 1.2
    pred = np.where((day == 6) & (pick > 0.98), "z", pred)
    micros = ((START.timestamp() + day * 86400 + rng.random(n) * 86000) * 1e6).astype("int64")
    return pd.DataFrame({"id": np.arange(n), "ts": pd.to_datetime(micros, unit="us", utc=True), "day": day,
                         "x": x, "cat": cat, "score": score, "p_a": probs[:, 0], "p_b": probs[:, 1],
                         "p_c": probs[:, 2], "pred": pred, "spare": np.arange(n) % 7, "spare2": np.arange(n)})


SCHEMA = ("id long, ts timestamp, day long, x double, cat string, score double, p_a double, p_b double, "
          "p_c double, pred string, spare long, spare2 long")


def _config(name: str, table: str, out: str, problem_type: str) -> dict:
    outputs = {"score": "score"} if problem_type == "binary" else \
        {"class_scores": {"a": "p_a", "b": "p_b", "c": "p_c"}, "prediction": "pred"}
    return {"monitor": name, "problem_type": problem_type,
            "source": {"table": table, "id_column": "id", "timestamp_column": "ts"},
            "features": [{"name": "x", "kind": "continuous"}, {"name": "cat", "kind": "categorical"}],
            "outputs": outputs, "chunking": {"period": "1d"},
            "reference": {"start": "2025-01-01", "end": "2025-01-05"},
            "output": {"path": out}, "mlflow": {"enabled": False}}


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    frame = _frame()
    table = write_delta(spark, frame, str(root / "preds"), SCHEMA)
    out = {}
    for name in ("binary", "multiclass"):
        config = parse_config(_config(name, table, str(root / "out"), name))
        fit(spark, config)
        out[name] = run(spark, config)
    # the schema changes after the fit: `added` is new, `spare` is gone, `spare2` is now a string
    changed = frame.drop(columns="spare").assign(spare2=frame["spare2"].astype(str), added=1.0)
    write_delta(spark, changed, table, SCHEMA.replace(", spare long", "").replace("spare2 long", "spare2 string")
                + ", added double")
    out["changed"] = run(spark, parse_config(_config("binary", table, str(root / "out"), "binary")))
    return frame, out


def _quality(result, metric: str, column: str) -> dict[int, object]:
    """day -> the whole-table data-quality result of `metric` for `column` (analysis chunks)."""
    return {r.chunk.index - 20089: r for r in result.metrics if r.family == "data_quality" and r.period == "analysis"
            and r.slice_key == "" and r.metric == metric and r.column == column}


def _alerted_days(rows: dict[int, object]) -> set[int]:
    return {d for d, r in rows.items() if r.alert}


def test_missing_and_unseen_values(runs):
    frame, out = runs
    missing, unseen = _quality(out["binary"], "missing_rate", "x"), _quality(out["binary"], "unseen", "cat")
    for day, rows in frame.groupby("day"):
        if day >= 4:
            assert missing[day].value == pytest.approx(rows["x"].isna().mean(), abs=1e-12)
            assert unseen[day].value == pytest.approx((rows["cat"] == "new").mean(), abs=1e-12)
    assert _alerted_days(missing) == {5} and _alerted_days(unseen) == {5}
    assert missing[5].value > 0.25 and unseen[5].value > 0.15


def test_out_of_range_values_and_scores(runs):
    frame, out = runs
    ref = frame[frame["day"] < 4]
    lo, hi = ref["x"].min(), ref["x"].max()
    x_range = _quality(out["binary"], "out_of_range", "x")
    scores = _quality(out["binary"], "score_out_of_range_rate", ":table")
    missing = _quality(out["binary"], "prediction_missing_rate", ":table")
    failed = _quality(out["binary"], "failed_prediction_rate", ":table")
    for day, rows in frame.groupby("day"):
        if day < 4:
            continue
        x = rows["x"].dropna()
        # 500 values per chunk < kll_k: the sketch holds them all, so its shares are exact
        assert x_range[day].value == pytest.approx(((x < lo) | (x > hi)).mean(), abs=1e-12)
        s = rows["score"]
        assert scores[day].value == pytest.approx(((s < 0) | (s > 1)).mean(), abs=1e-12)
        assert missing[day].value == pytest.approx(s.isna().mean(), abs=1e-12)
        assert failed[day].value == pytest.approx((s.isna() | (s < 0) | (s > 1)).mean(), abs=1e-12)
    assert _alerted_days(x_range) == {6} and x_range[6].value > 0.08
    assert _alerted_days(scores) == _alerted_days(missing) == _alerted_days(failed) == {6}
    assert scores[6].upper_threshold == 0.0  # the reference has no failed prediction: the first one alerts


def test_row_volume_anomaly(runs):
    _, out = runs
    counts = _quality(out["binary"], "row_count", ":table")
    ref = np.array([ROWS[d] for d in range(4)], float)
    assert {d: r.value for d, r in counts.items()} == {d: ROWS[d] for d in range(4, 9)}
    assert counts[7].lower_threshold == pytest.approx(ref.mean() - 3 * ref.std(), rel=1e-12)
    assert _alerted_days(counts) == {7}


def test_multiclass_scores_not_summing_to_one_and_unknown_classes(runs):
    frame, out = runs
    result = out["multiclass"]
    not_one = _quality(result, "scores_not_summing_to_one_rate", ":table")
    unknown = _quality(result, "unknown_prediction_rate", ":table")
    failed = _quality(result, "failed_prediction_rate", ":table")
    for day, rows in frame.groupby("day"):
        if day < 4:
            continue
        off = (rows[["p_a", "p_b", "p_c"]].sum(axis=1) - 1).abs() > 1e-3
        bad_class = ~rows["pred"].isin(["a", "b", "c"])
        assert not_one[day].value == pytest.approx(off.mean(), abs=1e-12)
        assert unknown[day].value == pytest.approx(bad_class.mean(), abs=1e-12)
        # rows scaled by 1.2 may also leave [0, 1]: the union counts each failed row once
        outside = (rows[["p_a", "p_b", "p_c"]] > 1).any(axis=1)
        assert failed[day].value == pytest.approx((off | bad_class | outside).mean(), abs=1e-12)
    assert _alerted_days(not_one) == {5} and _alerted_days(unknown) == {6}
    assert _alerted_days(failed) == {5, 6}


def test_schema_changes_since_the_fit(runs):
    _, out = runs
    before, after = out["binary"], out["changed"]
    assert not [r for r in before.metrics if r.metric == "schema_change"]
    changes = {r.column: r for r in after.metrics if r.metric == "schema_change"}
    assert {c: r.note for c, r in changes.items()} == {
        "added": "added (double)", "spare": "missing (was bigint)", "spare2": "retyped bigint -> string"}
    newest = max(c.chunk.index for c in after.profiles.whole)
    assert all(r.alert and r.chunk.index == newest and r.family == "data_quality" for r in changes.values())
    # a schema change recompares every chunk; the other results stay what they were
    assert set(after.compared) == {c.chunk.index for c in after.profiles.whole}
    old = {metric_key(r): r.value for r in before.metrics}
    new = {metric_key(r): r.value for r in after.metrics if r.metric != "schema_change"}
    assert len(old) == len(before.metrics)
    assert new.keys() == old.keys() and all(new[k] == pytest.approx(v, abs=1e-12) for k, v in old.items()
                                            if v is not None)
