"""Ground truth: the latest label per prediction id, left-joined to the predictions.

Labels live in their own Delta table (id, label, label timestamp). Null labels are ignored; where an
id has several labels the one with the latest label timestamp wins (ties: the largest label value, so
the choice is deterministic). Counts of duplicates, null labels and labels whose id matches no
prediction are reported per run.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from monitoring.config import Labels
from monitoring.tables import quote_part

LABEL, LABELLED = "_dl_label", "_dl_labelled"


@dataclass(frozen=True)
class LabelStats:
    labels: int  # rows of the label table
    null_labels: int
    duplicates: int  # label rows beyond the first per id
    unknown_ids: int  # distinct labelled ids with no prediction
    scope: str = "whole label table"


def latest_labels(labels: DataFrame, cfg: Labels, regression: bool) -> DataFrame:
    """One row per id: (`_dl_id`, LABEL) with the latest non-null label."""
    label = F.col(quote_part(cfg.label_column))
    label = label.cast("double") if regression else label.cast("string")
    ranked = labels.where(label.isNotNull()).select(
        F.col(quote_part(cfg.id_column)).alias("_dl_id"),
        F.struct(F.col(quote_part(cfg.timestamp_column)).alias("ts"), label.alias("v")).alias("_dl_tv"))
    return ranked.groupBy("_dl_id").agg(F.max("_dl_tv").alias("_dl_tv")).select("_dl_id", F.col("_dl_tv.v")
                                                                               .alias(LABEL))


def join_labels(predictions: DataFrame, labels: DataFrame, cfg: Labels, id_column: str,
                regression: bool) -> DataFrame:
    """Predictions with LABEL (null when none arrived) and LABELLED; unlabelled rows stay."""
    latest = latest_labels(labels, cfg, regression)
    joined = predictions.join(latest, F.col(quote_part(id_column)) == F.col("_dl_id"), "left").drop("_dl_id")
    return joined.withColumn(LABELLED, F.col(LABEL).isNotNull())


def label_stats(predictions: DataFrame, labels: DataFrame, cfg: Labels, id_column: str,
                scope: str = "whole label table") -> LabelStats:
    """Duplicate, null and unknown-id label counts of `labels` against `predictions` (one aggregation)."""
    lid = F.col(quote_part(cfg.id_column))
    per_id = labels.groupBy(lid.alias("_dl_id")).agg(
        F.count(F.lit(1)).alias("n"), F.count(F.col(quote_part(cfg.label_column))).alias("nonnull"))
    known = predictions.select(F.col(quote_part(id_column)).alias("_dl_pid")).distinct()
    row = per_id.join(known, F.col("_dl_id") == F.col("_dl_pid"), "left").agg(
        F.sum("n").alias("labels"), F.sum(F.col("n") - F.col("nonnull")).alias("nulls"),
        F.sum(F.greatest(F.col("nonnull") - 1, F.lit(0))).alias("dupes"),
        F.sum(F.when(F.col("_dl_pid").isNull() & (F.col("nonnull") > 0), 1).otherwise(0)).alias("unknown"),
    ).collect()[0]
    return LabelStats(int(row["labels"] or 0), int(row["nulls"] or 0), int(row["dupes"] or 0),
                      int(row["unknown"] or 0), scope)
