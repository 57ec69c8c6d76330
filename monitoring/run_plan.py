"""The plan step of a run, before any scan: did anything the stored results depend on change?

A run's results depend on its settings, the Driftline version and the versions of five tables: the
source and label tables it reads, and the profiles, reference and estimators tables that hold its
stored states. `RunInputs` hashes them; the commit that writes a run's metrics records that hash in
its Delta `userMetadata`. The next run reads the newest commit of each table (DESCRIBE HISTORY reads
the newest commit file; no Spark job) and, when the metrics table's newest commit carries the same
hash, returns the stored results without reading a row (docs/incremental.md).

A table written by anyone else in between changes its version, so the hash differs and the run takes
the ordinary path, which reuses what it can chunk by chunk. A run that wrote profiles records their
version only when its own commit is the newest one (another writer in between: no hash is recorded).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession

from monitoring.config import MonitorConfig
from monitoring.fingerprints import result_settings
from monitoring.tables import table_ident

USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
STATE_TABLES = ("profiles", "reference", "estimators")


def newest_commit(spark: SparkSession, name: str) -> tuple[int, str | None] | None:
    """(version, userMetadata) of the newest commit of Delta table `name`; None when it does not exist."""
    try:
        # a plain collect of the command's rows: a projection on top would cost a Spark job of its own
        rows = spark.sql(f"DESCRIBE HISTORY {table_ident(name)} LIMIT 1").collect()
    except AnalysisException:
        return None
    return (int(rows[0]["version"]), rows[0]["userMetadata"]) if rows else None


def table_version(spark: SparkSession, name: str | None) -> int | None:
    """The newest version of Delta table `name`; None when there is no such table."""
    found = newest_commit(spark, name) if name else None
    return found[0] if found else None


def _driftline_version() -> str:
    try:
        return version("driftline")
    except PackageNotFoundError:
        return "source"


@dataclass(frozen=True)
class RunInputs:
    """What a run's results depend on: the settings hash and the table versions (None: no such table)."""

    settings: str
    versions: tuple[tuple[str, int | None], ...]

    @property
    def key(self) -> str:
        text = json.dumps([self.settings, self.versions], default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def marker(self, monitor: str) -> str:
        """The metrics commit's userMetadata that records these inputs."""
        return json.dumps({"driftline_run": monitor, "inputs": self.key}, sort_keys=True)

    def version(self, table: str) -> int | None:
        return dict(self.versions)[table]

    def with_versions(self, **versions: int | None) -> RunInputs:
        return dataclasses.replace(self, versions=tuple((t, versions.get(t, v)) for t, v in self.versions))


def settings_hash(config: MonitorConfig, state_format: int) -> str:
    """Every setting the results depend on (fingerprints.result_settings) and where they are stored, the
    Driftline version and the stored-state format, hashed (the monitor's name is in the marker)."""
    settings = result_settings(config) | {"output": dataclasses.asdict(config.output)}
    text = json.dumps([settings, _driftline_version(), state_format], default=str, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def run_inputs(spark: SparkSession, config: MonitorConfig, state_format: int) -> RunInputs:
    """The inputs of a run of `config` now: the newest version of each table it depends on."""
    versions = [("source", table_version(spark, config.source.table)),
                ("labels", table_version(spark, config.labels.table) if config.labels else None)] + \
        [(t, table_version(spark, config.output.table(t))) for t in STATE_TABLES]
    return RunInputs(settings_hash(config, state_format), tuple(versions))


@dataclass(frozen=True)
class RunPlan:
    inputs: RunInputs  # what this run's results will depend on
    metrics_version: int | None  # newest version of the metrics table (None: no table yet)
    unchanged: bool  # the newest metrics commit wrote the results of a run with these inputs


def plan_run(spark: SparkSession, config: MonitorConfig, state_format: int, metrics_table: str) -> RunPlan:
    """Read the newest commit of every table a run depends on, and of its metrics table."""
    inputs = run_inputs(spark, config, state_format)
    found = newest_commit(spark, metrics_table)
    return RunPlan(inputs, found[0] if found else None,
                   found is not None and found[1] == inputs.marker(config.monitor))


@contextmanager
def recording(spark: SparkSession, marker: str | None):
    """Commits inside carry `marker` as their Delta userMetadata (none when `marker` is None)."""
    if marker is None:
        yield
        return
    before = spark.conf.get(USER_METADATA, None)
    spark.conf.set(USER_METADATA, marker)
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(USER_METADATA)
        else:
            spark.conf.set(USER_METADATA, before)
