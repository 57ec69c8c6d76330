"""NannyML 0.13.1's sampling errors from reference components: CBPE's and DLE's always, the realized
metrics' with `compatibility: nannyml`.

NannyML derives a metric's sampling error from the labelled reference rows, its "sampling-error
components" (the std of the per-row outcome behind the metric and the share of rows it is measured on),
and a chunk's size n only: std / sqrt(n x share). Driftline's realized default measures each chunk's own
rows instead (monitoring/performance/realized.py); docs/statistics.md says why. Pure: reference states
in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from monitoring.config import NANNYML, MonitorConfig
from monitoring.performance.realized import (
    COUNT_METRICS,
    PerfValue,
    average_precision,
    binary_counts,
    confusion_counts,
    histograms,
)
from monitoring.performance.state import PerformanceState, classes

MACRO_METRICS = ("roc_auc", "average_precision", "f1", "precision", "recall", "specificity")
AUC_SE_FACTOR = 1.2  # NannyML widens the multiclass ROC AUC sampling error by this factor
Errors = dict[str, float | None]  # metric -> sampling error of a chunk
LOSSES = (("mae", "ae", False), ("mse", "se", False), ("rmse", "se", True), ("mape", "ape", False),
          ("msle", "sle", False), ("rmsle", "sle", True))  # metric, per-row loss, square root of its mean


@dataclass(frozen=True)
class Components:
    """Reference statistics behind the sampling errors (NannyML's sampling-error components)."""

    n: float  # labelled reference rows
    cells: tuple[float, float, float, float]  # realized TP, FP, FN, TN on the reference
    auc_std: float | None
    auc_fraction: float
    ap: float | None
    positive_rate: float


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


def auc_variance(ref: Components) -> tuple[float, float] | None:
    return (ref.auc_std ** 2, ref.auc_fraction) if ref.auc_std is not None and ref.auc_fraction else None


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


def bernoulli(hits: float, total: float, n: float) -> tuple[float, float] | None:
    """(variance of the 0/1 outcome behind a rate, share of rows it is measured on)."""
    return ((hits / total) * (1 - hits / total), total / n) if total and n else None


def macro_se(variances: list[tuple[float, float] | None], n: float, factor: float = 1.0) -> float | None:
    """NannyML's multiclass sampling error: factor x sqrt(sum_k var_k / (n share_k)) / K."""
    if any(v is None for v in variances) or not n:
        return None
    return factor * math.sqrt(sum(var / (n * share) for var, share in variances)) / len(variances)


def loss_errors(ref: PerformanceState, n: float) -> Errors:
    """Regression: std of the per-row loss on the reference / sqrt(n); RMSE and RMSLE by the delta method,
    sqrt(std^2 / (4 n mean))."""
    n_ref = ref.get("n")
    out: Errors = {}
    for metric, loss, root in LOSSES:
        total, total_sq = loss, "se" if loss == "ae" else f"{loss}2"  # |e|^2 = e^2
        if not n_ref or not n:
            out[metric] = None
            continue
        mean = ref.get(total) / n_ref
        std = math.sqrt(max(ref.get(total_sq) / n_ref - mean * mean, 0.0))
        out[metric] = (math.sqrt(std * std / (4 * n * mean)) if mean > 0 else None) if root else std / math.sqrt(n)
    return out


def value_error(values: np.ndarray, shares: np.ndarray | None, n: float) -> float | None:
    """Business value: std of the per-row value over the reference's cell shares x sqrt(n)."""
    if shares is None:
        return None
    mean = float(np.sum(values * shares))
    return math.sqrt(max(float(np.sum(values ** 2 * shares)) - mean * mean, 0.0) * n)


def binary_errors(ref: Components, n: float, value_matrix) -> Errors:
    """ROC AUC (std over positives of the share of negatives ranked below them / sqrt(n x positive share)),
    the rates, the confusion counts (sqrt(share (1 - share) n)) and business value."""
    var = auc_variance(ref)
    out = rate_errors(ref, n) | {"roc_auc": math.sqrt(var[0] / (n * var[1])) if var and n else None}
    shares = np.array(ref.cells) / ref.n if ref.n else None
    for i, name in enumerate(COUNT_METRICS):
        out[name] = math.sqrt(shares[i] * (1 - shares[i]) * n) if shares is not None else None
    if value_matrix:
        (v_tn, v_fp), (v_fn, v_tp) = value_matrix
        out["business_value"] = value_error(np.array([v_tp, v_fp, v_fn, v_tn]), shares, n)
    return out


def multiclass_errors(ref: MulticlassComponents, labels: list[str], n: float, value_matrix) -> Errors:
    """Macro metrics: sqrt(sum_k var_k / (n share_k)) / K over the classes one vs rest (ROC AUC x 1.2),
    without F1's correcting factor (NannyML's multiclass components); accuracy, confusion counts and
    business value as in the binary case."""
    variances: dict[str, list] = {m: [] for m in MACRO_METRICS if m != "average_precision"}
    for k in labels:
        rtp, rfp, rfn, rtn = ref.classes[k].cells
        variances["roc_auc"].append(auc_variance(ref.classes[k]))
        variances["f1"].append(bernoulli(rtp, rtp + rfn + rfp, ref.n))
        variances["precision"].append(bernoulli(rtp, rtp + rfp, ref.n))
        variances["recall"].append(bernoulli(rtp, rtp + rfn, ref.n))
        variances["specificity"].append(bernoulli(rtn, rtn + rfp, ref.n))
    out: Errors = {f"{m}_macro": macro_se(v, n, AUC_SE_FACTOR if m == "roc_auc" else 1.0) if n else None
                   for m, v in variances.items()}
    shares = ref.confusion / ref.n if ref.n else None
    accuracy = float(np.trace(shares)) if shares is not None else None
    out["accuracy"] = math.sqrt(accuracy * (1 - accuracy) / n) if accuracy is not None and n else None
    for i, t in enumerate(labels):
        for j, p in enumerate(labels):
            out[f"confusion_{t}_{p}"] = math.sqrt(shares[i, j] * (1 - shares[i, j]) * n) if shares is not None \
                else None
    if value_matrix:
        out["business_value"] = value_error(np.asarray(value_matrix, float), shares, n)
    return out


def realized_errors(reference: PerformanceState, config: MonitorConfig) -> Callable[[PerformanceState], Errors]:
    """The realized metrics' sampling errors of a chunk's state, from the merged reference state and the
    chunk's size as NannyML counts it (rows with a label and a prediction). Average precision and R^2 keep
    Driftline's own: NannyML's AP component is a random bootstrap, and it has no R^2."""
    value_matrix = config.estimation.business_value
    if config.problem_type == "regression":
        return lambda state: loss_errors(reference, state.get("n"))
    if config.problem_type == "multiclass":
        labels = [c for c, _ in classes(config)]
        multi = multiclass_components(reference, labels)
        return lambda state: multiclass_errors(multi, labels, state.get("labelled"), value_matrix)
    positive = config.outputs.positive_class
    labels = sorted({k.split("|")[1] for k in reference.values if k.startswith("cm|")} | {positive})
    comps = components(reference, positive, labels)
    return lambda state: binary_errors(comps, state.get("labelled"), value_matrix)


def with_errors(values: list[PerfValue], errors: Errors) -> list[PerfValue]:
    """`values` with the sampling errors of `errors` where it names the metric (values stay as they are)."""
    return [replace(v, sampling_error=errors[v.metric]) if v.value is not None and v.metric in errors else v
            for v in values]


def compatible(config: MonitorConfig) -> bool:
    """Whether the realized sampling errors are NannyML's."""
    return config.drift.compatibility == NANNYML
