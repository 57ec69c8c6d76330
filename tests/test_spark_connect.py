"""The whole pipeline on Spark Connect, as Databricks serverless and shared clusters require: a Spark
Connect server started from the installed pyspark (with Delta), `driftline fit` and `run` in a separate
process with SPARK_REMOTE=sc://127.0.0.1:<port>, compared with the same monitor run in this (classic)
session on the same tables.

Equal: the set of metric rows; every value not read from a KLL sketch (realized and estimated
performance, categorical drift, data quality, counts) within 1e-9. KLL sketches are rebuilt in the other
JVM and their compaction is random, so continuous drift values differ within the sketch bound: KS by at
most 2 x (rank error of each side) = 4 x kll_rank_error(k)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from monitoring.config import parse_config
from monitoring.pipeline import fit, run
from monitoring.session import cached_delta_jars
from monitoring.stores.metrics import read_metrics

from .helpers import assert_same_metrics, drift_config, write_drift_tables
from .mlflow_server import free_port

DAYS, PER_DAY, K = 6, 3000, 2000


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory):
    """A Spark Connect server (local[2], Delta configured) on a free port, until the module ends."""
    port = free_port()
    log = tmp_path_factory.mktemp("connect") / "server.log"
    jars = cached_delta_jars()
    assert jars, "the Delta jars are not cached; run `make setup` first"
    cmd = [str(Path(sys.executable).parent / "spark-submit"), "--class",
           "org.apache.spark.sql.connect.service.SparkConnectServer", "--master", "local[2]",
           "--driver-memory", "2g", "--jars", ",".join(jars),
           "--conf", "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
           "--conf", "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
           "--conf", f"spark.connect.grpc.binding.port={port}", "--conf", "spark.sql.session.timeZone=UTC",
           "--conf", "spark.sql.shuffle.partitions=2", "--conf", "spark.ui.enabled=false", "spark-internal"]
    with open(log, "w") as out:
        server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                  env={**os.environ, "PYSPARK_PYTHON": sys.executable})
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, failure(log.read_text())
                time.sleep(1)
        yield f"sc://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(60)


def failure(text: str) -> str:
    """The server log's error lines (the cause, not just the JVM's shutdown chatter) and its last lines."""
    errors = [line for line in text.splitlines() if "ERROR" in line or "Exception" in line or "Caused by" in line]
    return "\n".join(errors[:20]) + "\n...\n" + text[-1500:]


def test_pipeline_on_spark_connect_equals_the_classic_session(spark, connect_server, tmp_path):
    preds, labels = write_drift_tables(spark, tmp_path, DAYS, PER_DAY)
    config = parse_config(drift_config("connect", preds, labels, {"path": str(tmp_path / "out_classic")}, K))
    fit(spark, config)
    run(spark, config)
    remote = drift_config("connect", preds, labels, {"path": str(tmp_path / "out_connect")}, K)
    path = tmp_path / "connect.yaml"
    path.write_text(yaml.safe_dump(remote))
    env = {**os.environ, "SPARK_REMOTE": connect_server}
    done = subprocess.run([str(Path(sys.executable).parent / "driftline"), "run", "--fit", "--config", str(path)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Spark Connect session at {connect_server}" in done.stderr, done.stderr[-3000:]
    assert "reference of 'connect'" in done.stdout, done.stdout[-3000:]
    assert_same_metrics(read_metrics(spark, str(tmp_path / "out_classic" / "metrics"), "connect").results,
                        read_metrics(spark, str(tmp_path / "out_connect" / "metrics"), "connect").results, K)
