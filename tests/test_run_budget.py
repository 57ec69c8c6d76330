"""The Spark cost of a whole monitor run: jobs launched and scans of the source and label tables, counted
from what the application really ran (tests/spark_budget.py), for a binary monitor with labels, CBPE and
the reconstruction error on. The counts do not grow with the number of features, chunks or slices."""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitoring.config import parse_config
from monitoring.pipeline import fit, run
from tests.helpers import write_delta
from tests.spark_budget import spark_budget

# issue 19's targets: run --full at most 25 jobs, a rerun with nothing new 8 (measured 2026-12-05: 17 and 2; fit 21,
# 24 with a slice; scans fit 6 + 1 (7 + 1 with a slice: the exact histograms' count pass), run 4 + 1;
# docs/performance.md)
FIT_JOBS, RUN_JOBS, UNCHANGED_JOBS = 21, 25, 8  # the whole fit, run --full and a rerun with nothing new
FIT_SCANS, RUN_SCANS = (7, 1), (4, 1)  # (predictions, labels) data-file scans (issue 19: fit <= 7 / 2)


def _tables(spark, root, features: int, days: int, per_day: int = 40) -> tuple[str, str]:
    rng = np.random.default_rng(features + days)
    n = days * per_day
    pdf = pd.DataFrame({"id": np.arange(n)})
    pdf["ts"] = pd.to_datetime((1735689600 + np.arange(n) * (86400 * days / n)) * 1e6, unit="us", utc=True)
    for i in range(features):
        pdf[f"x{i}"] = rng.normal(size=n) if i % 4 else rng.choice(list("abcd"), n)
    pdf["region"] = rng.choice(["north", "south"], n)
    y = (rng.random(n) < 0.4).astype(int)
    pdf["score"] = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * y - 0.7)))
    pdf["pred"] = (pdf["score"] >= 0.5).astype(int)
    labels = pd.DataFrame({"id": np.arange(n), "label": y, "label_ts": pdf["ts"]})
    return (write_delta(spark, pdf, str(root / "preds")), write_delta(spark, labels, str(root / "labels")))


def _config(preds: str, labels: str, out: str, features: int, days: int, sliced: bool):
    return parse_config({
        "monitor": "budget", "problem_type": "binary",
        "source": {"table": preds, "id_column": "id", "timestamp_column": "ts"},
        "features": [{"name": f"x{i}", "kind": "categorical" if i % 4 == 0 else "continuous"}
                     for i in range(features)],
        "outputs": {"score": "score", "prediction": "pred", "positive_class": 1},
        "labels": {"table": labels, "id_column": "id", "label_column": "label", "timestamp_column": "label_ts"},
        "chunking": {"period": "1d"},
        "reference": {"start": "2025-01-01", "end": f"2025-01-{1 + days // 3:02d}"},
        "slices": {"expressions": ["region"] if sliced else []},
        "profile": {"kll_k": 200}, "output": {"path": out}, "mlflow": {"enabled": False}})


def _costs(spark, root, features: int, days: int, sliced: bool) -> dict[str, tuple[int, int, int]]:
    preds, labels = _tables(spark, root, features, days)
    config = _config(preds, labels, str(root / "out"), features, days, sliced)
    with spark_budget(spark) as fitted:
        fit(spark, config, refresh=True)
    with spark_budget(spark) as full:
        result = run(spark, config, refresh=True)
    with spark_budget(spark) as unchanged:
        again = run(spark, config)
    assert len(result.profiles.whole) == days - days // 3
    assert again.compared == () and len(again.metrics) == len(result.metrics)
    return {name: (b.jobs, b.scans_of(preds), b.scans_of(labels))
            for name, b in (("fit", fitted), ("run --full", full), ("unchanged", unchanged))}


def test_jobs_and_scans_of_a_whole_run(spark, tmp_path):
    small = _costs(spark, tmp_path / "small", 13, 12, False)
    large = _costs(spark, tmp_path / "large", 26, 15, True)
    print("small", small, "large", large)
    # the same jobs and scans for twice the features and chunks and a slice (the fit of a sliced monitor
    # makes one more pass, for the slice values)
    assert {k: v for k, v in small.items() if k != "fit"} == {k: v for k, v in large.items() if k != "fit"}, \
        f"13 features x 8 chunks: {small}; 26 features x 10 chunks x 2 slices: {large}"
    jobs, preds, labels = large["fit"]
    assert jobs <= FIT_JOBS + 3 and preds <= FIT_SCANS[0] and labels <= FIT_SCANS[1], large
    jobs, preds, labels = small["fit"]
    assert jobs <= FIT_JOBS and preds <= FIT_SCANS[0] and labels <= FIT_SCANS[1], small
    jobs, preds, labels = small["run --full"]
    assert jobs <= RUN_JOBS and preds <= RUN_SCANS[0] and labels == RUN_SCANS[1], small
    jobs, preds, labels = small["unchanged"]
    # nothing new: the plan step finds the stored results current and scans neither table
    assert jobs <= UNCHANGED_JOBS and preds == 0 and labels == 0, small
