"""The readable summary printed at the end of a run: what was profiled, where results are, what to open."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from monitoring.config import MonitorConfig
from monitoring.pipeline import ProfileResult


def print_summary(config: MonitorConfig, result: ProfileResult, run_id: str | None) -> None:
    chunks = result.chunks
    print()
    print(f"== Driftline: monitor '{config.monitor}' ==")
    if chunks:
        print(f"analysis: {len(chunks)} chunks ({config.chunking.describe()}), {result.row_count:,} rows, "
              f"{chunks[0].chunk.key} .. {chunks[-1].chunk.key}, source version {result.source_version}")
        print(f"{'chunk':<12}{'rows':>10}  most missing column")
        for cp in chunks:
            worst = max(cp.columns.values(), key=lambda p: p.missing_rate or 0.0)
            print(f"{cp.chunk.key:<12}{cp.row_count:>10,}  {worst.column} {100 * (worst.missing_rate or 0):.1f}%")
    else:
        print("analysis: no rows after the reference window")
    print(f"profiles table: {config.output.table('profiles')}")
    if run_id:
        print(f"MLflow run {run_id} in experiment '{config.mlflow.experiment}'")
        beside = Path(sys.executable).parent / "mlflow"
        mlflow_cmd = str(beside) if beside.exists() and not shutil.which("mlflow") else "mlflow"
        print(f"open it with: {mlflow_cmd} ui --backend-store-uri {config.mlflow.tracking_uri}")
