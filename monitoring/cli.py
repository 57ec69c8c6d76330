"""`driftline` command line. `jobs/*.py` call `main` for spark-submit."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from monitoring import redact
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


def _fit(spark, config: MonitorConfig, refresh: bool, analysis: bool = False):
    """Fit and print the reference; returns it (a `run --fit` hands it to the run in memory; with `analysis`
    the fit may profile the analysis rows in the same scan, `monitoring.pipeline.shares_scan`)."""
    from monitoring.pipeline import fit, reference_table
    from monitoring.slices import WHOLE

    ref = fit(spark, config, refresh, analysis)
    chunks = ref.chunks_of(WHOLE)
    print(f"reference of '{config.monitor}': {len(chunks)} chunks, {sum(c.row_count for c in chunks):,} rows, "
          f"{len(ref.slices()) - 1} slice values; stored in {reference_table(config)}")
    return ref


def cmd_run(args) -> int:
    from monitoring.session import get_spark

    config = _config(args)
    spark = get_spark(config.spark)
    fitted = _fit(spark, config, args.refresh, analysis=True) if args.fit else None
    return _run(spark, config, args.refresh, args.fail_on_alert, fitted)


EXIT_REPORTING = 4  # results stored, MLflow logging failed (`driftline report` re-logs)


def _run(spark, config: MonitorConfig, refresh: bool, fail_on_alert: str | None = None, fitted=None) -> int:
    """Run the monitor (Delta tables first), log it to MLflow (when enabled), print the summary, deliver
    the alerts; the exit code says whether MLflow logging failed or alerts fired."""
    from monitoring.alerts import EXIT_ALERTS, parse_families, post_webhook, run_alerts, webhook_payload, webhook_url
    from monitoring.importance import with_model_importances
    from monitoring.pipeline import run
    from monitoring.reporting.summary import column_drift, print_summary

    try:
        families = parse_families(fail_on_alert) if fail_on_alert is not None else None
    except ValueError as exc:
        raise DriftlineError(str(exc)) from exc
    config = with_model_importances(config)
    result = run(spark, config, None, refresh, fitted)
    plan = result.profiles.backfill
    alerts = run_alerts(result.metrics, list(plan.chunks) if plan else [])
    mlflow_run, reporting_error = None, None
    if config.mlflow.enabled:
        from monitoring.reporting.mlflow_log import log_run

        drifted = ",".join(d.column for d in column_drift(result.metrics) if d.first_alert)
        tags = {"driftline.run_id": result.run_id, "driftline.source_version": str(result.source_version),
                "driftline.drifted_columns": drifted[:5000] or "-",
                "driftline.recomputed": _recomputed(result)}
        if result.profiles.labels_version is not None:
            tags["driftline.labels_version"] = str(result.profiles.labels_version)
        if result.labels:
            tags |= {f"driftline.labels.{k}": str(v) for k, v in vars(result.labels).items()}
        if plan:
            tags |= {"driftline.backfill.chunks": ",".join(map(str, plan.chunks))[:5000] or "-",
                     "driftline.backfill.labels_versions": f"{plan.since}->{plan.until}",
                     "driftline.backfill.reason": plan.reason[:5000]}
        try:
            mlflow_run = log_run(config, f"{config.monitor}-{time.strftime('%Y%m%d-%H%M%S')}", result.chunks,
                                 result.metrics, tags, webhook_payload(config.monitor, result.run_id, alerts, None),
                                 logged=set(result.compared) | set(result.relogged))
        except DriftlineError as exc:
            reporting_error = exc
    print_summary(config, result, mlflow_run)
    url = webhook_url()
    if url and alerts.alerts:
        post_webhook(url, webhook_payload(config.monitor, result.run_id, alerts, mlflow_run))
    if reporting_error:
        print(f"driftline: error: {redact.redact(str(reporting_error))}", file=sys.stderr)
        return EXIT_REPORTING
    fired = [r for r in alerts.alerts if families is not None and r.family in families]
    if fired:
        families_fired = ", ".join(sorted({r.family for r in fired}))
        print(f"driftline: {len(fired)} alerts in {', '.join(alerts.chunks)} ({families_fired}); "
              f"exit code {EXIT_ALERTS} (--fail-on-alert)", file=sys.stderr)
        return EXIT_ALERTS
    return 0


def _recomputed(result) -> str:
    """Which analysis chunks this run (re)computed, for the MLflow run's `driftline.recomputed` tag."""
    whole = result.profiles.whole
    parts = []
    step = result.profiles.increment
    if step and step.chunks is not None:
        keys = [c.chunk.key for c in whole if c.chunk.index in set(step.chunks)]
        parts.append(f"profiled {len(keys)} chunks changed since source version {step.since}: {', '.join(keys)}")
    elif not result.profiles.reused and whole:
        parts.append(f"profiled {len(whole)} chunks {whole[0].chunk.key} .. {whole[-1].chunk.key}")
    plan = result.profiles.backfill
    if plan and plan.chunks:
        keys = [c.chunk.key for c in whole if c.chunk.index in set(plan.chunks)]
        parts.append(f"performance of {len(keys)} chunks after new labels: {', '.join(keys)}")
    return "; ".join(parts)[:5000] or "none: stored profiles reused, no new labels"


