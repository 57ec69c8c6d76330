"""Drift that matters: an injected drift in an important feature ranks above a larger drift in an
unimportant one (importances from the config), and the run summary leads with that ranking.

Days 0-3 are the reference, 2000 rows a day; from day 5 `important` (importance 0.9) shifts by 0.4 sigma and
`minor` (importance 0.02) by 1.5 sigma; `steady` (importance 0.08) never moves.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from monitoring.config import parse_config
from monitoring.pipeline import fit, run
from monitoring.ranking import HEADLINE, rank_drift
from monitoring.reporting.summary import print_summary

from .helpers import write_delta
from .mlflow_server import free_port, mlflow_server

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
DAYS, PER_DAY, SHIFT_DAY = 7, 2000, 5
IMPORTANCE = {"important": 0.9, "minor": 0.02, "steady": 0.08}


@pytest.fixture(scope="module")
def ranked(spark, tmp_path_factory):
    rng = np.random.default_rng(21)
    day = np.repeat(np.arange(DAYS), PER_DAY)
    n = len(day)
    micros = ((START.timestamp() + day * 86400 + rng.random(n) * 86000) * 1e6).astype("int64")
    frame = pd.DataFrame({"id": np.arange(n), "ts": pd.to_datetime(micros, unit="us", utc=True),
                          "important": rng.normal(0, 1, n) + np.where(day >= SHIFT_DAY, 0.4, 0.0),
                          "minor": rng.normal(0, 1, n) + np.where(day >= SHIFT_DAY, 1.5, 0.0),
                          "steady": rng.normal(0, 1, n), "score": rng.random(n)})
    root = tmp_path_factory.mktemp("ranking")
    table = write_delta(spark, frame, str(root / "preds"))
    config = parse_config({
        "monitor": "ranking", "problem_type": "binary",
        "source": {"table": table, "id_column": "id", "timestamp_column": "ts"},
        "features": [{"name": c, "kind": "continuous", "importance": v} for c, v in IMPORTANCE.items()],
        "outputs": {"score": "score"}, "chunking": {"period": "1d"},
        "reference": {"start": "2025-01-01", "end": "2025-01-05"}, "multivariate": {"enabled": False},
        "output": {"path": str(root / "out")}, "mlflow": {"enabled": False}})
    fit(spark, config)
    return config, run(spark, config)


def _drift_ratio(result, column: str) -> float:
    """Independently from the metric rows: the newest chunk's largest headline value / upper threshold."""
    rows = [r for r in result.metrics if (r.period, r.family, r.comparison, r.slice_key, r.column) ==
            ("analysis", "drift", "BASELINE", "", column) and r.metric in HEADLINE]
    newest = max(r.chunk.index for r in rows)
    return max(r.value / r.upper_threshold for r in rows if r.chunk.index == newest)


def test_important_feature_ranks_above_a_larger_drift_in_an_unimportant_one(ranked):
    config, result = ranked
    ranking = rank_drift(result.metrics, config)
    by_column = {c.column: c for c in ranking}
    important, minor = by_column["important"], by_column["minor"]
    assert important.alerted and minor.alerted and not by_column["steady"].alerted
    assert minor.drift > 2 * important.drift > 2  # the larger drift is in the unimportant feature
    for c in (important, minor):
        assert c.drift == pytest.approx(_drift_ratio(result, c.column), rel=1e-12)
        assert c.score == pytest.approx(IMPORTANCE[c.column] * c.drift, rel=1e-12)
        assert c.correlation is None  # no labels, no estimate: no performance series to correlate with
    assert [c.column for c in ranking][:2] == ["important", "minor"]
    # without importances the same results rank by drift alone
    plain = replace(config, features=tuple(replace(f, importance=None) for f in config.features))
    assert [c.column for c in rank_drift(result.metrics, plain)][:2] == ["minor", "important"]


def test_summary_leads_with_drift_that_matters(ranked, capsys):
    config, result = ranked
    print_summary(config, result, None)
    out = capsys.readouterr().out
    section = out[out.index("drift that matters"):]
    assert out.index("drift that matters") < out.index("drift vs reference")
    assert section.index("important") < section.index("minor")


