"""Per-chunk performance aggregates, computed in the profiling pass and stored as one mergeable map.

Keys of `PerformanceState.values` (all sums, so two states merge by adding):
- `rows`, `labelled`: rows in the chunk and rows with a (valid) label; `invalid_labels`: rows whose latest
  label is invalid (unknown class, NaN or infinite; monitoring/labels.py), counted as unlabelled;
- classification: `h|<class>|<1 if the label is the class else 0>|<bin>` row counts and
  `s|...|<bin>` score sums of each class score on SCORE_BINS equal-width bins of [0, 1] (labelled
  rows); `a|<class>|<1 if predicted as the class else 0>|<bin>` counts and `as|...` score sums of all
  rows, labelled or not (for estimated performance, monitoring/performance/cbpe.py); multiclass with
  CBPE calibrators also `ap|...` sums and `ac|...` counts of each row's calibrated, renormalised
  probability of the class (binned by its raw score) and `ce|<prediction>|<class>` sums of those
  probabilities per predicted class (the expected confusion matrix);
  `cm|<label>|<prediction>` confusion counts; `logloss`, `logloss2`, `brier`, `brier2` sums of the
  per-row loss and its square;
- regression: `n` (rows with label and prediction), `e`, `ae`, `se`, `se2` (sums of error, absolute
  error, squared error, its square), `ape`, `ape2`, `sle`, `sle2`, `msle_invalid`, `y`, `y2`; with loss
  models (DLE, monitoring/performance/dle.py) `dle_n`, rows with a prediction, and `dle_<loss>`, the
  sums of their predicted losses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from monitoring.config import MonitorConfig
from monitoring.labels import INVALID, LABEL, LABELLED
from monitoring.tables import quote_part

SCORE_BINS = 2000
PROB_EPS = float(np.finfo(np.float64).eps)  # scikit-learn's clip of probabilities in log loss
MAPE_EPS = float(np.finfo(np.float64).eps)  # scikit-learn's floor of |y| in MAPE
PERFORMANCE_COLUMN = ":performance"  # column_name of performance states in the profiles table
NEGATIVE = "__not_positive__"
INVALID_LABELS = "invalid_labels"  # key of the rows whose latest label is invalid


class RowModel(Protocol):
    """A model fitted at `fit` and applied to every row in the profiling pass: DLE loss models
    (one predicted loss per output) or multiclass CBPE calibrators (one probability per class)."""

    def outputs(self) -> tuple[str, ...]: ...

    def column(self) -> Column: ...  # a struct with one double field per output, in that order

    def fingerprint(self) -> str: ...


@dataclass
class PerformanceState:
    values: dict[str, float] = field(default_factory=dict)
    id_min: str | None = None  # smallest and largest prediction id of the chunk, as text
    id_max: str | None = None
    labels_version: int | None = None  # label table version the sums were computed at

    def get(self, key: str) -> float:
        return self.values.get(key, 0.0)

    def merge(self, other: PerformanceState) -> PerformanceState:
        out = dict(self.values)
        for k, v in other.values.items():
            out[k] = out.get(k, 0.0) + v
        return PerformanceState(out)  # id range and label version describe one chunk: not merged


def classes(config: MonitorConfig) -> list[tuple[str, str]]:
    """(class label, score column) pairs: the positive class for binary, every class for multiclass."""
    if config.problem_type == "binary":
        return [(config.outputs.positive_class, config.outputs.score)]
    return list(config.outputs.class_scores.items())


def _clip(p: Column) -> Column:
    return F.least(F.greatest(p.cast("double"), F.lit(PROB_EPS)), F.lit(1 - PROB_EPS))


def predicted(config: MonitorConfig) -> Column:
    if config.outputs.prediction:
        return F.col(quote_part(config.outputs.prediction)).cast("string")
    if config.problem_type == "binary":
        return F.when(F.col(quote_part(config.outputs.score)) >= 0.5, F.lit(config.outputs.positive_class)) \
            .otherwise(F.lit(NEGATIVE))
    scores = list(config.outputs.class_scores.items())
    best = F.greatest(*[F.col(quote_part(c)) for _, c in scores])
    expr = None
    for label, col in scores:
        cond = F.col(quote_part(col)) == best
        expr = F.when(cond, F.lit(label)) if expr is None else expr.when(cond, F.lit(label))
    return expr


def _losses(config: MonitorConfig) -> tuple[Column, Column]:
    """Per-row log loss and Brier score of a labelled row (null when unlabelled)."""
    label = F.col(LABEL)
    if config.problem_type == "binary":
        y = (label == F.lit(config.outputs.positive_class)).cast("double")
        p = F.col(quote_part(config.outputs.score)).cast("double")
        logloss = -(y * F.log(_clip(p)) + (1 - y) * F.log(1 - _clip(p)))
        return logloss, (p - y) * (p - y)
    scores = list(config.outputs.class_scores.items())
    p_true = None
    for cls, col in scores:
        cond = label == F.lit(cls)
        p_true = F.when(cond, F.col(quote_part(col))) if p_true is None else p_true.when(cond, F.col(quote_part(col)))
    brier = sum(((F.col(quote_part(col)).cast("double") - (label == F.lit(cls)).cast("double")) ** 2
                 for cls, col in scores), F.lit(0.0))
    return -F.log(_clip(p_true)), brier


def aggregate(df: DataFrame, config: MonitorConfig, group: list[str], labels_version: int | None = None,
              model: RowModel | None = None) -> dict[tuple, PerformanceState]:
    """Performance states per group (chunk x slice) of labelled-joined rows: two aggregations for
    classification (confusion cells with loss sums; score histograms by class, label and prediction),
    one for regression. `model`'s per-row outputs are summed in the same aggregations."""
    states: dict[tuple, PerformanceState] = {}
    ids: dict[tuple, list] = {}
    pid = F.col(quote_part(config.source.id_column))
    id_range = [F.min(pid).alias("_id_lo"), F.max(pid).alias("_id_hi")]

    def add(key: tuple, name: str, value) -> None:
        if value is None:
            return
        state = states.setdefault(key, PerformanceState(labels_version=labels_version))
        state.values[name] = state.values.get(name, 0.0) + float(value)

    def add_ids(key: tuple, r) -> None:
        if r["_id_lo"] is not None:
            ids.setdefault(key, []).extend((r["_id_lo"], r["_id_hi"]))

    def finish() -> dict[tuple, PerformanceState]:
        for key, values in ids.items():
            states[key].id_min, states[key].id_max = str(min(values)), str(max(values))
        return states

    labelled = F.col(LABELLED)
    if config.problem_type == "regression":
        y, p = F.col(LABEL), F.col(quote_part(config.outputs.prediction)).cast("double")
        ok = labelled & p.isNotNull()
        e = F.when(ok, p - y)
        ape = F.abs(e) / F.greatest(F.abs(y), F.lit(MAPE_EPS))
        sle = F.when(ok & (y >= 0) & (p >= 0), (F.log1p(y) - F.log1p(p)) ** 2)
        sums = {"n": F.count(e), "e": F.sum(e), "ae": F.sum(F.abs(e)), "se": F.sum(e * e), "se2": F.sum(e ** 4),
                "ape": F.sum(ape), "ape2": F.sum(ape * ape), "sle": F.sum(sle), "sle2": F.sum(sle * sle),
                "msle_invalid": F.sum(F.when(ok & ((y < 0) | (p < 0)), 1)), "y": F.sum(F.when(ok, y)),
                "y2": F.sum(F.when(ok, y * y)), "labelled": F.count(F.when(labelled, 1)), "rows": F.count(F.lit(1)),
                INVALID_LABELS: F.count(F.when(F.col(INVALID), 1))}
        if model is not None:  # DLE: every row's predicted losses, labelled or not
            df = df.withColumn("_dl_model", model.column())
            sums["dle_n"] = F.count(F.when(p.isNotNull(), 1))
            sums |= {f"dle_{k}": F.sum(F.when(p.isNotNull(), F.col(f"_dl_model.{k}"))) for k in model.outputs()}
        for r in df.groupBy(*group).agg(*[v.alias(k) for k, v in sums.items()], *id_range).collect():
            for k in sums:
                add(tuple(r[g] for g in group), k, r[k])
            add_ids(tuple(r[g] for g in group), r)
        return finish()

    logloss, brier = _losses(config)
    pairs = classes(config)
    if model is not None:  # multiclass CBPE: every row's calibrated class probabilities
        df = df.withColumn("_dl_model", model.column())
    expected = [F.sum(F.col(f"_dl_model.c{j}")).alias(f"_ce{j}") for j in range(len(pairs))] if model else []
    cells = df.groupBy(*group, F.col(LABEL).alias("_l"), predicted(config).alias("_p"),
                       F.col(INVALID).alias("_bad")).agg(
        F.count(F.lit(1)).alias("n"), F.sum(logloss).alias("ll"), F.sum(logloss * logloss).alias("ll2"),
        F.sum(brier).alias("b"), F.sum(brier * brier).alias("b2"), *expected, *id_range)
    for r in cells.collect():
        key = tuple(r[g] for g in group)
        add(key, "rows", r["n"])
        add_ids(key, r)
        if r["_bad"]:
            add(key, INVALID_LABELS, r["n"])
        if r["_l"] is not None:
            add(key, "labelled", r["n"])
            add(key, f"cm|{r['_l']}|{r['_p']}", r["n"])
            for name, col in (("logloss", "ll"), ("logloss2", "ll2"), ("brier", "b"), ("brier2", "b2")):
                add(key, name, r[col])
        for j, (cls, _) in enumerate(pairs if model else []):
            add(key, f"ce|{r['_p']}|{cls}", r[f"_ce{j}"])
    prediction = predicted(config)
    entries = F.explode(F.array(*[
        F.struct(F.lit(cls).alias("k"), F.col(quote_part(col)).cast("double").alias("s"),
                 F.when(labelled, (F.col(LABEL) == F.lit(cls)).cast("int")).alias("pos"),
                 (prediction == F.lit(cls)).cast("int").alias("yhat"),
                 (F.col(f"_dl_model.c{i}") if model else F.lit(None).cast("double")).alias("p"))
        for i, (cls, col) in enumerate(pairs)]))
    scored = df.select(*group, entries.alias("e")).where(F.col("e.s").isNotNull())
    binned = F.least(F.greatest(F.floor(F.col("e.s") * SCORE_BINS), F.lit(0)), F.lit(SCORE_BINS - 1))
    hist = scored.groupBy(*group, F.col("e.k").alias("k"), F.col("e.pos").alias("pos"),
                          F.coalesce(F.col("e.yhat"), F.lit(0)).alias("yhat"), binned.alias("bin")).agg(
        F.count(F.lit(1)).alias("n"), F.sum("e.s").alias("s"), F.count("e.p").alias("pn"), F.sum("e.p").alias("p"))
    for r in hist.collect():
        key, k, b = tuple(r[g] for g in group), r["k"], r["bin"]
        add(key, f"a|{k}|{r['yhat']}|{b}", r["n"])
        add(key, f"as|{k}|{r['yhat']}|{b}", r["s"])
        if r["pn"]:
            add(key, f"ac|{k}|{r['yhat']}|{b}", r["pn"])
            add(key, f"ap|{k}|{r['yhat']}|{b}", r["p"])
        if r["pos"] is not None:
            add(key, f"h|{k}|{r['pos']}|{b}", r["n"])
            add(key, f"s|{k}|{r['pos']}|{b}", r["s"])
    return finish()
