"""Test helpers: write small pandas frames as Delta tables and build configs around them."""

from __future__ import annotations

from typing import Any

import pandas as pd

from monitoring.config import MonitorConfig, parse_config


def write_delta(spark, df: pd.DataFrame, path: str, schema: str | None = None) -> str:
    sdf = spark.createDataFrame(df, schema=schema) if schema else spark.createDataFrame(df)
    sdf.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path)
    return path


def make_config(table: str, features: list[tuple[str, str]], out: str, **overrides: Any) -> MonitorConfig:
    data: dict[str, Any] = {
        "monitor": "t",
        "problem_type": "binary",
        "source": {"table": table, "id_column": "id", "timestamp_column": "ts"},
        "features": [{"name": n, "kind": k} for n, k in features],
        "outputs": {"score": "score"},
        "chunking": {"period": "1d"},
        "reference": {"start": "2025-01-01", "end": "2025-01-02"},
        "output": {"path": out},
        "mlflow": {"enabled": False},
    }
    for key, value in overrides.items():
        data[key] = value
    return parse_config(data)


def estimates_by_chunk(result) -> dict[int, dict[str, Any]]:
    """chunk index -> metric -> the estimated-performance result (whole table, no comparison)."""
    from monitoring.performance.estimated import ESTIMATED

    out: dict[int, dict[str, Any]] = {}
    for r in result.metrics:
        if r.family == ESTIMATED and r.slice_key == "" and r.comparison == "NONE":
            out.setdefault(r.chunk.index, {})[r.metric] = r
    return out
