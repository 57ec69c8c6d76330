"""Driftline's reconstruction error vs NannyML's on NannyML's car-loan data (after
crosscheck/nannyml_reconstruction.py).

    python crosscheck/compare_reconstruction.py OUT_DIR

Writes the rows as Delta tables (the reference as its own table), runs `fit` and `run` under
`compatibility: nannyml` with 5000-row chunks (a float column declared categorical: the reconstruction
takes NannyML's kinds from the column types) and compares every chunk's reconstruction error (reference
and analysis) with NannyML's: value within 1% relative (the acceptance; the preprocessing and PCA are the
same, so the difference is rounding), sampling error within 1% relative, thresholds and alerts equal.
Prints a markdown table (also OUT_DIR/reconstruction/reconstruction_vs_nannyml.md); exits 1 when a check
fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitoring.config import parse_config  # noqa: E402
from monitoring.pipeline import fit, run  # noqa: E402
from monitoring.session import embedded_session  # noqa: E402
from monitoring.slices import WHOLE  # noqa: E402

REL_TOL = 0.01
# declared kinds: loan_length, a float column, declared categorical (as a user declares a few-valued number for
# univariate drift, NannyML's treat_as_categorical); NannyML's reconstruction reads it as continuous (a float
# dtype), and so does Driftline's under `compatibility: nannyml` (its kinds from the column types)
CATEGORICAL = {"salary_range", "repaid_loan_on_prev_car", "size_of_downpayment", "loan_length"}


def main() -> int:
    out = (Path(sys.argv[1]) / "reconstruction").resolve()
    nanny = json.loads((out / "nannyml_reconstruction.json").read_text())
    spark = embedded_session({"spark.master": "local[2]", "spark.sql.shuffle.partitions": "4"}, "crosscheck")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    delta = out / "delta"
    for name in ("reference", "analysis"):
        frame = pd.read_parquet(out / f"{name}.parquet")
        frame["timestamp"] = pd.to_datetime(frame["timestamp"]).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
        spark.createDataFrame(frame).write.format("delta").mode("overwrite").option("overwriteSchema", "true") \
            .save(str(delta / name))
    config = parse_config({
        "monitor": "reconstruction_crosscheck", "problem_type": "binary", "compatibility": "nannyml",
        "source": {"table": str(delta / "analysis"), "id_column": "id", "timestamp_column": "timestamp"},
        "features": [{"name": f, "kind": "categorical" if f in CATEGORICAL else "continuous"}
                     for f in nanny["features"]],
        "outputs": {"score": "y_pred_proba"}, "chunking": {"size": nanny["chunk_size"]},
        "reference": {"table": str(delta / "reference")}, "output": {"path": str(out / "driftline")},
        "mlflow": {"enabled": False}})
    fit(spark, config, refresh=True)
    result = run(spark, config, refresh=True)
    ours = sorted((r for r in result.metrics if r.metric == "reconstruction_error" and
                   (r.slice_key, r.slice_value) == WHOLE), key=lambda r: (r.period != "reference", r.chunk.index))
    if len(ours) != len(nanny["chunks"]):
        print(f"chunk counts differ: Driftline {len(ours)}, NannyML {len(nanny['chunks'])}")
        return 1
    lines = [f"NannyML {nanny['nannyml']} DataReconstructionDriftCalculator vs Driftline on the car-loan data, "
             f"chunk size {nanny['chunk_size']}, features {', '.join(nanny['features'])}", "",
             "| period | chunk | Driftline | NannyML | rel. diff | SE rel. diff | upper threshold (D / N) | alert |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    failures, worst = 0, 0.0
    for mine, theirs in zip(ours, nanny["chunks"], strict=True):
        rel = mine.value / theirs["value"] - 1
        se_rel = mine.sampling_error / theirs["sampling_error"] - 1
        thr_rel = mine.upper_threshold / theirs["upper_threshold"] - 1
        bad = abs(rel) > REL_TOL or abs(se_rel) > REL_TOL or abs(thr_rel) > REL_TOL or (
            mine.period == "analysis" and mine.alert != theirs["alert"])
        failures += bad
        worst = max(worst, abs(rel))
        lines.append(f"| {mine.period} | {theirs['key']} | {mine.value:.6f} | {theirs['value']:.6f} | {rel:+.2e} | "
                     f"{se_rel:+.2e} | {mine.upper_threshold:.6f} / {theirs['upper_threshold']:.6f} | "
                     f"{mine.alert} / {theirs['alert']}{' **FAIL**' if bad else ''} |")
    text = "\n".join(lines) + "\n"
    (out / "reconstruction_vs_nannyml.md").write_text(text)
    print(text)
    print(f"{failures} of {len(ours)} chunks outside {REL_TOL:.0%}; largest relative difference {worst:.2e}")
    spark.stop()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
