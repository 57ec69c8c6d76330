"""NannyML's univariate drift and data quality on its synthetic datasets: export the rows and NannyML's per-chunk
values, thresholds and alerts (reference and analysis chunks).

Runs in .venv-nannyml (crosscheck/requirements-nannyml.txt; `make crosscheck` sets it up):

    python crosscheck/nannyml_univariate.py DATASET OUT_DIR   # car_loan, multiclass, car_price, car_loan_dq

Writes OUT_DIR/univariate_DATASET/reference.parquet, analysis.parquet (an `id` column) and
nannyml_univariate.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import nannyml as nml  # noqa: E402
from nannyml_side import load, num  # noqa: E402

CHUNK_SIZE = 5000
CONTINUOUS_METHODS = ["kolmogorov_smirnov", "jensen_shannon", "wasserstein", "hellinger"]
CATEGORICAL_METHODS = ["chi2", "jensen_shannon", "l_infinity", "hellinger"]
# (continuous, categorical) columns, as NannyML infers their kinds from the dtypes
COLUMNS = {
    "car_loan": (["car_value", "debt_to_income_ratio", "driver_tenure"],
                 ["salary_range", "repaid_loan_on_prev_car", "size_of_downpayment"]),
    "multiclass": (["app_behavioral_score", "credit_bureau_score", "stated_income"], ["acq_channel", "is_customer"]),
    "car_price": (["car_age", "km_driven", "price_new"], ["fuel", "transmission"]),
    "car_loan_dq": (["car_value", "debt_to_income_ratio", "driver_tenure"],
                    ["salary_range", "repaid_loan_on_prev_car", "size_of_downpayment"]),
}


def main() -> None:
    dataset, out = sys.argv[1], Path(sys.argv[2]) / f"univariate_{sys.argv[1]}"
    out.mkdir(parents=True, exist_ok=True)
    reference, analysis, _ = load(dataset)
    continuous, categorical = COLUMNS[dataset]
    for frame in (reference, analysis):
        for c in categorical:
            frame[c] = frame[c].astype(str).where(frame[c].notna(), None)
    common = {"timestamp_column_name": "timestamp", "chunk_size": CHUNK_SIZE}
    drift = nml.UnivariateDriftCalculator(column_names=continuous + categorical, treat_as_categorical=categorical,
                                          continuous_methods=CONTINUOUS_METHODS,
                                          categorical_methods=CATEGORICAL_METHODS, **common)
    missing = nml.MissingValuesCalculator(column_names=continuous + categorical, normalize=True, **common)
    unseen = nml.UnseenValuesCalculator(column_names=categorical, normalize=True, **common)
    rows = []
    for name, calculator in (("drift", drift), ("missing_rate", missing), ("unseen", unseen)):
        calculator.fit(reference)
        frame = calculator.calculate(analysis).to_df()
        chunk = ("chunk", "chunk") if name == "drift" else ("chunk",)
        for _, row in frame.iterrows():
            for column in continuous + categorical:
                kinds = (CONTINUOUS_METHODS if column in continuous else CATEGORICAL_METHODS) if name == "drift" \
                    else [None]
                for method in kinds:
                    field = (column, method) if method else (column,)
                    if (*field, "value") not in frame.columns:
                        continue
                    rows.append({"key": row[(*chunk, "key")], "period": row[(*chunk, "period")],
                                 "column": column, "metric": method or name,
                                 **{k: num(row[(*field, k)]) for k in ("value", "upper_threshold",
                                                                        "lower_threshold")},
                                 "alert": bool(row[(*field, "alert")])})
    reference.to_parquet(out / "reference.parquet", index=False)
    analysis.to_parquet(out / "analysis.parquet", index=False)
    summary = {"nannyml": nml.__version__, "dataset": dataset, "chunk_size": CHUNK_SIZE, "continuous": continuous,
               "categorical": categorical, "rows": rows}
    (out / "nannyml_univariate.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"NannyML {nml.__version__} on {dataset}: {len(rows)} univariate values; written to {out}")


if __name__ == "__main__":
    main()
