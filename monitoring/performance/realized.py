"""Realized performance metrics of one chunk from its PerformanceState, with sampling errors.

Formulas and their sampling errors are in docs/performance-metrics.md. Undefined values (one class
only, no predicted positives, too few labels) are None with a note saying why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from monitoring.config import MonitorConfig
from monitoring.performance.state import SCORE_BINS, PerformanceState, classes

CALIBRATION_BINS = 10
COUNT_METRICS = ("true_positive", "false_positive", "false_negative", "true_negative")


@dataclass(frozen=True)
class PerfValue:
    metric: str
    value: float | None
    sampling_error: float | None = None
    note: str | None = None


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


def _prop_se(p: float | None, n: float) -> float | None:
    return math.sqrt(max(p * (1 - p), 0.0) / n) if p is not None and n else None


def _mean_se(total: float, total_sq: float, n: float) -> float | None:
    if n < 2:
        return None
    mean = total / n
    return math.sqrt(max(total_sq / n - mean * mean, 0.0) / n)


def histograms(state: PerformanceState, cls: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos, neg, sums = np.zeros(SCORE_BINS), np.zeros(SCORE_BINS), np.zeros(SCORE_BINS)
    for key, v in state.values.items():
        if key.startswith(("h|", "s|")):
            kind, k, p, b = key.split("|")
            if k != cls:
                continue
            if kind == "h":
                (pos if p == "1" else neg)[int(b)] += v
            else:
                sums[int(b)] += v
    return pos, neg, sums


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> tuple[float | None, float | None, str | None]:
    """AUC from per-bin counts (scores within a bin count as tied) and the Hanley-McNeil error."""
    n_pos, n_neg = pos.sum(), neg.sum()
    if not n_pos or not n_neg:
        return None, None, "undefined: only one class among the labelled rows"
    below = np.cumsum(neg) - neg
    auc = float(np.sum(pos * (below + 0.5 * neg)) / (n_pos * n_neg))
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return auc, math.sqrt(max(var, 0.0)), None


def average_precision(pos: np.ndarray, neg: np.ndarray) -> tuple[float | None, float | None, str | None]:
    """Step-wise AP (scikit-learn's definition) over the bins as thresholds, from the highest down."""
    n_pos = pos.sum()
    if not n_pos:
        return None, None, "undefined: no positive labels"
    tp, fp = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])
    nonempty = (tp + fp) > 0
    precision = np.where(nonempty, tp / np.where(nonempty, tp + fp, 1), 0.0)
    ap = float(np.sum(pos[::-1] / n_pos * precision))
    return ap, _prop_se(ap, n_pos), None


def binary_counts(state: PerformanceState, positive: str, labels: list[str]) -> tuple[float, float, float, float]:
    tp = fp = fn = tn = 0.0
    for key, v in state.values.items():
        if key.startswith("cm|"):
            _, label, pred = key.split("|", 2)
            if label not in labels:
                continue
            if label == positive:
                tp, fn = (tp + v, fn) if pred == positive else (tp, fn + v)
            else:
                fp, tn = (fp + v, tn) if pred == positive else (fp, tn + v)
    return tp, fp, fn, tn


def _threshold_metrics(tp: float, fp: float, fn: float, tn: float) -> dict[str, PerfValue]:
    n = tp + fp + fn + tn
    precision, recall, specificity = _div(tp, tp + fp), _div(tp, tp + fn), _div(tn, tn + fp)
    f1 = _div(2 * tp, 2 * tp + fp + fn)
    accuracy = _div(tp + tn, n)
    notes = {"precision": "undefined: no predicted positives", "recall": "undefined: no positive labels",
             "specificity": "undefined: no negative labels", "f1": "undefined: no positives at all",
             "accuracy": "undefined: no labelled rows"}
    out = {
        "precision": PerfValue("precision", precision, _prop_se(precision, tp + fp)),
        "recall": PerfValue("recall", recall, _prop_se(recall, tp + fn)),
        "specificity": PerfValue("specificity", specificity, _prop_se(specificity, tn + fp)),
        "f1": PerfValue("f1", f1, _prop_se(f1, tp + (fp + fn) / 2)),
        "accuracy": PerfValue("accuracy", accuracy, _prop_se(accuracy, n)),
    }
    return {k: PerfValue(k, None, None, notes[k]) if v.value is None else v for k, v in out.items()}


def business_value(matrix: tuple[tuple[float, ...], ...], counts: np.ndarray) -> PerfValue:
    """Total value of the confusion cells (`matrix` and `counts`: rows = true class, columns =
    prediction); sampling error std(per-row value) x sqrt(n) (NannyML)."""
    values = np.asarray(matrix, float)
    n = float(counts.sum())
    if not n:
        return PerfValue("business_value", None, None, "undefined: no labelled rows")
    total = float(np.sum(values * counts))
    second = float(np.sum(values ** 2 * counts)) / n
    return PerfValue("business_value", total, math.sqrt(max(second - (total / n) ** 2, 0.0) * n))


def confusion_counts(state: PerformanceState, labels: list[str]) -> np.ndarray:
    """Realized confusion matrix over `labels` (rows = true class, columns = prediction)."""
    return np.array([[state.get(f"cm|{t}|{p}") for p in labels] for t in labels])


