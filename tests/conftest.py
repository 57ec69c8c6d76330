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
                                "spark.sql.execution.arrow.pyspark.enabled": "true"}, "driftline-tests")
    session.conf.set("spark.sql.session.timeZone", "UTC")
    yield session
    session.stop()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working directory: relative table paths and sqlite:///mlflow.db land here."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
