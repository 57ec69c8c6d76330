"""NannyML's side of the scale benchmark: the same analysis on the same rows, in its own venv.

    .venv-nannyml/bin/python benchmarks/nannyml_run.py PREDICTIONS LABELS REFERENCE_END OUT_JSON

Reads the two Delta tables' Parquet files (the tables are append-only, so the files added in the
`_delta_log` are the table), joins labels on `id` and runs, with monthly chunks: univariate drift (KS and
Jensen-Shannon on continuous features, chi2 and Jensen-Shannon on categorical ones), realized ROC AUC and
F1, and CBPE for ROC AUC and F1, each fitted on the rows before REFERENCE_END. Writes every analysis
chunk's values, keyed by the chunk's first month (YYYY-MM), to OUT_JSON. Timing and memory are measured
by the caller around the whole process.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import nannyml as nml  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

CONTINUOUS_METHODS = ["kolmogorov_smirnov", "jensen_shannon"]
CATEGORICAL_METHODS = ["chi2", "jensen_shannon"]
METRICS = ["roc_auc", "f1"]


def delta_files(table: Path) -> list[str]:
    """The Parquet files of a Delta table's latest version, from its JSON commits."""
    live: dict[str, None] = {}
    for commit in sorted((table / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                live[action["add"]["path"]] = None
            elif "remove" in action:
                live.pop(action["remove"]["path"], None)
    return [str(table / p) for p in live]


def read_delta(table: str) -> pd.DataFrame:
    return pq.ParquetDataset(delta_files(Path(table))).read().to_pandas()


def main() -> None:
    predictions, labels, reference_end, out = sys.argv[1:5]
    started = time.monotonic()
    rows = read_delta(predictions).merge(read_delta(labels)[["id", "label"]], on="id", how="left")
    features = [c for c in rows.columns if c[0] in "xc" and c[1:].isdigit()]
    categorical = [c for c in features if c.startswith("c")]
    split = rows["ts"] < pd.Timestamp(reference_end)
    reference, analysis = rows[split], rows[~split]
    loaded = time.monotonic()

    common = {"timestamp_column_name": "ts", "chunk_period": "M"}
    drift = nml.UnivariateDriftCalculator(column_names=features, treat_as_categorical=categorical,
                                          continuous_methods=CONTINUOUS_METHODS,
                                          categorical_methods=CATEGORICAL_METHODS, **common)
    drift_df = drift.fit(reference).calculate(analysis).filter(period="analysis").to_df()
    outputs = {"y_pred_proba": "score", "y_pred": "pred", "y_true": "label",
               "problem_type": "classification_binary", "metrics": METRICS, **common}
    realized = nml.PerformanceCalculator(**outputs)
    realized_df = realized.fit(reference).calculate(analysis).filter(period="analysis").to_df()
    cbpe = nml.CBPE(**outputs)
    cbpe_df = cbpe.fit(reference).estimate(analysis.drop(columns=["label"])).filter(period="analysis").to_df()
    finished = time.monotonic()

    chunks: dict[str, dict] = {}
    for frame, family in ((drift_df, "drift"), (realized_df, "performance"), (cbpe_df, "estimated_performance")):
        for _, row in frame.iterrows():
            key = pd.Timestamp(row[("chunk", "start_date")] if family != "drift"
                               else row[("chunk", "chunk", "start_date")]).strftime("%Y-%m")
            chunk = chunks.setdefault(key, {"drift": {}, "performance": {}, "estimated_performance": {}})
            if family == "drift":
                for column in features:
                    methods = CATEGORICAL_METHODS if column in categorical else CONTINUOUS_METHODS
                    chunk["drift"][column] = {m: float(row[(column, m, "value")]) for m in methods}
            else:
                chunk[family] = {m: float(row[(m, "value")]) for m in METRICS}
    Path(out).write_text(json.dumps({
        "nannyml": nml.__version__, "rows": len(rows), "reference_rows": int(split.sum()),
        "seconds": {"load": loaded - started, "analysis": finished - loaded},
        "chunks": chunks}, indent=1) + "\n")
    print(f"NannyML {nml.__version__}: {len(rows):,} rows, {len(chunks)} analysis chunks, load "
          f"{loaded - started:.0f}s, analysis {finished - loaded:.0f}s")


if __name__ == "__main__":
    main()
