"""Log a run to MLflow: one MLflow run per job execution, metrics as time series over chunks.

Metric names read well in the UI: `profile.rows`, `quality.missing_rate.<column>`,
`profile.mean.<column>`, `drift.<metric>.<column>` (BASELINE, whole table), `alerts.<column>` (number
of alerting drift metrics), `alerts.total`, `performance.<metric>` (realized, when labels exist) and
`estimated.<metric>` (CBPE / DLE, with or without labels), `concept.<metric>` (realized - estimated),
`multivariate.reconstruction_error` and the
table-level `quality.<metric>` (row count, failed-prediction rates);
step = chunk index, timestamp = chunk end. The run is logged after the Delta tables are written (they
are the source of truth); its tag `driftline.run_id` is the `run_id` of the metrics rows the run
wrote. A run logs the chunks it computed (metrics and result rows; an incremental day: that day), so
logging costs what the new data costs; the full history stays in the Delta tables, and `driftline
report` logs all of it. Artifacts: the run's results (`results/metrics.parquet` and `.csv`), `alerts.json`,
`ranking.json` (drift that matters, monitoring/ranking.py), the
resolved config (`config.json`), the HTML report (`report.html`) and its PNG charts (`charts/`).
When the tracking server fails, `log_run` raises ReportingError and `driftline report` re-logs the
stored results later.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from collections import Counter
from pathlib import Path

from monitoring import __version__
from monitoring.config import MonitorConfig
from monitoring.drift.compare import ANALYSIS, BASELINE, DRIFT, MetricResult
from monitoring.errors import ReportingError
from monitoring.faults import MLFLOW_LOGGING, failpoint
from monitoring.profiling import ChunkProfile
from monitoring.redact import redact_tree
from monitoring.sketches import CONTINUOUS
from monitoring.slices import WHOLE

BATCH = 1000  # MLflow's log_batch limit on metrics per call
log = logging.getLogger(__name__)


def _safe(name: str) -> str:
    """A column name as part of an MLflow metric name: letters, digits, _ - . space : are kept, anything
    else becomes '_', '/' too (MLflow refuses a name that a file path would resolve elsewhere, e.g. one
    holding `../`)."""
    return "".join(ch if ch.isalnum() or ch in "_-. :" else "_" for ch in name)


def _ms(chunk) -> int:
    return int(chunk.end.timestamp() * 1000)


def profile_metrics(chunks: list[ChunkProfile]):
    from mlflow.entities import Metric

    out = []
    for cp in chunks:
        if (cp.slice_key, cp.slice_value) != WHOLE:
            continue
        step, ts = cp.chunk.index, _ms(cp.chunk)
        out.append(Metric("profile.rows", float(cp.row_count), ts, step))
        for p in cp.columns.values():  # none in the chunk shells of a rerun with nothing new
            if p.kind == CONTINUOUS and p.mean is not None:
                out.append(Metric(f"profile.mean.{_safe(p.column)}", p.mean, ts, step))
    return out


def performance_metrics(results: list[MetricResult]):
    """`performance.<metric>` (realized), `estimated.<metric>`, `concept.<metric>` (the realized-estimated gap;
    per feature `concept.relation_change.<column>`), `multivariate.<metric>` and `quality.<metric>` (the
    table's row count and failed predictions, a column's missing rate as `quality.missing_rate.<column>`)
    per analysis chunk (whole table), defined values only."""
    from mlflow.entities import Metric

    prefix = {"performance": "performance", "estimated_performance": "estimated", "multivariate": "multivariate",
              "data_quality": "quality", "concept_drift": "concept"}
    def name(r: MetricResult) -> str:
        return f"{prefix[r.family]}.{r.metric}" + ("" if r.column == ":table" else f".{_safe(r.column)}")

    return [Metric(name(r), float(r.value), _ms(r.chunk), r.chunk.index) for r in results
            if r.family in prefix and (r.period, r.slice_key, r.slice_value) == (ANALYSIS, *WHOLE)
            and (r.comparison == "NONE" or r.family == "concept_drift") and r.value is not None]


def drift_metrics(results: list[MetricResult]):
    from mlflow.entities import Metric

    out, alerts, totals, chunks = [], Counter(), Counter(), {}
    for r in results:
        if (r.period, r.family, r.comparison, r.slice_key, r.slice_value) != (ANALYSIS, DRIFT, BASELINE, *WHOLE):
            continue
        chunks[r.chunk.index] = r.chunk
        if r.value is not None:
            out.append(Metric(f"drift.{r.metric}.{_safe(r.column)}", float(r.value), _ms(r.chunk), r.chunk.index))
        alerts[(r.column, r.chunk.index)] += int(r.alert)
        totals[r.chunk.index] += int(r.alert)
    out += [Metric(f"alerts.{_safe(c)}", float(n), _ms(chunks[i]), i) for (c, i), n in alerts.items()]
    out += [Metric("alerts.total", float(n), _ms(chunks[i]), i) for i, n in totals.items()]
    return out


def start_run(config: MonitorConfig, run_name: str, tags: dict[str, str]) -> str:
    """Create the MLflow run (experiment created on first use) with params and tags; returns its id."""
    import mlflow
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(config.mlflow.tracking_uri)
    client = MlflowClient(config.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name(config.mlflow.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(config.mlflow.experiment)
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


def log_run(config: MonitorConfig, run_name: str, chunks: list[ChunkProfile], results: list[MetricResult],
            tags: dict[str, str], alerts: dict, logged: set[int] | None = None) -> str:
    """One MLflow run with params, the per-chunk metrics in batches, tags and artifacts; returns its
    id. `logged`: the analysis chunks whose metrics and result rows go to MLflow (a run's: those it
    computed; None: all, as `driftline report` logs them); the HTML report, alerts and ranking cover
    every result given. Any failure of the tracking server becomes a ReportingError that says how to
    re-log."""
    from mlflow.entities import RunTag
    from mlflow.tracking import MlflowClient

    mlflow_run, started = None, time.monotonic()
    try:
        mlflow_run = start_run(config, run_name, tags)
        client = MlflowClient(config.mlflow.tracking_uri)
        if logged is not None:
            chunks = [c for c in chunks if c.chunk.index in logged]
        new = results if logged is None else [r for r in results if r.period != ANALYSIS or r.chunk.index in logged]
        metrics = profile_metrics(chunks) + drift_metrics(new) + performance_metrics(new)
        for i in range(0, len(metrics), BATCH):
            client.log_batch(mlflow_run, metrics=metrics[i:i + BATCH])
            failpoint(MLFLOW_LOGGING)
        client.log_batch(mlflow_run, tags=[RunTag(k, v) for k, v in tags.items()])
        _link_model(client, config, mlflow_run)
        _log_artifacts(client, mlflow_run, config, results, new, alerts, tags.get("driftline.run_id", mlflow_run))
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
        raise ReportingError(
            f"the results are stored in the Delta tables, but logging them to MLflow at "
            f"{config.mlflow.tracking_uri} failed ({type(exc).__name__}: {str(exc)[:300]}); once the tracking "
            f"server is back, re-log them with: driftline report --config <this config>") from exc


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
                   new: list[MetricResult], alerts: dict, run_label: str) -> None:
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
        write_report(config, results, run_label, root)
        client.log_artifacts(mlflow_run, str(root))
