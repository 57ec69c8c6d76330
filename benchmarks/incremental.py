"""Daily incremental run vs a full run, measured in one Spark session.

    python benchmarks/incremental.py [--rows 10000000] [--days 6] [--repeats 2]

A year of binary predictions (N rows over 2025, 4 continuous + 2 categorical features, score,
prediction; one Parquet file per day in time order, as prediction logs are appended; change data feed
on) and their labels (one file per day of predictions, as a label table that ground truth lands in every
day holds them; change data feed on) are generated into benchmarks/data/ once. Daily chunks,
January as reference; a fit and a first run. Then day after day (a warm-up day, then `--days` timed
ones) one more day of predictions and its labels is appended, the daily run timed (it re-profiles that
day and the open chunk, reuses the rest) and a rerun with nothing new; each day finds the state tables
as the previous daily run left them, as in production. Then `--repeats` full runs (`run --full`) of the
final state. Medians and their ratio go to benchmarks/results/<date>-incremental-<rows>.json (issue
19's goals: daily / full <= 1/10, the unchanged rerun <= 15 s warm).
"""

from __future__ import annotations

import argparse
import json
import logging
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

from benchmarks.common import YEAR_START, binary_monitor, binary_predictions  # noqa: E402
from monitoring.pipeline import fit, run  # noqa: E402
from monitoring.session import embedded_session  # noqa: E402

CDF = "delta.enableChangeDataFeed"


def rows_of(spark, first_id: int, rows: int, per_day: float, partitions: int):
    """Predictions with ids [first_id, first_id + rows), `per_day` of them per day from 2025-01-01."""
    ts = F.timestamp_seconds(F.lit(YEAR_START) + (F.col("id") + F.rand(1)) * (86400 / per_day))
    return binary_predictions(spark, first_id, rows, partitions, ts)


def write(df, preds: str, labels: str, mode: str) -> None:
    df.drop("y").write.format("delta").mode(mode).option(CDF, "true").save(preds)
    (df.select("id", F.col("y").alias("label"), (F.col("ts") + F.expr("INTERVAL 1 DAY")).alias("label_ts"))
     .write.format("delta").mode(mode).option(CDF, "true").save(labels))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=6, help="daily runs timed, one after the other")
    parser.add_argument("--repeats", type=int, default=2, help="full runs timed, after the days")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    spark = embedded_session({"spark.master": "local[2]", "spark.driver.memory": "8g",
                              "spark.sql.shuffle.partitions": "8"}, "driftline-bench-incremental")
    root = ROOT / "benchmarks" / "data" / f"incremental_{args.rows}"
    shutil.rmtree(root, ignore_errors=True)  # every run appends days: start from the generated year
    preds, labels = str(root / "predictions"), str(root / "labels")
    started = time.monotonic()
    per_day = args.rows / 365
    write(rows_of(spark, 0, args.rows, per_day, 365), preds, labels, "overwrite")
    print(f"generated {args.rows:,} predictions and labels in {time.monotonic() - started:.0f}s")
    config = binary_monitor(preds, labels, str(root / "out"), "1d", "2025-02-01")
    fit(spark, config)
    run(spark, config)

    times: dict[str, list[float]] = {"daily_run": [], "unchanged_rerun": [], "full_run": [], "daily_profiling": [],
                                     "full_profiling": []}
    reprofiled: list[list[int]] = []
    # the days follow each other as in production: each daily run finds the state tables as the previous
    # daily run left them (its commits), not freshly rewritten by a full run; the full runs come last
    for day in range(args.days + 1):  # the first day warms up
        first = int(per_day * (365 + day))
        write(rows_of(spark, first, int(per_day), per_day, 1), preds, labels, "append")
        started = time.monotonic()
        daily = run(spark, config)
        daily_s = time.monotonic() - started
        step = daily.profiles.increment
        assert step is not None and step.chunks is not None and len(step.chunks) == 2, step
        started = time.monotonic()
        run(spark, config)
        unchanged_s = time.monotonic() - started
        if day:
            times["daily_run"].append(daily_s)
            times["unchanged_rerun"].append(unchanged_s)
            times["daily_profiling"].append(daily.profiles.seconds)
            reprofiled.append(list(step.chunks))
        print(f"day {day}: daily run {daily_s:.1f}s (profiling {daily.profiles.seconds:.1f}s), unchanged rerun "
              f"{unchanged_s:.1f}s", flush=True)
    for rep in range(args.repeats):
        started = time.monotonic()
        full = run(spark, config, refresh=True)
        full_s = time.monotonic() - started
        times["full_run"].append(full_s)
        times["full_profiling"].append(full.profiles.seconds)
        print(f"full run {rep}: {full_s:.1f}s (profiling {full.profiles.seconds:.1f}s), {len(full.profiles.whole)} "
              f"chunks", flush=True)

    medians = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "date": date.today().isoformat(), "rows": args.rows, "days": args.days, "repeats": args.repeats,
        "seconds": times,
        "median_seconds": medians, "reprofiled_chunks": reprofiled,
        "ratio_daily_to_full_run": medians["daily_run"] / medians["full_run"],
        "ratio_daily_to_full_profiling": medians["daily_profiling"] / medians["full_profiling"],
        "goal": "daily / full <= 1/10; unchanged rerun <= 15 s warm",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "spark": spark.version},
    }
    path = ROOT / "benchmarks" / "results" / f"{result['date']}-incremental-{args.rows}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"unchanged rerun {medians['unchanged_rerun']:.1f}s; "
          f"daily run {medians['daily_run']:.1f}s vs full run {medians['full_run']:.1f}s: "
          f"{result['ratio_daily_to_full_run']:.3f} (profiling alone {result['ratio_daily_to_full_profiling']:.3f}); "
          f"written {path}")
    spark.stop()


if __name__ == "__main__":
    main()
