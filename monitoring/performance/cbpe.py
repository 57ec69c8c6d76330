"""Confidence-based performance estimation (CBPE, NannyML's method) for classification.

Without labels, a calibrated score p is the probability that the row is positive, so the expected
confusion cells of a chunk are sums of p and 1 - p over its predicted positives and negatives, and the
expected ROC curve follows the cumulative sums of p in score order. Everything is computed from the
chunk's score histograms (counts and score sums of all rows per class, prediction and one of
SCORE_BINS score bins, built in the Spark pass), never from rows. Conventions, the binning error and
where we differ from NannyML: docs/estimated-performance.md.

Multiclass: one calibrator per class (one vs rest), applied to every row in Spark and renormalised so a
row's probabilities sum to 1 (ClassCalibrators); per class the histograms then also hold the sums of
those probabilities, and the estimates are macro averages of the one-vs-rest estimates.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType
from scipy.optimize import isotonic_regression
from scipy.special import digamma

from monitoring.performance.nannyml_errors import (
    MACRO_METRICS,
    Components,
    MulticlassComponents,
    binary_errors,
    macro_se,
    multiclass_errors,
)
from monitoring.performance.realized import COUNT_METRICS, PerfValue, roc_auc
from monitoring.performance.state import SCORE_BINS, PerformanceState
from monitoring.stores.tables import quote_part

ECE_BINS, SPLITS, TEST_SHARE, SEED = 10, 10, 0.1, 42  # NannyML's calibration check
ESTIMATED_METRICS = ("roc_auc", "average_precision", "f1", "precision", "recall", "specificity", "accuracy",
                     "true_positive", "false_positive", "false_negative", "true_negative", "business_value")


@dataclass(frozen=True)
class Calibrator:
    """Isotonic map from score to probability, linear between knots and flat outside (scikit-learn's
    IsotonicRegression(out_of_bounds="clip")); `applied` False means scores are used as they are."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    applied: bool
    ece_raw: float | None = None
    ece_calibrated: float | None = None

    def __call__(self, s: np.ndarray) -> np.ndarray:
        return np.interp(s, self.x, self.y) if self.applied and self.x else s


@dataclass(frozen=True)
class ClassCalibrators:
    """Multiclass CBPE: each class's calibrator applied to its score column, then every row's
    probabilities divided by their sum (uniform when the sum is 0; NannyML). A row with a missing class
    score gets no probabilities. Applied per row in Spark as a pandas UDF (`column`)."""

    classes: tuple[tuple[str, str], ...]  # (class label, score column) in config order
    calibrators: tuple[Calibrator, ...]

    def outputs(self) -> tuple[str, ...]:
        return tuple(f"c{i}" for i in range(len(self.classes)))

    def fingerprint(self) -> str:
        text = json.dumps([self.classes, [(c.x, c.y, c.applied) for c in self.calibrators]])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Rows x classes scores -> calibrated, renormalised probabilities (NaN rows stay NaN)."""
        p = np.column_stack([cal(scores[:, i]) for i, cal in enumerate(self.calibrators)])
        total = p.sum(axis=1, keepdims=True)
        uniform = np.full_like(p, 1.0 / p.shape[1])
        return np.divide(p, total, out=uniform, where=total != 0)

    def column(self) -> Column:
        schema = StructType([StructField(name, DoubleType()) for name in self.outputs()])
        names = self.outputs()

        @F.pandas_udf(schema)
        def calibrate(*cols: pd.Series) -> pd.DataFrame:
            scores = np.column_stack([c.to_numpy(dtype=float, na_value=np.nan) for c in cols])
            return pd.DataFrame(self.probabilities(scores), columns=list(names))  # NaN -> null in Spark

        return calibrate(*[F.col(quote_part(col)).cast("double") for _, col in self.classes])


def prediction_bins(state: PerformanceState, cls: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per score bin, all rows: counts predicted positive / negative and their score sums."""
    n1, n0, s1, s0 = (np.zeros(SCORE_BINS) for _ in range(4))
    for key, v in state.values.items():
        if key.startswith(("a|", "as|")):
            kind, k, yhat, b = key.split("|")
            if k == cls:
                target = (n1 if yhat == "1" else n0) if kind == "a" else (s1 if yhat == "1" else s0)
                target[int(b)] += v
    return n1, n0, s1, s0


