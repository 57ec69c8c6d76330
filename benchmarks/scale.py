"""Driftline against the physical limit of one pass and against NannyML, from 1M to 100M rows.

    python benchmarks/scale.py [--quick] [--sizes 1M,10M,50M,100M] [--nannyml-max 10M]
                               [--columns 10,50,200] [--column-rows 1M]

Per size, on the same Delta tables (generated once into benchmarks/data/, in batches of at most 5M
rows): 13 features (10 continuous, 3 categorical), a binary score and prediction, labels in their own
table, a year of timestamps, monthly chunks, January-April as reference, drift from July on.

1. `e2e`: `driftline run --fit --full` as users start it (fresh process, JVM start included, results
   written to Delta), wall time and peak memory of the whole process tree;
2. `nannyml`: the same analysis in NannyML (benchmarks/nannyml_run.py in .venv-nannyml), same metrics;
3. `warm`: in one fresh Spark session with the monitor's settings, the bare scan-aggregate of the
   same columns against the full monitor run (`run --full`: profiles, univariate drift, data quality,
   realized performance, CBPE, stored by MERGE), both warm (warm-up, then alternating, median), with
   the Spark jobs each launches; and the agreement of Driftline's stored values with NannyML's.
Then the column scaling (10 -> 200 continuous features at --column-rows) in one session. Results go
to benchmarks/results/<date>.json (<date>-quick.json with --quick); a full run also rewrites the
table in docs/performance.md. Exit code 1 when Driftline and NannyML disagree beyond the tolerances.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.process_tree import run_measured  # noqa: E402

DATA = ROOT / "benchmarks" / "data"
NANNY_PY = ROOT / ".venv-nannyml" / "bin" / "python"
CONTINUOUS, CATEGORICAL = [f"x{i}" for i in range(10)], ["c0", "c1", "c2"]
REFERENCE_END = "2025-05-01"
BATCH = 5_000_000
BIG = 50_000_000  # from this size on the warm phase times the bare scan only (one monitor run is minutes)
# |Driftline - NannyML| allowed per metric (docs/performance.md#agreement-with-nannyml)
TOLERANCE = {"kolmogorov_smirnov": 0.003, "chi2": 1e-6, "jensen_shannon:categorical": 1e-6,
             "roc_auc": 1e-3, "f1": 1e-9, "estimated:roc_auc": 0.002, "estimated:f1": 0.002}
RELATIVE = {"chi2"}  # tolerance relative to the value


def rows_arg(text: str) -> int:
    return int(float(text[:-1]) * 1_000_000) if text.upper().endswith("M") else int(text)


def paths(rows: int, continuous: int = 10) -> dict[str, Path]:
    root = DATA / (f"scale_{rows}" if continuous == 10 else f"scale_{rows}_wide{continuous}")
    return {"root": root, "predictions": root / "predictions", "labels": root / "labels", "out": root / "out"}


def monitor_config(rows: int, continuous: int, table_continuous: int = 10) -> dict:
    """The benchmark monitor: the analysis NannyML also runs, MLflow off (NannyML logs nowhere)."""
    p = paths(rows, table_continuous)
    return {
        "monitor": "scale", "problem_type": "binary",
        "source": {"table": str(p["predictions"]), "id_column": "id", "timestamp_column": "ts"},
        "features": [{"name": f"x{i}", "kind": "continuous"} for i in range(continuous)]
        + [{"name": c, "kind": "categorical"} for c in CATEGORICAL],
        "outputs": {"score": "score", "prediction": "pred", "positive_class": 1},
        "labels": {"table": str(p["labels"]), "id_column": "id", "label_column": "label",
                   "timestamp_column": "label_ts"},
        "chunking": {"period": "1mo"}, "reference": {"start": "2025-01-01", "end": REFERENCE_END},
        "drift": {"continuous_methods": ["kolmogorov_smirnov", "jensen_shannon"],
                  "categorical_methods": ["chi2", "jensen_shannon"]},
        "multivariate": {"enabled": False},
        "output": {"path": str(p["out"] if continuous == table_continuous else p["out"].with_name(f"out{continuous}"))},
        "mlflow": {"enabled": False},
        "spark": {"spark.master": "local[2]"},  # the embedded default's JVM (monitoring/session.py)
    }


# ------------------------------------------------------------------------------------------ generate

def generate(rows: int, continuous: int) -> None:
    """Write the predictions and labels tables in batches of at most BATCH rows (each its own append)."""
    from pyspark.sql import functions as F

    from benchmarks.common import year_timestamps
    from monitoring.session import embedded_session

    p = paths(rows, continuous)
    if (p["labels"] / "_delta_log").is_dir():
        return
    shutil.rmtree(p["root"], ignore_errors=True)
    spark = embedded_session({"spark.master": "local[2]"}, "driftline-bench-generate")
    started = time.monotonic()
    for first in range(0, rows, BATCH):
        n = min(BATCH, rows - first)
        base = spark.range(first, first + n, 1, max(2, n // 1_000_000)).select("id", year_timestamps(rows).alias("ts"))
        late = F.col("ts") >= F.lit("2025-07-01").cast("timestamp")  # drift from July on
        cols = [F.col("id"), F.col("ts")]
        for i in range(continuous):
            x = F.randn(100 + i) * (1 + i % 4) + 10 * (i % 7)
            if i == 0:
                x = x + F.when(late, 0.5).otherwise(0.0)
            if i == 1:
                x = F.when(F.rand(200) < 0.03, F.lit(None)).otherwise(x)
            if i == 2:
                x = F.exp(F.randn(102) * (1 + F.when(late, 0.2).otherwise(0.0)))
            if i == 5:
                x = F.rand(105) * 100
            cols.append(x.alias(f"x{i}"))
        for i, card in enumerate((5, 12, 40)):
            u = F.rand(300 + i)
            if i == 1:
                u = F.when(late, F.pow(u, 0.7)).otherwise(u)
            cols.append(F.concat(F.lit("v"), F.floor(F.pow(u, 2) * card).cast("string")).alias(CATEGORICAL[i]))
        z = F.col("x0") * 0.8 + (F.col("x3") - 30.0) / 4 * 0.5 + F.randn(400) * 0.7 - 1.0
        df = base.select(*cols).withColumn("score", 1 / (1 + F.exp(-z)))
        df = (df.withColumn("pred", (F.col("score") >= 0.5).cast("int"))
              .withColumn("label", (F.rand(401) < F.col("score")).cast("int")))
        df.drop("label").write.format("delta").mode("append").save(str(p["predictions"]))
        (df.select("id", "label", (F.col("ts") + F.expr("INTERVAL 7 DAYS")).alias("label_ts"))
         .write.format("delta").mode("append").save(str(p["labels"])))
    print(f"generated {rows:,} rows x {continuous} continuous features in {time.monotonic() - started:.0f}s")
    spark.stop()


# ---------------------------------------------------------------------------------------------- warm

def _job_count(spark) -> int:
    """The number of Spark jobs started so far in this application (the highest job id + 1)."""
    sc = spark.sparkContext  # benchmarks may use the classic API; monitoring/ may not
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/jobs"
    with urllib.request.urlopen(url) as response:
        jobs = json.load(response)
    return 1 + max((j["jobId"] for j in jobs), default=-1)


def _timed(spark, fn) -> tuple[float, int]:
    """Run `fn` once: its seconds and the Spark jobs it started."""
    before = _job_count(spark)
    started = time.monotonic()
    fn()
    return time.monotonic() - started, _job_count(spark) - before


def warm(rows: int, repeats: int, nannyml_json: str | None, bare_only: bool) -> dict:
    """Bare scan-aggregate vs the full monitor run in one session (only the bare one with `bare_only`: at
    50M rows and more, where one monitor run takes many minutes and the e2e run gives its time); agreement
    with NannyML's values."""
    from pyspark.sql import functions as F

    from monitoring.chunking import CHUNK_COL, with_chunk_index
    from monitoring.config import parse_config
    from monitoring.pipeline import fit, run
    from monitoring.session import get_spark

    config = parse_config(monitor_config(rows, 10))
    spark = get_spark(config.spark, "driftline-bench-warm")
    spark.sparkContext.setLogLevel("WARN")
    p = paths(rows, 10)
    if not bare_only:
        fit(spark, config)
    chunked = with_chunk_index(spark.read.format("delta").load(str(p["predictions"])), config.chunking, "ts", "id")
    labels = spark.read.format("delta").load(str(p["labels"]))

    def bare() -> None:
        """One scan of each table, aggregated by chunk: the least any monitor of these columns must do."""
        aggs = [F.count(F.lit(1))]
        for c in [*CONTINUOUS, "score", "pred"]:
            aggs += [F.count(c), F.sum(c)]
        aggs += [F.count(c) for c in CATEGORICAL]
        chunked.groupBy(CHUNK_COL).agg(*aggs).collect()
        labels.agg(F.count("id"), F.sum("label"), F.max("label_ts")).collect()

    def monitor() -> None:
        run(spark, config, None, True)

    cases = {"bare_scan_aggregate": bare} if bare_only else {"bare_scan_aggregate": bare, "monitor_run": monitor}
    times: dict[str, list[float]] = {name: [] for name in cases}
    jobs: dict[str, int] = {}
    for fn in cases.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in cases.items():
            t, jobs[name] = _timed(spark, fn)
            times[name].append(t)
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {"rows": rows, "repeats": repeats, "seconds": times, "median_seconds": medians, "spark_jobs": jobs}
    if not bare_only:
        result |= {"ratio_run_to_bare": medians["monitor_run"] / medians["bare_scan_aggregate"],
                   "seconds_per_million_rows": medians["monitor_run"] / rows * 1e6}
    if nannyml_json:
        result["agreement"] = agreement(spark, config, json.loads(Path(nannyml_json).read_text()))
    spark.stop()
    return result


