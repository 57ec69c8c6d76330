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

from monitoring.performance.realized import (
    COUNT_METRICS,
    PerfValue,
    average_precision,
    binary_counts,
    confusion_counts,
    histograms,
    roc_auc,
)
from monitoring.performance.state import SCORE_BINS, PerformanceState
from monitoring.tables import quote_part

ECE_BINS, SPLITS, TEST_SHARE, SEED = 10, 10, 0.1, 42  # NannyML's calibration check
MACRO_METRICS = ("roc_auc", "average_precision", "f1", "precision", "recall", "specificity")
AUC_SE_FACTOR = 1.2  # NannyML widens the multiclass ROC AUC sampling error by this factor
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


@dataclass(frozen=True)
class Components:
    """Reference statistics behind the sampling errors (NannyML's sampling-error components)."""

    n: float  # labelled reference rows
    cells: tuple[float, float, float, float]  # realized TP, FP, FN, TN on the reference
    auc_std: float | None
    auc_fraction: float
    ap: float | None
    positive_rate: float


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


def components(state: PerformanceState, positive: str, labels: list[str]) -> Components:
    """Sampling-error components of the merged reference state (labelled rows)."""
    tp, fp, fn, tn = binary_counts(state, positive, labels)
    n = tp + fp + fn + tn
    pos, neg, _ = histograms(state, positive)
    auc_std, fraction = _auc_components(pos, neg)
    ap = average_precision(pos, neg)[0]
    return Components(n, (tp, fp, fn, tn), auc_std, fraction, ap, (tp + fn) / n if n else 0.0)


def _auc_components(pos: np.ndarray, neg: np.ndarray) -> tuple[float | None, float]:
    """NannyML's AUROC component: the std over positives of (negatives ranked below it) / n_neg, after
    flipping the classes when positives are the majority; ties in a bin are in random order, so a
    positive has a uniform 0..m share of its bin's m negatives below it (its expected moments)."""
    if pos.sum() > neg.sum():
        pos, neg = neg[::-1], pos[::-1]
    n_pos, n_neg = pos.sum(), neg.sum()
    if not n_pos or not n_neg:
        return None, 0.0
    below = np.cumsum(neg) - neg
    mean_count = below + neg / 2
    first = np.sum(pos * mean_count) / n_pos
    second = np.sum(pos * (mean_count ** 2 + neg * (neg + 2) / 12)) / n_pos
    return math.sqrt(max(second - first * first, 0.0)) / n_neg, n_pos / (n_pos + n_neg)


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
    out = [_roc_auc(p1 + p0, n1 + n0, ref, n), _average_precision(p1 + p0, n1 + n0, ref, n)]
    out += _rates(tp, fp, fn, tn, ref, n)
    cells_ref = np.array(ref.cells) / ref.n if ref.n else None
    for i, (name, value) in enumerate(zip(COUNT_METRICS, (tp, fp, fn, tn), strict=True)):
        se = math.sqrt(cells_ref[i] * (1 - cells_ref[i]) * n) if cells_ref is not None else None
        out.append(PerfValue(name, value, se))
    if value_matrix:
        (v_tn, v_fp), (v_fn, v_tp) = value_matrix
        values = np.array([v_tp, v_fp, v_fn, v_tn])
        se = None
        if cells_ref is not None:
            mean = float(np.sum(values * cells_ref))
            se = math.sqrt(max(float(np.sum(values ** 2 * cells_ref)) - mean * mean, 0.0) * n)
        out.append(PerfValue("business_value", float(values @ np.array([tp, fp, fn, tn])), se))
    return out


AUC_UNDEFINED = "undefined: the calibrated scores expect one class only"
AP_UNDEFINED = "undefined: the calibrated scores expect no positives"


def _roc_auc(p: np.ndarray, counts: np.ndarray, ref: Components, n: float) -> PerfValue:
    auc = expected_roc_auc(p, counts)
    if auc is None:
        return PerfValue("roc_auc", None, None, AUC_UNDEFINED)
    var = _auc_variance(ref)
    return PerfValue("roc_auc", auc, math.sqrt(var[0] / (n * var[1])) if var else None)


def _auc_variance(ref: Components) -> tuple[float, float] | None:
    return (ref.auc_std ** 2, ref.auc_fraction) if ref.auc_std is not None and ref.auc_fraction else None


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


def rate_errors(ref: Components, n: float) -> dict[str, float | None]:
    """NannyML's sampling errors of F1, precision, recall, specificity and accuracy for a chunk of n rows,
    from the reference's realized cells: std of the Bernoulli behind the metric / sqrt(n x share)
    (F1's outcome scaled by its correcting factor)."""
    rtp, rfp, rfn, rtn = ref.cells
    rn = ref.n

    def se(hits: float, total: float, scale: float = 1.0) -> float | None:
        if not total or not rn or not n:
            return None
        rate = hits / total
        return scale * math.sqrt(rate * (1 - rate)) / math.sqrt(n * total / rn)

    f1_den = rtp + rfn + rfp
    return {"f1": se(rtp, f1_den, f1_den / (rtp + 0.5 * (rfn + rfp)) if f1_den else 1.0),
            "precision": se(rtp, rtp + rfp), "recall": se(rtp, rtp + rfn), "specificity": se(rtn, rtn + rfp),
            "accuracy": se(rtp + rtn, rn)}


