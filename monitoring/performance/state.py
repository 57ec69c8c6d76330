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

import hashlib
from dataclasses import dataclass, field
from functools import reduce
from typing import Protocol

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from monitoring.config import MonitorConfig
from monitoring.labels import INVALID, LABEL, LABELLED
from monitoring.stores.tables import quote_part

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
    # None: left in the profiles table (a run reads a stored chunk's values only when it recomputes the
    # chunk's results; monitoring/stores/profiles.py), `digest` then holds their digest
    values: dict[str, float] | None = field(default_factory=dict)
    id_min: str | None = None  # smallest and largest prediction id of the chunk, as text
    id_max: str | None = None
    labels_version: int | None = None  # label table version the sums were computed at
    digest: bytes | None = None

    @property
    def loaded(self) -> bool:
        return self.values is not None

    def values_digest(self) -> bytes:
        """Digest of the values (stored with them, so a run compares states without reading them back)."""
        if self.values is None:
            return self.digest
        keys = sorted(self.values)  # the keys alone: sorting (key, value) pairs costs twice as much
        h = hashlib.blake2b("\0".join(keys).encode(), digest_size=16)
        h.update(np.fromiter(map(self.values.__getitem__, keys), float, len(keys)).tobytes())
        return h.digest()

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


_REGRESSION = ("e", "ae", "se", "se2", "ape", "ape2", "sle", "sle2", "msle_invalid", "y", "y2")
CELL, HIST, REL = 0, 1, 2  # the branches of `aggregate` (column `t`); binary CELL rows carry the histogram


def prepare(df: DataFrame, model: RowModel | None = None, relation=None, sums: dict[str, Column] | None = None,
            keep: Column | None = None) -> DataFrame:
    """The prediction rows with what `aggregate` needs of them besides the label, computed BEFORE the label
    join: `model`'s outputs (`_dl_model`, for the rows `keep` selects), the `sums`' row expressions
    (`_dl_s<j>`) and `relation`'s bins packed in a few longs (RelationBins.packed). The join's shuffle and
    sort then carry these instead of every feature (docs/performance.md)."""
    if model is not None:
        df = df.withColumn("_dl_model", model.column() if keep is None else F.when(keep, model.column()))
    for j, e in enumerate((sums or {}).values()):
        df = df.withColumn(f"_dl_s{j}", e.cast("double"))
    return relation.packed(df) if relation is not None and relation.features else df


def aggregate(df: DataFrame, config: MonitorConfig, group: list[str], labels_version: int | None = None,
              model: RowModel | None = None, relation=None, sums: dict[str, Column] | None = None,
              twin: DataFrame | None = None) -> dict[tuple, PerformanceState]:
    """Performance states per group (chunk x slice) of labelled-joined rows (prepared by `prepare` with the
    same `model`, `relation` and `sums`), from ONE query of one or two aggregations over the same per-row
    frame:
    - CELL: rows by label x prediction x invalid flag (binary: x positive-class score bin, the
      histogram) with their loss sums, `model`'s per-row outputs and the `sums` of row expressions
      (name -> row expression, kept in `values` under their names); regression: the error sums;
    - HIST (multiclass): per class `f`, rows by label flag x prediction flag x score bin, with score
      and calibrated-probability sums;
    - REL (with `relation`, monitoring/relation.py RelationBins), entries of the CELL aggregation: per
      feature `f` - 1 and bin `b`, the labelled rows' residual count, sum and sum of squares (bins unpacked
      from RelationBins.packed's words).
    Keys are ints and short text and both branches read the same columns, so Spark shares one shuffle of
    each joined table between them (one scan; docs/performance.md). The chunk's id range is not here: a
    min and max of a text id would turn the aggregation into a sort (monitoring/profiling.py finds it).
    `twin`: the same rows observed under other names, read by every branch but the first
    (labels.LabelJoin)."""
    from monitoring.relation import PREFIX, residual  # relation imports this module

    sums, pairs = sums or {}, classes(config) if config.problem_type != "regression" else []
    cell, values = _cell(config, model)
    words = relation.words() if relation is not None and relation.features else []
    # every column a branch reads, touched by all of them (null test, one aggregate): same columns, one exchange
    features = {f.name for f in config.features}  # prepared before the join: the join does not carry them
    touched = [*(quote_part(c) for c, _ in config.monitored_columns() if c not in features),
               *words, *[f"_dl_s{j}" for j in range(len(sums))],
               *(["_dl_model"] if model is not None else [])]
    row = [*map(F.col, group), F.col(LABEL).alias("_dl_l"), F.col(LABELLED).alias("_dl_ok"),
           F.col(INVALID).cast("int").alias("_dl_bad"),
           (predicted(config) if pairs else F.lit(None).cast("string")).alias("_dl_p"),
           reduce(lambda a, b: a | b, [F.col(c).isNull() for c in dict.fromkeys(touched)], F.lit(False))
           .alias("_dl_touch"),
           *[x.cast("double").alias(f"_dl_v{j}") for j, x in enumerate(values)],
           *[F.col(f"_dl_s{j}") for j in range(len(sums))],
           *[F.col(quote_part(c)).cast("double").alias(f"_dl_score{j}") for j, (_, c) in enumerate(pairs)]]
    if model is not None and config.problem_type == "multiclass":
        row += [F.col(f"_dl_model.c{j}").cast("double").alias(f"_dl_q{j}") for j in range(len(pairs))]
    if words:
        r = residual(config)
        row += [F.when(~F.isnan(r), r).alias("_dl_r"), *map(F.col, words)]

    df = df.select(*row)
    other = twin.select(*row) if twin is not None else df
    touch = F.max("_dl_touch").alias("_dl_touch")
    branches = [_cells(df, config, group, len(values), len(sums), touch, relation if words else None)]
    if config.problem_type == "multiclass":
        branches.append(_histograms(other, pairs, group, model is not None, touch))
    rows = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), branches).collect()

    states: dict[tuple, PerformanceState] = {}
    for rw in rows:
        key = tuple(rw[g] for g in group)
        v = states.setdefault(key, PerformanceState(labels_version=labels_version)).values

        def add(name: str, value, v=v) -> None:
            if value is not None:
                v[name] = v.get(name, 0.0) + float(value)

        if rw["t"] == CELL:
            add("rows", rw["n"])
            for j, name in enumerate(sums):
                add(name, rw[f"s{j}"] or 0.0)
            cell(add, rw)
            if config.problem_type == "binary" and rw["b"] is not None:  # the positive class's score histogram
                _histogram(add, pairs[0][0], rw, None, None)
        elif rw["t"] == HIST:
            _histogram(add, pairs[rw["f"]][0], rw, rw["ny"], rw["y"])
        else:
            v[relation.mark()] = 1.0
            for name, b in relation.decode(rw["f"] - 1, rw["b"]):
                for stat, value in (("n", rw["n"]), ("r", rw["rx"]), ("q", rw["rx2"])):
                    add(f"{PREFIX}{b}|{stat}|{name}", value)
    return states


