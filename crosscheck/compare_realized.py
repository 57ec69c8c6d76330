"""Driftline's realized performance under `compatibility: nannyml` vs NannyML's (after
crosscheck/nannyml_realized.py), reference and analysis chunks.

    python crosscheck/compare_realized.py DATASET OUT_DIR   # car_loan (binary), multiclass, car_price (regression)

Writes the rows as Delta tables (predictions of the reference and the analysis, one labels table), runs
`fit` and `run` with 5000-row chunks and compares per chunk and metric the value, the sampling error, both
thresholds and the alert. Tolerances: 1e-6 relative; ROC AUC (Driftline's 2000 score bins): value and
thresholds 1e-3, sampling error 0.5% relative (tied scores, see AUC_SE_REL). Prints a markdown table
(also OUT_DIR/realized_DATASET/realized_vs_nannyml.md); exits 1 when a check fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crosscheck.driftline_side import chunk_line, close, paired_chunks, read_rows, session, write_tables  # noqa: E402
from monitoring.config import parse_config  # noqa: E402
from monitoring.performance.results import PERFORMANCE  # noqa: E402
from monitoring.pipeline import fit, run  # noqa: E402
from monitoring.slices import WHOLE  # noqa: E402

CLASSES = ["highstreet_card", "prepaid_card", "upmarket_card"]
FEATURES = {"car_loan": ("car_value", "continuous"), "multiclass": ("credit_bureau_score", "continuous"),
            "car_price": ("car_age", "continuous")}
# ROC AUC's sampling error: NannyML's component counts, per positive, the negatives before it in numpy's
# argsort order, which leaves tied scores in an order of its own; Driftline takes the expected order of ties
# (its score bins). NannyML's datasets round scores to 2 decimals: 0.27% (binary) and 0.06% (multiclass) apart
REL, AUC_ABS, AUC_SE_REL = 1e-6, 1e-3, 5e-3


def _config(dataset: str, delta: Path, out: Path, target: str, chunk_size: int) -> dict:
    outputs = {"car_loan": {"score": "y_pred_proba", "prediction": "y_pred", "positive_class": 1},
               "multiclass": {"class_scores": {c: f"y_pred_proba_{c}" for c in CLASSES}, "prediction": "y_pred"},
               "car_price": {"prediction": "y_pred"}}[dataset]
    name, kind = FEATURES[dataset]
    return {"monitor": f"{dataset}_realized", "compatibility": "nannyml",
            "problem_type": {"car_loan": "binary", "multiclass": "multiclass", "car_price": "regression"}[dataset],
            "source": {"table": str(delta / "analysis"), "id_column": "id", "timestamp_column": "timestamp"},
            "features": [{"name": name, "kind": kind}], "outputs": outputs,
            "labels": {"table": str(delta / "labels"), "label_column": target, "timestamp_column": "label_ts",
                       "min_labelled": 1, "min_coverage": 0},
            "chunking": {"size": chunk_size}, "reference": {"table": str(delta / "reference")},
            "estimation": {"enabled": False}, "output": {"path": str(out / "driftline")},
            "mlflow": {"enabled": False}}


def main() -> int:
    dataset, out = sys.argv[1], (Path(sys.argv[2]) / f"realized_{sys.argv[1]}").resolve()
    nanny = json.loads((out / "nannyml_realized.json").read_text())
    target = nanny["target"]
    frames = read_rows(out)
    for frame in frames.values():
        if dataset == "car_loan":
            frame["repaid_loan_on_prev_car"] = frame["repaid_loan_on_prev_car"].astype(str)
        if dataset == "multiclass":
            frame["is_customer"] = frame["is_customer"].astype(str)
    spark = session()
    delta = out / "delta"
    labels = pd.concat([f[["id", target, "timestamp"]] for f in frames.values()]).rename(
        columns={"timestamp": "label_ts"})
    tables = {"reference": frames["reference"].drop(columns=[target]),
              "analysis": frames["analysis"].drop(columns=[target]), "labels": labels}
    write_tables(spark, delta, tables)
    config = parse_config(_config(dataset, delta, out, target, nanny["chunk_size"]))
    fit(spark, config, refresh=True)
    result = run(spark, config, refresh=True)
    ours: dict[tuple[str, int], dict[str, object]] = {}
    for r in result.metrics:
        if r.family == PERFORMANCE and (r.slice_key, r.slice_value) == WHOLE:
            ours.setdefault((r.period, r.chunk.index), {})[r.metric] = r
    pairs = paired_chunks(ours, nanny["chunks"])
    if pairs is None:
        return 1
    lines = [f"NannyML {nanny['nannyml']} realized performance on {dataset}, chunk size {nanny['chunk_size']}, "
             "Driftline with `compatibility: nannyml`", "",
             "| period | chunk | metric | value D / N | sampling error D / N | thresholds D / N | alert D / N | ok |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    failures = checks = 0
    for period, key, chunk in pairs:
        for metric in nanny["metrics"]:
            name = f"{metric}_macro" if dataset == "multiclass" and metric != "accuracy" else metric
            d, n = ours[key][name], chunk[metric]
            auc = metric == "roc_auc"
            ok = (close(d.value, n["value"], 0 if auc else REL, AUC_ABS if auc else 1e-12)
                  and close(d.sampling_error, n["sampling_error"], AUC_SE_REL if auc else REL)
                  and close(d.lower_threshold, n["lower_threshold"], 0 if auc else REL, AUC_ABS if auc else 1e-12)
                  and close(d.upper_threshold, n["upper_threshold"], 0 if auc else REL, AUC_ABS if auc else 1e-12)
                  and bool(d.alert) == n["alert"])
            checks += 1
            failures += not ok
            lines.append(chunk_line(period, chunk["key"], metric, d, n, ok, 6))
    text = "\n".join(lines) + "\n"
    (out / "realized_vs_nannyml.md").write_text(text)
    print(text)
    print(f"{failures} of {checks} checks outside tolerance (values, sampling errors and thresholds {REL:g} "
          f"relative; ROC AUC {AUC_ABS:g}, its sampling error {AUC_SE_REL:g} relative; alerts equal)")
    spark.stop()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
