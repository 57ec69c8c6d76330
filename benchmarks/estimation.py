"""Performance estimation at scale: CBPE (binary) and DLE (regression) on N rows, driver memory.

    python benchmarks/estimation.py [--rows 10000000 1000000]

For each size, in a fresh process: a year of predictions (4 continuous + 1 categorical feature, a
binary score and prediction, a regression prediction; one file per week) and labels for the first
3 months only (the reference; the rest never labelled), monthly chunks. It runs `fit` and `run` for a
binary (CBPE) and a regression (DLE) monitor and records the run time and the driver's peak resident
memory before and during each run, with the size of the performance states the estimates come from.
Estimation happens in Spark (histograms, a pandas UDF for DLE), so the driver's memory should not
grow with the rows. Results: benchmarks/results/<date>-estimation.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import year_timestamps  # noqa: E402


def generate(spark, root: Path, rows: int) -> tuple[str, str]:
    from pyspark.sql import functions as F

    preds, labels = str(root / "predictions"), str(root / "labels")
    if (root / "labels" / "_delta_log").is_dir():
        return preds, labels
    shutil.rmtree(root, ignore_errors=True)
    ts = year_timestamps(rows)
    drift = F.when(ts >= F.lit("2025-07-01").cast("timestamp"), 0.5).otherwise(0.0)
    base = spark.range(0, rows, 1, 52).select(
        "id", ts.alias("ts"), *[(F.randn(10 + i) + (drift if i == 0 else 0)).alias(f"x{i}") for i in range(4)],
        F.concat(F.lit("v"), F.floor(F.rand(20) * 6).cast("string")).alias("c0"), F.randn(5).alias("noise"),
        F.rand(6).alias("u"))
    logit = F.col("x0") - 0.5 * F.col("x1") + 0.3 * F.col("x2")
    base = base.select("*", (1 / (1 + F.exp(-logit))).alias("score"),
                       (100 + 10 * F.col("x0") + 5 * F.col("x1")).alias("amount_pred"))
    base = base.select("*", (F.col("score") >= 0.5).cast("int").alias("pred"),
                       (F.col("u") < F.col("score")).cast("int").alias("y"),
                       (F.col("amount_pred") + F.col("noise") * F.exp(0.3 * F.col("x0")) * 5).alias("amount"))
    base.drop("noise", "u", "y", "amount").write.format("delta").save(preds)
    reference = base.where(F.col("ts") < F.lit("2025-04-01").cast("timestamp"))
    (reference.select("id", "y", "amount", F.col("ts").alias("label_ts"))
     .write.format("delta").option("delta.enableChangeDataFeed", "true").save(labels))
    return preds, labels


def config(kind: str, preds: str, labels: str, out: Path):
    from monitoring.config import parse_config

    binary = kind == "binary"
    return parse_config({
        "monitor": f"bench_{kind}", "problem_type": kind,
        "source": {"table": preds, "id_column": "id", "timestamp_column": "ts"},
        "features": [{"name": f"x{i}", "kind": "continuous"} for i in range(4)]
        + [{"name": "c0", "kind": "categorical"}],
        "outputs": {"score": "score", "prediction": "pred", "positive_class": 1} if binary
        else {"prediction": "amount_pred"},
        "labels": {"table": labels, "id_column": "id", "label_column": "y" if binary else "amount",
                   "timestamp_column": "label_ts"},
        "chunking": {"period": "1mo"}, "reference": {"start": "2025-01-01", "end": "2025-04-01"},
        "output": {"path": str(out / kind)}, "mlflow": {"enabled": False},
    })


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(rows: int) -> dict:
    """One size, in this process (called in a fresh subprocess per size)."""
    from monitoring.pipeline import fit, run
    from monitoring.session import embedded_session

    spark = embedded_session({"spark.master": "local[2]", "spark.driver.memory": "8g",
                              "spark.sql.shuffle.partitions": "8"}, "driftline-bench-estimation")
    root = ROOT / "benchmarks" / "data" / f"estimation_{rows}"
    preds, labels = generate(spark, root, rows)
    out = {"rows": rows}
    for kind in ("binary", "regression"):
        shutil.rmtree(root / "out" / kind, ignore_errors=True)
        cfg = config(kind, preds, labels, root / "out")
        started = time.monotonic()
        fit(spark, cfg)
        fitted = time.monotonic() - started
        before = peak_rss_mb()
        started = time.monotonic()
        result = run(spark, cfg)
        seconds = time.monotonic() - started
        estimates = [r for r in result.metrics if r.family == "estimated_performance" and r.period == "analysis"
                     and r.slice_key == "" and r.comparison == "NONE" and r.value is not None]
        state_keys = sum(len(c.performance.values) for c in result.chunks if c.performance)
        out[kind] = {"fit_seconds": fitted, "run_seconds": seconds, "driver_peak_rss_mb_before_run": before,
                     "driver_peak_rss_mb_after_run": peak_rss_mb(), "state_values": state_keys,
                     "estimated_values": len(estimates)}
        print(f"{rows:,} rows {kind}: fit {fitted:.1f}s, run {seconds:.1f}s, driver peak RSS {before:.0f} -> "
              f"{peak_rss_mb():.0f} MB, {state_keys} state values, {len(estimates)} estimates", flush=True)
    spark.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(measure(args.one)))
        return
    results = []
    for rows in args.rows:
        proc = subprocess.run([sys.executable, __file__, "--one", str(rows)], capture_output=True, text=True,
                              check=True)
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        results.append(json.loads(line[7:]))
        print("\n".join(x for x in proc.stdout.splitlines() if "rows" in x and not x.startswith("RESULT")))
    summary = {"date": date.today().isoformat(), "sizes": results,
               "machine": {"platform": platform.platform(), "python": platform.python_version()}}
    path = ROOT / "benchmarks" / "results" / f"{summary['date']}-estimation.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written {path}")


if __name__ == "__main__":
    main()
