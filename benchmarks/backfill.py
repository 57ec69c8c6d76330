"""Label backfill vs a full recompute, measured in one Spark session.

    python benchmarks/backfill.py [--rows 10000000] [--repeats 3]

A year of binary predictions (N rows, 4 continuous + 2 categorical features, score, prediction; one
Parquet file per week, in time order as prediction logs are appended) and a label table (80% of the ids,
change data feed on, in id order) are generated into benchmarks/data/ once. Monthly chunks, the first 3
months as reference. Each repetition appends labels for the still unlabelled ids of 2 analysis months,
then times the run that backfills them, then a full recompute of the same state (`run --refresh`:
every feature profile and performance state). A warm-up round first; the medians and their ratio go to
benchmarks/results/<date>-backfill-<rows>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyspark.sql import functions as F  # noqa: E402

from benchmarks.common import binary_monitor, binary_predictions, year_timestamps  # noqa: E402
from monitoring.pipeline import fit, run  # noqa: E402
from monitoring.session import embedded_session  # noqa: E402

LABELLED_FIRST = 0.8


def generate(spark, root: Path, rows: int) -> tuple[str, str]:
    preds, labels = str(root / "predictions"), str(root / "labels")
    if (root / "labels" / "_delta_log").is_dir():
        return preds, labels
    shutil.rmtree(root, ignore_errors=True)
    base = binary_predictions(spark, 0, rows, 52, year_timestamps(rows))
    base = base.withColumn("u", F.rand(5))
    started = time.monotonic()
    base.drop("y", "u").write.format("delta").save(preds)  # 52 range partitions: one file per week
    first = base.where(F.col("u") < LABELLED_FIRST)
    (first.select("id", F.col("y").alias("label"), (F.col("ts") + F.expr("INTERVAL 30 DAYS")).alias("label_ts"))
     .write.format("delta").option("delta.enableChangeDataFeed", "true").save(labels))
    base.select("id", "y", "u", "ts").write.format("delta").save(str(root / "truth"))
    print(f"generated {rows:,} predictions and labels in {time.monotonic() - started:.0f}s")
    return preds, labels


def land_labels(spark, root: Path, labels: str, month: int) -> None:
    """Append the labels still missing for the ids of one month (1-based) of 2025."""
    truth = spark.read.format("delta").load(str(root / "truth"))
    late = truth.where((F.col("u") >= LABELLED_FIRST) & (F.month("ts") == month))
    new = late.select("id", F.col("y").alias("label"), F.current_timestamp().alias("label_ts"))
    new.coalesce(1).write.format("delta").mode("append").save(labels)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.repeats * 2 + 2 > 9:
        parser.error("each repetition (and the warm-up) uses 2 of the 9 analysis months: --repeats <= 3")
    spark = embedded_session({"spark.master": "local[2]", "spark.driver.memory": "8g",
                              "spark.sql.shuffle.partitions": "8"}, "driftline-bench-backfill")
    root = ROOT / "benchmarks" / "data" / f"backfill_{args.rows}"
    preds, labels = generate(spark, root, args.rows)
    out = root / "out"
    shutil.rmtree(out, ignore_errors=True)
    config = binary_monitor(preds, labels, str(out), "1mo", "2025-04-01")
    fit(spark, config)
    run(spark, config)

    times: dict[str, list[float]] = {"backfill_2_chunks": [], "full_recompute": []}
    recomputed: list[list[int]] = []
    for rep in range(args.repeats + 1):  # the first round warms up
        for month in (4 + 2 * rep, 5 + 2 * rep):
            land_labels(spark, root, labels, month)
        started = time.monotonic()
        result = run(spark, config)
        backfill = time.monotonic() - started
        plan = result.profiles.backfill
        assert plan is not None and len(plan.chunks) == 2, plan
        started = time.monotonic()
        run(spark, config, refresh=True)
        full = time.monotonic() - started
        if rep:
            times["backfill_2_chunks"].append(backfill)
            times["full_recompute"].append(full)
            recomputed.append(list(plan.chunks))
        print(f"round {rep}: backfill {backfill:.1f}s ({plan.reason}), full recompute {full:.1f}s")

    medians = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "date": date.today().isoformat(), "rows": args.rows, "chunks": 12, "analysis_chunks": 9,
        "repeats": args.repeats, "seconds": times, "median_seconds": medians, "recomputed_chunks": recomputed,
        "ratio_backfill_to_full": medians["backfill_2_chunks"] / medians["full_recompute"],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "spark": spark.version},
    }
    path = ROOT / "benchmarks" / "results" / f"{result['date']}-backfill-{args.rows}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"backfill of 2 chunks {medians['backfill_2_chunks']:.1f}s vs full recompute "
          f"{medians['full_recompute']:.1f}s: {result['ratio_backfill_to_full']:.2f}x; written {path}")
    spark.stop()


if __name__ == "__main__":
    main()
