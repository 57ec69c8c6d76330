"""The plan step (monitoring/run_plan.py): a rerun with nothing new returns the stored results without a
scan, and any change of what the results depend on (settings, source rows, labels) sends the run down the
ordinary path, whose results equal a full run's."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from monitoring.pipeline import fit, metrics_table, run
from monitoring.stores.metrics import read_metrics
from tests.helpers import metric_key
from tests.test_run_budget import _config, _tables


def _values(results) -> dict[tuple, float | None]:
    out = {metric_key(r): r.value for r in results}  # with the family: realized and estimated share the rest
    assert len(out) == len(results), "two results share a key"
    return out


def _same(a, b) -> bool:
    """The same metric rows with the same values (relative 1e-9: sums taken in another order)."""
    a, b = _values(a), _values(b)
    return a.keys() == b.keys() and all(
        (a[k] is None) == (b[k] is None) and (a[k] is None or math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12)
                                              or (math.isnan(a[k]) and math.isnan(b[k]))) for k in a)


def _history(spark, table: str) -> int:
    return spark.sql(f"DESCRIBE HISTORY delta.`{table}`").count()


def test_a_rerun_returns_the_stored_results_until_an_input_changes(spark, tmp_path):
    preds, labels = _tables(spark, tmp_path, 5, 9)
    config = _config(preds, labels, str(tmp_path / "out"), 5, 9, False)
    fit(spark, config, refresh=True)
    first = run(spark, config, refresh=True)
    table = metrics_table(config)
    commits = _history(spark, table)

    again = run(spark, config)  # nothing new: the stored results, no commit
    assert again.compared == () and _values(again.metrics) == _values(first.metrics)
    assert [c.chunk.index for c in again.profiles.whole] == [c.chunk.index for c in first.profiles.whole]
    assert [c.row_count for c in again.profiles.whole] == [c.row_count for c in first.profiles.whole]
    assert len(again.reference.chunks_of(("", ""))) == len(first.reference.chunks_of(("", "")))
    assert _history(spark, table) == commits

    # a setting the results depend on: the ordinary path, every chunk compared again
    stricter = dataclasses.replace(config, drift=dataclasses.replace(config.drift, std_multiplier=1.0))
    changed = run(spark, stricter)
    assert set(changed.compared) == {c.chunk.index for c in first.profiles.whole}
    assert _same(changed.metrics, run(spark, stricter, refresh=True).metrics)
    assert run(spark, stricter).compared == ()

    # a label that changes: the ordinary path recomputes the chunk it belongs to
    landed = pd.DataFrame({"id": [300], "label": [1 - int(spark.read.format("delta").load(labels)
                                                                 .where("id = 300").first()["label"])],
                           "label_ts": [pd.Timestamp("2026-01-01", tz="UTC")]})
    spark.createDataFrame(landed).write.format("delta").mode("append").save(labels)
    relabelled = run(spark, stricter)
    assert len(relabelled.compared) == 1
    stored = read_metrics(spark, table, config.monitor).results
    assert _same(stored, run(spark, stricter, refresh=True).metrics)


def test_a_run_after_fit_takes_the_fitted_reference_as_stored(spark, tmp_path):
    """`run --fit` hands the fitted reference, estimation models and PCA to the run in memory: the
    results equal those of a run that reads them back from the tables."""
    preds, labels = _tables(spark, tmp_path, 6, 9)
    config = _config(preds, labels, str(tmp_path / "out"), 6, 9, True)
    fitted = fit(spark, config, refresh=True)
    assert fitted.models is not None and fitted.models.estimators.calibrator is not None
    assert fitted.models.reconstruction is not None
    in_memory = run(spark, config, refresh=True, fitted=fitted)
    read_back = run(spark, config, refresh=True)
    assert len(in_memory.metrics) == len(read_back.metrics) > 0
    assert _same(in_memory.metrics, read_back.metrics)
