"""`driftline` command line. `jobs/*.py` call `main` for spark-submit."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from monitoring.config import MonitorConfig, load_config
from monitoring.errors import DriftlineError

log = logging.getLogger("driftline")


def _config(args) -> MonitorConfig:
    return load_config(args.config)


def cmd_jars(args) -> int:
    """Resolve the Delta jars into the local cache once (later runs need no network)."""
    from monitoring.session import cached_delta_jars, embedded_session

    if not cached_delta_jars():
        embedded_session({}).stop()
    jars = cached_delta_jars()
    if not jars:
        raise DriftlineError("the Delta jars could not be resolved from Maven Central; check the network or set "
                             "DRIFTLINE_CACHE to a directory holding them")
    print("Delta jars cached:\n  " + "\n  ".join(jars))
    return 0


def cmd_demo_data(args) -> int:
    from monitoring.demo_data import write_demo
    from monitoring.session import get_spark

    tables = write_demo(get_spark(), args.out, args.rows, args.variant, args.seed)
    print(f"wrote {tables.rows:,} predictions to {tables.predictions} and {tables.labels_written:,} labels "
          f"to {tables.labels}")
    return 0


def cmd_fit(args) -> int:
    from monitoring.session import get_spark

    config = _config(args)
    _fit(get_spark(config.spark), config, args.refresh)
    return 0


def _fit(spark, config: MonitorConfig, refresh: bool) -> None:
    from monitoring.pipeline import fit, reference_table
    from monitoring.slices import WHOLE

    ref = fit(spark, config, refresh)
    chunks = ref.chunks_of(WHOLE)
    print(f"reference of '{config.monitor}': {len(chunks)} chunks, {sum(c.row_count for c in chunks):,} rows, "
          f"{len(ref.slices()) - 1} slice values; stored in {reference_table(config)}")


def cmd_run(args) -> int:
    from monitoring.session import get_spark

    config = _config(args)
    _run(get_spark(config.spark), config, args.refresh)
    return 0


def _run(spark, config: MonitorConfig, refresh: bool) -> None:
    """Run the monitor inside an MLflow run (when enabled) and print the summary."""
    from monitoring.pipeline import run
    from monitoring.reporting.summary import column_drift, print_summary

    mlflow_run = None
    if config.mlflow.enabled:
        from monitoring.reporting.mlflow_log import finish_run, start_run

        mlflow_run = start_run(config, f"{config.monitor}-{time.strftime('%Y%m%d-%H%M%S')}", {})
    try:
        result = run(spark, config, mlflow_run, refresh)
    except BaseException:
        if mlflow_run:
            finish_run(config, mlflow_run, [], [], {}, failed=True)
        raise
    if mlflow_run:
        drifted = ",".join(d.column for d in column_drift(result.metrics) if d.first_alert)
        tags = {"driftline.source_version": str(result.source_version),
                "driftline.drifted_columns": drifted[:5000] or "-"}
        if result.labels:
            tags |= {f"driftline.labels.{k}": str(v) for k, v in vars(result.labels).items()}
        if result.profiles.backfill:
            plan = result.profiles.backfill
            tags |= {"driftline.backfill.chunks": ",".join(map(str, plan.chunks))[:5000] or "-",
                     "driftline.backfill.labels_versions": f"{plan.since}->{plan.until}",
                     "driftline.backfill.reason": plan.reason[:5000]}
        finish_run(config, mlflow_run, result.chunks, result.metrics, tags)
    print_summary(config, result, mlflow_run)


def cmd_demo(args) -> int:
    """Generate the demo data (once), fit the reference, run the monitor, log to MLflow, summarise."""
    from monitoring.demo_data import write_demo
    from monitoring.session import get_spark

    config = _config(args)
    spark = get_spark(config.spark)
    out_dir = str(Path(config.source.table).parent)
    if args.regenerate or not (Path(out_dir) / "ground_truth.json").exists():
        started = time.monotonic()
        tables = write_demo(spark, out_dir, args.rows, config.problem_type)
        log.info("demo data: %d rows, %d labels in %.0fs", tables.rows, tables.labels_written,
                 time.monotonic() - started)
    _fit(spark, config, args.refresh)
    _run(spark, config, args.refresh)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftline", description="Spark-native model monitoring.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("jars", help="cache the Delta jars for the embedded Spark").set_defaults(fn=cmd_jars)

    p = sub.add_parser("demo-data", help="write the demo Delta tables")
    p.add_argument("--out", default="data/demo/binary")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--variant", choices=("binary", "multiclass", "regression"), default="binary")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(fn=cmd_demo_data)

    for name, fn, text in (("fit", cmd_fit, "build and store the reference"),
                           ("run", cmd_run, "monitor the analysis chunks")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", required=True)
        p.add_argument("--refresh", action="store_true", help="recompute profiles even if the source is unchanged")
        p.set_defaults(fn=fn)

    p = sub.add_parser("demo", help="demo data + fit + run + MLflow, end to end")
    p.add_argument("--config", default="conf/demo.yaml")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--regenerate", action="store_true", help="rewrite the demo data even if present")
    p.add_argument("--refresh", action="store_true", help="recompute profiles even if the source is unchanged")
    p.set_defaults(fn=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.fn(args)
    except DriftlineError as exc:
        print(f"driftline: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
