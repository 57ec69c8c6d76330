"""The Databricks Asset Bundle: its job definitions load into databricks-sdk's `jobs.JobSettings` with no
unknown keys, every task runs the wheel's `driftline` entry point, and each task's parameters parse with
the driftline command line. The wheel is built from this checkout and its entry points are read back."""

from __future__ import annotations

import dataclasses
import zipfile
from configparser import ConfigParser
from email.parser import Parser
from pathlib import Path

import pytest
import yaml
from databricks.sdk.service import compute, jobs
from packaging.requirements import Requirement

from monitoring.cli import build_parser

from .helpers import build_wheel

ROOT = Path(__file__).resolve().parents[1]


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@pytest.fixture(scope="module")
def bundle() -> tuple[dict, dict[str, dict]]:
    root = yaml.safe_load((ROOT / "databricks.yml").read_text())
    job_defs: dict[str, dict] = {}
    for pattern in root["include"]:
        for path in sorted(ROOT.glob(pattern)):
            job_defs |= yaml.safe_load(path.read_text())["resources"]["jobs"]
    return root, job_defs


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def wheel_scripts(wheel) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as z:
        entry = next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
        parser = ConfigParser()
        parser.read_string(z.read(entry).decode())
        assert "monitoring/cli.py" in z.namelist() and "monitoring/performance/cbpe.py" in z.namelist()
    return dict(parser["console_scripts"])


def _substitute(value: str, variables: dict) -> str:
    for name, spec in variables.items():
        value = value.replace(f"${{var.{name}}}", str(spec["default"]))
    return value


def test_jobs_load_into_databricks_sdk_settings(bundle, wheel_scripts):
    root, job_defs = bundle
    assert set(job_defs) == {"driftline_fit", "driftline_monitor"}
    assert wheel_scripts == {"driftline": "monitoring.cli:main"}
    commands = {}
    for key, definition in job_defs.items():
        assert set(definition) <= _fields(jobs.JobSettings), key
        settings = jobs.JobSettings.from_dict(definition)
        assert settings.name and settings.tasks and settings.max_concurrent_runs == 1
        environments = {e.environment_key for e in settings.environments or []}
        clusters = {c.job_cluster_key for c in settings.job_clusters or []}
        for raw, task in zip(definition["tasks"], settings.tasks, strict=True):
            assert set(raw) <= _fields(jobs.Task), (key, raw)
            wheel_task = task.python_wheel_task
            assert wheel_task.package_name == "driftline" and wheel_task.entry_point in wheel_scripts
            # each task runs on exactly one declared compute: a job cluster or a serverless environment
            assert (task.job_cluster_key in clusters) != (task.environment_key in environments), (key, raw)
            args = [_substitute(p, root["variables"]) for p in wheel_task.parameters]
            parsed = build_parser().parse_args(args)
            commands[key] = (parsed.command, parsed.config)
        for env in definition.get("environments", []):
            assert set(env["spec"]) <= _fields(compute.Environment)
            assert "../dist/*.whl" in env["spec"]["dependencies"]
        for cluster in definition.get("job_clusters", []):
            assert set(cluster["new_cluster"]) <= _fields(compute.ClusterSpec)
    config = root["variables"]["config"]["default"]
    assert commands == {"driftline_fit": ("fit", config), "driftline_monitor": ("run", config)}
    monitor = jobs.JobSettings.from_dict(job_defs["driftline_monitor"])
    assert monitor.schedule.quartz_cron_expression
    assert "--fail-on-alert" in monitor.tasks[0].python_wheel_task.parameters


def test_bundle_builds_the_wheel_it_deploys(bundle):
    root, job_defs = bundle
    (artifact,) = root["artifacts"].values()
    assert artifact["type"] == "whl" and "--wheel-dir dist" in artifact["build"]
    libraries = [lib["whl"] for d in job_defs.values() for t in d["tasks"] for lib in t.get("libraries", [])]
    assert libraries and set(libraries) == {"../dist/*.whl"}
    # the plain wheel, never its `spark` extra nor pyspark itself: the runtime provides Spark and Delta
    for d in job_defs.values():
        for task in d["tasks"]:
            assert all(set(lib) == {"whl"} for lib in task.get("libraries", [])), task
        for env in d.get("environments", []):
            assert env["spec"]["dependencies"] == ["../dist/*.whl"], env


def test_wheel_leaves_spark_to_the_platform(wheel):
    """pyspark and delta-spark only in the `spark` extra: on Databricks the runtime provides both, and the
    bundle installs the plain wheel (no extra), so no second pyspark lands over the platform's."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(z.read(name).decode())
    assert "spark" in metadata.get_all("Provides-Extra")
    requires = [Requirement(r) for r in metadata.get_all("Requires-Dist")]
    by_name: dict[str, list[Requirement]] = {}
    for r in requires:
        by_name.setdefault(r.name.lower(), []).append(r)
    for dist in ("pyspark", "delta-spark"):
        assert by_name.get(dist), f"{dist} is not declared at all"
        for r in by_name[dist]:
            assert r.marker is not None, f"{r} is a hard dependency"
            assert r.marker.evaluate({"extra": "spark"}) and not r.marker.evaluate({"extra": ""}), str(r)
    assert "connect" in next(iter(by_name["pyspark"])).extras
    # the plain install still pulls Driftline's own dependencies
    assert all(by_name.get(d) and by_name[d][0].marker is None for d in ("mlflow", "numpy", "datasketches"))
    # dev = spark + tools (the Makefile installs '.[dev]')
    dev = [r for r in requires if r.marker is not None and r.marker.evaluate({"extra": "dev"})]
    assert any(r.name == "driftline" and "spark" in r.extras for r in dev), [str(r) for r in dev]
