"""KLL on Spark < 4.1: the `datasketches` fallback (`profile.kll: python`) against Spark's native aggregate.

One DataFrame of 3 chunks x 20k rows (continuous shapes with nulls, NaN, +-inf, ties, a column without
any finite value in its last chunk) and two slices, profiled by both paths in the same session. Counts,
min, max, moments and sketch n must be equal; quantiles agree by rank within the KLL bound (each path
within the a-priori rank error of numpy's exact ranks, the two within twice that); sketches of either
origin merge and parse. Which path really ran is read from the executed plans (Spark UI REST API).
"""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import datasketches as ds
import numpy as np
import pandas as pd
import pytest
import yaml
from pyspark.sql import functions as F

from monitoring import sketches
from monitoring.chunking import CHUNK_COL
from monitoring.config import Chunking, parse_config
from monitoring.drift.distributions import kll_items, parse_compact_kll
from monitoring.errors import ConfigError
from monitoring.profiling import profile_chunks
from monitoring.sketches import kll_rank_error, merge_all, resolve_kll_impl
from monitoring.slices import with_slices

ROWS = 20_000  # per chunk
CHUNKS = 3
K = 200  # small k: 20k values per chunk put the sketches deep into estimation mode
EPS = kll_rank_error(K)  # 0.0133
RANKS = np.linspace(0.01, 0.99, 99)
COLUMNS = ("normal", "heavy", "bimodal", "discrete", "constant", "gone")
NATIVE_MARK = "kll_sketch_agg_double"
PYTHON_MARKS = ("MapInPandas", "AggregateInPandas", "ArrowAggregatePython")