def _rates(tp: float, fp: float, fn: float, tn: float, ref: Components, n: float) -> list[PerfValue]:
    """F1, precision, recall, specificity, accuracy of the expected cells, with `rate_errors`."""
    def div(a: float, b: float) -> float | None:
        return a / b if b else None

    errors = rate_errors(ref, n)
    items = [("f1", div(tp, tp + 0.5 * (fp + fn))), ("precision", div(tp, tp + fp)), ("recall", div(tp, tp + fn)),
             ("specificity", div(tn, tn + fp)), ("accuracy", div(tp + tn, n))]
    return [PerfValue(m, v, errors[m]) if v is not None else PerfValue(m, None, None, "undefined: empty denominator")
            for m, v in items]


@dataclass(frozen=True)
class MulticlassComponents:
    """Reference statistics behind the multiclass sampling errors: each class one vs rest, and the
    realized confusion matrix (rows = true class, columns = prediction) of the labelled reference."""

    classes: dict[str, Components]
    confusion: np.ndarray

    @property
    def n(self) -> float:
        return float(self.confusion.sum())


def multiclass_components(state: PerformanceState, labels: list[str]) -> MulticlassComponents:
    return MulticlassComponents({k: components(state, k, labels) for k in labels}, confusion_counts(state, labels))


def _class_bins(state: PerformanceState) -> dict[tuple[str, str, str], np.ndarray]:
    """(ac or ap, class, predicted as the class) -> per score bin counts of rows with calibrated
    probabilities or their sums."""
    out: dict[tuple[str, str, str], np.ndarray] = {}
    for key, v in state.values.items():
        if key.startswith(("ac|", "ap|")):
            kind, k, yhat, b = key.split("|")
            out.setdefault((kind, k, yhat), np.zeros(SCORE_BINS))[int(b)] += v
    return out


def _bernoulli(hits: float, total: float, n: float) -> tuple[float, float] | None:
    """(variance of the 0/1 outcome behind a rate, share of rows it is measured on)."""
    return ((hits / total) * (1 - hits / total), total / n) if total and n else None


def _macro_se(variances: list[tuple[float, float] | None], n: float, factor: float = 1.0) -> float | None:
    """NannyML's multiclass sampling error: factor x sqrt(sum_k var_k / (n share_k)) / K."""
    if any(v is None for v in variances) or not n:
        return None
    return factor * math.sqrt(sum(var / (n * share) for var, share in variances)) / len(variances)


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
    values: dict[str, list[float | None]] = {m: [] for m in MACRO_METRICS}
    variances: dict[str, list[tuple[float, float] | None]] = {m: [] for m in MACRO_METRICS}
    for k in labels:
        c1, c0 = bins.get(("ac", k, "1"), zero), bins.get(("ac", k, "0"), zero)
        p1, p0 = bins.get(("ap", k, "1"), zero), bins.get(("ap", k, "0"), zero)
        tp, fn = float(p1.sum()), float(p0.sum())
        fp, tn = float(c1.sum()) - tp, float(c0.sum()) - fn
        rtp, rfp, rfn, rtn = ref.classes[k].cells
        rn = ref.n
        for metric, value, var in (
                ("roc_auc", expected_roc_auc(p1 + p0, c1 + c0), _auc_variance(ref.classes[k])),
                ("average_precision", expected_average_precision(p1 + p0, c1 + c0), _ap_variance(ref.classes[k])),
                ("f1", tp / (tp + 0.5 * (fp + fn)) if tp + fp + fn else None, _bernoulli(rtp, rtp + rfn + rfp, rn)),
                ("precision", tp / (tp + fp) if tp + fp else None, _bernoulli(rtp, rtp + rfp, rn)),
                ("recall", tp / (tp + fn) if tp + fn else None, _bernoulli(rtp, rtp + rfn, rn)),
                ("specificity", tn / (tn + fp) if tn + fp else None, _bernoulli(rtn, rtn + rfp, rn))):
            values[metric].append(value)
            variances[metric].append(var)
    out = []
    for metric in MACRO_METRICS:
        undefined = [k for k, v in zip(labels, values[metric], strict=True) if v is None]
        if undefined:
            out.append(PerfValue(f"{metric}_macro", None, None, f"undefined for class {undefined[0]}: the "
                                 "calibrated probabilities expect no rows of it, or only rows of it"))
            continue
        factor = AUC_SE_FACTOR if metric == "roc_auc" else 1.0
        out.append(PerfValue(f"{metric}_macro", float(np.mean(values[metric])),
                             _macro_se(variances[metric], n, factor)))
    ref_cells = ref.confusion / ref.n if ref.n else None
    ref_accuracy = float(np.trace(ref_cells)) if ref_cells is not None else None
    out.append(PerfValue("accuracy", float(np.trace(expected)) / n,
                         math.sqrt(ref_accuracy * (1 - ref_accuracy) / n) if ref_accuracy is not None else None))
    for i, t in enumerate(labels):
        for j, p in enumerate(labels):
            se = math.sqrt(ref_cells[i, j] * (1 - ref_cells[i, j]) * n) if ref_cells is not None else None
            out.append(PerfValue(f"confusion_{t}_{p}", float(expected[i, j]), se))
    if value_matrix:
        v = np.asarray(value_matrix, float)
        se = None
        if ref_cells is not None:
            mean = float(np.sum(v * ref_cells))
            se = math.sqrt(max(float(np.sum(v ** 2 * ref_cells)) - mean * mean, 0.0) * n)
        out.append(PerfValue("business_value", float(np.sum(v * expected)), se))
    return out