def classification_metrics(state: PerformanceState, config: MonitorConfig) -> list[PerfValue]:
    n = state.get("labelled")
    out = [PerfValue("log_loss", _div(state.get("logloss"), n), _mean_se(state.get("logloss"),
                                                                          state.get("logloss2"), n)),
           PerfValue("brier_score", _div(state.get("brier"), n), _mean_se(state.get("brier"), state.get("brier2"),
                                                                          n))]
    pairs = classes(config)
    if config.problem_type == "binary":
        positive = pairs[0][0]
        labels = sorted({k.split("|")[1] for k in state.values if k.startswith("cm|")})
        tp, fp, fn, tn = binary_counts(state, positive, labels)
        out += list(_threshold_metrics(tp, fp, fn, tn).values())
        out += [PerfValue(m, v) for m, v in zip(COUNT_METRICS, (tp, fp, fn, tn), strict=True)]
        if config.estimation.business_value:
            out.append(business_value(config.estimation.business_value, np.array([[tn, fp], [fn, tp]])))
        pos, neg, sums = histograms(state, positive)
        out.append(PerfValue("roc_auc", *roc_auc(pos, neg)))
        out.append(PerfValue("average_precision", *average_precision(pos, neg)))
        width = SCORE_BINS // CALIBRATION_BINS
        gap = np.abs(sums.reshape(-1, width).sum(axis=1) - pos.reshape(-1, width).sum(axis=1))
        out.append(PerfValue("calibration_error", _div(float(gap.sum()), float((pos + neg).sum()))))
        return out
    labels = [c for c, _ in pairs]
    per_class: dict[str, list[tuple[float, PerfValue]]] = {}
    support_total = 0.0
    correct = 0.0
    for cls in labels:
        tp, fp, fn, tn = binary_counts(state, cls, labels)
        correct += tp
        support = tp + fn
        support_total += support
        values = _threshold_metrics(tp, fp, fn, tn)
        pos, neg, _ = histograms(state, cls)
        values["roc_auc"] = PerfValue("roc_auc", *roc_auc(pos, neg))
        values["average_precision"] = PerfValue("average_precision", *average_precision(pos, neg))
        for name in ("precision", "recall", "specificity", "f1", "roc_auc", "average_precision"):
            per_class.setdefault(name, []).append((support, values[name]))
    for name, items in per_class.items():
        defined = [(w, v) for w, v in items if v.value is not None]
        if len(defined) < len(items):
            note = next(v.note for _, v in items if v.value is None)
            out += [PerfValue(f"{name}_macro", None, None, note), PerfValue(f"{name}_weighted", None, None, note)]
            continue
        macro = float(np.mean([v.value for _, v in defined]))
        macro_se = math.sqrt(sum((v.sampling_error or 0.0) ** 2 for _, v in defined)) / len(defined)
        total = sum(w for w, _ in defined)
        weighted = _div(sum(w * v.value for w, v in defined), total)
        weighted_se = math.sqrt(sum((w * (v.sampling_error or 0.0)) ** 2 for w, v in defined)) / total if total \
            else None
        out += [PerfValue(f"{name}_macro", macro, macro_se), PerfValue(f"{name}_weighted", weighted, weighted_se)]
    accuracy = _div(correct, n)
    out.append(PerfValue("accuracy", accuracy, _prop_se(accuracy, n)))
    counts = confusion_counts(state, labels)
    out += [PerfValue(f"confusion_{t}_{p}", float(counts[i, j])) for i, t in enumerate(labels)
            for j, p in enumerate(labels)]
    if config.estimation.business_value:
        out.append(business_value(config.estimation.business_value, counts))
    return out


def regression_metrics(state: PerformanceState) -> list[PerfValue]:
    n = state.get("n")
    g = state.get
    mae, mse = _div(g("ae"), n), _div(g("se"), n)
    mse_se = _mean_se(g("se"), g("se2"), n)
    rmse = math.sqrt(mse) if mse is not None else None
    out = [PerfValue("mae", mae, _mean_se(g("ae"), g("se"), n)), PerfValue("mse", mse, mse_se),
           PerfValue("rmse", rmse, mse_se / (2 * rmse) if mse_se is not None and rmse else None),
           PerfValue("mape", _div(g("ape"), n), _mean_se(g("ape"), g("ape2"), n))]
    if g("msle_invalid"):
        note = "undefined: negative labels or predictions"
        out += [PerfValue("msle", None, None, note), PerfValue("rmsle", None, None, note)]
    else:
        msle = _div(g("sle"), n)
        msle_se = _mean_se(g("sle"), g("sle2"), n)
        rmsle = math.sqrt(msle) if msle is not None else None
        out += [PerfValue("msle", msle, msle_se),
                PerfValue("rmsle", rmsle, msle_se / (2 * rmsle) if msle_se is not None and rmsle else None)]
    ss_tot = g("y2") - g("y") ** 2 / n if n else 0.0
    if n >= 2 and ss_tot > 0:
        out.append(PerfValue("r2", 1 - g("se") / ss_tot, mse_se / (ss_tot / n) if mse_se is not None else None))
    else:
        out.append(PerfValue("r2", None, None, "undefined: constant labels"))
    return out


def realized_metrics(state: PerformanceState, config: MonitorConfig) -> list[PerfValue]:
    """Every realized metric of one chunk; all None with a note when labels are insufficient."""
    rows, labelled = state.get("rows"), state.get("labelled")
    coverage = labelled / rows if rows else 0.0
    values = regression_metrics(state) if config.problem_type == "regression" else \
        classification_metrics(state, config)
    cfg = config.labels
    if labelled < cfg.min_labelled or coverage < cfg.min_coverage:
        note = (f"insufficient labels: {int(labelled)} of {int(rows)} rows labelled (coverage {coverage:.1%}; "
                f"minimum {cfg.min_labelled} rows and {cfg.min_coverage:.0%})")
        values = [PerfValue(v.metric, None, None, note) for v in values]
    return [PerfValue("label_coverage", coverage), *values]
