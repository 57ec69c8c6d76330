"""NannyML's DLE (direct loss estimation, regression) on its synthetic car price dataset: export the rows, every
row's predicted losses and NannyML's per-chunk estimates, sampling errors, thresholds and alerts (reference and
analysis chunks).

Runs in .venv-nannyml (crosscheck/requirements-nannyml.txt; `make crosscheck` sets it up):

    python crosscheck/nannyml_dle.py DATASET OUT_DIR       # DATASET: car_price

Writes OUT_DIR/dle_DATASET/reference.parquet, analysis.parquet (an `id` column, targets included),
nannyml_losses.parquet (per row: `id` and NannyML's loss models' predictions, clipped at 0, per metric; for
finding the cause of a difference) and nannyml_dle.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import lightgbm  # noqa: E402
import nannyml as nml  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from nannyml_side import load, num  # noqa: E402

CHUNK_SIZE = 5000
METRICS = ["mae", "mape", "mse", "msle", "rmse", "rmsle"]
FEATURES = {"car_price": ["car_age", "km_driven", "price_new", "accident_count", "door_count", "fuel",
                          "transmission"]}


def main() -> None:
    dataset, out = sys.argv[1], Path(sys.argv[2]) / f"dle_{sys.argv[1]}"
    out.mkdir(parents=True, exist_ok=True)
    reference, analysis, target = load(dataset)
    estimator = nml.DLE(feature_column_names=FEATURES[dataset], y_pred="y_pred", y_true=target,
                        timestamp_column_name="timestamp", chunk_size=CHUNK_SIZE, metrics=METRICS)
    estimator.fit(reference)
    results = estimator.estimate(analysis).to_df()
    chunks = []
    for _, row in results.iterrows():
        chunk = {"key": row[("chunk", "key")], "period": row[("chunk", "period")],
                 "start_index": int(row[("chunk", "start_index")]), "end_index": int(row[("chunk", "end_index")])}
        for metric in METRICS:
            chunk[metric] = {k: num(row[(metric, k)]) for k in ("value", "sampling_error", "realized",
                                                                  "lower_threshold", "upper_threshold")}
            chunk[metric]["alert"] = bool(row[(metric, "alert")])
        chunks.append(chunk)
    reference.to_parquet(out / "reference.parquet", index=False)
    analysis.to_parquet(out / "analysis.parquet", index=False)
    # every row's predicted loss, encoded as DLE encodes it (categoricals imputed, ordinal-encoded, + 1)
    rows = pd.concat([reference, analysis], ignore_index=True)
    encoded = rows.copy()
    for column in [c for c in FEATURES[dataset] if rows[c].dtype == object]:
        values = estimator._categorical_imputer.transform(rows[column].astype("object").to_numpy().reshape(-1, 1))
        encoded[column] = estimator._categorical_encoders[column].transform(values).ravel() + 1
    losses = pd.DataFrame({"id": rows["id"]})
    for metric in estimator.metrics:
        x = encoded[FEATURES[dataset] + ["y_pred"]]
        losses[metric.column_name] = np.maximum(0, metric._dee_model.predict(X=x))
    losses.to_parquet(out / "nannyml_losses.parquet", index=False)
    params = estimator.metrics[0]._dee_model.get_params()
    summary = {"nannyml": nml.__version__, "lightgbm": lightgbm.__version__, "dataset": dataset,
               "chunk_size": CHUNK_SIZE, "target": target, "features": FEATURES[dataset],
               "categorical": [c for c in FEATURES[dataset] if reference[c].dtype == object],
               "lgbm_params": {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool, type(None)))},
               "metrics": METRICS, "chunks": chunks}
    (out / "nannyml_dle.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"NannyML {nml.__version__} (LightGBM {lightgbm.__version__}) DLE on {dataset}: {len(chunks)} chunks; "
          f"written to {out}")


if __name__ == "__main__":
    main()
