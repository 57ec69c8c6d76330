"""CBPE against an independent row-level computation (NannyML's formulas on the same rows in numpy and
scikit-learn: isotonic calibration fitted on the labelled reference rows, rows sorted by score).

Tolerances: scores on a 0.01 grid (ties; every distinct score is its own bin) 1e-6; continuous scores
2e-3 (the calibrated probability varies inside a 1/2000-wide bin); sampling errors: accuracy, F1,
precision, recall exact (1e-9), ROC AUC within 5% relative (tie order, bins).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.isotonic import IsotonicRegression

from monitoring.performance.cbpe import _ece, fit_calibrator
from monitoring.performance.estimated import ESTIMATED, VS_REALIZED
from monitoring.pipeline import fit, run

from .helpers import estimates_by_chunk, make_config, write_delta

REF_DAYS, DAYS, PER_DAY = 3, 7, 20_000


def _data(rng, grid: bool) -> pd.DataFrame:
    n = DAYS * PER_DAY
    day = np.repeat(np.arange(DAYS), PER_DAY)
    shift = np.where(day >= REF_DAYS, 0.15 * (day - REF_DAYS + 1), 0.0)  # covariate shift after the reference
    x = rng.normal(shift, 1.0, n)
    true_p = 1 / (1 + np.exp(-(1.8 * x - 0.5)))
    y = (rng.random(n) < true_p).astype(int)
    score = 1 / (1 + np.exp(-(1.2 * x - 0.2)))  # miscalibrated: calibration matters
    if grid:
        score = np.round(score, 2)
    micros = ((1735689600 + day * 86400 + rng.random(n) * 86000) * 1e6).astype("int64")
    ts = pd.to_datetime(micros, unit="us", utc=True)
    return pd.DataFrame({"id": np.arange(n), "ts": ts, "x": x, "score": score,
                         "pred": (score >= 0.5).astype(int), "y": y, "day": day})


def _setup(spark, root, pdf: pd.DataFrame, calibration: str):
    preds = write_delta(spark, pdf.drop(columns=["y", "day"]), str(root / "preds"))
    labelled = pdf[(pdf["day"] < REF_DAYS) | (pdf["day"] == DAYS - 1)]  # reference + the last day
    labels = write_delta(spark, pd.DataFrame({"id": labelled["id"], "label": labelled["y"],
                                              "label_ts": labelled["ts"]}), str(root / "labels"))
    config = make_config(preds, [("x", "continuous")], str(root / "out"),
                         outputs={"score": "score", "prediction": "pred"},
                         labels={"table": labels, "label_column": "label", "timestamp_column": "label_ts"},
                         reference={"start": "2025-01-01", "end": "2025-01-04"},
                         estimation={"calibration": calibration, "business_value": [[0, -5], [-20, 10]]})
    fit(spark, config)
    return config, run(spark, config)


@pytest.fixture(scope="module")
def grid(spark, tmp_path_factory):
    pdf = _data(np.random.default_rng(21), grid=True)
    return pdf, *_setup(spark, tmp_path_factory.mktemp("cbpe_grid"), pdf, "always")


@pytest.fixture(scope="module")
def continuous(spark, tmp_path_factory):
    pdf = _data(np.random.default_rng(22), grid=False)
    return pdf, *_setup(spark, tmp_path_factory.mktemp("cbpe_cont"), pdf, "always")


def _row_level(ref: pd.DataFrame, chunk: pd.DataFrame) -> dict[str, float]:
    """NannyML's CBPE on rows: isotonic fitted on the reference, per-row cumulative sums."""
    iso = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(ref["score"], ref["y"])
    p = iso.predict(chunk["score"].to_numpy())
    yhat = chunk["pred"].to_numpy()
    order = np.argsort(-chunk["score"].to_numpy(), kind="stable")
    ps = p[order]
    n = len(ps)
    tps = np.concatenate([[0.0], np.cumsum(ps)])
    fps = np.arange(n + 1) - tps
    tps, fps = np.round(tps, 5), np.round(fps, 5)
    auc = skm.auc(fps / fps[-1], tps / tps[-1])
    cum = np.round(np.cumsum(ps), 5)
    recall = np.concatenate([[0.0], cum / cum[-1]])
    ap = float(np.sum(np.diff(recall) * cum / np.arange(1, n + 1)))
    tp, fp = float(np.sum(p * yhat)), float(np.sum((1 - p) * yhat))
    fn, tn = float(np.sum(p * (1 - yhat))), float(np.sum((1 - p) * (1 - yhat)))
    return {"roc_auc": auc, "average_precision": ap, "f1": tp / (tp + 0.5 * (fp + fn)), "precision": tp / (tp + fp),
            "recall": tp / (tp + fn), "specificity": tn / (tn + fp), "accuracy": (tp + tn) / n,
            "true_positive": tp, "false_positive": fp, "false_negative": fn, "true_negative": tn,
            "business_value": 10 * tp - 5 * fp - 20 * fn}



def _check_against_rows(pdf, result, tol: float) -> None:
    ref = pdf[pdf["day"] < REF_DAYS]
    est = estimates_by_chunk(result)
    assert len(est) == DAYS
    first = min(est)
    for index, metrics in est.items():
        want = _row_level(ref, pdf[pdf["day"] == index - first])
        for name, value in want.items():
            scale = PER_DAY if name in ("true_positive", "false_positive", "false_negative", "true_negative",
                                        "business_value") else 1.0
            assert metrics[name].value == pytest.approx(value, abs=tol * scale), (index, name)


def test_estimates_match_row_level_cbpe_on_tied_scores(grid):
    pdf, _, result = grid
    _check_against_rows(pdf, result, 1e-6)


