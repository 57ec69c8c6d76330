"""`driftline` command line. `jobs/*.py` call `main` for spark-submit."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from monitoring import __version__, redact
from monitoring.config import MonitorConfig, load_config
from monitoring.errors import ConfigError, DriftlineError

log = logging.getLogger("driftline")


def _config(args) -> MonitorConfig:
    return load_config(args.config)


def preflight(config: MonitorConfig) -> list[str]:
    """The config's columns against the schemas of its local Delta tables, read from their logs (no Spark);
    returns the tables it could not check (catalog or remote: the Spark job checks them)."""
    from monitoring.config import validate_against_schema
    from monitoring.stores.delta_log import read_schema

    skipped = []

    def schema(table: str, key: str):
        try:
            found = read_schema(table)
        except FileNotFoundError as exc:
            raise ConfigError(key, f"table '{table}' cannot be read as a Delta table ({exc}). Check the path or "
                                   "catalog name, and that the table was written.") from None
        if found is None:
            skipped.append(table)
        return found

    source = schema(config.source.table, "source.table")
    labels = schema(config.labels.table, "labels.table") if config.labels else None
    if source is not None:
        validate_against_schema(config, source, labels)
    if config.reference.table:
        reference = schema(config.reference.table, "reference.table")
        if reference is not None:
            validate_against_schema(config, reference)
    return skipped


def cmd_validate(args) -> int:
    """Check a config and the schemas of its tables without starting Spark (reads Delta logs, not rows)."""
    config = _config(args)
    skipped = preflight(config)
    checked = "config and table schemas" if not skipped else \
        f"config; schemas of {', '.join(redact.redact(t) for t in skipped)} not checked (catalog or remote " \
        "tables: `driftline fit` checks them)"
    print(f"{args.config}: OK ({checked}); monitor '{config.monitor}', {config.problem_type}, "
          f"{len(config.features)} features, chunking {config.chunking.describe()}")
    return 0


def cmd_init(args) -> int:
    """Draft a config for a predictions table (monitoring/init_config.py)."""
    from monitoring.init_config import draft, to_yaml
    from monitoring.session import get_spark

    try:
        config, notes = draft(get_spark(), args.table, args.monitor)
    except ValueError as exc:
        raise DriftlineError(str(exc)) from exc
    text = to_yaml(config, notes)
    if args.out:
        if Path(args.out).exists():
            raise DriftlineError(f"--out {args.out} exists; choose another path (init never overwrites a config)")
        Path(args.out).write_text(text)
        print(f"wrote {args.out}: {config['problem_type']} monitor '{config['monitor']}', "
              f"{len(config['features'])} features; check it, then: driftline validate --config {args.out}")
    else:
        print(text, end="")
    return 0


def cmd_jars(args) -> int:
    """Resolve the Delta jars into the local cache once (later runs need no network)."""
    from monitoring.session import cached_delta_jars, embedded_session

    if not cached_delta_jars():
        embedded_session({}).stop()
    jars = cached_delta_jars()
    if not jars:
        raise DriftlineError("the Delta jars could not be resolved from Maven Central; check the network or set "
                             "DRIFTLINE_CACHE to a directory holding them")
    print(f"Delta jars cached: {len(jars)} jars in {Path(jars[0]).parent}" +
          ("".join(f"\n  {j}" for j in jars) if args.verbose else ""))
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
    preflight(config)  # a column typo costs a second, not a Spark start
    _fit(get_spark(config.spark), config, args.refresh)
    return 0


def _fit(spark, config: MonitorConfig, refresh: bool, analysis: bool = False):
    """Fit and print the reference; returns it (a `run --fit` hands it to the run in memory; with `analysis`
    the fit may profile the analysis rows in the same scan, `monitoring.pipeline.shares_scan`)."""
    from monitoring.guards import empty_columns, kind_problems
    from monitoring.pipeline import fit, reference_table
    from monitoring.slices import WHOLE

    ref = fit(spark, config, refresh, analysis)
    chunks = ref.chunks_of(WHOLE)
    print(f"reference of '{config.monitor}': {len(chunks)} chunks, {sum(c.row_count for c in chunks):,} rows, "
          f"{len(ref.slices()) - 1} slice values; stored in {reference_table(config)}")
    for _, what in kind_problems(config, ref) + empty_columns(config, ref):  # the runs alert on them too
        print(f"check {what}")
    return ref


def cmd_run(args) -> int:
    from monitoring.session import get_spark

    config = _config(args)
    preflight(config)
    spark = get_spark(config.spark)
    fitted = _fit(spark, config, args.refresh, analysis=True) if args.fit else None
    return _run(spark, config, args.refresh, args.fail_on_alert, fitted)


EXIT_REPORTING = 4  # results stored, MLflow logging failed (`driftline report` re-logs)


def _run(spark, config: MonitorConfig, refresh: bool, fail_on_alert: str | None = None, fitted=None) -> int:
    """Run the monitor through the API (Delta tables, MLflow, webhook), print the summary; the exit code
    says whether MLflow logging failed or incidents fired (`--fail-on-alert`)."""
    from monitoring.alerts import EXIT_ALERTS, parse_gate
    from monitoring.api import Monitor
    from monitoring.reporting.summary import print_summary

    try:
        gate = parse_gate(fail_on_alert) if fail_on_alert is not None else None
    except ValueError as exc:
        raise DriftlineError(str(exc)) from exc
    results = Monitor(config, spark).run(refresh=refresh, fitted=fitted)
    print_summary(results.config, results.run, results.mlflow_run, results.alerts, results.mlflow_link)
    if results.reporting_error:
        print(f"driftline: error: {redact.redact(str(results.reporting_error))}", file=sys.stderr)
        return EXIT_REPORTING
    fired = gate.fired(results.alerts) if gate else []
    if fired:
        families = ", ".join(sorted({f for i in fired for f in i.families}))
        print(f"driftline: {len(fired)} incidents with alerts in {', '.join(results.alerts.chunks)} ({families}); "
              f"exit code {EXIT_ALERTS} (--fail-on-alert)", file=sys.stderr)
        return EXIT_ALERTS
    return 0


def cmd_report(args) -> int:
    """Re-log the stored results of a monitor (the metrics table) as a new MLflow run."""
    from monitoring.alerts import run_alerts, webhook_payload
    from monitoring.api import Monitor, Results
    from monitoring.importance import with_model_importances
    from monitoring.pipeline import metrics_table
    from monitoring.reporting.mlflow_log import log_run
    from monitoring.session import get_spark
    from monitoring.stores.metrics import read_metrics

    config = with_model_importances(_config(args))
    spark = get_spark(config.spark)
    stored = read_metrics(spark, metrics_table(config), config.monitor)
    if not stored.results:
        raise DriftlineError(f"monitor '{config.monitor}' has no results in {metrics_table(config)}; "
                             "run `driftline run --config ...` first")
    alerts = run_alerts(stored.results, config)
    tags = {"driftline.run_id": ",".join(stored.run_ids)[:5000], "driftline.relogged": "true",
            "driftline.source_version": str(stored.source_version)}
    distributions = Monitor(config, spark).stored_distributions(Results(config, stored.results, alerts))
    mlflow_run = log_run(config, f"{config.monitor}-report-{time.strftime('%Y%m%d-%H%M%S')}", stored.results,
                         tags, webhook_payload(config.monitor, tags["driftline.run_id"], alerts, None),
                         distributions=distributions)
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
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, Spark's warnings and the jar list")
    parser.add_argument("--version", action="version", version=f"driftline {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="draft a config for a predictions table (schema + a sample of its rows)")
    p.add_argument("--table", required=True, help="the predictions table: a path or a catalog name")
    p.add_argument("--monitor", help="the monitor's name (default: from the table's name)")
    p.add_argument("--out", help="write the draft here (default: print it)")
    p.set_defaults(fn=cmd_init)

    p = sub.add_parser("validate", help="check a config and its tables' schemas (no Spark, no rows read)")
    p.add_argument("--config", required=True)
    p.set_defaults(fn=cmd_validate)

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
                           help="exit with code 3 when an incident has an alert in this run's chunks; optionally "
                                "only in these families and from this severity up, comma-separated: drift, "
                                "multivariate, data_quality, performance, estimated_performance, concept_drift; "
                                "high, medium, low (e.g. high or drift,medium)")
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
    # Driftline's own progress at INFO; the libraries' (MLflow's store migrations, the Spark gateway's
    # connection chatter) only from WARNING, unless --verbose
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for ours in ("monitoring", "driftline"):
        logging.getLogger(ours).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if args.verbose:  # the embedded Spark keeps its own log4j defaults (warnings included)
        from monitoring.session import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"
    redact.install()
    try:
        return args.fn(args)
    except DriftlineError as exc:
        print(f"driftline: error: {redact.redact(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
