"""`compatibility: nannyml` (issue 21): what the switch changes, computed by hand on category counts (no
Spark): reference chunks compared with the whole reference (itself included) instead of leave-one-out,
the unseen rate over all rows (nulls included) with NannyML's constant 0 threshold, and two-sided std
thresholds on performance; the default stays Driftline's. Distances are checked against scipy."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency

from monitoring.chunking import ChunkInfo
from monitoring.config import NANNYML, parse_config
from monitoring.drift.compare import ANALYSIS, BASELINE, REFERENCE, compare_slice
from monitoring.profiling import ChunkProfile
from monitoring.registry import METRICS, PERFORMANCE, resolve
from monitoring.sketches import CATEGORICAL, ColumnProfile

# four reference chunks and two analysis chunks of one categorical column; the last holds nulls and an
# unseen category
COUNTS = [{"a": 50, "b": 30, "c": 20}, {"a": 45, "b": 35, "c": 20}, {"a": 55, "b": 25, "c": 20},
          {"a": 48, "b": 32, "c": 20}, {"a": 40, "b": 40, "c": 20}, {"a": 30, "b": 30, "c": 20, "new": 10}]
NULLS = [0, 0, 0, 0, 0, 10]


def _chunks() -> list[ChunkProfile]:
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    out = []
    for i, (counts, nulls) in enumerate(zip(COUNTS, NULLS, strict=True)):
        valid = sum(counts.values())
        info = ChunkInfo(i, f"chunk-{i}", start + timedelta(days=i), start + timedelta(days=i + 1))
        profile = ColumnProfile("c", CATEGORICAL, row_count=valid + nulls, null_count=nulls, valid_count=valid,
                                categories=dict(counts), distinct_count=len(counts))
        out.append(ChunkProfile(info, valid + nulls, {"c": profile}))
    return out


def _config(compatibility: str | None):
    return parse_config({**_raw(), **({"compatibility": compatibility} if compatibility else {})})


def _shares(counts: dict, keys: list[str]) -> np.ndarray:
    v = np.array([counts.get(k, 0) for k in keys], float)
    return v / v.sum()


def _results(config):
    chunks = _chunks()
    return compare_slice(chunks[:4], chunks[4:], [("c", CATEGORICAL)], {}, config.drift)


@pytest.mark.parametrize("compatibility", [None, NANNYML])
def test_reference_chunks_against_the_reference(compatibility):
    results = _results(_config(compatibility))
    js = {r.chunk.index: r.value for r in results if r.metric == "jensen_shannon" and r.comparison == BASELINE}
    keys = ["a", "b", "c", "new"]
    whole = {k: sum(c.get(k, 0) for c in COUNTS[:4]) for k in keys}
    for i in range(4):
        # NannyML: the whole reference, this chunk included; Driftline: leave-one-out
        base = whole if compatibility == NANNYML else {k: whole[k] - COUNTS[i].get(k, 0) for k in keys}
        assert js[i] == pytest.approx(jensenshannon(_shares(base, keys), _shares(COUNTS[i], keys), base=2), abs=1e-12)
    for i in (4, 5):  # analysis chunks: the whole reference either way
        assert js[i] == pytest.approx(jensenshannon(_shares(whole, keys), _shares(COUNTS[i], keys), base=2), abs=1e-12)


@pytest.mark.parametrize(("compatibility", "value", "upper"), [(None, 10 / 90, 0.01), (NANNYML, 10 / 100, 0.0)])
def test_unseen_rate_and_its_threshold(compatibility, value, upper):
    (r,) = [r for r in _results(_config(compatibility)) if r.metric == "unseen" and r.period == ANALYSIS
            and r.chunk.index == 5]
    assert r.value == pytest.approx(value, abs=1e-12) and r.upper_threshold == upper and r.alert
    reference = [r for r in _results(_config(compatibility)) if r.metric == "unseen" and r.period == REFERENCE]
    assert all(r.value == 0 and not r.alert for r in reference)


@pytest.mark.parametrize("compatibility", [None, NANNYML])
def test_chi2_alerts_on_its_pvalue_under_nannyml(compatibility):
    """NannyML's Chi2Statistic: no thresholds, an alert when scipy's chi2_contingency p-value < 0.05."""
    results = [r for r in _results(_config(compatibility)) if r.comparison == BASELINE]
    keys = ["a", "b", "c", "new"]
    whole = {k: sum(c.get(k, 0) for c in COUNTS[:4]) for k in keys}
    for i in (4, 5):
        table = np.array([[whole[k] for k in keys], [COUNTS[i].get(k, 0) for k in keys]])
        table = table[:, table.sum(axis=0) > 0]
        statistic, p, *_ = chi2_contingency(table)
        (stat,) = [r for r in results if r.metric == "chi2" and r.chunk.index == i]
        (pvalue,) = [r for r in results if r.metric == "chi2_pvalue" and r.chunk.index == i]
        assert stat.value == pytest.approx(statistic, rel=1e-9) and pvalue.value == pytest.approx(p, rel=1e-9)
        if compatibility == NANNYML:
            assert (stat.lower_threshold, stat.upper_threshold, stat.alert) == (None, None, False)
            assert pvalue.lower_threshold == 0.05 and pvalue.alert == (p < 0.05)
        else:
            assert stat.upper_threshold is not None and not pvalue.alert and pvalue.lower_threshold is None
    assert any(r.metric == "chi2_pvalue" and r.alert for r in results) == (compatibility == NANNYML)


def test_performance_thresholds_are_two_sided_under_nannyml():
    default, nannyml = _config(None), _config(NANNYML)
    for name, m in METRICS.items():
        if m.family != PERFORMANCE or m.default not in ("lower std", "upper std"):
            continue
        ours, theirs = resolve(default.drift.thresholds, name, "", "NONE", 3.0), \
            resolve(nannyml.drift.thresholds, name, "", "NONE", 3.0)
        assert (ours.std_lower is None) != (ours.std_upper is None), name  # one side by default
        assert (theirs.std_lower, theirs.std_upper) == (3.0, 3.0), name
    # a config's own rule still wins over the switch's defaults
    own = parse_config({**_raw(), "compatibility": NANNYML,
                        "drift": {"thresholds": [{"metric": "roc_auc", "std_upper": 4, "std_lower": 2}]}})
    rule = resolve(own.drift.thresholds, "roc_auc", "", "NONE", 3.0)
    assert (rule.std_lower, rule.std_upper) == (2, 4)
    opened = parse_config({**_raw(), "drift": {"thresholds": [{"metric": "roc_auc", "std_upper": None,
                                                                "std_lower": 2}]}})
    rule = resolve(opened.drift.thresholds, "roc_auc", "", "NONE", 3.0)
    assert (rule.std_lower, rule.std_upper) == (2, None)  # null opens a side, as docs/config.md says


def _raw() -> dict:
    return {"monitor": "t", "problem_type": "binary",
            "source": {"table": "/tmp/t/preds", "id_column": "id", "timestamp_column": "ts"},
            "features": [{"name": "c", "kind": "categorical"}], "outputs": {"score": "score"},
            "chunking": {"period": "1d"}, "reference": {"start": "2025-01-01", "end": "2025-01-05"},
            "output": {"path": "/tmp/t/out"}, "mlflow": {"enabled": False}}


def test_reconstruction_kinds_follow_the_column_types():
    """NannyML's reconstruction reads a numeric column as continuous and any other as categorical, whatever
    the declared kind (a float declared categorical for univariate drift stays continuous there)."""
    from monitoring.drift.reconstruction import nannyml_kinds

    columns = [("a", "categorical"), ("b", "continuous"), ("c", "categorical"), ("d", "categorical"),
               ("e", "categorical")]
    schema = {"a": "double", "b": "bigint", "c": "string", "d": "boolean", "e": "decimal(10,2)"}
    assert nannyml_kinds(columns, schema) == [("a", "continuous"), ("b", "continuous"), ("c", "categorical"),
                                              ("d", "categorical"), ("e", "continuous")]


def test_continuous_states_of_columns_profiled_as_categorical(spark):
    """Their mean and sum of squared deviations over the finite values, nulls and NaN counted as missing,
    equal numpy's on the same rows."""
    import pandas as pd

    from monitoring.drift.reconstruction import continuous_states

    x = np.array([1.0, 2.0, np.nan, 4.0, 4.0, 7.5])
    rows = spark.createDataFrame(pd.DataFrame({"x": x})).selectExpr(
        "CASE WHEN isnan(x) THEN CAST('NaN' AS DOUBLE) ELSE x END AS x").union(spark.sql("SELECT NULL AS x"))
    s = continuous_states(rows, ["x"])["x"]
    finite = x[np.isfinite(x)]
    assert (s.row_count, s.null_count, s.valid_count) == (7, 2, 5)
    assert s.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert s.m2 == pytest.approx(((finite - finite.mean()) ** 2).sum(), rel=1e-12)