def agreement(spark, config, nanny: dict) -> dict:
    """Driftline's stored analysis values (BASELINE drift, realized and estimated performance, whole
    table) against NannyML's on the same monthly chunks: max |difference| per metric and failures."""
    from pyspark.sql import functions as F

    from monitoring.pipeline import metrics_table
    from monitoring.stores.tables import table_ident

    ours = (spark.table(table_ident(metrics_table(config)))
            .where((F.col("period") == "analysis") & (F.col("slice_key") == "")
                   & F.col("comparison").isin("BASELINE", "NONE")
                   & F.col("family").isin("drift", "performance", "estimated_performance"))
            .select(F.date_format("chunk_start", "yyyy-MM").alias("month"), "family", "column_name", "metric",
                    "value").collect())
    # performance rows carry the label column (or '') as column: keyed by '' like NannyML's
    values = {(r.month, r.family, r.column_name if r.family == "drift" else "", r.metric): r.value for r in ours}
    worst: dict[str, float] = {}
    failures, compared = [], 0
    for month, chunk in nanny["chunks"].items():
        pairs = [((month, "drift", col, m), v, f"{m}:{'categorical' if col in CATEGORICAL else 'continuous'}")
                 for col, methods in chunk["drift"].items() for m, v in methods.items()]
        pairs += [((month, "performance", "", m), v, m) for m, v in chunk["performance"].items()]
        pairs += [((month, "estimated_performance", "", m), v, f"estimated:{m}")
                  for m, v in chunk["estimated_performance"].items()]
        for key, theirs, kind in pairs:
            mine = values.get(key)
            if mine is None:
                failures.append(f"{key}: no Driftline value (NannyML {theirs})")
                continue
            diff = abs(mine - theirs) / (abs(theirs) if key[3] in RELATIVE and theirs else 1.0)
            worst[kind] = max(worst.get(kind, 0.0), diff)
            compared += 1
            tol = TOLERANCE.get(kind, TOLERANCE.get(key[3]))
            if tol is not None and diff > tol:
                failures.append(f"{key}: Driftline {mine:.6g}, NannyML {theirs:.6g}")
    return {"compared": compared, "max_difference": worst, "failures": failures,
            "not_compared": "jensen_shannon:continuous (bins differ: NannyML's Doane bins, Driftline's reference "
                            "deciles); reported only"}