def test_estimates_match_row_level_cbpe_on_continuous_scores(continuous):
    pdf, _, result = continuous
    _check_against_rows(pdf, result, 2e-3)


def test_sampling_errors_follow_nannyml_components(continuous):
    pdf, _, result = continuous
    ref = pdf[pdf["day"] < REF_DAYS]
    y, yhat, s = ref["y"].to_numpy(), ref["pred"].to_numpy(), ref["score"].to_numpy()
    n_ref = len(ref)
    tp, fp = np.sum((y == 1) & (yhat == 1)), np.sum((y == 0) & (yhat == 1))
    fn, tn = np.sum((y == 1) & (yhat == 0)), np.sum((y == 0) & (yhat == 0))
    n = PER_DAY
    acc = (tp + tn) / n_ref
    q = tp / (tp + fn + fp)
    f1_se = (tp + fn + fp) / (tp + 0.5 * (fn + fp)) * math.sqrt(q * (1 - q)) / math.sqrt(n * (tp + fn + fp) / n_ref)
    prec, rec = tp / (tp + fp), tp / (tp + fn)
    # AUROC component: positives (minority class) ranked ascending; negatives below each / n_neg
    pos_is_minority = y.mean() <= 0.5
    yy, ss = (y, s) if pos_is_minority else (1 - y, 1 - s)
    ranks = np.argsort(np.argsort(ss, kind="stable"), kind="stable")
    pos_ranks = np.sort(ranks[yy == 1])
    below = pos_ranks - np.arange(len(pos_ranks))
    auc_se = np.std(below / np.sum(yy == 0)) / math.sqrt(n * yy.mean())
    for metrics in estimates_by_chunk(result).values():
        assert metrics["accuracy"].sampling_error == pytest.approx(math.sqrt(acc * (1 - acc) / n), rel=1e-9)
        assert metrics["f1"].sampling_error == pytest.approx(f1_se, rel=1e-9)
        assert metrics["precision"].sampling_error == pytest.approx(
            math.sqrt(prec * (1 - prec)) / math.sqrt(n * (tp + fp) / n_ref), rel=1e-9)
        assert metrics["recall"].sampling_error == pytest.approx(
            math.sqrt(rec * (1 - rec)) / math.sqrt(n * (tp + fn) / n_ref), rel=1e-9)
        assert metrics["roc_auc"].sampling_error == pytest.approx(auc_se, rel=0.05)
        r = metrics["roc_auc"]
        assert r.lower_confidence == pytest.approx(max(0.0, r.value - 3 * r.sampling_error), abs=1e-12)


def test_estimate_next_to_realized_and_thresholds_from_realized(continuous):
    pdf, _, result = continuous
    est = estimates_by_chunk(result)
    last = max(est)
    realized = {r.metric: r for r in result.metrics if r.family == "performance" and r.chunk.index == last
                and r.slice_key == ""}
    gaps = {r.metric: r for r in result.metrics if r.family == ESTIMATED and r.comparison == VS_REALIZED
            and r.chunk.index == last and r.slice_key == ""}
    for name in ("roc_auc", "accuracy", "f1"):
        assert gaps[name].value == pytest.approx(est[last][name].value - realized[name].value, abs=1e-12)
        assert (est[last][name].lower_threshold, est[last][name].upper_threshold) == \
            (realized[name].lower_threshold, realized[name].upper_threshold)
        # pure covariate shift: the realized value lies inside the estimate's confidence band
        assert est[last][name].lower_confidence <= realized[name].value <= est[last][name].upper_confidence
    # no labels on the middle days: estimates only, no estimation error rows
    assert not any(r.comparison == VS_REALIZED and r.chunk.index == last - 1 for r in result.metrics)


def test_calibration_modes_and_the_auto_check():
    rng = np.random.default_rng(5)
    bins = 2000
    s = rng.random(200_000)
    b = np.minimum((s * bins).astype(int), bins - 1)
    sums = np.bincount(b, weights=s, minlength=bins)

    def fitted(y, mode):
        pos = np.bincount(b[y], minlength=bins).astype(float)
        return fit_calibrator(pos, np.bincount(b[~y], minlength=bins).astype(float), sums, mode)

    skewed = fitted(rng.random(s.size) < s ** 3, "auto")  # scores far from probabilities
    assert skewed.applied and skewed.ece_calibrated < skewed.ece_raw / 5, (skewed.ece_raw, skewed.ece_calibrated)
    honest = fitted(rng.random(s.size) < s, "auto")  # calibrated already: both errors are noise
    assert honest.ece_raw < 0.006 and abs(honest.ece_raw - honest.ece_calibrated) < 0.003
    assert not fitted(rng.random(s.size) < s ** 3, "never").applied
    assert fitted(rng.random(s.size) < s, "always").applied
    # the isotonic map of calibrated scores stays close to the identity
    assert np.max(np.abs(np.array(honest.y) - np.array(honest.x))) < 0.05
    # the ECE of binned points equals the row-level ECE on 10 equal-count bins when bins split evenly
    p = np.repeat(np.linspace(0.05, 0.95, 10), 100)
    yy = rng.random(p.size) < p
    row_ece = sum(abs(p[i:i + 100].mean() - yy[i:i + 100].mean()) * 100 / p.size for i in range(0, p.size, 100))
    points = np.linspace(0.05, 0.95, 10)
    pos = np.array([yy[i * 100:(i + 1) * 100].sum() for i in range(10)], float)
    assert _ece(points, pos, 100 - pos) == pytest.approx(row_ece, abs=1e-12)