def _values(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Column -> values of all chunks; NaN marks null, the NaN/inf flags are applied in Spark."""
    n = ROWS * CHUNKS
    normal = rng.normal(0, 1, n)
    normal[rng.random(n) < 0.05] = np.nan
    mix = np.where(rng.random(n) < 0.3, rng.normal(-2, 0.5, n), rng.normal(3, 1, n))
    gone = rng.lognormal(0, 1, n)
    gone[2 * ROWS:] = np.nan  # last chunk: nulls only (some become NaN/inf below)
    return {"normal": normal, "heavy": rng.standard_t(2, n) * 100, "bimodal": mix,
            "discrete": rng.poisson(2.0, n).astype(float), "constant": np.full(n, 7.25), "gone": gone}


@pytest.fixture(scope="module")
def data(spark):
    return make_data(spark)


def make_data(spark):
    """(profiled DataFrame, the pandas rows, column -> finite values with NaN for anything else)."""
    rng = np.random.default_rng(7)
    values = _values(rng)
    n = ROWS * CHUNKS
    frame = pd.DataFrame({CHUNK_COL: np.repeat(np.arange(CHUNKS), ROWS), "id": np.arange(n),
                          "ts": pd.Timestamp(datetime(2025, 1, 1, tzinfo=timezone.utc)),
                          "seg": rng.choice(["a", "b", "c"], n), **values})
    special = {}  # column -> (row is NaN, row is +inf, row is -inf): non-finite values Spark must count
    for name in ("normal", "heavy", "gone"):
        u = rng.random(n)
        special[name] = (u < 0.02, (u >= 0.02) & (u < 0.03), (u >= 0.03) & (u < 0.035))
        frame[f"{name}_k"] = np.select(special[name], [1, 2, 3], 0)
    sdf = spark.createDataFrame(frame)  # pandas NaN arrives as null
    for name in special:
        k = F.col(f"{name}_k")
        sdf = sdf.withColumn(name, F.when(k == 1, F.lit(float("nan"))).when(k == 2, F.lit(float("inf")))
                             .when(k == 3, F.lit(float("-inf"))).otherwise(F.col(name)))
    # several input partitions per chunk, so the python path merges partial sketches
    sdf = with_slices(sdf.repartition(3), {"seg": ["a", "b"]})
    finite = {c: np.where(np.logical_or.reduce(special[c]), np.nan, v) if c in special else v
              for c, v in values.items()}
    return sdf, frame, finite


def _sql_plans(spark) -> list[tuple[int, str]]:
    """(execution id, physical plan) of every SQL execution of this application, from the Spark UI."""
    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/sql?details=true&planDescription=true&length=100000"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return [(int(e["id"]), e.get("planDescription", "")) for e in json.load(resp)]


def _profile(spark, sdf, impl: str):
    """Profiles of (chunk, slice key, slice value, column) and the plans Spark executed for them."""
    before = max((i for i, _ in _sql_plans(spark)), default=-1)
    columns = [(c, "continuous") for c in COLUMNS]
    chunks = profile_chunks(sdf, columns, Chunking(size=ROWS), "ts", K, 10, kll_impl=impl)
    plans = [p for i, p in _sql_plans(spark) if i > before]
    out = {(c.chunk.index, c.slice_key, c.slice_value, name): p for c in chunks for name, p in c.columns.items()}
    return out, plans


@pytest.fixture(scope="module")
def both(spark, data):
    sdf = data[0]
    native, native_plans = _profile(spark, sdf, "native")
    python, python_plans = _profile(spark, sdf, "python")
    return native, python, native_plans, python_plans


def _exact(frame: pd.DataFrame, finite: dict[str, np.ndarray], chunk: int, slice_value: str, column: str):
    rows = (frame[CHUNK_COL] == chunk).to_numpy()
    if slice_value:
        rows &= (frame["seg"] == slice_value).to_numpy()
    v = finite[column][rows]
    return np.sort(v[~np.isnan(v)])


def test_each_path_runs_its_own_plan(both):
    _, _, native_plans, python_plans = both
    assert any(NATIVE_MARK in p for p in native_plans)
    assert not any(m in p for p in native_plans for m in PYTHON_MARKS)
    assert not any(NATIVE_MARK in p for p in python_plans)
    assert any("MapInPandas" in p for p in python_plans), "the partial sketches did not run in mapInPandas"
    assert any("AggregateInPandas" in p or "ArrowAggregatePython" in p for p in python_plans), \
        "the partial sketches were not merged by the grouped-aggregate pandas UDF"


def test_same_counts_extremes_and_moments(both):
    native, python, _, _ = both
    assert native.keys() == python.keys()
    assert len(native) == CHUNKS * 3 * len(COLUMNS)  # whole table and slices a, b
    for key, a in native.items():
        b = python[key]
        for f in ("row_count", "null_count", "nan_count", "inf_count", "valid_count", "min", "max"):
            assert getattr(a, f) == getattr(b, f), (key, f)
        # the same aggregate in two jobs: only the order of floating-point additions may differ
        if a.valid_count:
            assert (b.mean, b.m2) == pytest.approx((a.mean, a.m2), rel=1e-12, abs=1e-12), key
        else:
            assert (a.mean, a.m2, b.mean, b.m2) == (None, None, None, None), key
        sa, sb = a.sketch(), b.sketch()
        assert sa.n == sb.n == a.valid_count and sa.k == sb.k == K, key
    for key in [k for k in native if k[3] == "gone" and k[0] == CHUNKS - 1]:
        p = python[key]
        assert p.valid_count == 0 and p.min is None and p.nan_count > 0 and p.inf_count > 0, key
        assert p.kll == native[key].kll == ds.kll_doubles_sketch(K).serialize(), "no values: the empty sketch"


def test_counts_match_the_data(both, data):
    _, frame, finite = data
    _, python, _, _ = both
    for (chunk, _, slice_value, column), p in python.items():
        exact = _exact(frame, finite, chunk, slice_value, column)
        assert p.valid_count == exact.size
        if exact.size:
            assert (p.min, p.max) == (exact[0], exact[-1])


def test_quantiles_agree_by_rank(both, data):
    _, frame, finite = data
    native, python, _, _ = both
    worst = {"native": 0.0, "python": 0.0, "between": 0.0}
    for key, a in native.items():
        if not a.valid_count:
            continue
        exact = _exact(frame, finite, key[0], key[2], key[3])
        sa, sb = a.sketch(), python[key].sketch()
        for q in list(sa.get_quantiles(RANKS.tolist())) + list(sb.get_quantiles(RANKS.tolist())):
            true = np.searchsorted(exact, q, side="right") / exact.size
            ra, rb = sa.get_rank(q, True), sb.get_rank(q, True)
            worst["native"] = max(worst["native"], abs(ra - true))
            worst["python"] = max(worst["python"], abs(rb - true))
            worst["between"] = max(worst["between"], abs(ra - rb))
    assert worst["native"] <= EPS and worst["python"] <= EPS, worst
    assert worst["between"] <= 2 * EPS, worst
    assert python[(0, "", "", "normal")].sketch().is_estimation_mode(), "exact sketches would hide a bad fallback"


def test_python_and_native_sketches_merge_and_parse(both, data):
    _, frame, finite = data
    native, python, _, _ = both
    for column in ("normal", "discrete", "gone"):
        parts = [native[(0, "", "", column)], python[(1, "", "", column)], native[(2, "", "", column)]]
        merged = merge_all(parts)
        exact = np.sort(np.concatenate([_exact(frame, finite, c, "", column) for c in range(CHUNKS)]))
        sk = merged.sketch()
        assert sk.n == merged.valid_count == exact.size
        assert (sk.get_min_value(), sk.get_max_value()) == (exact[0], exact[-1])
        for q in sk.get_quantiles(RANKS.tolist()):
            assert abs(sk.get_rank(q, True) - np.searchsorted(exact, q, side="right") / exact.size) <= EPS
        reverse = merge_all(parts[::-1]).sketch()
        assert reverse.n == sk.n and reverse.get_min_value() == sk.get_min_value()
    for p in python.values():  # the drift code's numpy parse reads python-built sketches like native ones
        values, weights = kll_items(p.kll)
        parsed = parse_compact_kll(p.kll)
        assert parsed is not None and weights.sum() == p.valid_count
        if p.valid_count:
            assert values.min() >= p.min and values.max() <= p.max


def test_spark_reads_python_built_sketches(spark, both):
    _, python, _, _ = both
    p = python[(0, "", "", "normal")]
    row = spark.createDataFrame([(bytearray(p.kll),)], "b binary").select(
        F.kll_sketch_get_n_double("b").alias("n"), F.kll_sketch_get_quantile_double("b", F.lit(0.5)).alias("q")
    ).first()
    assert row["n"] == p.valid_count
    assert row["q"] in (p.sketch().get_quantile(0.5, True), p.sketch().get_quantile(0.5, False))


def test_flushed_partials_give_the_same_counts(spark, data, both, monkeypatch):
    """With room for one partial sketch per Python worker, every new group flushes: more partials to merge."""
    native = both[0]
    monkeypatch.setattr(sketches, "_PARTIAL_BYTES", 1)
    flushed, _ = _profile(spark, data[0], "python")
    assert flushed.keys() == native.keys()
    for key, a in native.items():
        b = flushed[key]
        assert (b.valid_count, b.min, b.max, b.inf_count) == (a.valid_count, a.min, a.max, a.inf_count), key
        assert b.sketch().n == a.valid_count and b.sketch().k == K, key


@pytest.mark.parametrize(("version", "setting", "expected"), [
    ("3.5.2", "auto", "python"), ("4.0.1", "auto", "python"), ("4.1.0", "auto", "native"),
    ("4.1.0-SNAPSHOT", "auto", "native"), ("4.2.0", "auto", "native"), ("10.0.0", "auto", "native"),
    ("4.1.4", "python", "python"), ("3.5.0", "native", "native"),
])
def test_resolve_kll_impl(version, setting, expected):
    assert resolve_kll_impl(SimpleNamespace(version=version), setting) == expected


def test_resolve_logs_once_and_rejects_unknown(caplog):
    fake = SimpleNamespace(version="3.5.9")
    with caplog.at_level(logging.INFO, logger="monitoring.sketches"):
        resolve_kll_impl(fake, "auto")
        resolve_kll_impl(fake, "auto")
    lines = [r.getMessage() for r in caplog.records if "KLL sketches" in r.getMessage()]
    assert lines == ["KLL sketches: the datasketches package (pandas UDFs) (profile.kll: auto, Spark 3.5.9)"]
    with pytest.raises(ValueError, match="profile.kll"):
        resolve_kll_impl(fake, "java")
    with pytest.raises(ValueError, match="kll_impl"):
        profile_chunks(None, [], Chunking(size=1), "ts", K, 10, kll_impl="auto")


def test_config_setting():
    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "demo.yaml").read_text())
    assert parse_config(data).profile.kll == "auto"
    data["profile"] = {"kll": "python"}
    assert parse_config(data).profile.kll == "python"
    data["profile"] = {"kll": "java"}
    with pytest.raises(ConfigError, match=r"profile\.kll.*'java' is not valid; choose one of: auto, native, python"):
        parse_config(data)


def test_categorical_only_needs_no_kll(spark, data):
    chunks = profile_chunks(data[0], [("seg", "categorical")], Chunking(size=ROWS), "ts", K, 10, kll_impl="python")
    assert len(chunks) == CHUNKS * 3 and all(c.columns["seg"].kll is None for c in chunks)