# --------------------------------------------------------------------------------------------- floor

def floor(rows: int) -> None:
    """The least any Spark monitor of this table does, cold, in a fresh process: start the embedded session,
    open both tables at their newest version, one aggregation of the chunked predictions (count, and count
    and sum of every numeric column, count of every categorical one), one latest-label join aggregated by
    chunk, and one commit of the per-chunk rows to a Delta table. Its wall time bounds what a fresh
    `run --fit --full` can take (issue 19's 1M goal is measured against it)."""
    from pyspark.sql import functions as F

    from monitoring.chunking import CHUNK_COL, with_chunk_index
    from monitoring.config import parse_config
    from monitoring.session import get_spark
    from monitoring.stores.tables import read_delta

    config = parse_config(monitor_config(rows, 10))
    spark = get_spark(config.spark, "driftline-bench-floor")
    p = paths(rows, 10)
    preds = read_delta(spark, str(p["predictions"]), "source.table").df
    labels = read_delta(spark, str(p["labels"]), "labels.table").df
    chunked = with_chunk_index(preds, config.chunking, "ts", "id")
    aggs = [F.count(F.lit(1)).alias("rows")]
    for c in [*CONTINUOUS, "score", "pred"]:
        aggs += [F.count(c).alias(f"{c}_n"), F.sum(c).alias(f"{c}_sum")]
    aggs += [F.count(c).alias(f"{c}_n") for c in CATEGORICAL]
    profiles = chunked.groupBy(CHUNK_COL).agg(*aggs).collect()
    latest = labels.groupBy("id").agg(F.max(F.struct("label_ts", "label")).alias("l"))
    performance = {r[CHUNK_COL]: r for r in chunked.join(latest, "id", "left").groupBy(CHUNK_COL).agg(
        F.count("l").alias("labelled"), F.sum("l.label").alias("positives")).collect()}
    out = [(int(r[CHUNK_COL]), int(r["rows"]), int(performance[r[CHUNK_COL]]["labelled"] or 0)) for r in profiles]
    spark.createDataFrame(out, "chunk long, rows long, labelled long").write.format("delta").mode("overwrite") \
        .save(str(p["root"] / "floor"))
    spark.stop()


