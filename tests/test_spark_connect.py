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

import numpy as np
import pandas as pd
import pytest
import yaml

from monitoring.config import parse_config
from monitoring.metrics_store import read_metrics
from monitoring.pipeline import fit, run
from monitoring.session import cached_delta_jars
from monitoring.sketches import kll_rank_error

from .helpers import write_delta
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
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(1)
        yield f"sc://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(60)


def _tables(spark, root: Path) -> tuple[str, str]:
    rng = np.random.default_rng(17)
    n = DAYS * PER_DAY
    day = np.repeat(np.arange(DAYS), PER_DAY)
    x = rng.normal(np.where(day >= 4, 0.5, 0.0), 1.0, n)
    score = 1 / (1 + np.exp(-(x + rng.normal(0, 1, n))))
    y = (rng.random(n) < 1 / (1 + np.exp(-x))).astype(int)
    micros = ((1735689600 + day * 86400 + rng.random(n) * 86000) * 1e6).astype("int64")
    ts = pd.to_datetime(micros, unit="us", utc=True)
    preds = write_delta(spark, pd.DataFrame({"id": np.arange(n), "ts": ts, "x": x,
                                             "cat": np.where(x > 0.3, "a", np.where(x > -0.5, "b", "c")),
                                             "score": score}), str(root / "preds"))
    labels = write_delta(spark, pd.DataFrame({"id": np.arange(n), "label": y, "label_ts": ts}), str(root / "labels"))
    return preds, labels


def _config(preds: str, labels: str, out: Path) -> dict:
    return {"monitor": "connect", "problem_type": "binary",
            "source": {"table": preds, "id_column": "id", "timestamp_column": "ts"},
            "features": [{"name": "x", "kind": "continuous"}, {"name": "cat", "kind": "categorical"}],
            "outputs": {"score": "score"},
            "labels": {"table": labels, "label_column": "label", "timestamp_column": "label_ts"},
            "chunking": {"period": "1d"}, "reference": {"start": "2025-01-01", "end": "2025-01-04"},
            "profile": {"kll_k": K}, "output": {"path": str(out)}, "mlflow": {"enabled": False}}


def test_pipeline_on_spark_connect_equals_the_classic_session(spark, connect_server, tmp_path):
    preds, labels = _tables(spark, tmp_path)
    config = parse_config(_config(preds, labels, tmp_path / "out_classic"))
    fit(spark, config)
    run(spark, config)
    remote = _config(preds, labels, tmp_path / "out_connect")
    path = tmp_path / "connect.yaml"
    path.write_text(yaml.safe_dump(remote))
    env = {**os.environ, "SPARK_REMOTE": connect_server}
    for command in ("fit", "run"):
        done = subprocess.run([str(Path(sys.executable).parent / "driftline"), command, "--config", str(path)],
                              env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"Spark Connect session at {connect_server}" in done.stderr, done.stderr[-3000:]
    ours = {_key(r): r for r in read_metrics(spark, str(tmp_path / "out_classic" / "metrics"), "connect").results}
    theirs = {_key(r): r for r in read_metrics(spark, str(tmp_path / "out_connect" / "metrics"), "connect").results}
    assert ours.keys() == theirs.keys() and len(ours) > 100
    bound = 4 * kll_rank_error(K)
    sketched = 0
    for key, a in ours.items():
        b = theirs[key]
        if a.value is None or b.value is None:
            assert a.value is None and b.value is None, key
        elif a.family == "drift" and a.kind == "continuous":
            sketched += 1
            if a.metric == "kolmogorov_smirnov":
                assert abs(a.value - b.value) <= bound, key
        else:
            assert b.value == pytest.approx(a.value, rel=1e-9, abs=1e-12), key
    assert sketched > 0 and any(k[5] == "estimated_performance" for k in ours)


def _key(r) -> tuple:
    return (r.period, r.chunk.index, r.slice_key, r.slice_value, r.column, r.family, r.metric, r.comparison)
