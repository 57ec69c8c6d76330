"""`spark-submit --master spark://...` on a real Spark standalone cluster: a master and two workers
(1 core, 1 GB each) started from the installed pyspark on 127.0.0.1, the wheel built from this checkout
shipped with --py-files (as a .zip copy: pyspark puts only .zip/.egg/.jar py-files on the executors'
sys.path, a .whl reaches the driver only), the cached Delta jars with --jars, and `jobs/monitor.py --fit`
(fit and run in one application) submitted in client mode (what `spark-submit` on an edge node does).

The monitor is multiclass, so CBPE's calibration runs as a pandas UDF on the executors, and the
executors' Python cannot import the checkout (a sitecustomize hides the editable install): they find
`monitoring` only in what spark-submit shipped. The event logs must show tasks (the UDF among them) on
executors of both workers, none in the driver, and the master must list the application FINISHED. The
metrics equal the same monitor run in this (classic, local) session on the same tables
(tests/helpers.assert_same_metrics: exact values within 1e-9, KS within the KLL bound)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyspark
import pytest
import yaml

from monitoring.config import parse_config
from monitoring.pipeline import fit, run
from monitoring.session import cached_delta_jars
from monitoring.stores.metrics import read_metrics

from .helpers import assert_same_metrics, build_wheel, drift_config, write_drift_tables
from .mlflow_server import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAYS, PER_DAY, K = 5, 1000, 2000
WORKERS = 2
JVM_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
SPARK_ENV = {"SPARK_HOME": str(Path(pyspark.__file__).parent), "SPARK_LOCAL_IP": "127.0.0.1"}
# Python for the executors: the venv's (pyspark, numpy, pandas, pyarrow...) without the editable install of
# this checkout, like a cluster whose nodes have the dependencies but not Driftline.
HIDE_CHECKOUT = f"""import sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path[:] = [p for p in sys.path if p.rstrip("/") != {str(ROOT)!r}]
"""


def _die_with_parent() -> None:
    """The JVMs get SIGTERM when the test process dies without its teardown (killed by a timeout)."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _tail(*paths: Path, chars: int = 3000) -> str:
    return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-chars:]}" for p in paths if p.exists())


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.port, self.ui = free_port(), free_port()
        self.url, self.web = f"spark://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.ui}"
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.worker_uis: list[str] = []

    def _start(self, name: str, args: list[str]) -> None:
        log = self.root / f"{name}.log"
        env = {**os.environ, **SPARK_ENV, "SPARK_LOG_DIR": str(self.root / "logs"),
               "SPARK_WORKER_DIR": str(self.root / f"{name}-work"), "SPARK_DAEMON_JAVA_OPTS": JVM_OPTS}
        with open(log, "w") as out:  # spark-class execs java: the pid is the JVM's
            self.procs.append(subprocess.Popen([str(BIN / "spark-class"), *args], stdout=out, stderr=subprocess.STDOUT,
                                               env=env, start_new_session=True, preexec_fn=_die_with_parent))
        self.logs.append(log)

    def start(self, deadline_s: float = 120) -> None:
        self._start("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(self.port), "--webui-port", str(self.ui)])
        for i in range(WORKERS):
            ui = free_port()
            self.worker_uis.append(f"http://127.0.0.1:{ui}")
            self._start(f"worker{i}", ["org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                                       "--cores", "1", "--memory", "1g", "--webui-port", str(ui),
                                       "--work-dir", str(self.root / f"worker{i}-work")])
        deadline = time.monotonic() + deadline_s
        alive = 0
        while alive < WORKERS:
            dead = [p.args[1] for p in self.procs if p.poll() is not None]
            assert not dead and time.monotonic() < deadline, (
                f"standalone cluster not up ({alive}/{WORKERS} workers alive after {deadline_s:.0f}s, "
                f"exited: {dead})\n{self.log_tail()}")
            time.sleep(1)
            try:
                alive = sum(w["state"] == "ALIVE" for w in _get_json(f"{self.web}/json/")["workers"])
            except OSError:
                alive = 0

    def master_state(self) -> dict:
        return _get_json(f"{self.web}/json/")

    def log_tail(self) -> str:
        return _tail(*self.logs)

    def stop(self) -> None:
        for proc in reversed(self.procs):  # workers first, then the master
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            # executors are the workers' children, in the worker's process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    assert shutil.which("java") or os.environ.get("JAVA_HOME"), "the standalone cluster needs Java 17"
    c = Cluster(tmp_path_factory.mktemp("standalone"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    whl = build_wheel(out)
    # a pure-Python wheel is a zip archive with the packages at its root; pyspark only adds .zip, .egg and
    # .jar py-files to the executors' sys.path (pyspark.core.context.SparkContext.PACKAGE_EXTENSIONS)
    return Path(shutil.copy(whl, out / "driftline.zip"))


def _executor_python(root: Path) -> Path:
    """A python for the executors that sees the venv's packages but not this checkout."""
    site = root / "executor-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE_CHECKOUT)
    script = root / "executor-python"
    script.write_text(f'#!/bin/sh\nPYTHONPATH="{site}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"\n')
    script.chmod(0o755)
    check = subprocess.run([str(script), "-c", "import monitoring"], capture_output=True, text=True, cwd=root)
    assert check.returncode != 0, "the executor python still imports the checkout"
    return script


def spark_submit(cluster: Cluster, wheel: Path, job: str, args: list[str], events: Path, python: Path,
                 log: Path) -> subprocess.CompletedProcess:
    jars = cached_delta_jars()
    assert jars, "the Delta jars are not cached; run `make setup` first"
    cmd = [str(BIN / "spark-submit"), "--master", cluster.url, "--deploy-mode", "client", "--name", job,
           "--py-files", str(wheel), "--jars", ",".join(jars),
           "--conf", "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
           "--conf", "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
           "--driver-memory", "1g", "--executor-memory", "512m", "--executor-cores", "1",
           "--total-executor-cores", str(WORKERS),
           # wait for both executors before the first job, so both workers run tasks
           "--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0",
           "--conf", "spark.scheduler.maxRegisteredResourcesWaitingTime=60s",
           "--conf", "spark.sql.shuffle.partitions=2", "--conf", "spark.ui.enabled=false",
           # short-lived JVMs on a small machine: C1 only, serial GC
           "--driver-java-options", JVM_OPTS, "--conf", f"spark.executor.extraJavaOptions={JVM_OPTS}",
           # small tables: Delta's log replay in 2 partitions, not 50 (as monitoring.session's embedded session)
           "--conf", "spark.databricks.delta.snapshotPartitions=2",
           "--conf", "spark.sql.sources.parallelPartitionDiscovery.parallelism=2",
           "--conf", f"spark.pyspark.python={python}", "--conf", f"spark.pyspark.driver.python={sys.executable}",
           "--conf", "spark.eventLog.enabled=true", "--conf", "spark.eventLog.compress=false",
           "--conf", f"spark.eventLog.dir={events}",
           str(ROOT / "jobs" / job), *args]
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "PYSPARK_PYTHON")}
    with open(log, "w") as out:
        return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=600, cwd=log.parent,
                              env={**env, **SPARK_ENV}, preexec_fn=_die_with_parent)


