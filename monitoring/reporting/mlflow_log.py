"""Log a run to MLflow: one MLflow run per job execution, metrics as time series over chunks.

The experiment opens in MLflow's classic runs view (tag `mlflow.experimentKind`). Per analysis chunk
(whole table) the run logs, with step = the chunk's ordinal among the analysis chunks (0 = the first
after the reference) and timestamp = the chunk's end, so the x-axis reads as time:
- `drift/<column>.<metric>`: the column's headline drift metric against the reference (the first of
  ranking.HEADLINE it has: Kolmogorov-Smirnov for continuous, Jensen-Shannon for categorical columns);
- `performance/<metric>` (realized) and `estimated/<metric>` (CBPE, DLE): the performance metrics
  with a threshold rule (counts and confusion cells stay in the Delta tables);
- `concept/<metric>` (the realized-estimated gap of the headline performance metric) and
  `concept/<column>.relation_change`; `multivariate/<metric>`; `quality/<metric>` (table level);
- `<key>.lower_threshold` / `<key>.upper_threshold` next to each value, so a chart can show them;
- `alerts/total`: the alerting values of the chunk (every family, slices included).
Everything else (every metric, slice and comparison) is in the Delta tables and the artifacts. The
run's description is the incident summary (monitoring/incidents.py); the source and label tables are
logged as dataset inputs with their Delta versions. The run is logged after the Delta tables are
written (they are the source of truth); its tag `driftline.run_id` is the `run_id` of the metrics rows
the run wrote. A run logs the chunks it computed (metrics and result rows; an incremental day: that
day), so logging costs what the new data costs; `driftline report` logs all of it. Artifacts: the
run's results (`results/metrics.parquet` and `.csv`), `alerts.json` (the incidents and alerts),
`ranking.json` (drift that matters, monitoring/ranking.py), the resolved config (`config.json`), the
HTML report (`report.html`) and its PNG charts (`charts/`). When the tracking server fails, `log_run`
raises ReportingError and `driftline report` re-logs the stored results later.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from monitoring import __version__
from monitoring.config import MonitorConfig
from monitoring.drift.compare import ANALYSIS, BASELINE, DRIFT, MetricResult
from monitoring.errors import ReportingError
from monitoring.faults import MLFLOW_LOGGING, failpoint
from monitoring.incidents import ESTIMATED_PERFORMANCE
from monitoring.ranking import HEADLINE, PERFORMANCE_HEADLINE
from monitoring.redact import redact, redact_tree
from monitoring.registry import CONCEPT, MULTIVARIATE, PERFORMANCE, QUALITY, metric
from monitoring.registry import NONE as NO_RULE
from monitoring.slices import WHOLE

BATCH = 1000  # MLflow's log_batch limit on metrics per call
DESCRIPTION = "mlflow.note.content"  # the tag MLflow's UI shows as a run's description
# the experiment tag that makes MLflow 3's UI open the classic runs and metrics view, not the GenAI one
EXPERIMENT_KIND, CLASSIC = "mlflow.experimentKind", "custom_model_development"
# MLflow 3's UI opens in its GenAI mode unless the URL (or the browser's stored choice) asks for this one
CLASSIC_VIEW = "machine_learning"
log = logging.getLogger(__name__)


def _safe(name: str) -> str:
    """A column name as part of an MLflow metric name: letters, digits, _ - . space : are kept, anything
    else becomes '_', '/' too (MLflow refuses a name that a file path would resolve elsewhere, e.g. one
    holding `../`)."""
    return "".join(ch if ch.isalnum() or ch in "_-. :" else "_" for ch in name)


def _ms(chunk) -> int:
    return int(chunk.end.timestamp() * 1000)


def run_metrics(results: list[MetricResult], logged: set[int] | None = None):
    """The MLflow metrics of the analysis results (whole table, defined values; module docstring) of the
    `logged` chunks (None: all): per chunk, step = its ordinal among all the analysis chunks of `results`
    (0 = the first after the reference), timestamp = its end."""
    from mlflow.entities import Metric

    every = [r for r in results if r.period == ANALYSIS]
    if not every:
        return []
    first = min(r.chunk.index for r in every)
    headline = _column_headlines(every)
    chosen = [r for r in every if logged is None or r.chunk.index in logged]
    out, alerts, chunks = [], Counter(), {}
    for r in chosen:
        chunks[r.chunk.index] = r.chunk
        alerts[r.chunk.index] += int(r.alert)
    for r in (r for r in chosen if (r.slice_key, r.slice_value) == WHOLE):
        name = _name(r, headline)
        if name is None or r.value is None:
            continue
        step, ts = r.chunk.index - first, _ms(r.chunk)
        out.append(Metric(name, float(r.value), ts, step))
        for side in ("lower", "upper"):
            threshold = getattr(r, f"{side}_threshold")
            if threshold is not None and math.isfinite(threshold):
                out.append(Metric(f"{name}.{side}_threshold", float(threshold), ts, step))
    out += [Metric("alerts/total", float(n), _ms(chunks[i]), i - first) for i, n in alerts.items()]
    return out


def _column_headlines(results: list[MetricResult]) -> dict[str, str]:
    """column -> its headline drift metric: the first of ranking.HEADLINE it has (one series per column)."""
    have: dict[str, set[str]] = {}
    for r in results:
        if r.family == DRIFT and r.comparison == BASELINE and (r.slice_key, r.slice_value) == WHOLE:
            have.setdefault(r.column, set()).add(r.metric)
    return {c: next(m for m in (*HEADLINE, *sorted(ms)) if m in ms) for c, ms in have.items()}


def _name(r: MetricResult, headline: dict[str, str]) -> str | None:
    """The MLflow key of a whole-table analysis value, None when it is not logged (module docstring)."""
    column = _safe(r.column)
    if r.family == DRIFT:
        return f"drift/{column}.{r.metric}" if r.comparison == BASELINE and headline.get(r.column) == r.metric \
            else None
    if r.family in (PERFORMANCE, ESTIMATED_PERFORMANCE) and r.comparison == "NONE":
        entry = metric(r.metric)
        if entry is None or entry.default == NO_RULE:  # counts and confusion cells: the Delta tables have them
            return None
        return f"{'performance' if r.family == PERFORMANCE else 'estimated'}/{r.metric}"
    if r.family == CONCEPT:
        if r.column != ":table":
            return f"concept/{column}.{r.metric}" if r.metric == "relation_change" else None
        return f"concept/{r.metric}" if r.metric in PERFORMANCE_HEADLINE.values() else None
    if r.family == MULTIVARIATE:
        return f"multivariate/{r.metric}"
    if r.family == QUALITY and r.column == ":table":
        return f"quality/{r.metric}"
    return None


def start_run(config: MonitorConfig, run_name: str, tags: dict[str, str]) -> str:
    """Create the MLflow run (experiment created on first use) with params and tags; returns its id."""
    import mlflow
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(config.mlflow.tracking_uri)
    client = MlflowClient(config.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name(config.mlflow.experiment)
    experiment_id = experiment.experiment_id if experiment else \
        client.create_experiment(config.mlflow.experiment, tags={EXPERIMENT_KIND: CLASSIC})
    if experiment and EXPERIMENT_KIND not in experiment.tags:  # older experiments: set it once
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, CLASSIC)
    run = client.create_run(experiment_id, run_name=run_name,
                            tags={"driftline.monitor": config.monitor, "driftline.version": __version__, **tags})
    params = {
        "monitor": config.monitor,
        "model": f"{config.mlflow.model_name or '-'} v{config.mlflow.model_version or '-'}",
        "problem_type": config.problem_type,
        "source.table": config.source.table,
        "chunking": config.chunking.describe(),
        "reference": str(config.reference.table or f"{config.reference.start} .. {config.reference.end}"),
        "features": ",".join(f.name for f in config.features)[:6000],
        "drift.continuous_methods": ",".join(config.drift.continuous_methods),
        "drift.categorical_methods": ",".join(config.drift.categorical_methods),
        "drift.bins": config.drift.bins,
        "slices": ",".join(config.slices.expressions)[:6000] or "-",
    }
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return run.info.run_id


def log_run(config: MonitorConfig, run_name: str, results: list[MetricResult],
            tags: dict[str, str], alerts: dict, logged: set[int] | None = None, distributions=()) -> str:
    """One MLflow run with params, the per-chunk metrics in batches, tags and artifacts; returns its
    id. `logged`: the analysis chunks whose metrics and result rows go to MLflow (a run's: those it
    computed; None: all, as `driftline report` logs them); the HTML report, alerts and ranking cover
    every result given. Any failure of the tracking server becomes a ReportingError that says how to
    re-log."""
    from mlflow.entities import RunTag
    from mlflow.tracking import MlflowClient

    # MLflow prints "View run ... at: <tracking URI>" itself, credentials included: the summary prints a
    # link without them instead (run_link)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for name, value in HTTP_LIMITS.items():  # a failing server costs seconds, not MLflow's minutes of retries
        os.environ.setdefault(name, value)
    mlflow_run, started = None, time.monotonic()
    log.info("MLflow: logging %s chunks, the report and the incidents to %s", "all" if logged is None else len(logged),
             redact(config.mlflow.tracking_uri))
    try:
        probe(config.mlflow.tracking_uri)
        mlflow_run = start_run(config, run_name, tags)
        client = MlflowClient(config.mlflow.tracking_uri)
        new = results if logged is None else [r for r in results if r.period != ANALYSIS or r.chunk.index in logged]
        metrics = run_metrics(results, logged)
        for i in range(0, len(metrics), BATCH):
            client.log_batch(mlflow_run, metrics=metrics[i:i + BATCH])
            failpoint(MLFLOW_LOGGING)
        # the run's description in the MLflow UI: the incident summary (the same lines as the webhook)
        note = alerts.get("text", "") if alerts else ""
        client.log_batch(mlflow_run, tags=[RunTag(k, v) for k, v in tags.items()] +
                         ([RunTag(DESCRIPTION, note.replace("\n", "\n\n"))] if note else []))
        _link_model(client, config, mlflow_run)
        client.log_inputs(mlflow_run, datasets=_inputs(config, tags))
        _log_artifacts(client, mlflow_run, config, results, new, alerts, tags.get("driftline.run_id", mlflow_run),
                       distributions)
        client.set_terminated(mlflow_run, "FINISHED")
        log.info("MLflow: run %s with %d metric values and the report logged to %s in %.1fs", mlflow_run,
                 len(metrics), config.mlflow.tracking_uri, time.monotonic() - started)
        return mlflow_run
    except Exception as exc:  # the tracking server's failures come as many exception types
        if mlflow_run:
            try:
                MlflowClient(config.mlflow.tracking_uri).set_terminated(mlflow_run, "FAILED")
            except Exception:  # noqa: BLE001 - the server is already failing; the message below says so
                log.debug("could not mark MLflow run %s failed", mlflow_run)
        raise ReportingError(redact(
            f"the results are stored in the Delta tables, but logging them to MLflow at "
            f"{config.mlflow.tracking_uri} failed ({type(exc).__name__}: {str(exc)[:300]}); once the tracking "
            f"server is back, re-log them with: driftline report --config <this config>")) from exc


# MLflow's HTTP client retries a failing server 7 times with exponential backoff (minutes in all) and waits
# 120 s for an answer; a monitoring job should fail in seconds and leave the re-logging to `driftline report`
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
PROBE_SECONDS = 5.0


def probe(uri: str) -> None:
    """Raise ConnectionError at once when an http(s) tracking server does not answer at all (refused,
    unreachable or silent for PROBE_SECONDS); any HTTP answer, an error status included, means it is up."""
    import urllib.error
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    bare = parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1], path=parts.path.rstrip("/") + "/health",
                          query="", fragment="")
    try:
        with urllib.request.urlopen(urllib.parse.urlunsplit(bare), timeout=PROBE_SECONDS):
            return
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as exc:
        raise ConnectionError(f"no answer from the tracking server within {PROBE_SECONDS:.0f}s "
                              f"({getattr(exc, 'reason', exc)})") from None


def _inputs(config: MonitorConfig, tags: dict[str, str]):
    """The source and label tables as MLflow dataset inputs, at the Delta versions the run read (no read
    of their rows: the digest is the table and its version)."""
    import hashlib

    from mlflow.entities import Dataset, DatasetInput, InputTag

    tables = [("predictions", config.source.table, tags.get("driftline.source_version"))]
    if config.labels:
        tables.append(("labels", config.labels.table, tags.get("driftline.labels_version")))
    out = []
    for context, raw, version in tables:
        table = redact(raw)  # a path may carry credentials
        source = json.dumps({"table": table, "version": version})
        digest = hashlib.sha256(source.encode()).hexdigest()[:8]
        name = f"{Path(table).name if '/' in table else table}@v{version or '?'}"
        out.append(DatasetInput(Dataset(name, digest, "delta", source),
                                [InputTag("mlflow.data.context", context)]))
    return out


def run_link(config: MonitorConfig, run_id: str) -> str | None:
    """The run's page on an http(s) tracking server, in the classic (model training) view, without the
    URI's credentials; None elsewhere."""
    from urllib.parse import urlsplit, urlunsplit

    from mlflow.tracking import MlflowClient

    uri = config.mlflow.tracking_uri
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        experiment = MlflowClient(uri).get_run(run_id).info.experiment_id
    except Exception:  # noqa: BLE001 - a link is a courtesy: the run id is printed anyway
        return None
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    base = urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    return f"{base}/#/experiments/{experiment}/runs/{run_id}?workflowType={CLASSIC_VIEW}"


