"""What a piece of work cost Spark: the jobs it launched and the data-file scans of each table in its
executed plans, read from the Spark UI REST API (what the application really ran, not what the code
says). Tests only: it needs the classic session's UI."""

from __future__ import annotations

import json
import re
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Budget:
    jobs: int = 0
    scans: dict[str, int] = field(default_factory=dict)  # table path -> scan nodes over its data files

    def scans_of(self, table: str) -> int:
        return self.scans.get(str(Path(table).resolve()), 0)


def _get(spark, path: str):
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/{path}"
    with urllib.request.urlopen(url, timeout=60) as resp:
        return json.load(resp)


def _job_ids(spark) -> set[int]:
    return {j["jobId"] for j in _get(spark, "jobs")}


def _executions(spark) -> list[dict]:
    return _get(spark, "sql?details=true&planDescription=true&offset=0&length=100000")


# a file scan in the formatted plan: "(7) Scan parquet ..." followed by its attributes, one being Location
_SCAN = re.compile(r"^\(\d+\) Scan \w+.*?^Location: [^\[]*\[([^\]]*)\]", re.M | re.S)


def _final_ids(plan: str) -> set[str] | None:
    """The node ids of an adaptive plan's final plan (its initial plan's nodes are listed too), None when
    the plan is not adaptive."""
    if "== Final Plan ==" not in plan:
        return None
    final = plan.split("== Final Plan ==", 1)[1].split("== Initial Plan ==", 1)[0]
    return set(re.findall(r"\((\d+)\)", final))


def _scanned_tables(plan: str) -> list[str]:
    out = []
    final = _final_ids(plan)
    for block in re.split(r"\n(?=\(\d+\) )", plan):
        m = _SCAN.search(block)
        node = re.match(r"\((\d+)\)", block.lstrip())
        if m and (final is None or (node and node.group(1) in final)):
            for loc in m.group(1).split(","):
                path = loc.strip().removeprefix("file:")
                if "_delta_log" not in path:
                    out.append(str(Path(path).resolve()))
    return out


@contextmanager
def spark_budget(spark):
    """Count the jobs and table scans of the work done inside the `with` block (nothing else may use
    `spark` meanwhile)."""
    budget = Budget()
    jobs_before = _job_ids(spark)
    seen = {e["id"] for e in _executions(spark)}
    yield budget
    budget.jobs = len(_job_ids(spark) - jobs_before)
    for e in _executions(spark):
        if e["id"] in seen:
            continue
        for path in _scanned_tables(e.get("planDescription", "")):
            budget.scans[path] = budget.scans.get(path, 0) + 1