# ------------------------------------------------------------------------------------------- columns

def columns_scaling(rows: int, counts: list[int]) -> list[dict]:
    """Fit and full run with the first N of max(counts) continuous features (plus 3 categorical), each
    measured warm in one session: seconds and Spark jobs per run."""
    from monitoring.config import parse_config
    from monitoring.pipeline import fit, run
    from monitoring.session import get_spark

    widest = max(counts)
    spark = get_spark(parse_config(monitor_config(rows, widest, widest)).spark, "driftline-bench-columns")
    spark.sparkContext.setLogLevel("WARN")
    out = []
    for n in counts:
        config = parse_config(monitor_config(rows, n, widest))
        shutil.rmtree(config.output.path, ignore_errors=True)
        fit(spark, config)
        seconds, jobs = _timed(spark, lambda config=config: run(spark, config, None, True))
        out.append({"continuous_features": n, "features": n + len(CATEGORICAL), "seconds": seconds,
                    "spark_jobs": jobs})
        print(f"{n + len(CATEGORICAL)} features: run {seconds:.1f}s, {jobs} Spark jobs")
    spark.stop()
    return out


# ------------------------------------------------------------------------------------------ orchestra

def _phase(args: list[str], log: Path) -> dict:
    """Run a phase of this script in a fresh process; its JSON result."""
    out = log.with_suffix(".json")
    cmd = [sys.executable, __file__, *args, "--json", str(out)]
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env()).returncode
    if rc:
        raise SystemExit(f"{' '.join(args)} failed (exit {rc}); see {log}")
    return json.loads(out.read_text()) if out.exists() else {}


