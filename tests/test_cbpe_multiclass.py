"""Multiclass CBPE against an independent row-level computation (NannyML's formulas in numpy and
scikit-learn on the same rows): an isotonic calibrator per class fitted on the labelled reference rows
(one vs rest), each row's calibrated probabilities renormalised to sum 1, then per class the expected
one-vs-rest cells, ROC AUC and AP (rows ranked by the raw class score), macro averages.

Scores on a 0.01 grid, so every distinct score is its own bin and the binned calibrators equal the
row-level ones. Tolerances: the expected cells, F1, precision, recall, specificity, accuracy, confusion
matrix and business value are sums of per-row probabilities: 1e-9 relative; ROC AUC 1e-6 (ties
collapsed into one ROC point, as scikit-learn does); AP 2e-3 (within a tied score our closed form uses
the mean probability, the row sum depends on the order of the tied rows); sampling errors: NannyML's
multiclass components, 1e-9 relative (ROC AUC 5%).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.isotonic import IsotonicRegression

from monitoring.performance.estimated import ESTIMATED, VS_REALIZED
from monitoring.pipeline import fit, run

from .helpers import estimates_by_chunk, make_config, write_delta

REF_DAYS, DAYS, PER_DAY = 3, 6, 12_000
CLASSES = ["a", "b", "c"]
VALUE = [[5.0, -1.0, -2.0], [-3.0, 4.0, 0.0], [-1.0, -1.0, 6.0]]


def _data(rng) -> pd.DataFrame:
    n = DAYS * PER_DAY
    day = np.repeat(np.arange(DAYS), PER_DAY)
    shift = np.where(day >= REF_DAYS, 0.3 * (day - REF_DAYS + 1), 0.0)  # covariate shift after the reference
    x1, x2 = rng.normal(shift, 1.0, n), rng.normal(0.0, 1.0, n)
    logits = np.column_stack([1.6 * x1, 1.2 * x2, -0.8 * x1 - 0.8 * x2 + 0.3])
    true_p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.minimum((rng.random(n)[:, None] > np.cumsum(true_p, axis=1)).sum(axis=1), 2)
    model = np.exp(0.6 * logits) / np.exp(0.6 * logits).sum(axis=1, keepdims=True)  # miscalibrated
    scores = np.round(model, 2)
    micros = ((1735689600 + day * 86400 + rng.random(n) * 86000) * 1e6).astype("int64")
    frame = pd.DataFrame({"id": np.arange(n), "ts": pd.to_datetime(micros, unit="us", utc=True), "x1": x1,
                          "pred": np.array(CLASSES)[np.argmax(model, axis=1)], "y": np.array(CLASSES)[y],
                          "day": day})
    for i, c in enumerate(CLASSES):
        frame[f"p_{c}"] = scores[:, i]
    return frame


@pytest.fixture(scope="module")
def multiclass(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("cbpe_multiclass")
    pdf = _data(np.random.default_rng(31))
    preds = write_delta(spark, pdf.drop(columns=["y", "day"]), str(root / "preds"))
    labelled = pdf[(pdf["day"] < REF_DAYS) | (pdf["day"] == DAYS - 1)]
    labels = write_delta(spark, pd.DataFrame({"id": labelled["id"], "label": labelled["y"],
                                              "label_ts": labelled["ts"]}), str(root / "labels"))
    config = make_config(preds, [("x1", "continuous")], str(root / "out"), problem_type="multiclass",
                         outputs={"class_scores": {c: f"p_{c}" for c in CLASSES}, "prediction": "pred"},
                         labels={"table": labels, "label_column": "label", "timestamp_column": "label_ts"},
                         reference={"start": "2025-01-01", "end": "2025-01-04"},
                         estimation={"calibration": "always", "business_value": VALUE})
    fit(spark, config)
    return pdf, run(spark, config)


def _calibrated(ref: pd.DataFrame, chunk: pd.DataFrame) -> np.ndarray:
    cols = []
    for c in CLASSES:
        iso = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(ref[f"p_{c}"], ref["y"] == c)
        cols.append(iso.predict(chunk[f"p_{c}"].to_numpy()))
    p = np.column_stack(cols)
    return p / p.sum(axis=1, keepdims=True)


def _auc_ap(p: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """NannyML's estimated ROC AUC (ties collapsed into one point) and AP (per-row steps)."""
    order = np.argsort(-score, kind="stable")
    ps, ss = p[order], score[order]
    last = np.r_[np.nonzero(np.diff(ss))[0], len(ss) - 1]  # the last row of each distinct score
    tps = np.r_[0.0, np.cumsum(ps)[last]]
    fps = np.r_[0.0, last + 1] - tps
    tps, fps = np.round(tps, 5), np.round(fps, 5)
    cum = np.round(np.cumsum(ps), 5)
    recall = np.r_[0.0, cum / cum[-1]]
    return skm.auc(fps / fps[-1], tps / tps[-1]), float(np.sum(np.diff(recall) * cum / np.arange(1, len(ps) + 1)))