def _event_log(events: Path, app_id: str) -> list[dict]:
    """The application's events (Spark 4 writes rolling logs: eventlog_v2_<app>/events_<n>_<app>)."""
    files = sorted(events.glob(f"eventlog_v2_{app_id}/events_*")) or sorted(events.glob(f"{app_id}*"))
    assert files, f"no event log of {app_id} in {sorted(p.name for p in events.iterdir())}"
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


def test_spark_submit_on_a_standalone_cluster_equals_the_local_session(spark, cluster, wheel, tmp_path):
    preds, labels = write_drift_tables(spark, tmp_path / "tables", DAYS, PER_DAY, "multiclass")
    raw = drift_config("standalone", preds, labels, {"path": str(tmp_path / "out_cluster")}, K, "multiclass")
    path = tmp_path / "standalone.yaml"
    path.write_text(yaml.safe_dump(raw))
    events = tmp_path / "events"
    events.mkdir()
    python = _executor_python(tmp_path)
    before = {a["id"] for a in cluster.master_state()["completedapps"]}
    # one application fits the reference and runs the monitor (`run --fit`)
    log = tmp_path / "monitor.log"
    done = spark_submit(cluster, wheel, "monitor.py", ["--config", str(path), "--fit"], events, python, log)
    assert done.returncode == 0, f"monitor.py failed\n{_tail(log, chars=6000)}\n{cluster.log_tail()}"

    # the application ran on the cluster: FINISHED at the master, tasks on executors of both workers
    state = cluster.master_state()
    apps = [a for a in state["completedapps"] if a["id"] not in before]
    assert len(apps) == 1 and all(a["state"] == "FINISHED" for a in apps), (apps, cluster.log_tail())
    for app in apps:
        log = _event_log(events, app["id"])
        hosts = {e["Executor ID"]: e["Executor Info"]["Host"]
                 for e in log if e["Event"] == "SparkListenerExecutorAdded"}
        task_execs = {e["Task Info"]["Executor ID"] for e in log if e["Event"] == "SparkListenerTaskEnd"}
        failed = [e["Task End Reason"] for e in log
                  if e["Event"] == "SparkListenerTaskEnd" and e["Task End Reason"]["Reason"] != "Success"]
        assert len(hosts) == WORKERS and task_execs == set(hosts) and "driver" not in task_execs, (hosts, task_execs)
        assert not failed, failed[:3]
        start = next(e for e in log if e["Event"] == "SparkListenerEnvironmentUpdate")
        assert start["Spark Properties"]["spark.master"] == cluster.url
    plans = [e.get("physicalPlanDescription", "") for app in apps for e in _event_log(events, app["id"])
             if e["Event"].endswith("SparkListenerSQLExecutionStart")]
    assert any("ArrowEvalPython" in p for p in plans), "the run used no pandas UDF: nothing needed the shipped code"
    # each worker lists the application's executor as finished once it has reaped it (a few seconds after
    # the application ends, so the worker pages are polled)
    deadline = time.monotonic() + 30
    while True:
        worker_apps = [{e["appid"] for e in _get_json(f"{ui}/json/")["finishedexecutors"]} for ui in cluster.worker_uis]
        if all({a["id"] for a in apps} <= ids for ids in worker_apps) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert all({a["id"] for a in apps} <= ids for ids in worker_apps), worker_apps

    config = parse_config(drift_config("standalone", preds, labels, {"path": str(tmp_path / "out_local")}, K,
                                       "multiclass"))
    fit(spark, config)
    run(spark, config)
    assert_same_metrics(read_metrics(spark, str(tmp_path / "out_local" / "metrics"), "standalone").results,
                        read_metrics(spark, str(tmp_path / "out_cluster" / "metrics"), "standalone").results, K)
