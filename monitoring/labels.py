"""Ground truth: the latest label per prediction id, left-joined to the predictions.

Labels live in their own Delta table (id, label, label timestamp). Null labels are ignored; where an
id has several labels the one with the latest label timestamp wins (ties: the largest label value, so
the choice is deterministic). Counts of duplicates, null labels and labels whose id matches no
prediction are reported per run.

A latest label that cannot be right is invalid: a class the monitor does not know (classification), a
NaN or infinite value (regression). Its prediction counts as unlabelled and INVALID flags it, so the
performance states count it (`invalid_labels`) instead of scoring it as a wrong class. Classification
labels are compared as text; whole numbers stored as floating point (1.0) read as integers (1).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Observation
from pyspark.sql import functions as F

from monitoring.config import Labels
from monitoring.sketches import finite
from monitoring.stores.tables import quote_part

LABEL, LABELLED, INVALID = "_dl_label", "_dl_labelled", "_dl_invalid_label"


@dataclass(frozen=True)
class LabelStats:
    labels: int  # rows of the label table
    null_labels: int
    duplicates: int  # label rows beyond the first per id
    unknown_ids: int  # distinct labelled ids with no prediction
    scope: str = "whole label table"


def label_value(labels: DataFrame, column: str, regression: bool) -> Column:
    """The label as the monitor compares it: a double for regression, else text (whole floating-point
    numbers as integers, so 1.0 matches class 1)."""
    label = F.col(quote_part(column))
    if regression:
        return label.cast("double")
    if labels.schema[column].dataType.typeName() in ("float", "double", "decimal"):
        x = label.cast("double")
        whole = ~F.isnan(x) & (F.abs(x) < F.lit(2.0 ** 53)) & (x == F.floor(x))
        return F.when(whole, x.cast("long").cast("string")).otherwise(x.cast("string"))
    return label.cast("string")


class LabelCounts:
    """The label counts of one label join, observed while the join's rows are aggregated (no pass of
    their own): rows, null labels and duplicates of the label rows read, and the labelled ids that
    matched no prediction of the rows joined. Read `stats` only after that aggregation ran."""

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self.labels, self.unmatched = Observation(), Observation()

    def stats(self) -> LabelStats:
        counts, unmatched = self.labels.get, self.unmatched.get
        return LabelStats(int(counts.get("labels") or 0), int(counts.get("nulls") or 0),
                          int(counts.get("dupes") or 0), int(unmatched.get("unknown") or 0), self.scope)


def latest_labels(labels: DataFrame, cfg: Labels, regression: bool, known: list[str] | None = None) -> DataFrame:
    """One row per id: (`_dl_id`, LABEL, INVALID) from the latest non-null label, and `_dl_n`, `_dl_nonnull`
    (its label rows, non-null ones); LABEL is null when that label is invalid (outside `known` classes when
    given, or not finite for regression) or the id has only null labels."""
    label = label_value(labels, cfg.label_column, regression)
    if regression:
        valid = finite(label).isNotNull()
    elif known:
        valid = label.isin(known)
    else:
        valid = F.lit(True)
    tv = F.struct(F.col(quote_part(cfg.timestamp_column)).alias("ts"), label.alias("v"), valid.alias("ok"))
    # shuffled by id first: labels rarely repeat an id, so a partial aggregation would sort every row before
    # the shuffle for nothing (a max of a struct is a sort aggregate); this way the rows are sorted once
    ids = F.col(quote_part(cfg.id_column))
    latest = labels.repartition(ids).groupBy(ids.alias("_dl_id")).agg(
        F.max(F.when(label.isNotNull(), tv)).alias("_dl_tv"), F.count(F.lit(1)).alias("_dl_n"),
        F.count(F.col(quote_part(cfg.label_column))).alias("_dl_nonnull"))
    return latest.select("_dl_id", F.when(F.col("_dl_tv.ok"), F.col("_dl_tv.v")).alias(LABEL),
                         (~F.col("_dl_tv.ok")).alias(INVALID), "_dl_n", "_dl_nonnull")


@dataclass(frozen=True)
class LabelJoin:
    """A latest-label join: `rows` observes `counts` when first aggregated; `twin` is the same plan
    observing the same metrics under other names, for the other branches of a union over those rows
    (Spark Connect merges a union's observations by name and refuses one seen twice). With the same
    observations the columns read are the same, so the exchanges match and Spark shares one scan."""
    rows: DataFrame
    twin: DataFrame
    counts: LabelCounts


def join_labels(predictions: DataFrame, labels: DataFrame, cfg: Labels, id_column: str,
                regression: bool, known: list[str] | None = None, scope: str = "whole label table",
                keep: Column | None = None) -> LabelJoin:
    """Predictions (those `keep` selects) with LABEL (null when no valid label arrived), LABELLED and
    INVALID; unlabelled rows stay. The label counts (`LabelCounts`) are observed when the joined rows are
    first aggregated; their unmatched ids are the labelled ids of no prediction at all."""
    marked = predictions.withColumn("_dl_pred", F.coalesce(keep, F.lit(False)) if keep is not None else F.lit(True))

    def join(counts: LabelCounts) -> DataFrame:
        latest = latest_labels(labels, cfg, regression, known).observe(
            counts.labels, F.sum("_dl_n").alias("labels"), F.sum(F.col("_dl_n") - F.col("_dl_nonnull")).alias("nulls"),
            F.sum(F.greatest(F.col("_dl_nonnull") - 1, F.lit(0))).alias("dupes"))
        joined = marked.join(latest, F.col(quote_part(id_column)) == F.col("_dl_id"), "full_outer").observe(
            counts.unmatched,
            F.count(F.when(F.col("_dl_pred").isNull() & (F.col("_dl_nonnull") > 0), 1)).alias("unknown"))
        joined = joined.where(F.col("_dl_pred")).drop("_dl_id", "_dl_pred", "_dl_n", "_dl_nonnull")
        return joined.withColumn(LABELLED, F.col(LABEL).isNotNull()) \
            .withColumn(INVALID, F.coalesce(F.col(INVALID), F.lit(False)))

    counts = LabelCounts(scope)
    return LabelJoin(join(counts), join(LabelCounts(scope)), counts)
