"""NannyML's DataReconstructionDriftCalculator on its synthetic car-loan data: export the rows and NannyML's
per-chunk reconstruction errors.

Runs in .venv-nannyml (crosscheck/requirements-nannyml.txt; `make crosscheck` sets it up):

    python crosscheck/nannyml_reconstruction.py OUT_DIR

Writes OUT_DIR/reconstruction/reference.parquet, analysis.parquet (with an `id`) and
nannyml_reconstruction.json (per chunk, reference and analysis: value, sampling error, thresholds, alert).
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
FEATURES = ["car_value", "salary_range", "debt_to_income_ratio", "loan_length", "repaid_loan_on_prev_car",
            "size_of_downpayment", "driver_tenure"]


def main() -> None:
    out = Path(sys.argv[1]) / "reconstruction"
    out.mkdir(parents=True, exist_ok=True)
    reference, analysis, _ = load("car_loan")
    for frame in (reference, analysis):
        frame["repaid_loan_on_prev_car"] = frame["repaid_loan_on_prev_car"].astype(str)  # a categorical, as text
    calc = nml.DataReconstructionDriftCalculator(column_names=FEATURES, timestamp_column_name="timestamp",
                                                 chunk_size=CHUNK_SIZE)
    calc.fit(reference)
    results = calc.calculate(analysis).to_df()
    chunks = []
    for _, row in results.iterrows():
        chunks.append({"period": row[("chunk", "period")], "key": row[("chunk", "key")],
                       "value": float(row[("reconstruction_error", "value")]),
                       "sampling_error": float(row[("reconstruction_error", "sampling_error")]),
                       "lower_threshold": num(row[("reconstruction_error", "lower_threshold")]),
                       "upper_threshold": num(row[("reconstruction_error", "upper_threshold")]),
                       "alert": bool(row[("reconstruction_error", "alert")])})
    reference.to_parquet(out / "reference.parquet", index=False)
    analysis.to_parquet(out / "analysis.parquet", index=False)
    summary = {"nannyml": nml.__version__, "chunk_size": CHUNK_SIZE, "features": FEATURES, "chunks": chunks}
    (out / "nannyml_reconstruction.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"NannyML {nml.__version__}: {len(chunks)} chunks; written to {out}")


if __name__ == "__main__":
    main()
