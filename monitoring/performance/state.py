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


# The label-dependent states come from one aggregation: every joined row becomes a few entries
# (t, k1, k2, k3, b, v0..vN) and the entries are grouped by (group, t, k1, k2, k3, b). Entry kinds:
CELL, HIST, REL, REG, SUM = "c", "h", "r", "g", "s"
_REGRESSION = ("e", "ae", "se", "se2", "ape", "ape2", "sle", "sle2", "msle_invalid", "y", "y2", "labelled",
               INVALID_LABELS)


def _entry(kind: str, values: list[Column], width: int, k1: Column | None = None, k2: Column | None = None,
           k3: Column | None = None, b: Column | None = None) -> Column:
    none_s, none_i = F.lit(None).cast("string"), F.lit(None).cast("int")
    fields = [F.lit(kind).alias("t"), (k1 if k1 is not None else none_s).cast("string").alias("k1"),
              (k2 if k2 is not None else none_s).cast("string").alias("k2"),
              (k3 if k3 is not None else none_s).cast("string").alias("k3"),
              (b if b is not None else none_i).cast("int").alias("b")]
    padded = [v.cast("double") for v in values] + [F.lit(None).cast("double")] * (width - len(values))
    return F.struct(*fields, *[v.alias(f"v{i}") for i, v in enumerate(padded)])


