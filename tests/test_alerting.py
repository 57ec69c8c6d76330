"""Alert delivery and MLflow logging through the CLI, against real components: `--fail-on-alert` exit
codes, the webhook received by an HTTP server on 127.0.0.1, and a real `mlflow server` that is down
during the run (Delta results intact, exit code 4 with the re-log command) and up for `driftline
report`, whose metric histories, artifacts and model-version link are checked through the MLflow REST
API against the metrics table (values exact, step = chunk index, timestamp = chunk end in ms). The
demo monitor against a real server and the browser check of its UI are in tests/test_demo.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from monitoring.cli import EXIT_REPORTING, main
from monitoring.stores.metrics import read_metrics

from .helpers import daily_ts, webhook_receiver, write_delta
from .mlflow_server import free_port, metric_history, mlflow_server, rest_get, rest_runs

DAYS, PER_DAY = 6, 3000


@pytest.fixture(scope="module")
def tables(spark, tmp_path_factory):
    """Daily chunks; `x` shifts by 3 sd on the last day (a drift alert in the latest chunk only)."""
    root = tmp_path_factory.mktemp("alerting")
    rng = np.random.default_rng(3)
    n = DAYS * PER_DAY
    day = np.repeat(np.arange(DAYS), PER_DAY)
    x = rng.normal(np.where(day == DAYS - 1, 3.0, 0.0), 1.0, n)
    score = 1 / (1 + np.exp(-rng.normal(0, 1, n)))
    frame = pd.DataFrame({"id": np.arange(n), "ts": daily_ts(rng, day), "x": x,
                          "score": score})
    root_table = root, write_delta(spark, frame, str(root / "preds"))
    assert main(["fit", "--config", _config(*root_table, "", enabled=False)]) == 0
    return root_table


def _config(root: Path, table: str, tracking_uri: str, enabled: bool = True) -> str:
    """The same monitor (and stored reference) for every test; only the MLflow settings differ."""
    name = "alerting"
    data = {"monitor": name, "problem_type": "binary",
            "source": {"table": table, "id_column": "id", "timestamp_column": "ts"},
            "features": [{"name": "x", "kind": "continuous"}], "outputs": {"score": "score"},
            "chunking": {"period": "1d"}, "reference": {"start": "2025-01-01", "end": "2025-01-04"},
            "output": {"path": str(root / f"out_{name}")},
            "drift": {"continuous_methods": ["kolmogorov_smirnov", "jensen_shannon"],
                      "thresholds": [  # no chance alerts
                          {"metric": "kolmogorov_smirnov", "type": "constant", "upper": 0.2},
                          {"metric": "jensen_shannon", "type": "constant", "upper": 0.2},
                          {"metric": "kolmogorov_smirnov_pvalue", "type": "pvalue", "alpha": 1e-6}]},
            "mlflow": {"enabled": enabled, "tracking_uri": tracking_uri or f"sqlite:///{root / 'unused.db'}",
                       "experiment": f"driftline/{name}", "model_name": "credit_model", "model_version": 1}}
    path = root / f"{name}-{'mlflow' if enabled else 'plain'}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_fail_on_alert_exit_codes_and_webhook(spark, tables, monkeypatch, capsys):
    root, table = tables
    config = _config(root, table, "", enabled=False)
    with webhook_receiver(monkeypatch) as received:
        assert main(["run", "--config", config, "--fail-on-alert"]) == 3
        assert "exit code 3 (--fail-on-alert)" in capsys.readouterr().err
        # no labels: no performance alerts, so failing on performance only passes
        assert main(["run", "--config", config, "--fail-on-alert", "performance"]) == 0
        # the drift of one column on all rows is a medium incident: `high` passes, `medium` fails
        assert main(["run", "--config", config, "--fail-on-alert", "high"]) == 0
        assert main(["run", "--config", config, "--fail-on-alert", "drift,medium"]) == 3
        assert main(["run", "--config", config, "--fail-on-alert", "drift,nonsense"]) == 2
        assert main(["run", "--config", config, "--fail-on-alert", "high,low"]) == 2
    assert len(received) == 4  # one POST per run with incidents (not the refused ones)
    hook = received[0]
    assert hook["type"] == "application/json"
    alerts = hook["json"]["alerts"]
    assert alerts and {a["column"] for a in alerts} == {"x"} and {a["chunk"] for a in alerts} == {"2025-01-06"}, \
        [(a["column"], a["metric"], a["comparison"], a["value"], a["upper_threshold"]) for a in alerts]
    assert {a["metric"] for a in alerts} == {"kolmogorov_smirnov", "jensen_shannon", "kolmogorov_smirnov_pvalue"}
    # one incident, x, from the shifted day, headed by the drift metric furthest past its threshold
    (incident,) = hook["json"]["incidents"]
    ks = next(a for a in alerts if a["metric"] == "kolmogorov_smirnov")
    js = next(a for a in alerts if a["metric"] == "jensen_shannon")
    head = max((ks, js), key=lambda a: a["value"] / a["upper_threshold"])
    assert (incident["subject"], incident["start"], incident["severity"]) == ("x", "2025-01-06", "medium")
    assert (incident["metric"], incident["value"], incident["threshold"]) == \
        (head["metric"], head["value"], head["upper_threshold"])
    assert incident["beyond"] == pytest.approx(head["value"] / head["upper_threshold"] - 1, rel=1e-12)
    text = hook["json"]["text"].splitlines()
    assert text[0].startswith("Driftline monitor 'alerting': 1 open incidents (1 medium)") and len(text) == 2
    assert text[1].startswith("• [medium] x: ") and incident["headline_text"] in text[1] and \
        "since 2025-01-06 (1/1 chunks)" in text[1]


def test_mlflow_down_then_report_relogs_to_a_real_server(spark, tables, monkeypatch, capsys, tmp_path):
    root, table = tables
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = _config(root, table, base)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    assert main(["run", "--config", config]) == EXIT_REPORTING  # nothing listens on the port yet
    err = capsys.readouterr().err
    assert "stored in the Delta tables" in err and "driftline report --config" in err
    stored = read_metrics(spark, str(root / "out_alerting" / "metrics"), "alerting")
    assert len(stored.results) > 0 and len(stored.run_ids) == 1

    with mlflow_server(port, tmp_path) as base:
        from mlflow.tracking import MlflowClient

        registry = MlflowClient(base)
        registry.create_registered_model("credit_model")
        registry.create_model_version("credit_model", source="s3://models/credit_model/1")  # never read
        assert main(["report", "--config", config]) == 0
        _, runs = rest_runs(base, "driftline/alerting")
        assert len(runs) == 1
        run = runs[0]
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert tags["driftline.relogged"] == "true" and tags["driftline.run_id"] == stored.run_ids[0]
        run_id = run["info"]["run_id"]
        assert tags["driftline.model_name"] == "credit_model" and tags["driftline.model_version"] == "1"
        assert registry.get_model_version("credit_model", "1").tags["driftline.monitor.alerting"] == run_id
        first = min(r.chunk.index for r in stored.results if r.period == "analysis")
        want = sorted((r.chunk.index - first, int(r.chunk.end.timestamp() * 1000), r.value) for r in stored.results
                      if (r.period, r.family, r.metric, r.column, r.comparison, r.slice_key) ==
                      ("analysis", "drift", "kolmogorov_smirnov", "x", "BASELINE", ""))
        assert metric_history(base, run_id, "drift/x.kolmogorov_smirnov") == want
        assert len(want) == DAYS - 3
        files = {f["path"] for f in rest_get(base, "artifacts/list", run_id=run_id)["files"]}
        assert {"alerts.json", "config.json", "results", "report.html", "charts"} <= files
        results = {f["path"] for f in rest_get(base, "artifacts/list", run_id=run_id, path="results")["files"]}
        assert results == {"results/metrics.parquet", "results/metrics.csv"}
        # a tracking URI with credentials: neither MLflow's own "View run" lines nor the summary print them;
        # the summary links the run without them
        secret = "pa55-" + run_id[:8]
        capsys.readouterr()
        assert main(["run", "--config", _config(root, table, f"http://driftline:{secret}@127.0.0.1:{port}")]) == 0
        printed = capsys.readouterr()
        assert secret not in printed.out + printed.err
        assert f"open it: {base}/#/experiments/" in printed.out, printed.out[-2000:]
