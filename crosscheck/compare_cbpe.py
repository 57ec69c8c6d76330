"""Driftline's CBPE vs NannyML's on NannyML's synthetic data (after crosscheck/nannyml_cbpe.py).

    python crosscheck/compare_cbpe.py DATASET OUT_DIR      # DATASET: car_loan (binary) or multiclass

Writes the rows as Delta tables (reference table with its labels; the analysis without labels), runs
`fit` and `run` under `compatibility: nannyml` with 5000-row chunks, checks that the same classes are
calibrated (NannyML's decision), and compares each analysis chunk's estimated ROC AUC, F1 and
accuracy (multiclass: macro ROC AUC and F1) (|difference| <= 0.002) and their sampling errors (<= 5%
relative) with NannyML's. Prints a markdown table (also OUT_DIR/DATASET/cbpe_vs_nannyml.md); exits 1
when a check fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitoring.config import parse_config  # noqa: E402
from monitoring.performance.estimated import ESTIMATED  # noqa: E402
from monitoring.pipeline import fit, run  # noqa: E402
from monitoring.session import embedded_session  # noqa: E402
from monitoring.slices import WHOLE  # noqa: E402

VALUE_TOL, SE_REL_TOL = 0.002, 0.05


FEATURES = {
    "car_loan": [("car_value", "continuous"), ("salary_range", "categorical"), ("debt_to_income_ratio", "continuous"),
                 ("driver_tenure", "continuous")],
    "multiclass": [("acq_channel", "categorical"), ("app_behavioral_score", "continuous"),
                   ("credit_bureau_score", "continuous"), ("stated_income", "continuous")],
}
CLASSES = ["highstreet_card", "prepaid_card", "upmarket_card"]


def main() -> int:
    dataset, out = sys.argv[1], (Path(sys.argv[2]) / sys.argv[1]).resolve()
    nanny = json.loads((out / "nannyml_cbpe.json").read_text())
    target, binary = nanny["target"], dataset == "car_loan"
    reference = pd.read_parquet(out / "reference.parquet")
    analysis = pd.read_parquet(out / "analysis.parquet")
    for frame in (reference, analysis):  # NannyML's CSVs hold the timestamps as text
        frame["timestamp"] = pd.to_datetime(frame["timestamp"]).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    spark = embedded_session({"spark.master": "local[2]", "spark.sql.shuffle.partitions": "4"}, "crosscheck")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    delta = out / "delta"
    tables = {"reference": reference.drop(columns=[target]), "analysis": analysis.drop(columns=[target]),
              "labels": reference[["id", target, "timestamp"]].rename(columns={"timestamp": "label_ts"})}
    for name, frame in tables.items():
        spark.createDataFrame(frame).write.format("delta").mode("overwrite").option("overwriteSchema", "true") \
            .save(str(delta / name))
    calibrated = sorted(str(c) for c in nanny["calibrated_classes"])
    outputs = {"score": "y_pred_proba", "prediction": "y_pred", "positive_class": 1} if binary else \
        {"class_scores": {c: f"y_pred_proba_{c}" for c in CLASSES}, "prediction": "y_pred"}
    config = parse_config({
        "monitor": f"{dataset}_crosscheck", "problem_type": "binary" if binary else "multiclass",
        "compatibility": "nannyml",
        "source": {"table": str(delta / "analysis"), "id_column": "id", "timestamp_column": "timestamp"},
        "features": [{"name": n, "kind": k} for n, k in FEATURES[dataset]], "outputs": outputs,
        "labels": {"table": str(delta / "labels"), "label_column": target, "timestamp_column": "label_ts"},
        "chunking": {"size": nanny["chunk_size"]}, "reference": {"table": str(delta / "reference")},
        "estimation": {"calibration": "auto"}, "output": {"path": str(out / "driftline")},
        "mlflow": {"enabled": False},
    })
    ref = fit(spark, config, refresh=True)
    result = run(spark, config, refresh=True)
    estimators = ref.models.estimators
    fitted = [estimators.calibrator] if binary else list(estimators.row_model.calibrators)
    auto = dict(zip(["1"] if binary else CLASSES, [c.applied for c in fitted], strict=True))
    if sorted(c for c, applied in auto.items() if applied) != calibrated:  # decided per class, as NannyML
        print(f"NannyML calibrates {calibrated or 'none'}; Driftline calibrates "
              f"{[c for c, a in auto.items() if a] or 'none'}")
        return 1

    ours: dict[int, dict[str, object]] = {}
    for r in result.metrics:
        if r.family == ESTIMATED and r.period == "analysis" and (r.slice_key, r.slice_value) == WHOLE \
                and r.comparison == "NONE":
            ours.setdefault(r.chunk.index, {})[r.metric] = r
    names = {"roc_auc": "roc_auc", "f1": "f1", "accuracy": "accuracy"} if binary else \
        {"roc_auc": "roc_auc_macro", "f1": "f1_macro", "accuracy": "accuracy"}
    lines = [f"NannyML {nanny['nannyml']} on {dataset}, chunk size {nanny['chunk_size']}; NannyML calibrates: "
             f"{calibrated or 'none'}; Driftline (compatibility: nannyml) calibrates: "
             f"{[c for c, a in auto.items() if a] or 'none'}",
             "",
             "| chunk | metric | Driftline | NannyML | difference | SE Driftline | SE NannyML | SE rel. diff |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    failures = 0
    if len(ours) != len(nanny["chunks"]):
        print(f"chunk counts differ: Driftline {len(ours)}, NannyML {len(nanny['chunks'])}")
        return 1
    for index, chunk in zip(sorted(ours), nanny["chunks"], strict=True):
        for metric in ("roc_auc", "f1", "accuracy"):
            mine, theirs = ours[index][names[metric]], chunk[metric]
            diff = mine.value - theirs["value"]
            se_rel = mine.sampling_error / theirs["sampling_error"] - 1
            bad = abs(diff) > VALUE_TOL or abs(se_rel) > SE_REL_TOL
            failures += bad
            lines.append(f"| {chunk['key']} | {metric} | {mine.value:.6f} | {theirs['value']:.6f} | {diff:+.6f} | "
                         f"{mine.sampling_error:.6f} | {theirs['sampling_error']:.6f} | {se_rel:+.2%}"
                         f"{' **FAIL**' if bad else ''} |")
    text = "\n".join(lines) + "\n"
    (out / "cbpe_vs_nannyml.md").write_text(text)
    print(text)
    print(f"{failures} of {3 * len(ours)} checks outside |diff| <= {VALUE_TOL} / SE within {SE_REL_TOL:.0%}")
    spark.stop()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
