"""The public Python API: what the CLI, the notebook and a Databricks job call.

```python
import monitoring as dl

monitor = dl.Monitor.from_yaml("conf/demo.yaml")      # or Monitor.from_dict({...}) / Monitor(config)
results = monitor.run(fit=True)                      # fit (or reuse) the reference, run, store, log, alert
results.incidents()                                  # what to act on, most severe first
results.to_pandas()                                  # every metric row of the run (pandas), .to_spark()
results.plot()                                       # the alerting columns' headline drift over time
dl.Monitor.from_yaml("conf/demo.yaml").results()     # the stored results, without running anything
```

`run` writes the Delta tables first, then logs to MLflow (when `mlflow.enabled`) and posts the webhook
($DRIFTLINE_WEBHOOK_URL); the incidents, the webhook, alerts.json, the report and the MLflow run
description come from the same `Results`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.alerts import RunAlerts, post_webhook, run_alerts, webhook_payload, webhook_url
from monitoring.config import MonitorConfig, load_config, parse_config
from monitoring.drift.compare import MetricResult
from monitoring.errors import DriftlineError
from monitoring.incidents import COLUMN, Incident

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from monitoring.pipeline import RunResult
    from monitoring.reference import FittedReference
    from monitoring.reporting.interactive import Distribution


@dataclass
class Results:
    """The results of a monitor: its metric rows (all stored chunks), the run that produced them (None
    for stored results) and the incidents. `mlflow_run`: the MLflow run logged, `reporting_error`: why
    logging failed (the Delta tables hold the results; `Monitor.report()` re-logs)."""

    config: MonitorConfig
    metrics: list[MetricResult]
    alerts: RunAlerts
    run: RunResult | None = None
    mlflow_run: str | None = None
    mlflow_link: str | None = None
    reporting_error: DriftlineError | None = None

    def incidents(self) -> list[Incident]:
        """The open incidents, most severe first (monitoring/incidents.py)."""
        return list(self.alerts.incidents)

    def incident_table(self) -> pd.DataFrame:
        """The incidents as a pandas frame (one row each, the fields of `Incident` and its headline text)."""
        import pandas as pd

        return pd.DataFrame([i.to_dict() for i in self.incidents()])

    def to_pandas(self) -> pd.DataFrame:
        """One row per metric value, named as the metrics table's columns (chunk_* for the chunk)."""
        import pandas as pd

        renamed = {"column": "column_name", "kind": "column_kind"}  # as in the metrics table
        return pd.DataFrame([{**{renamed.get(k, k): v for k, v in dataclasses.asdict(r).items() if k != "chunk"},
                              "chunk_index": r.chunk.index, "chunk_key": r.chunk.key, "chunk_start": r.chunk.start,
                              "chunk_end": r.chunk.end} for r in self.metrics])

    def to_spark(self, spark: SparkSession | None = None) -> DataFrame:
        """The stored metrics table of this monitor, as a Spark DataFrame (every row, not only this run's)."""
        from monitoring.pipeline import metrics_table
        from monitoring.session import get_spark
        from monitoring.stores.tables import read_delta

        spark = spark or get_spark(self.config.spark)
        return read_delta(spark, metrics_table(self.config), "metrics").df \
            .where(f"monitor = '{self.config.monitor}'")

    def plot(self, columns: list[str] | None = None, limit: int = 6):
        """Matplotlib figures of the headline drift metric over time (thresholds, reference, alerts) of
        `columns`, by default the columns with open incidents (then the rest, up to `limit`)."""
        from monitoring.reporting.html_report import column_figure

        if columns is None:
            alerting = [i.subject for i in self.incidents() if i.kind == COLUMN]
            others = sorted({r.column for r in self.metrics if r.family == "drift"} - set(alerting))
            columns = (alerting + others)[:limit]
        return [f for f in (column_figure(self.metrics, c) for c in columns) if f is not None]

    def distributions(self) -> list[Distribution]:
        """The column incidents' reference and newest-chunk states (whole table), as this run holds them
        (none for stored results or chunks a rerun did not profile: `Monitor.stored_distributions` reads
        those back from the tables)."""
        from monitoring.reporting.interactive import Distribution
        from monitoring.slices import WHOLE

        if self.run is None or not self.run.profiles.whole:
            return []
        newest = max(self.run.profiles.whole, key=lambda c: c.chunk.index)
        if not newest.loaded:  # kept as stored: its sketches stayed in the table
            return []
        reference = self.run.reference.columns.get(WHOLE, {})
        out = []
        for i in self.incidents():
            rc, current = reference.get(i.subject), newest.columns.get(i.subject)
            if i.kind == COLUMN and rc is not None and current is not None:
                out.append(Distribution(i.subject, rc.state, rc.edges, newest.chunk.key, current))
        return out

    def summary(self) -> str:
        """The incident lines, as the CLI, the webhook and the MLflow description show them."""
        from monitoring.alerts import incident_lines

        return "\n".join(incident_lines(self.config.monitor, self.alerts))

    def _repr_html_(self) -> str:  # notebooks and Databricks display(): the incidents first
        import html

        rows = "".join(f"<li>{html.escape(i.line())}</li>" for i in self.incidents()) or "<li>none open</li>"
        return f"<b>Driftline monitor '{html.escape(self.config.monitor)}'</b>: incidents<ul>{rows}</ul>"


