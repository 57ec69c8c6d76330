"""Where a run's Spark time goes: runs fit (optional) and `run --full` on a benchmark monitor in one
session and prints, per job description (the call site), the jobs and the summed job seconds, read
from the Spark UI REST API. A diagnostic for issue 19's hot spots, not a benchmark of record.

    PYSPARK_PYTHON=$PWD/.venv/bin/python .venv/bin/python benchmarks/job_profile.py \
        benchmarks/data/scale_1000000/monitor.yaml [--fit [--refresh]] [--runs 2]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _jobs(spark) -> list[dict]:
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/jobs"
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def _seconds(job: dict) -> float:
    fmt = "%Y-%m-%dT%H:%M:%S.%f%Z"
    if "completionTime" not in job:
        return 0.0
    start = datetime.strptime(job["submissionTime"].replace("GMT", "UTC"), fmt)
    end = datetime.strptime(job["completionTime"].replace("GMT", "UTC"), fmt)
    return (end - start).total_seconds()


def _report(label: str, jobs: list[dict], wall: float) -> None:
    by_site: dict[str, list[float]] = collections.defaultdict(list)
    for j in jobs:
        site = (j.get("description") or j.get("name") or "?").split("\n")[0][:90]
        by_site[site].append(_seconds(j))
    print(f"== {label}: {len(jobs)} jobs, {wall:.1f} s wall, {sum(map(_seconds, jobs)):.1f} s in jobs")
    for site, secs in sorted(by_site.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {sum(secs):7.1f} s {len(secs):3d} jobs  {site}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--refresh", action="store_true", help="fit from scratch (as a first `run --fit`)")
    args = parser.parse_args()
    from monitoring.config import load_config
    from monitoring.pipeline import fit, run
    from monitoring.session import get_spark

    config = load_config(args.config)
    spark = get_spark(config.spark, "driftline-job-profile")
    spark.sparkContext.setLogLevel("WARN")
    seen: set[int] = set()
    steps = ([("fit", lambda: fit(spark, config, refresh=args.refresh))] if args.fit else []) + \
        [(f"run --full #{i + 1}", lambda: run(spark, config, None, True)) for i in range(args.runs)]
    for label, fn in steps:
        started = time.monotonic()
        fn()
        wall = time.monotonic() - started
        jobs = [j for j in _jobs(spark) if j["jobId"] not in seen]
        seen |= {j["jobId"] for j in jobs}
        _report(label, jobs, wall)
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
