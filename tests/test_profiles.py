"""Profiles against an exact numpy computation on the same rows.

Tolerances: counts exact; min and max exact; mean and m2 1e-9 relative; KLL quantiles: the true rank of
each returned quantile is within the sketch's a-priori rank error (99% bound) of the requested rank.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from monitoring.pipeline import ANALYSIS, fit, profile_dataset, profiles_table, run
from monitoring.sketches import kll_rank_error, merge_all
from monitoring.stores.profiles import read_profiles

from .helpers import make_config

DAYS, PER_DAY, K, TOP_N = 3, 40_000, 2000, 10
START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _columns(rng: np.random.Generator, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (values, null mask)."""
    dirty = rng.normal(3.0, 2.0, n)
    u = rng.random(n)
    dirty[u < 0.05] = np.nan
    dirty[(u >= 0.05) & (u < 0.06)] = np.inf
    dirty[(u >= 0.06) & (u < 0.065)] = -np.inf
    cats = np.array([f"v{int(i)}" for i in np.minimum(rng.zipf(1.6, n), 40)], dtype=object)
    no_nulls = np.zeros(n, bool)
    return {
        "normal": (rng.normal(1e4, 3.0, n), no_nulls),
        "heavy": (rng.standard_t(1.2, n) * 1e3, no_nulls),
        "constant": (np.full(n, 5.0), no_nulls),
        "dirty": (dirty, (u >= 0.065) & (u < 0.095)),
        "discrete": (rng.integers(0, 5, n).astype(float), rng.random(n) < 0.02),
        "bimodal": (np.where(rng.random(n) < 0.3, rng.normal(-5, 1, n), rng.normal(5, 0.5, n)), no_nulls),
        "city": (cats, rng.random(n) < 0.04),
        "score": (rng.random(n), no_nulls),
    }


FEATURES = [("normal", "continuous"), ("heavy", "continuous"), ("constant", "continuous"), ("dirty", "continuous"),
            ("discrete", "continuous"), ("bimodal", "continuous"), ("city", "categorical")]


@pytest.fixture(scope="module")
def dataset(spark, tmp_path_factory):
    rng = np.random.default_rng(42)
    n = DAYS * PER_DAY
    cols = _columns(rng, n)
    ts = START.timestamp() + np.sort(rng.random(n)) * DAYS * 86400
    arrays = {"id": pa.array(np.arange(n)), "ts": pa.array((ts * 1e6).astype("int64"), pa.timestamp("us", "UTC"))}
    for name, (values, nulls) in cols.items():
        arrays[name] = pa.array(values, mask=nulls, type=pa.string() if values.dtype == object else pa.float64())
    root = tmp_path_factory.mktemp("profiles")
    path = str(root / "src")
    spark.createDataFrame(pa.table(arrays)).write.format("delta").save(path)
    day = ((ts - START.timestamp()) // 86400).astype(int)
    config = make_config(path, FEATURES, str(root / "out"), profile={"kll_k": K, "top_n": TOP_N},
                         reference={"start": "2025-01-01", "end": "2025-01-02"})
    return config, cols, day


def _expected(values, nulls):
    finite = values[~nulls & np.isfinite(values)]
    return finite, {
        "null_count": int(nulls.sum()),
        "nan_count": int((~nulls & np.isnan(values)).sum()),
        "inf_count": int((~nulls & np.isinf(values)).sum()),
        "valid_count": finite.size,
    }


def test_profiles_match_numpy(spark, dataset):
    config, cols, day = dataset
    fit(spark, config)
    result = run(spark, config)
    assert [c.chunk.key for c in result.chunks] == ["2025-01-02", "2025-01-03"]
    stored = read_profiles(spark, profiles_table(config), "t", ANALYSIS)
    eps = kll_rank_error(K)
    ranks = np.linspace(0.0, 1.0, 41)
    for chunk in stored:
        rows = day == (chunk.chunk.start - START).days
        assert chunk.row_count == rows.sum()
        for name, kind in FEATURES + [("score", "continuous")]:
            p = chunk.columns[name]
            values, nulls = cols[name][0][rows], cols[name][1][rows]
            assert p.row_count == rows.sum()
            if kind == "categorical":
                present = values[~nulls]
                uniq, counts = np.unique(present.astype(str), return_counts=True)
                order = sorted(zip(uniq, counts, strict=True), key=lambda kv: (-kv[1], kv[0]))
                assert p.null_count == nulls.sum()
                assert p.categories == {str(k): int(c) for k, c in order[:TOP_N]}
                assert p.other_count == sum(int(c) for _, c in order[TOP_N:])
                assert p.distinct_count == len(uniq)
                continue
            finite, counts = _expected(values.astype(float), nulls)
            for field_name, expected in counts.items():
                assert getattr(p, field_name) == expected, (name, field_name)
            assert p.min == finite.min() and p.max == finite.max(), name
            assert p.mean == pytest.approx(finite.mean(), rel=1e-9, abs=1e-12), name
            assert p.m2 == pytest.approx(((finite - finite.mean()) ** 2).sum(), rel=1e-9, abs=1e-9), name
            sorted_values = np.sort(finite)
            quantiles = p.quantiles(ranks)
            true_ranks = np.searchsorted(sorted_values, quantiles, side="right") / finite.size
            lower_ranks = np.searchsorted(sorted_values, quantiles, side="left") / finite.size
            # a quantile q answers rank r if r lies within [rank(<q), rank(<=q)], up to the sketch error
            err = np.maximum(0.0, np.maximum(lower_ranks - ranks, ranks - true_ranks))
            assert err.max() <= eps, (name, err.max(), eps)


def test_rerun_replaces_rows(spark, dataset):
    config, _, _ = dataset
    table = f"delta.`{profiles_table(config)}`"
    profile_dataset(spark, config, ANALYSIS, refresh=True)
    before = spark.sql(f"SELECT * FROM {table}").count()
    profile_dataset(spark, config, ANALYSIS, refresh=True)
    after = spark.sql(f"SELECT * FROM {table}").count()
    # a row per chunk x (feature, score) and the chunk's `:sums` row (failed-prediction counts, errors)
    assert before == after == (DAYS * len(FEATURES + [("score", ""), (":sums", "")]))


def test_merged_chunks_equal_whole_table(spark, dataset):
    """Merging per-chunk states equals profiling all rows at once (moments exact, KLL within bound)."""
    config, cols, _ = dataset
    chunks = read_profiles(spark, profiles_table(config), "t", ANALYSIS)
    chunks += read_profiles(spark, profiles_table(config), "t", "reference")
    merged = merge_all([c.columns["dirty"] for c in chunks])
    finite, counts = _expected(*cols["dirty"])
    assert merged.valid_count == counts["valid_count"] and merged.nan_count == counts["nan_count"]
    assert merged.mean == pytest.approx(finite.mean(), rel=1e-9)
    assert merged.m2 == pytest.approx(((finite - finite.mean()) ** 2).sum(), rel=1e-9)
    sorted_values = np.sort(finite)
    q = merged.quantiles([0.01, 0.25, 0.5, 0.75, 0.99])
    ranks = np.searchsorted(sorted_values, q, side="right") / finite.size
    assert np.abs(ranks - [0.01, 0.25, 0.5, 0.75, 0.99]).max() <= kll_rank_error(K)
    city = merge_all([c.columns["city"] for c in chunks], top_n=TOP_N)
    values, nulls = cols["city"]
    assert city.null_count == nulls.sum()
    assert sum(city.categories.values()) + city.other_count == (~nulls).sum()
