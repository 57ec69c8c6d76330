"""NannyML's CBPE on its synthetic datasets: export the rows and NannyML's per-chunk estimates.

Runs in .venv-nannyml (crosscheck/requirements-nannyml.txt; `make crosscheck` sets it up):

    python crosscheck/nannyml_cbpe.py DATASET OUT_DIR      # DATASET: car_loan (binary) or multiclass

Writes OUT_DIR/DATASET/reference.parquet, analysis.parquet (with an `id` and the analysis targets) and
nannyml_cbpe.json (per analysis chunk: estimate and sampling error of each metric).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import nannyml as nml  # noqa: E402
import nannyml_side  # noqa: E402
from nannyml.calibration import NoopCalibrator  # noqa: E402
from nannyml_side import CLASSES, num  # noqa: E402

METRICS = ["roc_auc", "f1", "accuracy"]
CHUNK_SIZE = 5000


def load(dataset: str):
    """(reference, analysis with targets, CBPE arguments, target column)."""
    reference, analysis, target = nannyml_side.load(dataset)
    if dataset == "car_loan":
        for frame in (reference, analysis):
            frame["repaid_loan_on_prev_car"] = frame["repaid_loan_on_prev_car"].astype(str)
        return reference, analysis, {"y_pred_proba": "y_pred_proba", "problem_type": "classification_binary"}, target
    for frame in (reference, analysis):
        frame["is_customer"] = frame["is_customer"].astype(str)
    return reference, analysis, {"y_pred_proba": {c: f"y_pred_proba_{c}" for c in CLASSES},
                                 "problem_type": "classification_multiclass"}, target


def main() -> None:
    dataset, out = sys.argv[1], Path(sys.argv[2]) / sys.argv[1]
    out.mkdir(parents=True, exist_ok=True)
    reference, analysis, arguments, target = load(dataset)
    estimator = nml.CBPE(y_pred="y_pred", y_true=target, timestamp_column_name="timestamp", metrics=METRICS,
                         chunk_size=CHUNK_SIZE, **arguments)
    estimator.fit(reference)
    results = estimator.estimate(analysis.drop(columns=[target])).filter(period="analysis").to_df()
    chunks = []
    for _, row in results.iterrows():
        chunk = {"key": row[("chunk", "key")], "start_index": int(row[("chunk", "start_index")]),
                 "end_index": int(row[("chunk", "end_index")])}
        for metric in METRICS:
            chunk[metric] = {"value": float(row[(metric, "value")]),
                             "sampling_error": float(row[(metric, "sampling_error")]),
                             "lower_threshold": num(row[(metric, "lower_threshold")]),
                             "upper_threshold": num(row[(metric, "upper_threshold")])}
        chunks.append(chunk)
    reference.to_parquet(out / "reference.parquet", index=False)
    analysis.to_parquet(out / "analysis.parquet", index=False)
    if dataset == "car_loan":
        calibrated = ["1"] if estimator.needs_calibration else []
    else:  # NannyML decides per class and keeps the decision only as the kind of calibrator
        calibrated = [c for c, cal in estimator._calibrators.items() if not isinstance(cal, NoopCalibrator)]
    summary = {"nannyml": nml.__version__, "dataset": dataset, "chunk_size": CHUNK_SIZE, "target": target,
               "calibrated_classes": calibrated, "chunks": chunks}
    (out / "nannyml_cbpe.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"NannyML {nml.__version__} on {dataset}: {len(chunks)} analysis chunks, calibrated classes "
          f"{calibrated}; written to {out}")



if __name__ == "__main__":
    main()
