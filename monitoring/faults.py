"""Failpoints for the fault-injection tests (tests/robustness/test_faults.py).

`DRIFTLINE_KILL_AT=<stage>` kills the job with SIGKILL when it reaches that stage: no handler, no
cleanup, like an out-of-memory kill of the driver. A job started as the leader of its own process group
(e.g. `start_new_session=True`) kills the whole group, so the local Spark JVM dies with it mid-flight
instead of finishing what it was doing. Unset (always in production) a failpoint is one dictionary
lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "DRIFTLINE_KILL_AT"
PROFILING = "profiling"  # analysis rows profiled, nothing of them written
BEFORE_METRICS = "before_metrics"  # profiles written, metrics compared but not written
MLFLOW_LOGGING = "mlflow_logging"  # MLflow run started, part of its metrics logged


def failpoint(stage: str) -> None:
    """SIGKILL this job (its process group when it leads one) if DRIFTLINE_KILL_AT names `stage`."""
    if os.environ.get(ENV) != stage:
        return
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
