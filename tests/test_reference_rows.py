"""A run takes the reference chunks' drift rows a run with the same inputs stored instead of comparing
every reference chunk with the others again (issue 19): the analysis results are those of a fresh
computation, the thresholds come from the stored values, and rows stored with other inputs are not taken.
No Spark: category counts of one column, thresholds checked with numpy."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from monitoring.chunking import ChunkInfo
from monitoring.config import parse_config
from monitoring.drift.compare import ANALYSIS, BASELINE, REFERENCE, compare_slice, reference_rows
from monitoring.profiling import ChunkProfile
from monitoring.sketches import CATEGORICAL, ColumnProfile

COUNTS = [{"a": 50, "b": 30, "c": 20}, {"a": 45, "b": 35, "c": 20}, {"a": 55, "b": 25, "c": 20},
          {"a": 48, "b": 32, "c": 20}, {"a": 40, "b": 40, "c": 20}, {"a": 30, "b": 50, "c": 20}]
COLUMNS = [("c", CATEGORICAL)]
WHOLE = ("", "")


def _chunks() -> list[ChunkProfile]:
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    out = []
    for i, counts in enumerate(COUNTS):
        n = sum(counts.values())
        info = ChunkInfo(i, f"chunk-{i}", start + timedelta(days=i), start + timedelta(days=i + 1))
        profile = ColumnProfile("c", CATEGORICAL, row_count=n, null_count=0, valid_count=n, categories=dict(counts),
                                distinct_count=len(counts))
        out.append(ChunkProfile(info, n, {"c": profile}))
    return out


def _drift():
    return parse_config({
        "monitor": "m", "problem_type": "binary", "source": {"table": "t", "id_column": "id", "timestamp_column": "ts"},
        "features": [{"name": "c", "kind": "categorical"}], "outputs": {"score": "s", "prediction": "p"},
        "chunking": {"period": "1d"}, "reference": {"start": "2025-01-01", "end": "2025-01-05"},
        "output": {"path": "/tmp/unused"}, "mlflow": {"enabled": False},
        "drift": {"categorical_methods": ["chi2", "jensen_shannon"]}}).drift


def _stored(results, inputs: str = "settings"):
    rows = [copy.copy(r) for r in results if r.period == REFERENCE]
    for r in rows:
        r.inputs, r.lower_threshold, r.upper_threshold, r.alert = inputs, None, None, False
    return rows


def _key(r):
    return r.period, r.chunk.index, r.family, r.metric, r.comparison


def test_stored_reference_rows_give_the_results_of_a_fresh_computation():
    chunks, drift = _chunks(), _drift()
    fresh = compare_slice(chunks[:4], chunks[4:], COLUMNS, {}, drift)
    stored = reference_rows(_stored(fresh), COLUMNS, "settings")
    reused = compare_slice(chunks[:4], chunks[4:], COLUMNS, {}, drift, stored[WHOLE])
    assert {_key(r) for r in reused} == {_key(r) for r in fresh}
    by_key = {_key(r): r for r in fresh}
    for r in reused:
        f = by_key[_key(r)]
        assert (r.value, r.lower_threshold, r.upper_threshold, r.alert) == \
            (f.value, f.lower_threshold, f.upper_threshold, f.alert), _key(r)


def test_the_thresholds_come_from_the_stored_values():
    """Stored values scaled by 3: the analysis thresholds are mean + 3 std of the scaled values (numpy),
    so the reference chunks were not compared again."""
    chunks, drift = _chunks(), _drift()
    stored = _stored(compare_slice(chunks[:4], chunks[4:], COLUMNS, {}, drift))
    for r in stored:
        r.value = r.value * 3 if r.value is not None else None
    reused = compare_slice(chunks[:4], chunks[4:], COLUMNS, {}, drift, stored)
    values = np.array([r.value for r in stored if r.metric == "jensen_shannon" and r.comparison == BASELINE])
    assert len(values) == 4
    (analysis,) = [r for r in reused if r.period == ANALYSIS and r.chunk.index == 5 and r.metric == "jensen_shannon"
                   and r.comparison == BASELINE]
    assert analysis.upper_threshold == pytest.approx(min(values.mean() + 3 * values.std(), 1.0), rel=1e-12)


def test_rows_stored_with_other_inputs_are_not_taken():
    chunks, drift = _chunks(), _drift()
    fresh = compare_slice(chunks[:4], chunks[4:], COLUMNS, {}, drift)
    stored = _stored(fresh)
    assert reference_rows(stored, COLUMNS, "settings") is not None
    stored[0].inputs = "other settings"  # one row of an older run: every reference row is computed again
    assert reference_rows(stored, COLUMNS, "settings") is None
    assert reference_rows([], COLUMNS, "settings") is None
