"""Driftline's DLE (estimated regression performance) under `compatibility: nannyml` vs NannyML's (after
crosscheck/nannyml_dle.py), reference and analysis chunks.

    python crosscheck/compare_dle.py DATASET OUT_DIR       # DATASET: car_price

Writes the rows as Delta tables (predictions of the reference and the analysis, one labels table: the loss
models learn from the reference's labels, the thresholds from its realized values), runs `fit` and `run` with
5000-row chunks and compares per chunk and metric (MAE, MAPE, MSE, MSLE, RMSE, RMSLE) the estimate, its
sampling error and both thresholds (1e-6 relative) and the alert (equal). Also compares every row's loss
predicted by Driftline's stored loss models with NannyML's (nannyml_losses.parquet), to tell a model
difference from an aggregation one. Prints a markdown table per metric (also OUT_DIR/dle_DATASET/dle_vs_nannyml.md,
with every chunk's values below it); exits 1 when a check fails.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crosscheck.driftline_side import chunk_line, close, paired_chunks, read_rows, session, write_tables  # noqa: E402
from monitoring.config import parse_config  # noqa: E402
from monitoring.performance.dle import encode  # noqa: E402
from monitoring.performance.estimated import ESTIMATED  # noqa: E402
from monitoring.pipeline import estimators_table, fit, run  # noqa: E402
from monitoring.slices import WHOLE  # noqa: E402
from monitoring.stores.estimators import read_estimators, read_loss_models  # noqa: E402

REL = 1e-6
LOSS_OF = {"mae": "ae", "mse": "se", "rmse": "se", "mape": "ape", "msle": "sle", "rmsle": "sle"}


def _config(dataset: str, delta: Path, out: Path, nanny: dict) -> dict:
    features = [{"name": n, "kind": "categorical" if n in nanny["categorical"] else "continuous"}
                for n in nanny["features"]]  # NannyML's column order: the loss models see the same columns
    return {"monitor": f"{dataset}_dle", "compatibility": "nannyml", "problem_type": "regression",
            "source": {"table": str(delta / "analysis"), "id_column": "id", "timestamp_column": "timestamp"},
            "features": features, "outputs": {"prediction": "y_pred"},
            "labels": {"table": str(delta / "labels"), "label_column": nanny["target"], "timestamp_column": "label_ts",
                       "min_labelled": 1, "min_coverage": 0},
            "chunking": {"size": nanny["chunk_size"]}, "reference": {"table": str(delta / "reference")},
            "estimation": {"enabled": True}, "output": {"path": str(out / "driftline")},
            "mlflow": {"enabled": False}}


def _rel(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return 0.0 if a is None and b is None else math.inf
    return 0.0 if a == b else abs(a - b) / max(abs(a), abs(b))


def _row_losses(spark, config, frames: dict[str, pd.DataFrame], out: Path) -> tuple[dict[str, float], int]:
    """Largest relative difference per loss between every row's loss as Driftline's stored models predict it
    (clipped at 0, as the profiling pass does) and NannyML's; the models' training rows."""
    models, _ = read_loss_models(read_estimators(spark, estimators_table(config), config.monitor))
    import lightgbm as lgb

    rows = pd.concat([frames["reference"], frames["analysis"]], ignore_index=True)
    theirs = pd.read_parquet(out / "nannyml_losses.parquet").set_index("id").loc[rows["id"]]
    x = encode(rows, models.features, models.prediction, models.categories)
    diffs = {}
    for metric in ("mae", "mse", "mape", "msle"):
        loss = LOSS_OF[metric]
        if loss in models.models:
            ours = np.maximum(lgb.Booster(model_str=models.models[loss]).predict(x), 0.0)
            t = theirs[metric].to_numpy()
            diffs[loss] = float(np.max(np.abs(ours - t) / np.maximum(np.maximum(np.abs(ours), np.abs(t)), 1e-300)))
    return diffs, models.training_rows


def main() -> int:
    dataset, out = sys.argv[1], (Path(sys.argv[2]) / f"dle_{sys.argv[1]}").resolve()
    nanny = json.loads((out / "nannyml_dle.json").read_text())
    target, metrics = nanny["target"], nanny["metrics"]
    frames = read_rows(out)
    spark = session()
    delta = out / "delta"
    labels = pd.concat([f[["id", target, "timestamp"]] for f in frames.values()]).rename(
        columns={"timestamp": "label_ts"})
    write_tables(spark, delta, {"reference": frames["reference"].drop(columns=[target]),
                                "analysis": frames["analysis"].drop(columns=[target]), "labels": labels})
    config = parse_config(_config(dataset, delta, out, nanny))
    fit(spark, config, refresh=True)
    result = run(spark, config, refresh=True)
    ours: dict[tuple[str, int], dict[str, object]] = {}
    for r in result.metrics:
        if r.family == ESTIMATED and r.comparison == "NONE" and (r.slice_key, r.slice_value) == WHOLE:
            ours.setdefault((r.period, r.chunk.index), {})[r.metric] = r
    pairs = paired_chunks(ours, nanny["chunks"])
    if pairs is None:
        return 1
    row_diffs, training_rows = _row_losses(spark, config, frames, out)
    stats = {m: {"chunks": 0, "values": 0, "outside": 0, "alerts": 0, "value": 0.0, "se": 0.0, "thr": 0.0}
             for m in metrics}
    detail = ["| period | chunk | metric | estimate D / N | sampling error D / N | thresholds D / N | alert D / N "
              "| ok |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for period, key, chunk in pairs:
        for metric in metrics:
            d, n, s = ours[key][metric], chunk[metric], stats[metric]
            values = [(d.value, n["value"], "value"), (d.sampling_error, n["sampling_error"], "se"),
                      (d.lower_threshold, n["lower_threshold"], "thr"),
                      (d.upper_threshold, n["upper_threshold"], "thr")]
            outside = sum(not close(a, b, REL) for a, b, _ in values)
            alert_differs = bool(d.alert) != n["alert"]
            s["chunks"] += 1
            s["values"] += len(values)
            s["outside"] += outside
            s["alerts"] += alert_differs
            for a, b, k in values:
                s[k] = max(s[k], _rel(a, b))
            detail.append(chunk_line(period, chunk["key"], metric, d, n, not outside and not alert_differs, 8))
    counts = {p: sum(period == p for period, _, _ in pairs) for p in ("reference", "analysis")}
    summary = [f"NannyML {nanny['nannyml']} (LightGBM {nanny['lightgbm']}) DLE on {dataset}, chunk size "
               f"{nanny['chunk_size']}, {counts['reference']} reference + {counts['analysis']} analysis "
               f"chunks; Driftline with `compatibility: nannyml`, loss models trained on {training_rows} rows. "
               f"Tolerance {REL:g} relative (estimate, sampling error, thresholds); alerts equal.", "",
               "| metric | chunks | values compared | outside tolerance | alerts different | largest rel. diff: "
               "estimate | sampling error | thresholds |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for metric, s in stats.items():
        summary.append(f"| {metric} | {s['chunks']} | {s['values']} | {s['outside']} | {s['alerts']} | "
                       f"{s['value']:.2g} | {s['se']:.2g} | {s['thr']:.2g} |")
    failures = sum(s["outside"] + s["alerts"] for s in stats.values())
    checks = sum(s["values"] + s["chunks"] for s in stats.values())
    rows_line = ("Per-row predicted losses, Driftline's stored models vs NannyML's, largest relative difference: "
                 + ", ".join(f"{k} {v:.2g}" for k, v in row_diffs.items()))
    verdict = f"{failures} of {checks} checks failed (values outside tolerance + alerts different)"
    text = "\n".join(summary) + "\n\n" + rows_line + "\n\n" + verdict + "\n"
    (out / "dle_vs_nannyml.md").write_text(text + "\n" + "\n".join(detail) + "\n")
    print(text)
    for line in detail[2:]:
        if "**FAIL**" in line:
            print(line)
    spark.stop()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
