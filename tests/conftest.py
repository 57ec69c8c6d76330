"""One embedded SparkSession (with Delta) per test process (make test runs 2 xdist workers); small data only."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark():
    from monitoring.session import embedded_session

    session = embedded_session({"spark.master": "local[2]", "spark.sql.shuffle.partitions": "2",
                                "spark.driver.memory": "2g", "spark.ui.enabled": "true",
                                "spark.sql.execution.arrow.pyspark.enabled": "true",
                                # tests run hundreds of distinct small queries: compiling each to Java
                                # costs more than it saves on small data (measured: fit and run 30% faster)
                                "spark.sql.codegen.wholeStage": "false",
                                "spark.sql.codegen.factoryMode": "NO_CODEGEN"}, "driftline-tests")
    session.conf.set("spark.sql.session.timeZone", "UTC")
    yield session
    session.stop()


@pytest.fixture(scope="module", autouse=True)
def codegen(request):
    """Whole-stage codegen for modules that profile hundreds of thousands of rows (`CODEGEN = True` in the
    module): there compiled aggregation pays for its compile time (test_drift's setup: 140 s without, 103 s
    with); elsewhere it is off (see `spark`). Modules without it never start Spark through this fixture."""
    on = getattr(request.module, "CODEGEN", False)
    spark = request.getfixturevalue("spark") if on else None
    if on:
        spark.conf.set("spark.sql.codegen.wholeStage", "true")
        spark.conf.set("spark.sql.codegen.factoryMode", "FALLBACK")
    yield
    if on:
        spark.conf.set("spark.sql.codegen.wholeStage", "false")
        spark.conf.set("spark.sql.codegen.factoryMode", "NO_CODEGEN")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working directory: relative table paths and sqlite:///mlflow.db land here."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# `make test` runs two xdist workers, each taking whole files (--dist loadfile) in collection order: the
# longest files go first so that no long file starts last and leaves one worker idle at the end
LONGEST_FIRST = ("test_standalone_cluster.py", "test_demo.py", "test_spark_connect.py", "test_faults.py",
                 "test_backfill.py", "test_drift.py", "test_incremental.py", "test_estimation.py",
                 "test_performance.py", "test_multivariate.py", "test_data_quality.py", "test_catalog_tables.py",
                 "test_bad_rows.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: test order within a file kept
