"""Log a run's profiles to MLflow: one run per job execution, metrics as time series over chunks.

Metric names read well in the UI (`profile.rows`, `quality.missing_rate.<column>`,
`profile.mean.<column>`), with step = chunk index and timestamp = chunk end, logged in batches.
"""

from __future__ import annotations

from monitoring import __version__
from monitoring.config import MonitorConfig
from monitoring.profiling import ChunkProfile
from monitoring.sketches import CONTINUOUS

BATCH = 1000  # MLflow's log_batch limit on metrics per call


def _safe(name: str) -> str:
    """MLflow metric names allow letters, digits, _ - . space : /; anything else becomes '_'."""
    return "".join(ch if ch.isalnum() or ch in "_-. :/" else "_" for ch in name)


def profile_metrics(chunks: list[ChunkProfile]):
    from mlflow.entities import Metric

    out = []
    for cp in chunks:
        step, ts = cp.chunk.index, int(cp.chunk.end.timestamp() * 1000)
        out.append(Metric("profile.rows", float(cp.row_count), ts, step))
        for p in cp.columns.values():
            name = _safe(p.column)
            if p.missing_rate is not None:
                out.append(Metric(f"quality.missing_rate.{name}", p.missing_rate, ts, step))
            if p.kind == CONTINUOUS and p.mean is not None:
                out.append(Metric(f"profile.mean.{name}", p.mean, ts, step))
    return out


def log_run(config: MonitorConfig, run_name: str, chunks: list[ChunkProfile], tags: dict[str, str]) -> str:
    """Create one MLflow run with params, tags and per-chunk metrics; returns the run id."""
    import mlflow
    from mlflow.entities import Param, RunTag
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(config.mlflow.tracking_uri)
    client = MlflowClient(config.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name(config.mlflow.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(config.mlflow.experiment)
    run = client.create_run(experiment_id, run_name=run_name,
                            tags={"driftline.monitor": config.monitor, "driftline.version": __version__, **tags})
    params = {
        "monitor": config.monitor,
        "problem_type": config.problem_type,
        "source.table": config.source.table,
        "chunking": config.chunking.describe(),
        "reference": str(config.reference.table or f"{config.reference.start} .. {config.reference.end}"),
        "features": ",".join(f.name for f in config.features)[:6000],
    }
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])
    metrics = profile_metrics(chunks)
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run.info.run_id, metrics=metrics[i:i + BATCH])
    client.set_terminated(run.info.run_id)
    return run.info.run_id