def _cells(df: DataFrame, config: MonitorConfig, group: list[str], values: int, sums: int, touch: Column,
           relation=None) -> DataFrame:
    """The CELL branch and, with `relation`, the REL entries in the same aggregation: each labelled row with
    a residual also becomes one entry per feature (`f` = feature + 1, its bin in `b`, unpacked from the
    packed words), so the joined rows are aggregated once (a second branch would sort and join them again)."""
    keys = {"label": F.col("_dl_l"), "pred": F.col("_dl_p"), "invalid": F.col("_dl_bad")}
    aggs = [F.sum(f"_dl_v{j}").alias(f"v{j}") for j in range(values)]
    if config.problem_type == "binary":
        score, cls = F.col("_dl_score0"), F.lit(classes(config)[0][0])
        keys |= {"b": F.when(score.isNotNull(), _score_bin(score)).cast("int"),
                 "pos": F.when(F.col("_dl_ok"), (F.col("_dl_l") == cls).cast("int")),
                 "yhat": F.coalesce((F.col("_dl_p") == cls).cast("int"), F.lit(0))}
        aggs.append(F.sum(score).alias("x"))
    kind = F.lit(CELL)
    if relation is not None:
        # entry 0: the row's cell; entries 1..: its features' bins (the sums of the other entries' cells
        # are read by nobody; summing them costs less than a condition per entry, docs/performance.md)
        df = df.select("*", F.expr(f"posexplode(IF(_dl_r IS NULL, array(CAST(NULL AS BIGINT)), "
                                   f"concat(array(CAST(NULL AS BIGINT)), {relation.codes()}))) AS (f, c)"))
        cell = F.col("f") == 0
        bins = F.col("c").cast("int")  # the combined code of a group of features (RelationBins.groups)
        keys = {"f": F.col("f")} | {name: F.when(cell, key) for name, key in keys.items() if name != "b"} \
            | {"b": F.when(cell, keys["b"]).otherwise(bins) if "b" in keys else F.when(~cell, bins)}
        r = F.col("_dl_r")
        aggs += [F.sum(r).alias("rx"), F.sum(r * r).alias("rx2")]
        kind = F.when(cell, F.lit(CELL)).otherwise(F.lit(REL))
    return df.groupBy(*group, *[key.alias(name) for name, key in keys.items()]) \
        .agg(F.count(F.lit(1)).alias("n"), *aggs, *[F.sum(f"_dl_s{j}").alias(f"s{j}") for j in range(sums)], touch) \
        .withColumn("t", kind)