def _env() -> dict[str, str]:
    return {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def e2e(rows: int, logs: Path) -> dict:
    """`driftline run --fit --full` in a fresh process on fresh output tables: time and memory."""
    import yaml

    p = paths(rows)
    shutil.rmtree(p["out"], ignore_errors=True)
    cfg = p["root"] / "monitor.yaml"
    cfg.write_text(yaml.safe_dump(monitor_config(rows, 10), sort_keys=False))
    m = run_measured([sys.executable, "-m", "monitoring.cli", "run", "--fit", "--full", "--config", str(cfg)],
                     env=_env(), cwd=str(ROOT), log_path=logs / f"driftline-{rows}.log")
    if m.returncode not in (0, 3):
        raise SystemExit(f"driftline run failed (exit {m.returncode}); see {logs}/driftline-{rows}.log")
    return {"seconds": m.seconds, "peak_tree_mb": m.peak_tree_mb, "peak_by_process_mb": m.peak_by_command}


def cold_floor(rows: int, logs: Path) -> dict:
    """The `floor` phase in a fresh process (as `e2e` measures Driftline): wall time and memory."""
    m = run_measured([sys.executable, __file__, "floor", "--rows", str(rows)], env=_env(), cwd=str(ROOT),
                     log_path=logs / f"floor-{rows}.log")
    if m.returncode:
        raise SystemExit(f"the floor phase failed (exit {m.returncode}); see {logs}/floor-{rows}.log")
    return {"seconds": m.seconds, "peak_tree_mb": m.peak_tree_mb}


def nannyml(rows: int, logs: Path) -> dict:
    p = paths(rows)
    out = logs / f"nannyml-{rows}.json"
    m = run_measured([str(NANNY_PY), str(ROOT / "benchmarks" / "nannyml_run.py"), str(p["predictions"]),
                      str(p["labels"]), REFERENCE_END, str(out)], log_path=logs / f"nannyml-{rows}.log")
    result = {"seconds": m.seconds, "peak_tree_mb": m.peak_tree_mb, "peak_by_process_mb": m.peak_by_command,
              "returncode": m.returncode}
    if m.returncode == 0:
        inner = json.loads(out.read_text())
        result |= {"version": inner["nannyml"], "inner_seconds": inner["seconds"], "values": str(out)}
    return result


def machine() -> dict:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpus": os.cpu_count(), "memory_gb": round(memory, 1), "platform": platform.platform(),
            "python": platform.python_version()}


def save(result: dict, out: Path, quick: bool) -> None:
    """Write the results so far (a long run keeps what it measured) and, in full mode, the docs table."""
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}", flush=True)
    if not quick:
        from benchmarks.scale_report import write_table

        write_table(result, ROOT / "docs" / "performance.md", out.name)


