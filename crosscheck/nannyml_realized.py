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
from nannyml_side import CLASSES, load, num  # noqa: E402

CHUNK_SIZE = 5000
METRICS = {"car_loan": ["roc_auc", "f1", "precision", "recall", "specificity", "accuracy"],
           "multiclass": ["roc_auc", "f1", "precision", "recall", "specificity", "accuracy"],
           "car_price": ["mae", "mape", "mse", "msle", "rmse", "rmsle"]}


def arguments(dataset: str) -> dict:
    """PerformanceCalculator's arguments for the dataset's model outputs."""
    if dataset == "car_loan":
        return {"y_pred_proba": "y_pred_proba", "y_pred": "y_pred", "problem_type": "classification_binary"}
    if dataset == "car_price":
        return {"y_pred": "y_pred", "problem_type": "regression"}
    return {"y_pred_proba": {c: f"y_pred_proba_{c}" for c in CLASSES}, "y_pred": "y_pred",
            "problem_type": "classification_multiclass"}


def main() -> None:
    dataset, out = sys.argv[1], Path(sys.argv[2]) / f"realized_{sys.argv[1]}"
    out.mkdir(parents=True, exist_ok=True)
    reference, analysis, target = load(dataset)
    calculator = nml.PerformanceCalculator(y_true=target, timestamp_column_name="timestamp", chunk_size=CHUNK_SIZE,
                                           metrics=METRICS[dataset], **arguments(dataset))
    calculator.fit(reference)
    results = calculator.calculate(analysis).to_df()
    chunks = []
    for _, row in results.iterrows():
        chunk = {"key": row[("chunk", "key")], "period": row[("chunk", "period")]}
        for metric in METRICS[dataset]:
            chunk[metric] = {k: num(row[(metric, k)]) for k in ("value", "sampling_error", "lower_threshold",
                                                                  "upper_threshold")}
            chunk[metric]["alert"] = bool(row[(metric, "alert")])
        chunks.append(chunk)
    reference.to_parquet(out / "reference.parquet", index=False)
    analysis.to_parquet(out / "analysis.parquet", index=False)
    summary = {"nannyml": nml.__version__, "dataset": dataset, "chunk_size": CHUNK_SIZE, "target": target,
               "metrics": METRICS[dataset], "chunks": chunks}
    (out / "nannyml_realized.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"NannyML {nml.__version__} on {dataset}: {len(chunks)} chunks of realized performance; written to {out}")


if __name__ == "__main__":
    main()