def test_importances_from_the_registered_model(ranked, tmp_path, monkeypatch):
    """With no importances in the config, the ranking takes them from the registered model version
    (a real MLflow store): a scikit-learn model that relies on `important` ranks it above the larger
    drift in `minor`; the importances equal the model's own, normalised."""
    import mlflow
    from sklearn.ensemble import GradientBoostingClassifier

    from monitoring.importance import with_model_importances

    config, result = ranked
    rng = np.random.default_rng(3)
    x = pd.DataFrame(rng.normal(0, 1, (2000, 3)), columns=list(IMPORTANCE))
    y = (x["important"] + 0.1 * x["minor"] + 0.5 * rng.normal(0, 1, 2000) > 0).astype(int)
    model = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x, y)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)  # the store's artifacts land under ./mlruns
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run():
        mlflow.sklearn.log_model(model, name="model", registered_model_name="loans",
                                 skops_trusted_types=["sklearn.tree._tree.Tree"])
    plain = replace(config, features=tuple(replace(f, importance=None) for f in config.features),
                    mlflow=replace(config.mlflow, tracking_uri=uri, model_name="loans", model_version="1"))
    enriched = with_model_importances(plain)
    expected = dict(zip(IMPORTANCE, model.feature_importances_ / model.feature_importances_.sum(), strict=True))
    assert {f.name: f.importance for f in enriched.features} == pytest.approx(expected, rel=1e-12)
    assert [c.column for c in rank_drift(result.metrics, enriched)][:2] == ["important", "minor"]
    # an unknown version leaves the config as it was (the ranking falls back to correlation)
    missing = replace(plain, mlflow=replace(plain.mlflow, model_version="7"))
    assert with_model_importances(missing) == missing


def test_mlflow_gets_the_chunks_a_run_computed(ranked, tmp_path, monkeypatch):
    """What a daily run hands a real MLflow tracking server: the metrics and result rows of the chunks it
    computed (`logged`: the newest, as the second of two daily runs), the HTML report of all; `driftline
    report` (logged=None) logs every chunk."""
    config, result = ranked
    monkeypatch.chdir(tmp_path)
    with mlflow_server(free_port(), tmp_path) as uri:
        _check_logged_chunks(replace(config, mlflow=replace(config.mlflow, enabled=True, tracking_uri=uri)), result)


def _check_logged_chunks(logging_config, result) -> None:
    import mlflow

    from monitoring.reporting.mlflow_log import log_run

    uri = logging_config.mlflow.tracking_uri
    drift = [r for r in result.metrics if (r.period, r.family, r.metric, r.comparison, r.slice_key, r.column) ==
             ("analysis", "drift", "kolmogorov_smirnov", "BASELINE", "", "important")]
    chunks = sorted(r.chunk.index for r in drift)
    assert len(chunks) >= 2
    client = mlflow.tracking.MlflowClient(uri)
    for logged in ({chunks[-1]}, None):
        run_id = log_run(logging_config, "chunks", result.metrics, {"driftline.run_id": "t"}, {}, logged=logged)
        first = min(r.chunk.index for r in result.metrics if r.period == "analysis")
        want = sorted((r.chunk.index - first, r.value) for r in drift if logged is None or r.chunk.index in logged)
        metric = "drift/important.kolmogorov_smirnov"
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))
        assert [s for s, _ in history] == [s for s, _ in want]
        assert [v for _, v in history] == pytest.approx([v for _, v in want], rel=1e-12)
        assert sorted(m.step + first for m in client.get_metric_history(run_id, "quality/row_count")) == \
            (sorted(logged) if logged else chunks)
        rows = pd.read_parquet(client.download_artifacts(run_id, "results/metrics.parquet"))
        analysis = rows[rows["period"] == "analysis"]
        assert sorted(set(analysis["chunk_index"])) == (sorted(logged) if logged else chunks)
        assert (rows["period"] == "reference").sum() == sum(r.period == "reference" for r in result.metrics)
        assert "report.html" in {f.path for f in client.list_artifacts(run_id)}
