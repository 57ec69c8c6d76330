"""The job killed with SIGKILL (monitoring/faults.py) at three stages of `driftline run`, each kill followed
by a rerun, leaves exactly the tables of an uninterrupted run, and never a partial one:

1. during profiling (analysis rows profiled, nothing of them written): no analysis row in any table;
2. between the profile and the metrics writes: every analysis profile written, no metrics table;
3. during MLflow logging: the Delta tables already complete, the MLflow run left RUNNING (a killed client
   cannot end it); the rerun logs a complete, FINISHED run.

The killed jobs run as `driftline run` in their own process group (their own local Spark JVM dies with
them); the last rerun, the clean run (the same config into other tables) and the fits run in this test's
session (a fresh JVM costs a minute on two cores).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from monitoring.cli import main
from monitoring.config import parse_config
from monitoring.faults import BEFORE_METRICS, ENV, MLFLOW_LOGGING, PROFILING
from monitoring.pipeline import fit, run
from monitoring.stores.estimators import ESTIMATOR_KEYS
from monitoring.stores.metrics import METRIC_KEYS
from monitoring.stores.profiles import PROFILE_KEYS, REFERENCE_KEYS
from monitoring.stores.tables import table_exists

from ..helpers import drift_config, write_drift_tables

TABLES = {"profiles": PROFILE_KEYS, "reference": REFERENCE_KEYS, "metrics": METRIC_KEYS,
          "estimators": ESTIMATOR_KEYS}
WHEN_WRITTEN = ("run_id", "computed_at", "fitted_at")  # differ between any two runs by design
# the killed jobs start their own local JVM: small-data settings as in conftest, and only the quick JIT
SPARK = {"spark.master": "local[2]", "spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false",
         "spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN",
         "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1"}


def _same(a, b) -> bool:
    """Equal, floats within 1e-9 relative (Spark may add partial sums in another order), maps by key."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _table(spark, out: Path, name: str) -> dict[tuple, dict]:
    path = str(out / name)
    if not table_exists(spark, path):
        return {}
    rows = [r.asDict(recursive=True) for r in spark.read.format("delta").load(path).collect()]
    keyed = {tuple(r[k] for k in TABLES[name]): {c: v for c, v in r.items() if c not in WHEN_WRITTEN} for r in rows}
    assert len(keyed) == len(rows), f"{name}: duplicate keys"
    return keyed


def _assert_tables_equal(spark, out: Path, clean: Path) -> None:
    for name in TABLES:
        got, want = _table(spark, out, name), _table(spark, clean, name)
        assert got.keys() == want.keys(), f"{name}: {sorted(got.keys() ^ want.keys())[:5]}"
        for key, row in want.items():
            bad = [c for c in row if not _same(got[key][c], row[c])]
            assert not bad, f"{name} {key}: {bad}"


def _driftline_run(config: Path, kill_at: str | None, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV} | {"PYSPARK_PYTHON": sys.executable}
    if kill_at:
        env[ENV] = kill_at
    return subprocess.run([str(Path(sys.executable).parent / "driftline"), "run", "--config", str(config)],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=600, start_new_session=True)


def test_killed_at_three_stages_then_rerun_equals_a_clean_run(spark, tmp_path):
    import mlflow

    preds, labels = write_drift_tables(spark, tmp_path, days=6, per_day=400)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw = drift_config("faults", preds, labels, {"path": str(tmp_path / "out")}) | {
        "mlflow": {"tracking_uri": uri, "experiment": "driftline/faults"}, "spark": SPARK,
        "estimation": {"enabled": False}}  # what is tested is how results are written, not what they are
    path = tmp_path / "faults.yaml"
    path.write_text(yaml.safe_dump(raw))
    out, clean = tmp_path / "out", tmp_path / "clean"
    fit(spark, parse_config(raw))
    shutil.copytree(out, clean)  # the same fitted reference (Delta tables hold relative file paths)
    run(spark, parse_config(raw | {"output": {"path": str(clean)}, "mlflow": {"enabled": False}}))
    fitted = _table(spark, out, "profiles")

    done = _driftline_run(path, PROFILING, tmp_path)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    assert "stage 2/3 profiling" in done.stderr and "stage 3/3" not in done.stderr, done.stderr[-3000:]
    assert _table(spark, out, "profiles") == fitted  # no analysis profile: the reference rows only
    assert not _table(spark, out, "metrics")

    done = _driftline_run(path, BEFORE_METRICS, tmp_path)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    profiles = _table(spark, out, "profiles")
    assert {k for k in profiles if k[1] == "analysis"} == {k for k in _table(spark, clean, "profiles")
                                                           if k[1] == "analysis"}
    assert not _table(spark, out, "metrics")

    done = _driftline_run(path, MLFLOW_LOGGING, tmp_path)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    assert "stage 3/3 compared" in done.stderr, done.stderr[-3000:]
    # a quiet console by default (a fresh process: its JVM read Driftline's log4j settings): no Spark
    # warnings or log4j banner, a line per stage
    assert not re.search(r"\bWARN\b|Using Spark's default log4j profile", done.stderr), done.stderr[-3000:]
    stages = ["stage 1/3", "stage 2/3", "stage 3/3", "MLflow: logging"]
    assert sorted(stages, key=done.stderr.index) == stages, done.stderr[-3000:]
    _assert_tables_equal(spark, out, clean)  # the Delta writes came before MLflow

    assert main(["run", "--config", str(path)]) == 0  # the last rerun in this session: no JVM to start
    _assert_tables_equal(spark, out, clean)
    client = mlflow.tracking.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("driftline/faults").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "RUNNING"]
    killed, finished = sorted(runs, key=lambda r: r.info.status != "RUNNING")
    # the rerun with nothing new re-logs the chunks the killed run had computed, from the metrics table:
    # everything the killed run got to log
    assert killed.data.metrics and set(killed.data.metrics) <= set(finished.data.metrics)
    assert any(k.startswith("drift/") for k in finished.data.metrics)