def aggregate(df: DataFrame, config: MonitorConfig, group: list[str], labels_version: int | None = None,
              model: RowModel | None = None, relation=None, sums: dict[str, Column] | None = None,
              ) -> dict[tuple, PerformanceState]:
    """Performance states per group (chunk x slice) of labelled-joined rows, in ONE aggregation: confusion
    cells with loss sums and score histograms by class, label and prediction (classification) or the
    error sums (regression); `model`'s per-row outputs; with `relation` (monitoring/relation.py
    RelationBins) the residual sums of the per-feature concept drift; with `sums` (name -> row
    expression) their per-group sums in `values` under their names."""
    from monitoring.relation import PREFIX, residual  # relation imports this module

    pid = F.col(quote_part(config.source.id_column))
    labelled = F.col(LABELLED)
    if model is not None:
        df = df.withColumn("_dl_model", model.column())
    entries: list[Column] = []
    pairs = classes(config) if config.problem_type != "regression" else []
    if config.problem_type == "regression":
        y, p = F.col(LABEL), F.col(quote_part(config.outputs.prediction)).cast("double")
        ok = labelled & p.isNotNull()
        e = F.when(ok, p - y)
        ape = F.abs(e) / F.greatest(F.abs(y), F.lit(MAPE_EPS))
        sle = F.when(ok & (y >= 0) & (p >= 0), (F.log1p(y) - F.log1p(p)) ** 2)
        values = [e, F.abs(e), e * e, e ** 4, ape, ape * ape, sle, sle * sle,
                  F.when(ok & ((y < 0) | (p < 0)), 1), F.when(ok, y), F.when(ok, y * y),
                  F.when(labelled, 1), F.when(F.col(INVALID), 1)]
        if model is not None:  # DLE: every row's predicted losses, labelled or not
            values += [F.when(p.isNotNull(), 1)]
            values += [F.when(p.isNotNull(), F.col(f"_dl_model.{k}")) for k in model.outputs()]
        regression = values
    else:
        logloss, brier = _losses(config)
        cell = [logloss, logloss * logloss, brier, brier * brier]
        cell += [F.col(f"_dl_model.c{j}") for j in range(len(pairs))] if model else []
        regression = []
    rel_features = relation.features if relation is not None else ()
    width = max(len(regression), 4 + (len(pairs) if model else 0), 2, len(sums or {}))
    if config.problem_type == "regression":
        entries.append(_entry(REG, regression, width))
    else:
        entries.append(_entry(CELL, cell, width, F.col(LABEL), predicted(config), F.col(INVALID).cast("int")))
        prediction = predicted(config)
        for i, (cls, col) in enumerate(pairs):
            score = F.col(quote_part(col)).cast("double")
            binned = F.least(F.greatest(F.floor(score * SCORE_BINS), F.lit(0)), F.lit(SCORE_BINS - 1))
            pos = F.when(labelled, (F.col(LABEL) == F.lit(cls)).cast("int"))
            yhat = F.coalesce((prediction == F.lit(cls)).cast("int"), F.lit(0))
            prob = F.col(f"_dl_model.c{i}") if model else F.lit(None)
            entries.append(F.when(score.isNotNull(), _entry(HIST, [score, prob], width, F.lit(cls), pos, yhat, binned)))
    if rel_features:
        r = residual(config)
        valid = r.isNotNull() & ~F.isnan(r)
        for name, kind, bounds in rel_features:
            entries.append(F.when(valid, _entry(REL, [r, r * r], width, F.lit(name), b=relation.bin_of(name, kind,
                                                                                                    bounds))))
    if sums:
        entries.append(_entry(SUM, list(sums.values()), width))
    exploded = df.select(*group, pid.alias("_dl_pid"), F.explode(F.array(*entries)).alias("e")) \
        .where(F.col("e").isNotNull())
    rows = exploded.groupBy(*group, *[F.col(f"e.{k}").alias(k) for k in ("t", "k1", "k2", "k3", "b")]).agg(
        F.count(F.lit(1)).alias("n"), *[F.sum(f"e.v{i}").alias(f"v{i}") for i in range(width)],
        F.count("e.v0").alias("c0"), F.count("e.v1").alias("c1"),
        F.min("_dl_pid").alias("_id_lo"), F.max("_dl_pid").alias("_id_hi")).collect()

    states: dict[tuple, PerformanceState] = {}
    ids: dict[tuple, list] = {}
    for row in rows:
        key = tuple(row[g] for g in group)
        state = states.setdefault(key, PerformanceState(labels_version=labels_version))
        v = state.values

        def add(name: str, value, v=v) -> None:
            if value is not None:
                v[name] = v.get(name, 0.0) + float(value)

        t, k1, k2, k3, b, n = row["t"], row["k1"], row["k2"], row["k3"], row["b"], row["n"]
        if t in (CELL, REG) and row["_id_lo"] is not None:
            ids.setdefault(key, []).extend((row["_id_lo"], row["_id_hi"]))
        if t == CELL:
            add("rows", n)
            if k3 == "1":
                add(INVALID_LABELS, n)
            if k1 is not None:
                add("labelled", n)
                add(f"cm|{k1}|{k2}", n)
                for j, name in enumerate(("logloss", "logloss2", "brier", "brier2")):
                    add(name, row[f"v{j}"])
            for j, (cls, _) in enumerate(pairs if model else []):
                add(f"ce|{k2}|{cls}", row[f"v{4 + j}"])
        elif t == HIST:
            add(f"a|{k1}|{k3}|{b}", n)
            add(f"as|{k1}|{k3}|{b}", row["v0"])
            if row["c1"]:
                add(f"ac|{k1}|{k3}|{b}", row["c1"])
                add(f"ap|{k1}|{k3}|{b}", row["v1"])
            if k2 is not None:
                add(f"h|{k1}|{k2}|{b}", n)
                add(f"s|{k1}|{k2}|{b}", row["v0"])
        elif t == REG:
            add("rows", n)
            add("n", row["c0"])
            for j, name in enumerate(_REGRESSION):
                add(name, row[f"v{j}"] if j < 11 else (row[f"v{j}"] or 0))
            if model is not None:
                add("dle_n", row[f"v{len(_REGRESSION)}"] or 0)
                for j, k in enumerate(model.outputs()):
                    add(f"dle_{k}", row[f"v{len(_REGRESSION) + 1 + j}"])
        elif t == REL:
            v[relation.mark()] = 1.0
            for stat, value in (("n", n), ("r", row["v0"]), ("q", row["v1"])):
                add(f"{PREFIX}{b}|{stat}|{k1}", value)
        elif t == SUM:
            for j, name in enumerate(sums):
                add(name, row[f"v{j}"] or 0.0)
    for key, values in ids.items():
        states[key].id_min, states[key].id_max = str(min(values)), str(max(values))
    return states
