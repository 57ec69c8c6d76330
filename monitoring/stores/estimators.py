"""The `estimators` Delta table: models fitted on the reference (the CBPE calibrators: the positive
class's, or every class's for multiclass; the DLE loss models; the PCA of the reconstruction error with
the reference chunks' error sums), one row per monitor x model, written at `fit`
and read by every run, so runs never refit. Delta versions keep the history of earlier fits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from monitoring.drift.reconstruction import Reconstruction
from monitoring.performance.cbpe import Calibrator
from monitoring.performance.dle import LossModels
from monitoring.stores.tables import replace_rows, table_exists, table_ident

ESTIMATOR_KEYS = ["monitor", "model"]
ESTIMATOR_SCHEMA = StructType([
    StructField("monitor", StringType(), False),
    StructField("model", StringType(), False),  # cbpe:<class> | dle:<loss> | reconstruction
    StructField("kind", StringType(), False),  # isotonic | lightgbm | pca
    StructField("settings", StringType(), False),  # the calibration mode it was fitted with
    StructField("applied", BooleanType(), False),
    StructField("knots_x", ArrayType(DoubleType(), False), True),
    StructField("knots_y", ArrayType(DoubleType(), False), True),
    StructField("details", MapType(StringType(), DoubleType()), True),  # ece_raw, ece_calibrated
    StructField("payload", StringType(), True),  # a LightGBM model as text (DLE); JSON (reconstruction)
    StructField("reference_version", LongType(), True),
    StructField("signature", StringType(), False),
    StructField("fitted_at", TimestampType(), False),
])


def write_calibrators(spark: SparkSession, table: str, monitor: str, calibrators: dict[str, Calibrator], mode: str,
                      reference_version: int | None, signature: str) -> None:
    """One row per class calibrator (replacing every stored one of the monitor), in one commit."""
    now = datetime.now(timezone.utc)
    rows = []
    for cls, cal in calibrators.items():
        details = {k: v for k, v in (("ece_raw", cal.ece_raw), ("ece_calibrated", cal.ece_calibrated))
                   if v is not None}
        rows.append((monitor, f"cbpe:{cls}", "isotonic", mode, cal.applied, list(cal.x), list(cal.y), details, None,
                     reference_version, signature, now))
    replace_rows(spark, table, spark.createDataFrame(rows, ESTIMATOR_SCHEMA), {"monitor": monitor}, ("model", "cbpe:"))


def write_loss_models(spark: SparkSession, table: str, monitor: str, models: LossModels,
                      reference_version: int | None, signature: str) -> None:
    now = datetime.now(timezone.utc)
    rows = [(monitor, f"dle:{loss}", "lightgbm", models.settings(), True, None, None,
             {"training_rows": float(models.training_rows)}, text, reference_version, signature, now)
            for loss, text in models.models.items()]
    replace_rows(spark, table, spark.createDataFrame(rows, ESTIMATOR_SCHEMA), {"monitor": monitor}, ("model", "dle:"))


def read_estimators(spark: SparkSession, table: str, monitor: str, exists: bool | None = None) -> list:
    """Every stored estimator row of `monitor` (one query; the read_* functions below pick from them)."""
    if not table_exists(spark, table, exists):
        return []
    return estimators_query(spark, table, monitor).collect()


def estimators_query(spark: SparkSession, table: str, monitor: str) -> DataFrame:
    """The stored estimator rows of one monitor (the table exists)."""
    return spark.sql(f"SELECT * FROM {table_ident(table)}").where(F.col("monitor") == monitor)


def read_loss_models(rows: list) -> tuple[LossModels, str] | None:
    """(loss models, reference signature) as stored at the last fit, or None."""
    rows = [r for r in rows if r["model"].startswith("dle:")]
    if not rows:
        return None
    models = {r["model"].split(":", 1)[1]: r["payload"] for r in rows}
    return LossModels.from_stored(rows[0]["settings"], models), rows[0]["signature"]


def read_calibrators(rows: list, classes: list[str], mode: str, signature: str) -> dict[str, Calibrator] | None:
    """The calibrators of `classes` stored at the last fit, or None unless every one of them was fitted
    with calibration `mode` on the reference with `signature`."""
    rows = [r for r in rows if r["model"] in {f"cbpe:{c}" for c in classes}]
    found = {}
    for r in rows:
        if r["settings"] == mode and r["signature"] == signature:
            details = dict(r["details"] or {})
            found[r["model"].split(":", 1)[1]] = Calibrator(
                tuple(r["knots_x"] or ()), tuple(r["knots_y"] or ()), bool(r["applied"]), details.get("ece_raw"),
                details.get("ece_calibrated"))
    return found if set(found) == set(classes) else None


RECONSTRUCTION = "reconstruction"
ChunkKey = tuple[int, str, str]  # chunk index, slice key, slice value


def write_reconstruction(spark: SparkSession, table: str, monitor: str, model: Reconstruction,
                         reference_sums: dict[ChunkKey, dict[str, float]], reference_version: int | None,
                         signature: str) -> None:
    """The fitted PCA and the reconstruction-error sums of every reference chunk (and slice)."""
    payload = json.dumps({"model": model.to_json(),
                          "reference": [[*key, sums] for key, sums in sorted(reference_sums.items())]})
    row = (monitor, RECONSTRUCTION, "pca", str(model.components), True, None, None,
           {"explained_variance": model.explained_variance}, payload, reference_version, signature,
           datetime.now(timezone.utc))
    replace_rows(spark, table, spark.createDataFrame([row], ESTIMATOR_SCHEMA),
                 {"monitor": monitor, "model": RECONSTRUCTION})


@dataclass(frozen=True)
class StoredReconstruction:
    """The PCA of the reconstruction error and the error sums of the reference chunks (and slices)."""

    model: Reconstruction
    reference_sums: dict[ChunkKey, dict[str, float]]
    reference_version: int | None
    signature: str


def read_reconstruction(rows: list) -> StoredReconstruction | None:
    """The reconstruction fit stored at the last fit, or None."""
    rows = [r for r in rows if r["model"] == RECONSTRUCTION]
    if not rows:
        return None
    payload = json.loads(rows[0]["payload"])
    sums = {(int(c), k, v): dict(s) for c, k, v, s in payload["reference"]}
    return StoredReconstruction(Reconstruction.from_json(payload["model"]), sums, rows[0]["reference_version"],
                                rows[0]["signature"])