class Monitor:
    """One monitor config, and the operations on it."""

    def __init__(self, config: MonitorConfig, spark: SparkSession | None = None) -> None:
        self.config = config
        self._spark = spark

    @classmethod
    def from_yaml(cls, path: str | Path, spark: SparkSession | None = None) -> Monitor:
        return cls(load_config(path), spark)

    @classmethod
    def from_dict(cls, data: dict[str, Any], spark: SparkSession | None = None) -> Monitor:
        return cls(parse_config(data), spark)

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            from monitoring.session import get_spark

            self._spark = get_spark(self.config.spark)
        return self._spark

    def fit(self, refresh: bool = False, analysis: bool = False) -> FittedReference:
        """Build (or reuse, when current) and store the reference."""
        from monitoring.pipeline import fit

        return fit(self.spark, self.config, refresh, analysis)

    def run(self, fit: bool = False, refresh: bool = False, log: bool = True, alert: bool = True,
            fitted: FittedReference | None = None) -> Results:
        """Run the monitor: the Delta tables first, then MLflow (`log` and `mlflow.enabled`) and the
        webhook (`alert` and $DRIFTLINE_WEBHOOK_URL set, when incidents are open)."""
        from monitoring.importance import with_model_importances
        from monitoring.pipeline import run

        if fit and fitted is None:
            fitted = self.fit(refresh, analysis=True)
        config = with_model_importances(self.config)
        result = run(self.spark, config, None, refresh, fitted)
        plan = result.profiles.backfill
        alerts = run_alerts(result.metrics, config, list(plan.chunks) if plan else [])
        out = Results(config, result.metrics, alerts, result)
        if log and config.mlflow.enabled:
            self._log(out)
        url = webhook_url()
        if alert and url and alerts.incidents:
            post_webhook(url, webhook_payload(config.monitor, result.run_id, alerts, out.mlflow_run, out.mlflow_link))
        return out

    def results(self) -> Results:
        """The stored results of the monitor (the metrics table), without running anything."""
        from monitoring.pipeline import metrics_table
        from monitoring.stores.metrics import read_metrics

        stored = read_metrics(self.spark, metrics_table(self.config), self.config.monitor)
        return Results(self.config, stored.results, run_alerts(stored.results, self.config))

    def report(self, path: str | Path | None = None) -> Path:
        """Write the HTML report of the stored results to `path` (a directory; default: a temporary one)
        and return the report's path."""
        import tempfile

        from monitoring.reporting.html_report import write_report

        stored = self.results()
        if not stored.metrics:
            raise DriftlineError(f"monitor '{self.config.monitor}' has no stored results; run it first")
        root = Path(path) if path else Path(tempfile.mkdtemp(prefix="driftline-report-"))
        root.mkdir(parents=True, exist_ok=True)
        write_report(self.config, stored.metrics, "stored results", root, self.stored_distributions(stored))
        return root / "report.html"

    def stored_distributions(self, stored: Results) -> list[Distribution]:
        """The column incidents' reference and newest-chunk states of stored results, read back from the
        reference and profiles tables in one query (`driftline report` and `report()` draw them as a run's
        report does)."""
        from pyspark.sql import functions as F

        from monitoring.drift.compare import ANALYSIS
        from monitoring.pipeline import profiles_table, reference_table
        from monitoring.reporting.interactive import Distribution
        from monitoring.slices import WHOLE
        from monitoring.stores.profiles import parse_profiles, profiles_query
        from monitoring.stores.reference import parse_reference, reference_query
        from monitoring.stores.tables import collect_union, table_exists

        columns = [i.subject for i in stored.incidents() if i.kind == COLUMN]
        analysis = [r.chunk.index for r in stored.metrics if r.period == ANALYSIS and r.row_count]
        tables = (reference_table(self.config), profiles_table(self.config))
        if not columns or not analysis or not all(table_exists(self.spark, t) for t in tables):
            return []
        newest = max(analysis)
        chunk = profiles_query(self.spark, tables[1], self.config.monitor, [ANALYSIS]).where(
            (F.col("chunk_index") == newest) & (F.col("slice_key") == WHOLE[0]) & F.col("column_name").isin(columns))
        rows = collect_union({"reference": reference_query(self.spark, tables[0], self.config.monitor)
                              .where((F.col("slice_key") == WHOLE[0]) & F.col("column_name").isin(columns)),
                              "profiles": chunk})
        reference = parse_reference(rows["reference"]).columns.get(WHOLE, {})
        profiled = parse_profiles(rows["profiles"], [ANALYSIS]).chunks[ANALYSIS]
        if not profiled:
            return []
        current = profiled[0]
        return [Distribution(c, reference[c].state, reference[c].edges, current.chunk.key, current.columns[c])
                for c in columns if c in reference and c in current.columns]

    def _log(self, out: Results) -> None:
        from monitoring.reporting.mlflow_log import log_run, run_link
        from monitoring.reporting.summary import column_drift

        result, config = out.run, out.config
        plan = result.profiles.backfill
        drifted = ",".join(d.column for d in column_drift(result.metrics) if d.first_alert)
        tags = {"driftline.run_id": result.run_id, "driftline.source_version": str(result.source_version),
                "driftline.drifted_columns": drifted[:5000] or "-", "driftline.recomputed": _recomputed(result)}
        if result.profiles.labels_version is not None:
            tags["driftline.labels_version"] = str(result.profiles.labels_version)
        if result.labels:
            tags |= {f"driftline.labels.{k}": str(v) for k, v in vars(result.labels).items()}
        if plan:
            tags |= {"driftline.backfill.chunks": ",".join(map(str, plan.chunks))[:5000] or "-",
                     "driftline.backfill.labels_versions": f"{plan.since}->{plan.until}",
                     "driftline.backfill.reason": plan.reason[:5000]}
        try:
            out.mlflow_run = log_run(config, f"{config.monitor}-{time.strftime('%Y%m%d-%H%M%S')}", result.metrics,
                                     tags, webhook_payload(config.monitor, result.run_id, out.alerts, None),
                                     logged=set(result.compared) | set(result.relogged),
                                     distributions=out.distributions())
            out.mlflow_link = run_link(config, out.mlflow_run)
        except DriftlineError as exc:
            out.reporting_error = exc


def _recomputed(result: RunResult) -> str:
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