def fit_calibrator(pos: np.ndarray, neg: np.ndarray, sums: np.ndarray, mode: str) -> Calibrator:
    """Isotonic calibration of the reference scores (bins as weighted points at their mean score).
    mode auto: applied only when it lowers the expected calibration error on held-out rows."""
    knots = _isotonic(pos, neg, sums)
    x, y = tuple(map(float, knots[0])), tuple(map(float, knots[1]))
    if mode == "never" or not x:
        return Calibrator(x, y, False)
    if mode == "always":
        return Calibrator(x, y, True)
    raw, calibrated = _held_out_ece(pos, neg, sums)
    return Calibrator(x, y, calibrated is not None and raw > calibrated, raw, calibrated)


def _isotonic(pos: np.ndarray, neg: np.ndarray, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = pos + neg
    keep = w > 0
    if not keep.any():
        return np.array([]), np.array([])
    x = sums[keep] / w[keep]
    fitted = isotonic_regression(pos[keep] / w[keep], weights=w[keep], increasing=True).x
    return x, np.clip(fitted, 0.0, 1.0)


def _held_out_ece(pos: np.ndarray, neg: np.ndarray, sums: np.ndarray) -> tuple[float, float | None]:
    """NannyML's check on binned rows: 10 stratified 90/10 splits (per-bin counts drawn without
    replacement, seeded), isotonic fitted on each train part, ECE of the pooled test parts, raw vs
    calibrated. One class only, or a near-perfect ranking (AUC > 0.999): no calibration."""
    x = np.divide(sums, pos + neg, out=np.zeros(SCORE_BINS), where=(pos + neg) > 0)
    raw_ece = _ece(x, pos, neg)
    if not pos.sum() or not neg.sum() or roc_auc(pos, neg)[0] > 0.999:
        return raw_ece, None
    rng = np.random.default_rng(SEED)
    test_pos, test_neg, raw_p, cal_p = [], [], [], []
    for _ in range(SPLITS):
        tp = rng.multivariate_hypergeometric(pos.astype(np.int64), round(TEST_SHARE * pos.sum()))
        tn = rng.multivariate_hypergeometric(neg.astype(np.int64), round(TEST_SHARE * neg.sum()))
        train_pos, train_neg = pos - tp, neg - tn
        train_sums = np.divide(sums * (train_pos + train_neg), pos + neg, out=np.zeros(SCORE_BINS),
                               where=(pos + neg) > 0)
        kx, ky = _isotonic(train_pos, train_neg, train_sums)
        test_pos.append(tp)
        test_neg.append(tn)
        raw_p.append(x)
        cal_p.append(np.interp(x, kx, ky))
    tp_all, tn_all = np.concatenate(test_pos), np.concatenate(test_neg)
    return _ece(np.concatenate(raw_p), tp_all, tn_all), _ece(np.concatenate(cal_p), tp_all, tn_all)


def _ece(p: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> float:
    """Expected calibration error on ECE_BINS equal-count bins of weighted points sorted by p (a point's
    rows are split across a bin edge in proportion; NannyML: |bin| / N * |mean p - mean y| over bins)."""
    w = pos + neg
    keep = w > 0
    p, pos, w = p[keep], pos[keep], w[keep]
    order = np.argsort(p, kind="stable")
    p, pos, w = p[order], pos[order], w[order]
    total = w.sum()
    width = math.floor(total / ECE_BINS)
    edges = [i * width for i in range(ECE_BINS)] + [total]
    hi_w = np.cumsum(w)
    lo_w = hi_w - w
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        share = np.clip(np.minimum(hi_w, hi) - np.maximum(lo_w, lo), 0, None)
        mass = share.sum()
        if mass:
            ece += abs(np.sum(share * p) - np.sum(share * pos / w)) / total
    return float(ece)


def estimate(state: PerformanceState, positive: str, calibrator: Calibrator, ref: Components,
             value_matrix: tuple[tuple[float, float], tuple[float, float]] | None) -> list[PerfValue]:
    """Estimated metrics of one chunk (all its rows, labelled or not) with sampling errors."""
    n1, n0, s1, s0 = prediction_bins(state, positive)
    p1 = n1 * calibrator(np.divide(s1, n1, out=np.zeros(SCORE_BINS), where=n1 > 0)) if calibrator.applied else s1
    p0 = n0 * calibrator(np.divide(s0, n0, out=np.zeros(SCORE_BINS), where=n0 > 0)) if calibrator.applied else s0
    n = float(n1.sum() + n0.sum())
    if not n:
        return [PerfValue(m, None, None, "no scored rows") for m in ESTIMATED_METRICS if m != "business_value"
                or value_matrix]
    tp, fn = float(p1.sum()), float(p0.sum())
    fp, tn = float(n1.sum()) - tp, float(n0.sum()) - fn
    errors = binary_errors(ref, n, value_matrix)
    out = [_roc_auc(p1 + p0, n1 + n0, errors["roc_auc"]), _average_precision(p1 + p0, n1 + n0, ref, n)]
    out += _rates(tp, fp, fn, tn, errors, n)
    out += [PerfValue(name, value, errors[name]) for name, value in zip(COUNT_METRICS, (tp, fp, fn, tn), strict=True)]
    if value_matrix:
        (v_tn, v_fp), (v_fn, v_tp) = value_matrix
        out.append(PerfValue("business_value", float(np.array([v_tp, v_fp, v_fn, v_tn]) @ np.array([tp, fp, fn, tn])),
                             errors["business_value"]))
    return out


AUC_UNDEFINED = "undefined: the calibrated scores expect one class only"
AP_UNDEFINED = "undefined: the calibrated scores expect no positives"


def _roc_auc(p: np.ndarray, counts: np.ndarray, error: float | None) -> PerfValue:
    auc = expected_roc_auc(p, counts)
    return PerfValue("roc_auc", None, None, AUC_UNDEFINED) if auc is None else PerfValue("roc_auc", auc, error)


def _ap_variance(ref: Components) -> tuple[float, float] | None:
    return (ref.ap * (1 - ref.ap), ref.positive_rate) if ref.ap is not None and ref.positive_rate else None


def expected_roc_auc(p: np.ndarray, counts: np.ndarray) -> float | None:
    """Expected ROC AUC: bins from the highest score down; per bin expected positives sum(p) and
    negatives count - sum(p); cumulative sums rounded to 5 decimals and the trapezoid (NannyML)."""
    tps = np.concatenate([[0.0], np.cumsum(p[::-1])])
    fps = np.concatenate([[0.0], np.cumsum(counts[::-1])]) - tps
    tps, fps = np.round(tps, 5), np.round(fps, 5)
    if not tps[-1] or not fps[-1]:
        return None
    tpr, fpr = tps / tps[-1], fps / fps[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def _average_precision(p: np.ndarray, counts: np.ndarray, ref: Components, n: float) -> PerfValue:
    ap = expected_average_precision(p, counts)
    if ap is None:
        return PerfValue("average_precision", None, None, AP_UNDEFINED)
    var = _ap_variance(ref)
    return PerfValue("average_precision", ap, math.sqrt(var[0] / (n * var[1])) if var else None)


def expected_average_precision(p: np.ndarray, counts: np.ndarray) -> float | None:
    """Expected AP with NannyML's per-row steps: sum_i (R_i - R_(i-1)) P_i, rows by score descending.
    Within a bin p is constant, so its m rows sum in closed form: sum_j (A + j q) / (B + j) =
    m q + (A - q B) (digamma(B + m + 1) - digamma(B + 1))."""
    p, counts = p[::-1], counts[::-1]
    total = p.sum()
    if not total:
        return None
    ap, a, b = 0.0, 0.0, 0.0
    for m, mass in zip(counts, p, strict=True):
        if m:
            q = mass / m
            ap += q / total * (m * q + (a - q * b) * (digamma(b + m + 1) - digamma(b + 1)))
            a, b = a + mass, b + m
    return float(ap)


def _rates(tp: float, fp: float, fn: float, tn: float, errors: dict[str, float | None], n: float) -> list[PerfValue]:
    """F1, precision, recall, specificity, accuracy of the expected cells, with their `errors`."""
    def div(a: float, b: float) -> float | None:
        return a / b if b else None

    items = [("f1", div(tp, tp + 0.5 * (fp + fn))), ("precision", div(tp, tp + fp)), ("recall", div(tp, tp + fn)),
             ("specificity", div(tn, tn + fp)), ("accuracy", div(tp + tn, n))]
    return [PerfValue(m, v, errors[m]) if v is not None else PerfValue(m, None, None, "undefined: empty denominator")
            for m, v in items]


def _class_bins(state: PerformanceState) -> dict[tuple[str, str, str], np.ndarray]:
    """(ac or ap, class, predicted as the class) -> per score bin counts of rows with calibrated
    probabilities or their sums."""
    out: dict[tuple[str, str, str], np.ndarray] = {}
    for key, v in state.values.items():
        if key.startswith(("ac|", "ap|")):
            kind, k, yhat, b = key.split("|")
            out.setdefault((kind, k, yhat), np.zeros(SCORE_BINS))[int(b)] += v
    return out


def estimate_multiclass(state: PerformanceState, labels: list[str], ref: MulticlassComponents,
                        value_matrix: tuple[tuple[float, ...], ...] | None) -> list[PerfValue]:
    """Estimated multiclass metrics of one chunk: macro averages of the one-vs-rest estimates over the
    calibrated, renormalised probabilities (ROC AUC and AP rank rows by the raw class score, as
    NannyML), accuracy, the expected confusion matrix and business value, with sampling errors."""
    bins = _class_bins(state)
    zero = np.zeros(SCORE_BINS)
    expected = np.array([[state.get(f"ce|{p}|{t}") for p in labels] for t in labels])
    n = float(expected.sum())
    names = [f"{m}_macro" for m in MACRO_METRICS] + ["accuracy"] + \
        [f"confusion_{t}_{p}" for t in labels for p in labels] + (["business_value"] if value_matrix else [])
    if not n:
        return [PerfValue(m, None, None, "no rows with every class score") for m in names]
    errors = multiclass_errors(ref, labels, n, value_matrix)
    values: dict[str, list[float | None]] = {m: [] for m in MACRO_METRICS}
    for k in labels:
        c1, c0 = bins.get(("ac", k, "1"), zero), bins.get(("ac", k, "0"), zero)
        p1, p0 = bins.get(("ap", k, "1"), zero), bins.get(("ap", k, "0"), zero)
        tp, fn = float(p1.sum()), float(p0.sum())
        fp, tn = float(c1.sum()) - tp, float(c0.sum()) - fn
        for metric, value in (("roc_auc", expected_roc_auc(p1 + p0, c1 + c0)),
                              ("average_precision", expected_average_precision(p1 + p0, c1 + c0)),
                              ("f1", tp / (tp + 0.5 * (fp + fn)) if tp + fp + fn else None),
                              ("precision", tp / (tp + fp) if tp + fp else None),
                              ("recall", tp / (tp + fn) if tp + fn else None),
                              ("specificity", tn / (tn + fp) if tn + fp else None)):
            values[metric].append(value)
    # AP: Driftline's approximation, macro-averaged as NannyML's other metrics (NannyML's AP component is a
    # random bootstrap)
    errors["average_precision_macro"] = macro_se([_ap_variance(ref.classes[k]) for k in labels], n)
    out = []
    for metric in MACRO_METRICS:
        undefined = [k for k, v in zip(labels, values[metric], strict=True) if v is None]
        if undefined:
            out.append(PerfValue(f"{metric}_macro", None, None, f"undefined for class {undefined[0]}: the "
                                 "calibrated probabilities expect no rows of it, or only rows of it"))
            continue
        out.append(PerfValue(f"{metric}_macro", float(np.mean(values[metric])), errors[f"{metric}_macro"]))
    out.append(PerfValue("accuracy", float(np.trace(expected)) / n, errors["accuracy"]))
    out += [PerfValue(f"confusion_{t}_{p}", float(expected[i, j]), errors[f"confusion_{t}_{p}"])
            for i, t in enumerate(labels) for j, p in enumerate(labels)]
    if value_matrix:
        out.append(PerfValue("business_value", float(np.sum(np.asarray(value_matrix, float) * expected)),
                             errors["business_value"]))
    return out
