"""The plan step of a run, before any scan: did anything the stored results depend on change?

A run's results depend on its settings, the Driftline version and the versions of five tables: the
source and label tables it reads, and the profiles, reference and estimators tables that hold its
stored states. `RunInputs` hashes them; the commit that writes a run's metrics records that hash in
its Delta `userMetadata`. The next run reads the newest commit of each table (from the Delta log of a
local table, `monitoring.stores.tables.newest_commit`; else DESCRIBE HISTORY ... LIMIT 1, one small Spark job
each) and, when the metrics table's newest commit carries the same
hash, returns the stored results without reading a row (docs/incremental.md).

A table written by anyone else in between changes its version, so the hash differs and the run takes
the ordinary path, which reuses what it can chunk by chunk. A run's own profiles commit carries the
same marker as its metrics commit, so the next plan recognises it without asking for its version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession

from monitoring.config import MonitorConfig
from monitoring.fingerprints import COMPARE_FORMAT, result_settings
from monitoring.session import session_conf
from monitoring.stores import tables

USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
STATE_TABLES = ("profiles", "reference", "estimators")


def newest_commit(spark: SparkSession, name: str) -> tuple[int, str | None] | None:
    """(version, userMetadata) of the newest commit of Delta table `name`; None when it does not exist."""
    try:
        return tables.newest_commit(spark, name)
    except (AnalysisException, FileNotFoundError):
        return None


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
    Driftline version, the stored-state format and the compare code's format (a change of what the same
    states give, even within one version), hashed (the monitor's name is in the marker)."""
    settings = result_settings(config) | {"output": dataclasses.asdict(config.output)}
    text = json.dumps([settings, _driftline_version(), state_format, COMPARE_FORMAT], default=str, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class RunPlan:
    inputs: RunInputs  # what this run's results will depend on
    metrics_version: int | None  # newest version of the metrics table (None: no table yet)
    unchanged: bool  # the newest metrics commit wrote the results of a run with these inputs


def plan_run(spark: SparkSession, config: MonitorConfig, state_format: int, metrics_table: str) -> RunPlan:
    """Read the newest commit of every table a run depends on, and of its metrics table (one small Spark
    job each). The stored results are current when the newest metrics commit records these inputs, or
    the inputs as they were before the newest profiles commit when that commit carries the same marker
    (the last run wrote both: its profiles commit moved the profiles version one past its inputs)."""
    commits = {"source": newest_commit(spark, config.source.table),
               "labels": newest_commit(spark, config.labels.table) if config.labels else None} | \
        {t: newest_commit(spark, config.output.table(t)) for t in STATE_TABLES}
    inputs = RunInputs(settings_hash(config, state_format),
                       tuple((t, c[0] if c else None) for t, c in commits.items()))
    found = newest_commit(spark, metrics_table)
    marker = found[1] if found else None
    profiles = commits["profiles"]
    before = inputs.with_versions(profiles=profiles[0] - 1 if profiles[0] else None) if profiles else None
    unchanged = marker is not None and (marker == inputs.marker(config.monitor) or (
        before is not None and profiles[1] == marker and marker == before.marker(config.monitor)))
    return RunPlan(inputs, found[0] if found else None, unchanged)


def recording(spark: SparkSession, marker: str | None):
    """Commits inside carry `marker` as their Delta userMetadata (none when `marker` is None)."""
    return session_conf(spark, USER_METADATA, marker)
