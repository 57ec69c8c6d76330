"""NannyML's realized performance on its synthetic datasets: export the rows and NannyML's per-chunk values,
sampling errors, thresholds and alerts (reference and analysis chunks).

Runs in .venv-nannyml (crosscheck/requirements-nannyml.txt; `make crosscheck` sets it up):

    python crosscheck/nannyml_realized.py DATASET OUT_DIR   # car_loan (binary), multiclass, car_price (regression)

Writes OUT_DIR/realized_DATASET/reference.parquet, analysis.parquet (an `id` column, targets included) and
nannyml_realized.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import nannyml as nml  # noqa: E402

CHUNK_SIZE = 5000
CLASSES = ["highstreet_card", "prepaid_card", "upmarket_card"]
METRICS = {"car_loan": ["roc_auc", "f1", "precision", "recall", "specificity", "accuracy"],
           "multiclass": ["roc_auc", "f1", "precision", "recall", "specificity", "accuracy"],
           "car_price": ["mae", "mape", "mse", "msle", "rmse", "rmsle"]}


def load(dataset: str):
    """(reference, analysis with targets, PerformanceCalculator arguments, target column)."""
    if dataset == "car_loan":
        reference, analysis, targets = nml.load_synthetic_car_loan_dataset()
        analysis = analysis.merge(targets, left_index=True, right_index=True)
        for frame in (reference, analysis):
            frame["repaid"] = frame["repaid"].astype(int)
            frame["y_pred"] = frame["y_pred"].astype(int)
        return reference, analysis, {"y_pred_proba": "y_pred_proba", "y_pred": "y_pred",
                                     "problem_type": "classification_binary"}, "repaid"
    if dataset == "car_price":
        reference, analysis, targets = nml.load_synthetic_car_price_dataset()
        analysis = analysis.merge(targets, left_index=True, right_index=True)
        return reference, analysis, {"y_pred": "y_pred", "problem_type": "regression"}, "y_true"
    reference, analysis, targets = nml.load_synthetic_multiclass_classification_dataset()
    analysis = analysis.merge(targets, on="id")
    return reference, analysis, {"y_pred_proba": {c: f"y_pred_proba_{c}" for c in CLASSES}, "y_pred": "y_pred",
                                 "problem_type": "classification_multiclass"}, "y_true"


def main() -> None:
    dataset, out = sys.argv[1], Path(sys.argv[2]) / f"realized_{sys.argv[1]}"
    out.mkdir(parents=True, exist_ok=True)
    reference, analysis, arguments, target = load(dataset)
    reference = reference.drop(columns=[c for c in ("id", "identifier") if c in reference.columns])
    analysis = analysis.drop(columns=[c for c in ("id", "identifier") if c in analysis.columns])
    reference.insert(0, "id", range(len(reference)))
    analysis.insert(0, "id", range(len(reference), len(reference) + len(analysis)))
    calculator = nml.PerformanceCalculator(y_true=target, timestamp_column_name="timestamp", chunk_size=CHUNK_SIZE,
                                           metrics=METRICS[dataset], **arguments)
    calculator.fit(reference)
    results = calculator.calculate(analysis).to_df()
    chunks = []
    for _, row in results.iterrows():
        chunk = {"key": row[("chunk", "key")], "period": row[("chunk", "period")]}
        for metric in METRICS[dataset]:
            chunk[metric] = {k: _num(row[(metric, k)]) for k in ("value", "sampling_error", "lower_threshold",
                                                                  "upper_threshold")}
            chunk[metric]["alert"] = bool(row[(metric, "alert")])
        chunks.append(chunk)
    reference.to_parquet(out / "reference.parquet", index=False)
    analysis.to_parquet(out / "analysis.parquet", index=False)
    summary = {"nannyml": nml.__version__, "dataset": dataset, "chunk_size": CHUNK_SIZE, "target": target,
               "metrics": METRICS[dataset], "chunks": chunks}
    (out / "nannyml_realized.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"NannyML {nml.__version__} on {dataset}: {len(chunks)} chunks of realized performance; written to {out}")


def _num(x) -> float | None:
    return None if x is None or x != x else float(x)


if __name__ == "__main__":
    main()