def _link_model(client, config: MonitorConfig, mlflow_run: str) -> None:
    """Tag the run with the monitored model and, when the version is in the registry, tag the version
    with the run (`driftline.monitor.<monitor>` = run id) and the run with its logged model id."""
    name, version = config.mlflow.model_name, config.mlflow.model_version
    if not name:
        return
    client.set_tag(mlflow_run, "driftline.model_name", name)
    if not version:
        return
    client.set_tag(mlflow_run, "driftline.model_version", version)
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_model_version(name, version)
    except MlflowException as exc:
        log.warning("model %s version %s is not in the registry at %s (%s); the run is tagged with the name and "
                    "version only", name, version, config.mlflow.tracking_uri, exc.error_code)
        return
    client.set_model_version_tag(name, version, f"driftline.monitor.{config.monitor}", mlflow_run)
    model_id = getattr(registered, "model_id", None)
    if model_id:
        client.set_tag(mlflow_run, "driftline.logged_model_id", model_id)


def _log_artifacts(client, mlflow_run: str, config: MonitorConfig, results: list[MetricResult],
                   new: list[MetricResult], alerts: dict, run_label: str, distributions=()) -> None:
    import pandas as pd

    from monitoring.ranking import rank_drift
    from monitoring.reporting.html_report import write_report

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "results").mkdir()
        frame = pd.DataFrame([{**{k: v for k, v in dataclasses.asdict(r).items() if k != "chunk"},
                               "chunk_index": r.chunk.index, "chunk_key": r.chunk.key,
                               "chunk_start": r.chunk.start, "chunk_end": r.chunk.end} for r in new])
        frame.to_parquet(root / "results" / "metrics.parquet", index=False)
        frame.to_csv(root / "results" / "metrics.csv", index=False)
        (root / "alerts.json").write_text(json.dumps(alerts, indent=2, default=str) + "\n")
        ranking = [dataclasses.asdict(c) for c in rank_drift(results, config)]
        (root / "ranking.json").write_text(json.dumps(ranking, indent=2) + "\n")
        resolved = json.loads(json.dumps(dataclasses.asdict(config), default=str))
        (root / "config.json").write_text(json.dumps(redact_tree(resolved), indent=2) + "\n")
        write_report(config, results, run_label, root, distributions)
        client.log_artifacts(mlflow_run, str(root))
