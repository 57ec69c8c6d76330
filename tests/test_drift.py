"""Drift end to end on real Delta tables: detection of a small shift with reference-learnt thresholds,
no alerts on unchanged columns (within the false-alarm rate of 3-sigma thresholds), reruns, slices."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from monitoring.config import parse_config
from monitoring.drift.compare import ANALYSIS, BASELINE, DRIFT, REFERENCE
from monitoring.errors import ConfigError
from monitoring.pipeline import fit, metrics_table, open_source, run
from monitoring.registry import resolve
from monitoring.slices import WHOLE
from monitoring.thresholds import Bounds, ThresholdRule, bounds

from .helpers import make_config

PER_DAY, REF_DAYS, ANALYSIS_DAYS = 50_000, 10, 3
START = datetime(2025, 1, 1, tzinfo=timezone.utc)
FEATURES = [("shifted", "continuous"), ("steady", "continuous"), ("heavy", "continuous"), ("country", "categorical")]
COUNTRIES = np.array(["DE", "FR", "NL"], dtype=object)


CODEGEN = True  # hundreds of thousands of rows: compiled aggregation pays off (tests/conftest.codegen)

@pytest.fixture(scope="module")
def monitored(spark, tmp_path_factory):
    """10 reference days and 3 analysis days of 50k rows; `shifted` moves by 0.1 sigma after the reference."""
    rng = np.random.default_rng(5)
    days = REF_DAYS + ANALYSIS_DAYS
    n = days * PER_DAY
    day = np.repeat(np.arange(days), PER_DAY)
    ts = START.timestamp() + day * 86400 + rng.random(n) * 86000
    shifted = rng.normal(0, 1, n) + np.where(day >= REF_DAYS, 0.1, 0.0)
    steady = rng.normal(5, 2, n)
    steady_nulls = rng.random(n) < 0.05
    country = rng.choice(COUNTRIES, n, p=[0.5, 0.3, 0.2])
    table = pa.table({
        "id": np.arange(n), "ts": pa.array((ts * 1e6).astype("int64"), pa.timestamp("us", "UTC")),
        "shifted": shifted, "steady": pa.array(steady, mask=steady_nulls), "heavy": rng.standard_t(3, n),
        "country": country, "score": rng.random(n)})
    root = tmp_path_factory.mktemp("drift")
    spark.createDataFrame(table).write.format("delta").save(str(root / "src"))
    config = make_config(str(root / "src"), FEATURES, str(root / "out"),
                         reference={"start": "2025-01-01", "end": f"2025-01-{REF_DAYS + 1:02d}"},
                         slices={"expressions": ["country"]})
    fit(spark, config)
    return config, run(spark, config)


def _baseline(result, period=ANALYSIS, key=WHOLE):
    return [r for r in result.metrics if (r.period, r.family, r.comparison) == (period, DRIFT, BASELINE)
            and (r.slice_key, r.slice_value) == key]


def test_small_shift_flagged_and_steady_columns_quiet(monitored):
    _, result = monitored
    rows = _baseline(result)
    ks = {r.chunk.index: r for r in rows if r.column == "shifted" and r.metric == "kolmogorov_smirnov"}
    assert len(ks) == ANALYSIS_DAYS and all(r.alert for r in ks.values())
    # expected KS of a 0.1 sigma shift: 2 Phi(0.05) - 1 = 0.0399; thresholds an order of magnitude lower
    assert all(abs(r.value - 0.0399) < 0.012 and r.upper_threshold < 0.015 for r in ks.values())
    quiet = {(r.column, r.chunk.index) for r in rows if r.column != "shifted" and r.alert}
    # 3 chunks x 4 steady columns; at 3 sigma each metric fires by chance in ~1% of checks
    assert len(quiet) <= 2, quiet
    for r in rows:
        if r.column != "shifted" and r.metric in ("kolmogorov_smirnov", "jensen_shannon", "hellinger"):
            assert r.value < 0.02, r
    for r in _baseline(result, REFERENCE):
        assert r.upper_threshold is not None or r.metric.endswith("_pvalue") or r.metric in ("out_of_range",
                                                                                            "unseen")


def test_thresholds_learnt_from_reference_chunks(monitored):
    _, result = monitored
    ref = [r for r in _baseline(result, REFERENCE) if r.column == "steady" and r.metric == "kolmogorov_smirnov"]
    values = np.array([r.value for r in ref])
    assert len(values) == REF_DAYS
    assert ref[0].upper_threshold == pytest.approx(values.mean() + 3 * values.std(), rel=1e-12)
    assert ref[0].lower_threshold is None


def test_rerun_leaves_metrics_unchanged(spark, monitored):
    config, first = monitored
    table = spark.read.format("delta").load(metrics_table(config))
    cols = ["period", "chunk_index", "slice_key", "slice_value", "column_name", "family", "metric", "comparison",
            "value", "lower_threshold", "upper_threshold", "alert"]
    before = sorted(tuple(r) for r in table.select(*cols).collect())
    second = run(spark, config)
    after = sorted(tuple(r) for r in spark.read.format("delta").load(metrics_table(config)).select(*cols).collect())
    assert len(before) == len(after) == len(first.metrics) == len(second.metrics)
    assert before == after


def test_slice_counts_sum_to_whole_table(monitored):
    _, result = monitored
    chunks = result.profiles.chunks
    for index in {c.chunk.index for c in chunks}:
        whole = next(c for c in chunks if c.chunk.index == index and (c.slice_key, c.slice_value) == WHOLE)
        parts = [c for c in chunks if c.chunk.index == index and c.slice_key == "country"]
        assert sorted(c.slice_value for c in parts) == ["DE", "FR", "NL"]
        assert sum(c.row_count for c in parts) == whole.row_count
        for column in ("steady", "country"):
            for field in ("null_count", "valid_count"):
                assert sum(getattr(c.columns[column], field) for c in parts) == getattr(whole.columns[column], field)
        assert all(c.columns["country"].categories == {c.slice_value: c.row_count} for c in parts)
    sliced = {(r.slice_key, r.slice_value) for r in result.metrics}
    assert sliced == {WHOLE, ("country", "DE"), ("country", "FR"), ("country", "NL")}
    # each slice has its own thresholds and still sees the shift
    for value in ("DE", "FR", "NL"):
        ks = [r for r in _baseline(result, key=("country", value)) if (r.column, r.metric) == ("shifted",
                                                                                              "kolmogorov_smirnov")]
        assert sum(r.alert for r in ks) >= ANALYSIS_DAYS - 1


@pytest.mark.parametrize(("expression", "message"), [
    ("1=1; DROP TABLE x", "not allowed"),
    ("(SELECT max(id) FROM src)", "neither a column"),
    ("country IN (SELECT country FROM src)", "neither a column"),
    ("exists(SELECT 1)", "function 'exists' is not allowed"),
    ("evil_udf(country)", "function 'evil_udf' is not allowed"),
    ("reflect('java.lang.System', 'exit', '0')", "function 'reflect' is not allowed"),
    ("country /* comment */", "comments"),
    ("upper(country, country)", "Spark cannot use"),
])
def test_malicious_slice_expressions_rejected(spark, monitored, expression, message):
    config, _ = monitored
    spark.udf.register("evil_udf", lambda s: s)
    bad = parse_config({**_raw(config), "slices": {"expressions": [expression]}})
    with pytest.raises(ConfigError, match=rf"slices\.expressions\[0\].*{message}"):
        open_source(spark, bad)


def _raw(config) -> dict:
    return {"monitor": "t", "problem_type": "binary",
            "source": {"table": config.source.table, "id_column": "id", "timestamp_column": "ts"},
            "features": [{"name": n, "kind": k} for n, k in FEATURES], "outputs": {"score": "score"},
            "chunking": {"period": "1d"}, "reference": {"start": "2025-01-01", "end": f"2025-01-{REF_DAYS + 1:02d}"},
            "output": {"path": config.output.path}, "mlflow": {"enabled": False}}


def test_threshold_rules():
    assert bounds(ThresholdRule("psi"), [0.1, 0.2, 0.3], (0, np.inf)) == Bounds(None, pytest.approx(0.2 + 3 * 0.08165,
                                                                                                   rel=1e-4))
    two_sided = bounds(ThresholdRule("missing_rate", std_lower=3, std_upper=3), [0.01, 0.02], (0, 1))
    assert two_sided.lower == 0.0 and two_sided.upper == pytest.approx(0.03)  # clamped at the range
    assert bounds(ThresholdRule("psi"), [0.1], (0, 1)) == Bounds(None, None)  # one value: no std
    assert bounds(ThresholdRule("chi2_pvalue", "pvalue", alpha=0.01), [], (0, 1)).alert(0.001)
    rules = (ThresholdRule("kolmogorov_smirnov", "constant", upper=0.1),
             ThresholdRule("kolmogorov_smirnov", "none", columns=("a",)))
    assert resolve(rules, "kolmogorov_smirnov", "b", BASELINE).type == "constant"
    assert resolve(rules, "kolmogorov_smirnov", "a", BASELINE).type == "none"
    assert resolve((), "unseen", "a", BASELINE).upper == 0.01
