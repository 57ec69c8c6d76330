"""What the benchmark data generators share: a year of timestamps in append (id) order, the binary
model's predictions (4 continuous + 2 categorical features, label, score, prediction) and its monitor."""

from __future__ import annotations

YEAR_START = 1_735_689_600  # 2025-01-01 UTC


def year_timestamps(rows: int):
    """Row `id` of `rows` spread over 2025 in id order, as a timestamp column."""
    from pyspark.sql import functions as F

    return F.timestamp_seconds(F.lit(YEAR_START) + (F.col("id") + F.rand(1)) * (365 * 86400 / rows))


def binary_predictions(spark, first_id: int, rows: int, partitions: int, ts):
    """Rows with ids [first_id, first_id + rows) and timestamp column `ts`: id, ts, x0..x3, c0..c1, the
    label y, score and pred (score >= 0.5)."""
    from pyspark.sql import functions as F

    cols = [F.col("id"), ts.alias("ts")]
    cols += [(F.randn(10 + i) * (i + 1) + 10 * i).alias(f"x{i}") for i in range(4)]
    cols += [F.concat(F.lit("v"), F.floor(F.rand(20 + i) * 8 * (i + 1)).cast("string")).alias(f"c{i}")
             for i in range(2)]
    y = (F.rand(3) < 0.3).cast("int")
    score = 1 / (1 + F.exp(-(F.randn(4) + 1.5 * y - 0.8)))
    base = spark.range(first_id, first_id + rows, 1, partitions).select(*cols, y.alias("y"), score.alias("score"))
    return base.withColumn("pred", (F.col("score") >= 0.5).cast("int"))


def binary_monitor(preds: str, labels: str, out: str, period: str, reference_end: str):
    """The benchmark monitor of `binary_predictions` tables, MLflow off."""
    from monitoring.config import parse_config

    return parse_config({
        "monitor": "bench", "problem_type": "binary",
        "source": {"table": preds, "id_column": "id", "timestamp_column": "ts"},
        "features": [{"name": f"x{i}", "kind": "continuous"} for i in range(4)]
        + [{"name": f"c{i}", "kind": "categorical"} for i in range(2)],
        "outputs": {"score": "score", "prediction": "pred", "positive_class": 1},
        "labels": {"table": labels, "id_column": "id", "label_column": "label", "timestamp_column": "label_ts"},
        "chunking": {"period": period}, "reference": {"start": "2025-01-01", "end": reference_end},
        "output": {"path": out}, "mlflow": {"enabled": False},
    })
