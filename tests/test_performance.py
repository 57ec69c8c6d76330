"""Realized performance against scikit-learn on the same rows (latest label per id).

Tolerances: threshold metrics, log loss, Brier exact (1e-9); ROC AUC and average precision within 1e-3
(scores binned on 2000 bins; tested with and without ties); regression metrics 1e-9 relative.
Label handling: duplicates (latest wins), null labels, labels for unknown ids, one-class chunks.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest
from sklearn import metrics as skm

from monitoring.drift.compare import ANALYSIS
from monitoring.labels import join_labels
from monitoring.performance.results import PERFORMANCE
from monitoring.pipeline import fit, run
from monitoring.stores.tables import read_delta

from .helpers import make_config

DAYS, PER_DAY = 5, 4000
START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _ts(day: np.ndarray, rng) -> pa.Array:
    ts = START.timestamp() + day * 86400 + rng.random(len(day)) * 86000
    return pa.array((ts * 1e6).astype("int64"), pa.timestamp("us", "UTC"))


def _write(spark, root, name: str, table: pa.Table) -> str:
    path = str(root / name)
    spark.createDataFrame(table).write.format("delta").save(path)
    return path


@pytest.fixture(scope="module")
def binary(spark, tmp_path_factory):
    """Binary scores (day 3 rounded to 2 decimals: ties); day 4 labelled with one class only. Labels: a
    stale duplicate for some ids, null labels, labels for ids without a prediction, 30% unlabelled."""
    rng = np.random.default_rng(3)
    n = DAYS * PER_DAY
    day = np.repeat(np.arange(DAYS), PER_DAY)
    y = (rng.random(n) < 0.3).astype(int)
    score = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.2 * y - 0.8)))
    score = np.where(day == 3, np.round(score, 2), score)
    y = np.where(day == 4, 0, y)
    labelled = rng.random(n) < 0.7
    ids = np.arange(n)
    dup = labelled & (rng.random(n) < 0.1)  # an older, wrong label for these ids
    null = ~labelled & (rng.random(n) < 0.2)
    lab_ids = np.concatenate([ids[labelled], ids[dup], ids[null], n + np.arange(50)])
    lab_vals = np.concatenate([y[labelled], 1 - y[dup], np.zeros(null.sum(), int), np.ones(50, int)])
    lab_mask = np.concatenate([np.zeros(labelled.sum() + dup.sum(), bool), np.ones(null.sum(), bool),
                               np.zeros(50, bool)])
    lab_day = np.concatenate([day[labelled] + 10, day[dup] + 5, day[null] + 10, np.full(50, 20)])
    root = tmp_path_factory.mktemp("perf_binary")
    preds = _write(spark, root, "preds", pa.table({"id": ids, "ts": _ts(day, rng), "x": rng.normal(size=n),
                                                   "score": score, "pred": (score >= 0.4).astype(int)}))
    labels = _write(spark, root, "labels", pa.table({"id": lab_ids, "label": pa.array(lab_vals, mask=lab_mask),
                                                     "label_ts": _ts(lab_day, rng)}))
    config = make_config(preds, [("x", "continuous")], str(root / "out"), outputs={"score": "score",
                                                                                    "prediction": "pred"},
                         labels={"table": labels, "label_column": "label", "timestamp_column": "label_ts"},
                         reference={"start": "2025-01-01", "end": "2025-01-03"})
    fit(spark, config)
    result = run(spark, config)
    truth = {"y": y, "score": score, "pred": (score >= 0.4).astype(int), "labelled": labelled, "day": day}
    return config, result, truth, (labelled.sum() + dup.sum() + null.sum() + 50, null.sum(), dup.sum(), 50)


def _perf(result, period=ANALYSIS):
    out: dict[int, dict] = {}
    for r in result.metrics:
        if r.family == PERFORMANCE and r.period == period and r.slice_key == "":
            out.setdefault(r.chunk.index, {})[r.metric] = r
    return out


def test_binary_metrics_match_sklearn(binary):
    _, result, t, _ = binary
    perf = {**_perf(result, "reference"), **_perf(result)}
    assert len(perf) == DAYS
    for index, m in perf.items():
        day = index - min(perf)
        rows = (t["day"] == day) & t["labelled"]
        y, s, p = t["y"][rows], t["score"][rows], t["pred"][rows]
        assert m["label_coverage"].value == pytest.approx(rows.sum() / (t["day"] == day).sum(), abs=1e-12)
        assert m["accuracy"].value == pytest.approx(skm.accuracy_score(y, p), abs=1e-12)
        assert m["log_loss"].value == pytest.approx(skm.log_loss(y, s, labels=[0, 1]), rel=1e-9)
        assert m["brier_score"].value == pytest.approx(skm.brier_score_loss(y, s, pos_label=1), rel=1e-9)
        tn, fp, fn, tp = skm.confusion_matrix(y, p, labels=[0, 1]).ravel()
        assert (m["true_positive"].value, m["false_positive"].value, m["false_negative"].value,
                m["true_negative"].value) == (tp, fp, fn, tn)
        assert m["precision"].value == pytest.approx(skm.precision_score(y, p), abs=1e-12)
        assert m["specificity"].value == pytest.approx(tn / (tn + fp), abs=1e-12)
        if y.min() == y.max():  # the one-class day
            assert m["roc_auc"].value is None and "one class" in m["roc_auc"].note
            assert m["recall"].value is None and m["recall"].note
            continue
        assert m["recall"].value == pytest.approx(skm.recall_score(y, p), abs=1e-12)
        assert m["f1"].value == pytest.approx(skm.f1_score(y, p), abs=1e-12)
        assert m["roc_auc"].value == pytest.approx(skm.roc_auc_score(y, s), abs=1e-3)
        assert m["average_precision"].value == pytest.approx(skm.average_precision_score(y, s), abs=1e-3)
        assert m["roc_auc"].lower_confidence < m["roc_auc"].value < m["roc_auc"].upper_confidence


def test_label_counts(spark, binary):
    config, _, _, (rows, nulls, dupes, unknown) = binary
    source = read_delta(spark, config.source.table, "source.table").df
    labels = read_delta(spark, config.labels.table, "labels.table").df
    join = join_labels(source, labels, config.labels, "id", False)
    join.rows.groupBy().count().collect()  # the counts are observed while the joined rows are aggregated
    stats = join.counts.stats()
    assert (stats.labels, stats.null_labels, stats.duplicates, stats.unknown_ids) == (rows, nulls, dupes, unknown)


def test_insufficient_labels_are_null_with_a_reason(spark, binary):
    config, _, _, _ = binary
    strict = type(config)(**{**config.__dict__, "labels": type(config.labels)(
        **{**config.labels.__dict__, "min_coverage": 0.9})})
    result = run(spark, strict)
    for m in _perf(result).values():
        assert m["label_coverage"].value < 0.9
        assert m["roc_auc"].value is None and m["roc_auc"].note.startswith("insufficient labels")


@pytest.fixture(scope="module")
def regression(spark, tmp_path_factory):
    rng = np.random.default_rng(4)
    n = 3 * PER_DAY
    day = np.repeat(np.arange(3), PER_DAY)
    y = rng.lognormal(3, 0.5, n)
    pred = y * rng.lognormal(0, 0.2, n) + rng.normal(0, 1, n)
    root = tmp_path_factory.mktemp("perf_reg")
    preds = _write(spark, root, "preds", pa.table({"id": np.arange(n), "ts": _ts(day, rng), "x": rng.normal(size=n),
                                                   "pred": pred}))
    labels = _write(spark, root, "labels", pa.table({"id": np.arange(n), "label": y, "label_ts": _ts(day + 5, rng)}))
    config = make_config(preds, [("x", "continuous")], str(root / "out"), problem_type="regression",
                         outputs={"prediction": "pred"},
                         labels={"table": labels, "label_column": "label", "timestamp_column": "label_ts"})
    fit(spark, config)
    return run(spark, config), y, pred, day, config


def test_regression_metrics_match_sklearn(regression):
    result, y, pred, day, _ = regression
    for index, m in _perf(result).items():
        rows = day == index - min(_perf(result)) + 1
        yy, pp = y[rows], pred[rows]
        expected = {"mae": skm.mean_absolute_error(yy, pp), "mse": skm.mean_squared_error(yy, pp),
                    "rmse": np.sqrt(skm.mean_squared_error(yy, pp)),
                    "mape": skm.mean_absolute_percentage_error(yy, pp), "r2": skm.r2_score(yy, pp)}
        if (pp >= 0).all():
            expected["msle"] = skm.mean_squared_log_error(yy, pp)
        else:
            assert m["msle"].value is None and "negative" in m["msle"].note
        for name, value in expected.items():
            assert m[name].value == pytest.approx(value, rel=1e-9), name


@pytest.fixture(scope="module")
def multiclass(spark, tmp_path_factory):
    rng = np.random.default_rng(6)
    n = 2 * PER_DAY
    day = np.repeat(np.arange(2), PER_DAY)
    logits = rng.normal(0, 1, (n, 3))
    y = np.array([rng.choice(3, p=np.exp(r) / np.exp(r).sum()) for r in logits * 1.5])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = np.array(["repaid", "late", "default"], dtype=object)
    root = tmp_path_factory.mktemp("perf_multi")
    preds = _write(spark, root, "preds", pa.table({"id": np.arange(n), "ts": _ts(day, rng), "x": rng.normal(size=n),
                                                   "p_repaid": probs[:, 0], "p_late": probs[:, 1],
                                                   "p_default": probs[:, 2]}))
    labels = _write(spark, root, "labels", pa.table({"id": np.arange(n), "label": names[y],
                                                     "label_ts": _ts(day + 5, rng)}))
    config = make_config(preds, [("x", "continuous")], str(root / "out"), problem_type="multiclass",
                         outputs={"class_scores": {"repaid": "p_repaid", "late": "p_late", "default": "p_default"}},
                         labels={"table": labels, "label_column": "label", "timestamp_column": "label_ts"})
    fit(spark, config)
    return run(spark, config), y, probs, config


def test_multiclass_metrics_match_sklearn(multiclass):
    result, y, probs, _ = multiclass
    (m,) = _perf(result).values()
    rows = slice(PER_DAY, None)  # the analysis day
    yy, pp = y[rows], probs[rows]
    pred = pp.argmax(axis=1)
    assert m["accuracy"].value == pytest.approx(skm.accuracy_score(yy, pred), abs=1e-12)
    assert m["log_loss"].value == pytest.approx(skm.log_loss(yy, pp, labels=[0, 1, 2]), rel=1e-9)
    for average in ("macro", "weighted"):
        assert m[f"precision_{average}"].value == pytest.approx(skm.precision_score(yy, pred, average=average),
                                                                abs=1e-12)
        assert m[f"recall_{average}"].value == pytest.approx(skm.recall_score(yy, pred, average=average), abs=1e-12)
        assert m[f"f1_{average}"].value == pytest.approx(skm.f1_score(yy, pred, average=average), abs=1e-12)
        assert m[f"roc_auc_{average}"].value == pytest.approx(
            skm.roc_auc_score(yy, pp, multi_class="ovr", average=average), abs=1e-3)


# ------------------------------------------------------------------ compatibility: nannyml (issue 21)
# NannyML 0.13.1's realized sampling errors (nannyml/sampling_error/*.py), row by row as its source computes
# them: a component from the labelled reference rows, then component / sqrt(n x share) for a chunk of n
# labelled rows. Driftline's come from the stored states: exact counts and loss sums (1e-9 relative), ROC AUC
# from the 2000 score bins (ties inside a bin in expected order: measured 2e-5, asserted 1e-4 relative).

def _compatible(config):
    from dataclasses import replace

    from monitoring.config import NANNYML
    return replace(config, drift=replace(config.drift, compatibility=NANNYML))


def _nannyml_errors(result, config) -> dict[int, dict[str, float]]:
    from monitoring.performance.results import performance_results
    from monitoring.slices import WHOLE

    out: dict[int, dict[str, float]] = {}
    for r in performance_results(result.reference.chunks_of(WHOLE), result.profiles.whole, _compatible(config)):
        if r.sampling_error is not None:
            out.setdefault(r.chunk.index, {})[r.metric] = r.sampling_error
    return out


def _auroc_component(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    if np.mean(y) > 0.5:
        y, s = 1 - y, 1 - s
    order = np.argsort(s)
    y = y[order]
    ranks = np.unique(y * np.arange(len(y)))[1:]
    ser = (ranks - np.arange(len(ranks))) / (len(y) - y.sum())
    return float(np.std(ser)), float(y.sum() / len(y))


def _rate_components(y: np.ndarray, p: np.ndarray) -> dict[str, tuple[float, float]]:
    tp, fp, fn, tn = ((y == 1) & (p == 1)).sum(), ((y == 0) & (p == 1)).sum(), ((y == 1) & (p == 0)).sum(), \
        ((y == 0) & (p == 0)).sum()
    f1_obs = np.concatenate([np.ones(tp), np.zeros(fn + fp)]) * (tp + fn + fp) / ((fn + fp) * 0.5 + tp)
    return {"f1": (np.std(f1_obs), (tp + fn + fp) / len(y)),
            "precision": (np.std(np.concatenate([np.ones(tp), np.zeros(fp)])), (tp + fp) / len(y)),
            "recall": (np.std(np.concatenate([np.ones(tp), np.zeros(fn)])), y.sum() / len(y)),
            "specificity": (np.std(np.concatenate([np.ones(tn), np.zeros(fp)])), (tn + fp) / len(y)),
            "accuracy": (np.std(y == p), 1.0)}


def test_nannyml_realized_sampling_errors_binary(binary):
    config, result, t, _ = binary
    days = {i: i - min(_perf(result, "reference")) for i in {**_perf(result, "reference"), **_perf(result)}}
    reference = np.isin(t["day"], [days[i] for i in _perf(result, "reference")]) & t["labelled"]
    y, s, p = t["y"][reference], t["score"][reference], t["pred"][reference]
    components = _rate_components(y, p) | {"roc_auc": _auroc_component(y, s)}
    counts = {"true_positive": (y == 1) & (p == 1), "false_positive": (y == 0) & (p == 1),
              "false_negative": (y == 1) & (p == 0), "true_negative": (y == 0) & (p == 0)}
    errors = _nannyml_errors(result, config)
    assert set(errors) == set(days)
    for index, got in errors.items():
        rows = (t["day"] == days[index]) & t["labelled"]
        n = rows.sum()
        for metric, (std, share) in components.items():
            if metric not in got:  # undefined on the one-class day: no value, no error
                assert t["y"][rows].max() == 0 and metric in ("roc_auc", "recall", "f1"), metric
                continue
            assert got[metric] == pytest.approx(std / np.sqrt(n * share), rel=1e-4 if metric == "roc_auc" else 1e-9)
        for metric, cell in counts.items():
            assert got[metric] == pytest.approx(np.std(cell) * np.sqrt(n), rel=1e-9), metric
    # the default: each chunk's own rows (Hanley-McNeil for ROC AUC), not the reference's components
    own = {r.chunk.index: r.sampling_error for r in result.metrics if r.metric == "f1" and r.family == PERFORMANCE
           and r.slice_key == "" and r.sampling_error is not None}
    assert all(abs(own[i] / errors[i]["f1"] - 1) > 1e-3 for i in own)


def test_nannyml_realized_sampling_errors_regression(regression):
    result, y, pred, day, config = regression
    reference = day == 0
    e = y[reference] - pred[reference]
    se, sle = e ** 2, (np.log1p(y[reference]) - np.log1p(pred[reference])) ** 2
    want = {"mae": np.std(np.abs(e)), "mse": np.std(se), "mape": np.std(np.abs(e) / y[reference]),
            "msle": np.std(sle)}
    errors = _nannyml_errors(result, config)
    assert len(errors) == 3
    for index, got in errors.items():
        n = (day == index - min(errors)).sum()
        for metric, std in want.items():
            assert got[metric] == pytest.approx(std / np.sqrt(n), rel=1e-9), metric
        assert got["rmse"] == pytest.approx(np.sqrt(np.std(se) ** 2 / (4 * n * np.mean(se))), rel=1e-9)
        assert got["rmsle"] == pytest.approx(np.sqrt(np.std(sle) ** 2 / (4 * n * np.mean(sle))), rel=1e-9)


def test_nannyml_realized_sampling_errors_multiclass(multiclass):
    """Macro metrics: sqrt(sum_k var_k / (n share_k)) / K over the classes one vs rest, variances without F1's
    correcting factor, ROC AUC x 1.2 (nannyml/sampling_error/multiclass_classification.py)."""
    result, y, probs, config = multiclass
    reference = slice(None, PER_DAY)
    yy, pp = y[reference], probs[reference]
    pred = pp.argmax(axis=1)
    per_class: dict[str, list[tuple[float, float]]] = {}
    for k in range(3):
        rates = _rate_components((yy == k).astype(int), (pred == k).astype(int))
        rates["f1"] = (np.std(np.concatenate([np.ones(((yy == k) & (pred == k)).sum()),
                                              np.zeros(((yy == k) != (pred == k)).sum())])), rates["f1"][1])
        rates["roc_auc"] = _auroc_component((yy == k).astype(int), pp[:, k])
        for metric in ("f1", "precision", "recall", "specificity", "roc_auc"):
            per_class.setdefault(metric, []).append(rates[metric])
    errors = _nannyml_errors(result, config)
    assert len(errors) == 2
    for got in errors.values():
        n = PER_DAY
        for metric, comps in per_class.items():
            factor = 1.2 if metric == "roc_auc" else 1.0
            want = factor * np.sqrt(sum(std ** 2 / (n * share) for std, share in comps)) / 3
            assert got[f"{metric}_macro"] == pytest.approx(want, rel=1e-4 if metric == "roc_auc" else 1e-9), metric
        assert got["accuracy"] == pytest.approx(np.std(yy == pred) / np.sqrt(n), rel=1e-9)