def _histograms(df: DataFrame, pairs: list[tuple[str, str]], group: list[str], calibrated: bool,
                touch: Column) -> DataFrame:
    entries = [F.struct(F.col(f"_dl_score{j}").alias("s"),
                        (F.col(f"_dl_q{j}") if calibrated else F.lit(None).cast("double")).alias("q"))
               for j in range(len(pairs))]
    exploded = df.select(*group, "_dl_l", "_dl_ok", "_dl_p", "_dl_touch",
                         F.posexplode(F.array(*entries)).alias("f", "e")).where(F.col("e.s").isNotNull())
    cls = F.element_at(F.array(*[F.lit(c) for c, _ in pairs]), F.col("f") + 1)
    return exploded.groupBy(*group, "f", F.when(F.col("_dl_ok"), (F.col("_dl_l") == cls).cast("int")).alias("pos"),
                            F.coalesce((F.col("_dl_p") == cls).cast("int"), F.lit(0)).alias("yhat"),
                            _score_bin(F.col("e.s")).cast("int").alias("b")) \
        .agg(F.count(F.lit(1)).alias("n"), F.sum("e.s").alias("x"), F.count("e.q").alias("ny"),
             F.sum("e.q").alias("y"), touch).withColumn("t", F.lit(HIST))


def _score_bin(score: Column) -> Column:
    return F.least(F.greatest(F.floor(score * SCORE_BINS), F.lit(0)), F.lit(SCORE_BINS - 1))


def _histogram(add, cls: str, rw, calibrated, prob) -> None:
    """The score-histogram keys of one (class, label flag, prediction flag, bin) entry (module docstring)."""
    n, b, yhat, pos = rw["n"], rw["b"], rw["yhat"], rw["pos"]
    add(f"a|{cls}|{yhat}|{b}", n)
    add(f"as|{cls}|{yhat}|{b}", rw["x"])
    if calibrated:
        add(f"ac|{cls}|{yhat}|{b}", calibrated)
        add(f"ap|{cls}|{yhat}|{b}", prob)
    if pos is not None:
        add(f"h|{cls}|{pos}|{b}", n)
        add(f"s|{cls}|{pos}|{b}", rw["x"])


def _cell(config: MonitorConfig, model: RowModel | None):
    """The per-row values summed in a CELL entry, and the function that adds one CELL row's sums to a
    state (classification: the confusion cell and its loss sums; regression: the error sums)."""
    labelled, invalid = F.col(LABELLED), F.col(INVALID)
    if config.problem_type == "regression":
        y, p = F.col(LABEL), F.col(quote_part(config.outputs.prediction)).cast("double")
        ok = labelled & p.isNotNull()
        e = F.when(ok, p - y)
        ape = F.abs(e) / F.greatest(F.abs(y), F.lit(MAPE_EPS))
        sle = F.when(ok & (y >= 0) & (p >= 0), (F.log1p(y) - F.log1p(p)) ** 2)
        values = [e, F.abs(e), e * e, e ** 4, ape, ape * ape, sle, sle * sle,
                  F.when(ok & ((y < 0) | (p < 0)), 1), F.when(ok, y), F.when(ok, y * y),
                  F.when(e.isNotNull(), 1), F.when(labelled, 1), F.when(invalid, 1)]
        outputs = model.outputs() if model is not None else ()
        if model is not None:  # DLE: every row's predicted losses, labelled or not
            values += [F.when(p.isNotNull(), 1)] + [F.when(p.isNotNull(), F.col(f"_dl_model.{k}")) for k in outputs]

        def regression(add, rw) -> None:
            for j, name in enumerate(_REGRESSION):
                add(name, rw[f"v{j}"])
            k = len(_REGRESSION)
            add("n", rw[f"v{k}"] or 0)
            add("labelled", rw[f"v{k + 1}"] or 0)
            add(INVALID_LABELS, rw[f"v{k + 2}"] or 0)
            if model is not None:
                add("dle_n", rw[f"v{k + 3}"] or 0)
                for j, out in enumerate(outputs):
                    add(f"dle_{out}", rw[f"v{k + 4 + j}"])
        return regression, values

    logloss, brier = _losses(config)
    values = [logloss, logloss * logloss, brier, brier * brier]
    pairs = classes(config)
    if model is not None:
        values += [F.col(f"_dl_model.c{j}") for j in range(len(pairs))]

    def classification(add, rw) -> None:
        label, pred, n = rw["label"], rw["pred"], rw["n"]
        if rw["invalid"]:
            add(INVALID_LABELS, n)
        if label is not None:
            add("labelled", n)
            add(f"cm|{label}|{pred}", n)
            for j, name in enumerate(("logloss", "logloss2", "brier", "brier2")):
                add(name, rw[f"v{j}"])
        for j, (cls, _) in enumerate(pairs if model is not None else []):
            add(f"ce|{pred}|{cls}", rw[f"v{4 + j}"])
    return classification, values