def _row_level(ref: pd.DataFrame, chunk: pd.DataFrame) -> dict[str, float]:
    p = _calibrated(ref, chunk)
    pred = chunk["pred"].to_numpy()
    out: dict[str, list[float]] = {m: [] for m in ("roc_auc", "average_precision", "f1", "precision", "recall",
                                                   "specificity")}
    for i, c in enumerate(CLASSES):
        yhat = pred == c
        tp, fp = p[yhat, i].sum(), (1 - p[yhat, i]).sum()
        fn, tn = p[~yhat, i].sum(), (1 - p[~yhat, i]).sum()
        auc, ap = _auc_ap(p[:, i], chunk[f"p_{c}"].to_numpy())
        for name, v in (("roc_auc", auc), ("average_precision", ap), ("f1", tp / (tp + 0.5 * (fp + fn))),
                        ("precision", tp / (tp + fp)), ("recall", tp / (tp + fn)), ("specificity", tn / (tn + fp))):
            out[name].append(v)
    want = {f"{m}_macro": float(np.mean(v)) for m, v in out.items()}
    confusion = np.array([[p[pred == q, j].sum() for q in CLASSES] for j in range(3)])
    want["accuracy"] = float(np.trace(confusion)) / len(chunk)
    want |= {f"confusion_{t}_{q}": confusion[j, k] for j, t in enumerate(CLASSES) for k, q in enumerate(CLASSES)}
    want["business_value"] = float(np.sum(np.array(VALUE) * confusion))
    return want



def test_multiclass_estimates_match_row_level_cbpe(multiclass):
    pdf, result = multiclass
    ref = pdf[pdf["day"] < REF_DAYS]
    est = estimates_by_chunk(result)
    assert len(est) == DAYS
    first = min(est)
    for index, metrics in est.items():
        want = _row_level(ref, pdf[pdf["day"] == index - first])
        for name, value in want.items():
            tol = {"roc_auc_macro": dict(abs=1e-6), "average_precision_macro": dict(abs=2e-3)}.get(
                name, dict(rel=1e-9))
            assert metrics[name].value == pytest.approx(value, **tol), (index, name)


def test_multiclass_sampling_errors_follow_nannyml_components(multiclass):
    pdf, result = multiclass
    ref = pdf[pdf["day"] < REF_DAYS]
    y, pred = ref["y"].to_numpy(), ref["pred"].to_numpy()
    n_ref, n = len(ref), PER_DAY

    def combined(parts, factor=1.0):
        return factor * math.sqrt(sum(var / (n * share) for var, share in parts)) / len(parts)

    parts: dict[str, list[tuple[float, float]]] = {m: [] for m in ("f1", "precision", "recall", "specificity",
                                                                   "roc_auc")}
    for c in CLASSES:
        t, h = y == c, pred == c
        tp, fp, fn, tn = np.sum(t & h), np.sum(~t & h), np.sum(t & ~h), np.sum(~t & ~h)
        for name, hits, total in (("f1", tp, tp + fn + fp), ("precision", tp, tp + fp), ("recall", tp, tp + fn),
                                  ("specificity", tn, tn + fp)):
            q = hits / total
            parts[name].append((q * (1 - q), total / n_ref))
        # NannyML's AUROC component: the minority side ranked ascending by the raw class score
        yy, ss = (t, ref[f"p_{c}"].to_numpy()) if t.mean() <= 0.5 else (~t, 1 - ref[f"p_{c}"].to_numpy())
        ranks = np.argsort(np.argsort(ss, kind="stable"), kind="stable")
        below = np.sort(ranks[yy]) - np.arange(yy.sum())
        parts["roc_auc"].append((np.var(below / np.sum(~yy)), yy.mean()))
    acc = np.mean(y == pred)
    for metrics in estimates_by_chunk(result).values():
        for name in ("f1", "precision", "recall", "specificity"):
            assert metrics[f"{name}_macro"].sampling_error == pytest.approx(combined(parts[name]), rel=1e-9), name
        assert metrics["roc_auc_macro"].sampling_error == pytest.approx(combined(parts["roc_auc"], 1.2), rel=0.05)
        assert metrics["accuracy"].sampling_error == pytest.approx(math.sqrt(acc * (1 - acc) / n), rel=1e-9)
        share = np.mean((y == "a") & (pred == "b"))
        assert metrics["confusion_a_b"].sampling_error == pytest.approx(math.sqrt(share * (1 - share) * n), rel=1e-9)


def test_multiclass_estimate_next_to_realized(multiclass):
    pdf, result = multiclass
    est = estimates_by_chunk(result)
    last = max(est)
    realized = {r.metric: r for r in result.metrics if r.family == "performance" and r.chunk.index == last
                and r.slice_key == ""}
    chunk = pdf[pdf["day"] == DAYS - 1]
    assert realized["confusion_a_b"].value == np.sum((chunk["y"] == "a") & (chunk["pred"] == "b"))
    gaps = {r.metric: r.value for r in result.metrics if r.family == ESTIMATED and r.comparison == VS_REALIZED
            and r.chunk.index == last and r.slice_key == ""}
    for name in ("roc_auc_macro", "f1_macro", "accuracy", "business_value"):
        assert gaps[name] == pytest.approx(est[last][name].value - realized[name].value, abs=1e-9)
        # pure covariate shift: the realized value lies inside the estimate's confidence band
        assert est[last][name].lower_confidence <= realized[name].value <= est[last][name].upper_confidence, name