def orchestrate(args) -> int:
    sizes = [200_000] if args.quick else [rows_arg(s) for s in args.sizes.split(",")]
    columns = [10, 20] if args.quick else [int(c) for c in args.columns.split(",")]
    column_rows = 200_000 if args.quick else rows_arg(args.column_rows)
    nanny_max = 200_000 if args.quick else rows_arg(args.nannyml_max)
    if not NANNY_PY.exists():
        raise SystemExit(f"{NANNY_PY} is missing: `make bench` creates it (crosscheck/requirements-nannyml.txt)")
    logs = ROOT / "benchmarks" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    result: dict = {"date": date.today().isoformat(), "mode": "quick" if args.quick else "full", "sizes": [],
                    "columns": [], "machine": machine()}
    out = ROOT / "benchmarks" / "results" / (f"{result['date']}-quick.json" if args.quick else f"{result['date']}.json")
    failed = False
    small = [r for r in sizes if r < BIG]
    for rows in small + ["columns"] + [r for r in sizes if r >= BIG]:  # the 10-minute sizes last
        if rows == "columns":
            _phase(["generate", "--rows", str(column_rows), "--continuous", str(max(columns))],
                   logs / f"generate-{column_rows}-wide.log")
            result["columns"] = _phase(["columns", "--rows", str(column_rows), "--counts",
                                        ",".join(map(str, columns))], logs / "columns.log")["columns"]
            save(result, out, args.quick)
            continue
        _phase(["generate", "--rows", str(rows)], logs / f"generate-{rows}.log")
        entry: dict = {"rows": rows, "driftline_e2e": e2e(rows, logs), "cold_floor": cold_floor(rows, logs)}
        print(f"{rows:,} rows: driftline run --fit --full {entry['driftline_e2e']['seconds']:.0f}s, "
              f"peak {entry['driftline_e2e']['peak_tree_mb']:.0f} MB; the cold floor "
              f"{entry['cold_floor']['seconds']:.0f}s", flush=True)
        warm_args = ["warm", "--rows", str(rows), "--repeats", str(1 if args.quick else args.repeats)]
        if rows >= BIG:
            warm_args += ["--bare-only"]
        if rows <= nanny_max:
            entry["nannyml"] = nannyml(rows, logs)
            n = entry["nannyml"]
            print(f"{rows:,} rows: NannyML {n['seconds']:.0f}s, peak {n['peak_tree_mb']:.0f} MB "
                  f"(exit {n['returncode']})", flush=True)
            if n["returncode"] == 0:
                warm_args += ["--nannyml", n["values"]]
                entry["speedup_vs_nannyml"] = n["seconds"] / entry["driftline_e2e"]["seconds"]
                entry["memory_ratio_to_nannyml"] = entry["driftline_e2e"]["peak_tree_mb"] / n["peak_tree_mb"]
        entry["warm"] = _phase(warm_args, logs / f"warm-{rows}.log")
        w = entry["warm"]
        entry["e2e_seconds_per_million_rows"] = entry["driftline_e2e"]["seconds"] / rows * 1e6
        print(f"{rows:,} rows: bare {w['median_seconds']['bare_scan_aggregate']:.1f}s, monitor run "
              f"{w['median_seconds'].get('monitor_run', float('nan')):.1f}s = {w.get('ratio_run_to_bare', 0):.2f}x",
              flush=True)
        if w.get("agreement", {}).get("failures"):
            failed = True
            print("disagreements with NannyML:\n  " + "\n  ".join(w["agreement"]["failures"][:20]))
        result["sizes"].append(entry)
        save(result, out, args.quick)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", nargs="?", default="all", choices=("all", "generate", "warm", "columns", "floor"))
    parser.add_argument("--quick", action="store_true", help="200k rows, 10 and 20 features: a 10-minute smoke run")
    parser.add_argument("--sizes", default="1M,10M,50M,100M")
    parser.add_argument("--nannyml-max", default="10M", help="largest size NannyML is run on")
    parser.add_argument("--columns", default="10,50,200")
    parser.add_argument("--column-rows", default="1M")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int)
    parser.add_argument("--continuous", type=int, default=10)
    parser.add_argument("--counts")
    parser.add_argument("--nannyml")
    parser.add_argument("--json")
    parser.add_argument("--bare-only", action="store_true")
    args = parser.parse_args()
    if args.phase == "all":
        return orchestrate(args)
    if args.phase == "generate":
        generate(args.rows, args.continuous)
        return 0
    if args.phase == "floor":
        floor(args.rows)
        return 0
    if args.phase == "warm":
        out = warm(args.rows, args.repeats, args.nannyml, args.bare_only)
    else:
        out = {"columns": columns_scaling(args.rows, [int(c) for c in args.counts.split(",")])}
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