def cmd_report(args) -> int:
    """Re-log the stored results of a monitor (metrics table + analysis profiles) as a new MLflow run."""
    from monitoring.alerts import run_alerts, webhook_payload
    from monitoring.importance import with_model_importances
    from monitoring.metrics_store import read_metrics
    from monitoring.pipeline import ANALYSIS, metrics_table, profiles_table
    from monitoring.profile_store import read_profiles
    from monitoring.reporting.mlflow_log import log_run
    from monitoring.session import get_spark

    config = with_model_importances(_config(args))
    spark = get_spark(config.spark)
    stored = read_metrics(spark, metrics_table(config), config.monitor)
    if not stored.results:
        raise DriftlineError(f"monitor '{config.monitor}' has no results in {metrics_table(config)}; "
                             "run `driftline run --config ...` first")
    chunks = read_profiles(spark, profiles_table(config), config.monitor, ANALYSIS)
    alerts = run_alerts(stored.results)
    tags = {"driftline.run_id": ",".join(stored.run_ids)[:5000], "driftline.relogged": "true",
            "driftline.source_version": str(stored.source_version)}
    mlflow_run = log_run(config, f"{config.monitor}-report-{time.strftime('%Y%m%d-%H%M%S')}", chunks,
                         stored.results, tags, webhook_payload(config.monitor, tags["driftline.run_id"], alerts, None))
    print(f"re-logged {len(stored.results):,} result rows of '{config.monitor}' (runs {', '.join(stored.run_ids)}) "
          f"as MLflow run {mlflow_run} in experiment '{config.mlflow.experiment}' at "
          f"{redact.redact(config.mlflow.tracking_uri)}")
    return 0


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
    return _run(spark, config, args.refresh, fitted=_fit(spark, config, args.refresh, analysis=True))


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
        p.add_argument("--full", "--refresh", dest="refresh", action="store_true",
                       help="re-profile every chunk (by default only chunks whose source rows changed, and the "
                            "open last chunk, are)")
        if name == "run":
            p.add_argument("--fit", action="store_true",
                           help="fit the reference first, in the same session (a no-op when the stored reference "
                                "is current): one job for both steps")
            p.add_argument("--fail-on-alert", nargs="?", const="all", default=None, metavar="FAMILIES",
                           help="exit with code 3 when the latest chunk alerts (optionally only these families, comma-"
                                "separated: drift, multivariate, data_quality, performance, estimated_performance, "
                                "concept_drift)")
        p.set_defaults(fn=fn)

    p = sub.add_parser("report", help="re-log the stored results of a monitor to MLflow")
    p.add_argument("--config", required=True)
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("demo", help="demo data + fit + run + MLflow, end to end")
    p.add_argument("--config", default="conf/demo.yaml")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--regenerate", action="store_true", help="rewrite the demo data even if present")
    p.add_argument("--full", "--refresh", dest="refresh", action="store_true", help="re-profile every chunk")
    p.set_defaults(fn=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    redact.install()
    try:
        return args.fn(args)
    except DriftlineError as exc:
        print(f"driftline: error: {redact.redact(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
