"""`driftline validate` and `--version`: config and table schemas checked from the Delta logs, in a fresh
process that starts no Spark (no SparkContext, no JVM) and answers in well under 5 s."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from monitoring.stores.delta_log import read_schema

from .helpers import write_delta

ROOT = Path(__file__).resolve().parents[1]
# runs the CLI, then fails (exit 99) if anything started a SparkContext or a JVM gateway
PROBE = """
import sys
from monitoring.cli import main
rc = main(sys.argv[1:])
from pyspark import SparkContext
sys.exit(99 if SparkContext._active_spark_context is not None or SparkContext._gateway is not None else rc)
"""


@pytest.fixture(scope="module")
def table(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("validate")
    n = 50
    frame = pd.DataFrame({"id": np.arange(n), "ts": pd.date_range("2025-01-01", periods=n, freq="h", tz="UTC"),
                          "age": np.linspace(20, 70, n), "score": np.linspace(0, 1, n)})
    return root, write_delta(spark, frame, str(root / "preds"))


def _config(root: Path, table: str, **changes) -> str:
    data = {"monitor": "v", "problem_type": "binary",
            "source": {"table": table, "id_column": "id", "timestamp_column": "ts"},
            "features": [{"name": "age", "kind": "continuous"}], "outputs": {"score": "score"},
            "chunking": {"period": "1d"}, "reference": {"start": "2025-01-01", "end": "2025-01-02"},
            "output": {"path": str(root / "out")}, "mlflow": {"enabled": False}, **changes}
    path = root / f"c{len(list(root.glob('c*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _validate(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    return done, time.monotonic() - started


def test_validate_accepts_a_good_config_without_spark(table):
    root, path = table
    done, seconds = _validate("validate", "--config", _config(root, path))
    assert done.returncode == 0, done.stderr
    assert "OK (config and table schemas)" in done.stdout and seconds < 5


@pytest.mark.parametrize(("changes", "key", "fix"), [
    ({"features": [{"name": "agee", "kind": "continuous"}]}, "features[0].name", "Did you mean 'age'?"),
    ({"outputs": {"score": "ts"}}, "outputs.score", "expected one of"),
    ({"chunking": {"periodd": "1d"}}, "chunking.periodd", "Did you mean 'period'?"),
])
def test_validate_names_the_key_of_a_typo_fast_and_without_spark(table, changes, key, fix):
    root, path = table
    done, seconds = _validate("validate", "--config", _config(root, path, **changes))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"config key '{key}'" in done.stderr and fix in done.stderr, done.stderr
    assert seconds < 5, seconds


def test_validate_a_missing_table(table):
    root, _ = table
    done, _ = _validate("validate", "--config", _config(root, str(root / "nowhere")))
    assert done.returncode == 2 and "config key 'source.table'" in done.stderr and \
        "cannot be read as a Delta table" in done.stderr


def test_schema_from_a_checkpointed_log_equals_sparks(spark, table):
    """After a checkpoint (interval 2) the schema comes from the newest commit or the checkpoint's Parquet;
    both agree with what Spark reads, including a column added by schema evolution."""
    root, _ = table
    out = str(root / "checkpointed")
    spark.conf.set("spark.databricks.delta.properties.defaults.checkpointInterval", "2")
    try:
        first = pd.DataFrame({"id": [1, 2], "x": [0.5, 1.5]})
        write_delta(spark, first, out)
        spark.createDataFrame(first.assign(tag=["a", "b"])).write.format("delta").mode("append") \
            .option("mergeSchema", "true").save(out)
        spark.createDataFrame(first.assign(tag=["c", "d"])).write.format("delta").mode("append").save(out)
    finally:
        spark.conf.unset("spark.databricks.delta.properties.defaults.checkpointInterval")
    assert list(Path(out, "_delta_log").glob("*.checkpoint*.parquet"))
    assert read_schema(out) == spark.read.format("delta").load(out).schema
    for commit in Path(out, "_delta_log").glob("*.json"):
        if int(commit.stem) > 1:
            commit.unlink()  # only the checkpoint (version 2) is left to read after version 1
    (Path(out, "_delta_log") / "_last_checkpoint").write_text('{"version": 2, "size": 4}')
    assert [f.name for f in read_schema(out).fields] == ["id", "x", "tag"]


def test_newest_commit_from_the_log_equals_describe_history(spark, table):
    """The newest commit read from a local table's log (no Spark) is DESCRIBE HISTORY's: version and
    userMetadata, after a checkpoint and after a commit without metadata; None for a catalog name, a
    remote URI and a newer commit staged outside the log (Spark asks), FileNotFoundError for a path without
    a Delta table."""
    from monitoring.stores.delta_log import newest_commit
    from monitoring.stores.tables import table_ident

    root, _ = table
    out = str(root / "commits")
    frame = pd.DataFrame({"id": [1, 2], "x": [0.5, 1.5]})
    spark.conf.set("spark.databricks.delta.properties.defaults.checkpointInterval", "2")
    try:
        write_delta(spark, frame, out)
        for i in range(3):
            spark.createDataFrame(frame).write.format("delta").mode("append").option("userMetadata", f"run-{i}") \
                .save(out)
            history = spark.sql(f"DESCRIBE HISTORY {table_ident(out)} LIMIT 1").first()
            assert newest_commit(out) == (history["version"], f"run-{i}") == (i + 1, history["userMetadata"])
        spark.createDataFrame(frame).write.format("delta").mode("append").save(out)
    finally:
        spark.conf.unset("spark.databricks.delta.properties.defaults.checkpointInterval")
    assert list(Path(out, "_delta_log").glob("*.checkpoint*.parquet"))
    assert newest_commit(out) == (4, None)
    assert newest_commit("main.schema.table") is None and newest_commit("s3://bucket/table") is None
    staged = Path(out, "_delta_log", "_staged_commits")
    staged.mkdir(exist_ok=True)
    (staged / "00000000000000000005.3f2a.json").write_text("{}")  # a coordinated commit not backfilled yet
    assert newest_commit(out) is None
    with pytest.raises(FileNotFoundError):
        newest_commit(str(root / "nothing-here"))


def test_version():
    done = subprocess.run([sys.executable, "-m", "monitoring.cli", "--version"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    from monitoring import __version__

    assert done.returncode == 0 and done.stdout.strip() == f"driftline {__version__}"
