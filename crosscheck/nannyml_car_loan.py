"""NannyML's CBPE on its synthetic car-loan data: export the rows and NannyML's per-chunk estimates.

Runs in .venv-nannyml (crosscheck/requirements-nannyml.txt; `make crosscheck` sets it up):

    python crosscheck/nannyml_car_loan.py OUT_DIR

Writes OUT_DIR/reference.parquet, OUT_DIR/analysis.parquet (with an `id` and the analysis targets)
and OUT_DIR/nannyml_cbpe.json (per analysis chunk: estimate and sampling error of each metric).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import nannyml as nml  # noqa: E402

METRICS = ["roc_auc", "f1", "accuracy"]
CHUNK_SIZE = 5000


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    reference, analysis, targets = nml.load_synthetic_car_loan_dataset()
    analysis = analysis.merge(targets, left_index=True, right_index=True)
    reference = reference.drop(columns=[c for c in ("id",) if c in reference.columns])
    analysis = analysis.drop(columns=[c for c in ("id",) if c in analysis.columns])
    reference.insert(0, "id", range(len(reference)))
    analysis.insert(0, "id", range(len(reference), len(reference) + len(analysis)))
    for frame in (reference, analysis):
        frame["repaid"] = frame["repaid"].astype(int)
        frame["y_pred"] = frame["y_pred"].astype(int)
        frame["repaid_loan_on_prev_car"] = frame["repaid_loan_on_prev_car"].astype(str)
    estimator = nml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="repaid",
                         timestamp_column_name="timestamp", metrics=METRICS, chunk_size=CHUNK_SIZE,
                         problem_type="classification_binary")
    estimator.fit(reference)
    results = estimator.estimate(analysis.drop(columns=["repaid"])).filter(period="analysis").to_df()
    chunks = []
    for _, row in results.iterrows():
        chunk = {"key": row[("chunk", "key")], "start_index": int(row[("chunk", "start_index")]),
                 "end_index": int(row[("chunk", "end_index")])}
        for metric in METRICS:
            chunk[metric] = {"value": float(row[(metric, "value")]),
                             "sampling_error": float(row[(metric, "sampling_error")]),
                             "lower_threshold": _num(row[(metric, "lower_threshold")]),
                             "upper_threshold": _num(row[(metric, "upper_threshold")])}
        chunks.append(chunk)
    reference.to_parquet(out / "reference.parquet", index=False)
    analysis.to_parquet(out / "analysis.parquet", index=False)
    summary = {"nannyml": nml.__version__, "chunk_size": CHUNK_SIZE,
               "needs_calibration": bool(estimator.needs_calibration), "chunks": chunks}
    (out / "nannyml_cbpe.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"NannyML {nml.__version__}: {len(chunks)} analysis chunks, calibration "
          f"{'applied' if estimator.needs_calibration else 'not applied'}; written to {out}")


def _num(x) -> float | None:
    return None if x is None or x != x else float(x)


if __name__ == "__main__":
    main()
