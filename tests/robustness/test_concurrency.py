"""Runs at once: two monitors sharing the same source and result tables, and the same monitor twice, all
started together on one SparkSession (as scheduled jobs or notebooks sharing a cluster would). Delta
rejects a commit that conflicts with one made meanwhile; Driftline retries it (monitoring/stores/tables.py), so
every run completes, the result tables hold no duplicate keys, and each monitor's values equal those of
the same monitor run alone."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pandas as pd

from monitoring.config import Output
from monitoring.pipeline import fit, run
from monitoring.stores.metrics import METRIC_KEYS
from monitoring.stores.profiles import PROFILE_KEYS

from ..helpers import make_config, write_delta

VALUES = ["value", "lower_threshold", "upper_threshold", "alert"]


def _frame(days: int = 5, per_day: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(17)
    day = np.repeat(np.arange(days), per_day)
    n = len(day)
    micros = ((1735689600 + day * 86400 + rng.random(n) * 86000) * 1e6).astype("int64")
    return pd.DataFrame({"id": np.arange(n), "ts": pd.to_datetime(micros, unit="us", utc=True),
                         "x": rng.normal(day * 0.2, 1.0, n), "c": rng.choice(["a", "b", "c"], n),
                         "score": rng.random(n)})


def _monitor(table: str, out: str, name: str, feature: str):
    kind = "continuous" if feature == "x" else "categorical"
    return replace(make_config(table, [(feature, kind)], out, reference={"start": "2025-01-01", "end": "2025-01-03"}),
                   monitor=name)


def _rows(spark, out: str, table: str, keys: list[str], monitor: str) -> dict[tuple, tuple]:
    df = spark.read.format("delta").load(f"{out}/{table}").where(f"monitor = '{monitor}'")
    return {tuple(r[k] for k in keys): tuple(r[v] for v in VALUES) for r in df.collect()}


def test_two_monitors_and_a_duplicate_run_at_once(spark, tmp_path):
    table = write_delta(spark, _frame(), str(tmp_path / "preds"))
    shared = str(tmp_path / "shared")
    monitors = [_monitor(table, shared, "by_x", "x"), _monitor(table, shared, "by_c", "c")]
    errors: list[BaseException] = []

    def work(config) -> None:
        try:
            fit(spark, config)
            run(spark, config, run_id=f"{config.monitor}-{threading.get_ident()}")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in (*monitors, monitors[0])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)

    for name, keys in (("metrics", METRIC_KEYS), ("profiles", PROFILE_KEYS)):
        df = spark.read.format("delta").load(f"{shared}/{name}")
        assert df.groupBy(*keys).count().where("count > 1").count() == 0, name  # no duplicate keys
    for config in monitors:  # each monitor alone, in its own tables
        alone = str(tmp_path / f"alone_{config.monitor}")
        solo = replace(config, output=Output(path=alone))
        fit(spark, solo)
        run(spark, solo)
        expected = _rows(spark, alone, "metrics", METRIC_KEYS, config.monitor)
        assert expected and _rows(spark, shared, "metrics", METRIC_KEYS, config.monitor) == expected, config.monitor
