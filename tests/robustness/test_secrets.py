"""A planted secret never leaves the process: not in the log, not on the console, not in the MLflow run
(params, tags, metrics' names, artifacts), whatever path it came in by (a token in the environment, the
webhook URL, a storage key in the config's `spark:` section, a password in the tracking URI's form).

The same run checks that output stays under its configured root: a feature is named with a `../` path
traversal (a monitor name cannot hold one: the config only takes letters, digits, `_`, `-` and `.`), and
every file the run writes is under `output.path`, the MLflow store or the artifacts downloaded by the
test."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from monitoring.cli import main
from monitoring.config import parse_config
from monitoring.errors import ConfigError
from monitoring.redact import MASK, redact

from ..helpers import write_delta
from ..mlflow_server import free_port

SECRET = f"s3cr3t-{uuid.uuid4().hex}"
TRAVERSAL = "../../escape/x"


def _frame(days: int = 5, per_day: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(9)
    day = np.repeat(np.arange(days), per_day)
    n = len(day)
    micros = ((1735689600 + day * 86400 + rng.random(n) * 86000) * 1e6).astype("int64")
    x = rng.normal(np.where(day == days - 1, 3.0, 0.0), 1.0, n)  # the last day alerts: the webhook is called
    return pd.DataFrame({"id": np.arange(n), "ts": pd.to_datetime(micros, unit="us", utc=True), TRAVERSAL: x,
                         "score": rng.random(n)})


def test_planted_secret_appears_nowhere(spark, tmp_path, monkeypatch, capsys, caplog):
    import mlflow

    table = write_delta(spark, _frame(), str(tmp_path / "preds"))
    monkeypatch.setenv("DATABRICKS_TOKEN", SECRET)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
    # nothing listens there: the delivery fails and is logged
    monkeypatch.setenv("DRIFTLINE_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/hooks/{SECRET}")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = {"monitor": "secrets", "problem_type": "binary",
              "source": {"table": table, "id_column": "id", "timestamp_column": "ts"},
              "features": [{"name": TRAVERSAL, "kind": "continuous"}], "outputs": {"score": "score"},
              "chunking": {"period": "1d"}, "reference": {"start": "2025-01-01", "end": "2025-01-04"},
              "output": {"path": str(tmp_path / "out")},
              "spark": {"spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net": SECRET},
              "mlflow": {"tracking_uri": uri, "experiment": "driftline/secrets"}}
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    assert main(["run", "--fit", "--config", str(path)]) == 0
    out = capsys.readouterr()
    logged = caplog.text
    assert "webhook" in logged and "failed" in logged  # the delivery was attempted and its failure logged
    for where, text in (("log", logged), ("stdout", out.out), ("stderr", out.err)):
        assert SECRET not in text, where

    client = mlflow.tracking.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("driftline/secrets").experiment_id])
    assert SECRET not in repr(run.data.params) + repr(run.data.tags) + repr(sorted(run.data.metrics))
    artifacts = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / "art"),
                                                         tracking_uri=uri))
    files = [p for p in artifacts.rglob("*") if p.is_file()]
    assert any(p.name == "config.json" for p in files)
    for p in files:
        assert SECRET.encode() not in p.read_bytes(), p
    # confinement: every file under the output root, the MLflow store (mlflow.db, ./mlruns) or the download
    allowed = {"out", "mlflow.db", "mlruns", "art", "preds", "monitor.yaml"}
    assert {p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*")} <= allowed
    assert not list(tmp_path.parent.glob("escape*")) and not list(tmp_path.parent.parent.glob("escape*"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics", "profiles", "reference"]
    assert not [p for p in (tmp_path / "out").rglob("*") if "escape" in str(p)]
    config_json = (artifacts / "config.json").read_text()
    assert f'"spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net": "{MASK}"' in config_json


def test_monitor_name_cannot_hold_a_path():
    config = {"monitor": "../../escape", "problem_type": "binary",
              "source": {"table": "t", "id_column": "id", "timestamp_column": "ts"},
              "features": [{"name": "x", "kind": "continuous"}], "outputs": {"score": "score"},
              "chunking": {"period": "1d"}, "reference": {"start": "2025-01-01", "end": "2025-01-04"},
              "output": {"path": "out"}}
    with pytest.raises(ConfigError, match="'monitor'.*may only hold letters, digits"):
        parse_config(config)


def test_redact_masks_urls_and_secret_settings(monkeypatch):
    monkeypatch.setenv("SOME_SERVICE_API_KEY", SECRET)
    assert redact(f"sc://workspace:443/;token={SECRET};x-databricks-cluster-id=1") == \
        f"sc://workspace:443/;token={MASK};x-databricks-cluster-id=1"
    assert redact("https://bob:hunter22@mlflow.example.com/api") == f"https://{MASK}@mlflow.example.com/api"
    assert redact("https://acct.blob.core.windows.net/c/f?sp=r&sig=abc%2Fdef&se=2026") == \
        f"https://acct.blob.core.windows.net/c/f?sp=r&sig={MASK}&se=2026"
    assert redact(f"call failed with {SECRET} in it") == f"call failed with {MASK} in it"
    # not credentials: kept
    assert redact("abfss://container@acct.dfs.core.windows.net/path") == \
        "abfss://container@acct.dfs.core.windows.net/path"
