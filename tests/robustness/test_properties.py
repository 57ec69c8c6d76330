"""Property-based tests (hypothesis) of the pure numpy/scipy drift statistics and of profile merges.

Conventions from docs/statistics.md and docs/profiles.md: reference-quantile bins with two leftover bins,
PSI epsilon `drift.psi_epsilon` (1e-4, natural log), Jensen-Shannon in log base 2; NaN, +-inf and nulls
are counted in the profile and excluded from every distribution. Column states are built here in pure
Python the way the Spark pass fills them (monitoring/profiling.py), so no SparkSession is ever started.
"""

from __future__ import annotations

import math
from collections import Counter

import datasketches as ds
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from monitoring.drift import methods as M
from monitoring.drift.distributions import CategoryCounts, WeightedSample, quantile_edges
from monitoring.registry import value_range
from monitoring.sketches import (
    CATEGORICAL,
    CONTINUOUS,
    HLL_LG_K,
    ColumnProfile,
    kll_rank_error,
    merge_all,
    pooled_std,
    top_counts,
)

EPS = 1e-4  # drift.psi_epsilon default
K = 2000  # profile.kll_k default: a sketch of up to ~k values is exact
SETTINGS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------ strategies

FINITE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
VALUE = st.one_of(st.integers(-5, 5).map(float), FINITE)  # small integers give ties, as in discrete columns
VALUES = st.lists(VALUE, min_size=1, max_size=300)
WEIGHT = st.integers(0, 12).map(lambda h: 2.0 ** h)  # a KLL item at compaction level h weighs 2^h
SPECIAL = st.sampled_from([None, math.nan, math.inf, -math.inf])  # counted, never measured
ROW = st.one_of(VALUE, SPECIAL)
# no empty string: DataSketches' HLL ignores it, which would only blur the distinct-count check
CATEGORY = st.text(alphabet="abcdef", min_size=1, max_size=2)
COUNTS = st.dictionaries(CATEGORY, st.integers(0, 10**6), min_size=1, max_size=30)
CATEGORY_ROWS = st.lists(st.one_of(CATEGORY, st.none()), min_size=0, max_size=300)

CONTINUOUS_DISTANCES = ("kolmogorov_smirnov", "wasserstein", "jensen_shannon", "hellinger", "psi")
CATEGORICAL_DISTANCES = ("chi2", "jensen_shannon", "hellinger", "l_infinity", "total_variation", "psi")


@st.composite
def weighted(draw) -> tuple[list[float], list[float]]:
    """Values and KLL-like weights (powers of two), as a sketch's retained items."""
    values = draw(VALUES)
    return values, draw(st.lists(WEIGHT, min_size=len(values), max_size=len(values)))


def sample(values, weights, mean: float | None | str = "exact") -> WeightedSample:
    """The weighted sample with the exact (correctly rounded, order-free) weighted mean, as the moments give."""
    v, w = np.asarray(values, float), np.asarray(weights, float)
    if mean == "exact":
        mean = math.fsum(v * w) / math.fsum(w)  # v * 2^h is exact
    return WeightedSample.of(v, w, mean)


def weighted_std(s: WeightedSample) -> float:
    return float(np.sqrt(np.average((s.values - np.average(s.values, weights=s.weights)) ** 2, weights=s.weights)))


def one_row_each(a, b) -> bool:
    """Both sides of total weight 1: the KS p-value is NaN there (test_ks_pvalue_one_row_each_side)."""
    return a.n == 1 and b.n == 1


# ------------------------------------------------------------------------------ column states as the Spark pass

def continuous_profile(rows: list[float | None], k: int = K) -> ColumnProfile:
    """What monitoring/profiling.py stores for a continuous column: nulls and NaN counted by the moments
    aggregation, the KLL sketch of the finite values (NaN and +-inf mapped to null), valid count, min and
    max read from the sketch, inf = non-null - NaN - n; mean = sum / n and m2 = var_pop x n (here from
    correctly rounded sums, so the expectations below do not depend on the row order)."""
    nulls = sum(v is None for v in rows)
    x = np.array([math.nan if v is None else v for v in rows], float)
    nan = int(np.sum(np.isnan(x))) - nulls
    finite = x[np.isfinite(x)]
    sk = ds.kll_doubles_sketch(k)
    if finite.size:
        sk.update(finite)
    p = ColumnProfile(column="x", kind=CONTINUOUS, row_count=len(rows), null_count=nulls, nan_count=nan,
                      kll=sk.serialize())
    n = int(sk.n)
    p.valid_count, p.inf_count = n, len(rows) - nulls - nan - n
    if n:
        p.min, p.max = float(sk.get_min_value()), float(sk.get_max_value())
        p.mean = math.fsum(finite) / n
        p.m2 = math.fsum((finite - p.mean) ** 2)
    return p


def categorical_profile(rows: list[str | None], top_n: int) -> ColumnProfile:
    """What monitoring/profiling.py stores for a categorical column: nulls, the top-N counts (ties broken
    by value), the rest in other_count, the exact distinct count and an HLL sketch of the values."""
    counts = Counter(v for v in rows if v is not None)
    kept = top_counts(dict(counts), top_n)
    hll = ds.hll_sketch(HLL_LG_K, ds.tgt_hll_type.HLL_8)
    for v in counts:
        hll.update(v)
    nulls = sum(v is None for v in rows)
    return ColumnProfile(column="c", kind=CATEGORICAL, row_count=len(rows), null_count=nulls,
                         valid_count=len(rows) - nulls, categories=kept,
                         other_count=sum(counts.values()) - sum(kept.values()), distinct_count=len(counts),
                         hll=hll.serialize_compact())


def continuous_dist(p: ColumnProfile) -> WeightedSample:
    return WeightedSample.from_kll(p.kll, p.mean, (p.min, p.max))  # as monitoring/drift/compare.py


def categorical_dist(p: ColumnProfile) -> CategoryCounts:
    return CategoryCounts.of(p.categories, p.other_count)


def in_range(metric: str, value: float) -> bool:
    lo, hi = value_range(metric)
    return lo <= value <= hi


# ------------------------------------------------------------------------------ 1. zero on identical inputs

@SETTINGS
@given(drawn=weighted(), factor=st.integers(1, 5), bins=st.integers(1, 20))
def test_zero_on_identical_continuous(drawn, factor, bins):
    """The same distribution on both sides (the same items, or every item `factor` times, same exact mean)."""
    values, weights = drawn
    ref = sample(values, weights)
    cur = sample(values, [w * factor for w in weights], mean=ref.mean)
    assume(not one_row_each(ref, cur))
    edges = quantile_edges(ref, bins)
    std = weighted_std(ref)
    out = M.continuous_metrics(ref, cur, edges, std, M.CONTINUOUS_METHODS, EPS)
    for metric in (*CONTINUOUS_DISTANCES, "out_of_range"):
        assert out[metric] == pytest.approx(0.0, abs=1e-12), metric
    assert out["kolmogorov_smirnov_pvalue"] == pytest.approx(1.0, abs=1e-12)
    assert out["wasserstein_normalized"] == (None if std == 0 else pytest.approx(0.0, abs=1e-12))
    # the other histogram distances (categorical in the pipeline) on the same bins
    p, q = ref.bin_probabilities(edges), cur.bin_probabilities(edges)
    for name, fn in M.HISTOGRAM_METHODS.items():
        assert fn(p, q, EPS) == pytest.approx(0.0, abs=1e-12), name


@SETTINGS
@given(counts=COUNTS, other=st.integers(0, 1000), factor=st.integers(1, 5))
def test_zero_on_identical_categorical(counts, other, factor):
    """The same category counts on both sides, or all of them `factor` times (the same proportions)."""
    ref = CategoryCounts.of(counts, other)
    assume(ref.n > 0)
    cur = CategoryCounts.of({k: v * factor for k, v in counts.items()}, other * factor)
    out = M.categorical_metrics(ref, cur, M.CATEGORICAL_METHODS, EPS)
    for metric in CATEGORICAL_DISTANCES:
        assert out[metric] == pytest.approx(0.0, abs=1e-12), metric
    # unseen: 0, or unknowable (None) when the reference was cut to its top-N
    assert out["unseen"] is None if other else out["unseen"] == pytest.approx(0.0, abs=1e-12)
    assert out["chi2_pvalue"] == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------------------ 2. bounded (the registry's ranges)

@SETTINGS
@given(a=weighted(), b=weighted(), bins=st.integers(1, 20), with_means=st.booleans())
def test_continuous_metrics_in_range(a, b, bins, with_means):
    ref = sample(*a, mean="exact" if with_means else None)
    cur = sample(*b, mean="exact" if with_means else None)
    assume(not one_row_each(ref, cur))
    edges = quantile_edges(ref, bins)
    std = weighted_std(ref)
    out = M.continuous_metrics(ref, cur, edges, std, M.CONTINUOUS_METHODS, EPS)
    assert set(out) == {*M.CONTINUOUS_METHODS, "kolmogorov_smirnov_pvalue", "wasserstein_normalized"}
    for metric, value in out.items():
        if metric == "wasserstein_normalized" and std == 0:
            assert value is None  # a constant reference has no scale
            continue
        assert in_range(metric, value), (metric, value)
    # bins: a probability vector, no reference mass in the leftover bins; every histogram distance in range
    p, q = ref.bin_probabilities(edges), cur.bin_probabilities(edges)
    for h in (p, q):
        assert np.all(h >= 0) and h.sum() == pytest.approx(1.0, abs=1e-12)
    if len(edges) > 1:  # a constant reference (one edge) loses its lower leftover bin: test_constant_reference_bins
        assert p[0] == 0 and p[-1] == 0
        assert len(p) == len(edges) + 1
    for name, fn in M.HISTOGRAM_METHODS.items():
        assert in_range(name, fn(p, q, EPS)), name


@SETTINGS
@given(ref_counts=COUNTS, cur_counts=COUNTS, ref_other=st.integers(0, 1000), cur_other=st.integers(0, 1000))
def test_categorical_metrics_in_range(ref_counts, cur_counts, ref_other, cur_other):
    ref, cur = CategoryCounts.of(ref_counts, ref_other), CategoryCounts.of(cur_counts, cur_other)
    assume(ref.n > 0 and cur.n > 0)
    out = M.categorical_metrics(ref, cur, M.CATEGORICAL_METHODS, EPS)
    assert set(out) == {*M.CATEGORICAL_METHODS, "chi2_pvalue"}
    assert (out["unseen"] is None) == (ref_other > 0)  # unknowable against a reference cut to its top-N
    for metric, value in out.items():
        assert value is None and metric == "unseen" or in_range(metric, value), (metric, value)


# ------------------------------------------------------------------------------ 3. symmetric

def swapped_equal(forward: dict, backward: dict, metrics) -> None:
    for metric in metrics:
        assert backward[metric] == pytest.approx(forward[metric], rel=1e-12, abs=1e-15), metric


@SETTINGS
@given(a=weighted(), b=weighted(), bins=st.integers(1, 20), with_means=st.booleans())
def test_continuous_metrics_symmetric_on_fixed_edges(a, b, bins, with_means):
    """Reference and current swapped, the same edges and std passed explicitly. Symmetric by their formulas:
    KS (and its p-value: en = nm/(n+m)), Wasserstein (A and B swap, |mean difference| unchanged), JS, Hellinger,
    PSI (sum (q'-p') ln(q'/p') with both sides floored at the same epsilon), L-infinity, total variation.
    Intentionally NOT symmetric, so not asserted: `out_of_range` (the current mass outside the reference
    range); in the pipeline also every binned method (edges come from the reference's quantiles) and
    `wasserstein_normalized` (divided by the reference std) -- here both get the same edges and std."""
    ref = sample(*a, mean="exact" if with_means else None)
    cur = sample(*b, mean="exact" if with_means else None)
    assume(not one_row_each(ref, cur))
    edges = quantile_edges(ref, bins)
    std = weighted_std(ref) or 1.0
    forward = M.continuous_metrics(ref, cur, edges, std, M.CONTINUOUS_METHODS, EPS)
    backward = M.continuous_metrics(cur, ref, edges, std, M.CONTINUOUS_METHODS, EPS)
    swapped_equal(forward, backward, (*CONTINUOUS_DISTANCES, "wasserstein_normalized"))
    assert backward["kolmogorov_smirnov_pvalue"] == pytest.approx(forward["kolmogorov_smirnov_pvalue"],
                                                                  rel=1e-9, abs=1e-300)
    p, q = ref.bin_probabilities(edges), cur.bin_probabilities(edges)
    for name, fn in M.HISTOGRAM_METHODS.items():
        assert fn(q, p, EPS) == pytest.approx(fn(p, q, EPS), rel=1e-12, abs=1e-15), name


@SETTINGS
@given(ref_counts=COUNTS, cur_counts=COUNTS, ref_other=st.integers(0, 1000), cur_other=st.integers(0, 1000))
def test_categorical_metrics_symmetric(ref_counts, cur_counts, ref_other, cur_other):
    """Swapping reference and current swaps the two rows of the 2 x K table, which leaves Pearson's chi-square
    (statistic and p-value) unchanged; JS, Hellinger, L-infinity, total variation and PSI are symmetric in p, q.
    Intentionally NOT symmetric, so not asserted: `unseen` (current mass in categories the reference lacks)."""
    ref, cur = CategoryCounts.of(ref_counts, ref_other), CategoryCounts.of(cur_counts, cur_other)
    assume(ref.n > 0 and cur.n > 0)
    forward = M.categorical_metrics(ref, cur, M.CATEGORICAL_METHODS, EPS)
    backward = M.categorical_metrics(cur, ref, M.CATEGORICAL_METHODS, EPS)
    swapped_equal(forward, backward, CATEGORICAL_DISTANCES)
    assert backward["chi2_pvalue"] == pytest.approx(forward["chi2_pvalue"], rel=1e-9, abs=1e-300)


# ------------------------------------------------------------------------------ 4. invariant to row order

@SETTINGS
@given(data=st.data(), ref_rows=st.lists(ROW, min_size=1, max_size=300),
       cur_rows=st.lists(ROW, min_size=1, max_size=300), bins=st.integers(1, 20))
def test_continuous_metrics_invariant_to_row_order(data, ref_rows, cur_rows, bins):
    """Profiles of permuted rows (k = 2000 > rows: the sketch keeps every value) give identical metrics."""
    ref_perm, cur_perm = data.draw(st.permutations(ref_rows)), data.draw(st.permutations(cur_rows))
    states = [continuous_profile(rows) for rows in (ref_rows, cur_rows, ref_perm, cur_perm)]
    for original, permuted in ((states[0], states[2]), (states[1], states[3])):
        assert (original.row_count, original.null_count, original.nan_count, original.inf_count,
                original.valid_count, original.min, original.max, original.mean, original.m2) == (
                permuted.row_count, permuted.null_count, permuted.nan_count, permuted.inf_count,
                permuted.valid_count, permuted.min, permuted.max, permuted.mean, permuted.m2)
    assume(states[0].valid_count and states[1].valid_count)
    ref, cur, ref_p, cur_p = (continuous_dist(s) for s in states)
    assume(not one_row_each(ref, cur))
    for s, sp in ((ref, ref_p), (cur, cur_p)):
        assert np.array_equal(s.values, sp.values) and np.array_equal(s.weights, sp.weights)
    std = pooled_std([states[0]])
    out = M.continuous_metrics(ref, cur, quantile_edges(ref, bins), std, M.CONTINUOUS_METHODS, EPS)
    out_p = M.continuous_metrics(ref_p, cur_p, quantile_edges(ref_p, bins), std, M.CONTINUOUS_METHODS, EPS)
    assert out == out_p


@SETTINGS
@given(data=st.data(), a=weighted(), b=weighted(), bins=st.integers(1, 20))
def test_weighted_sample_invariant_to_item_order(data, a, b, bins):
    """A weighted sample built from its (value, weight) items in any order, e.g. sketch levels read in
    another order, gives identical metrics."""
    ref, cur = sample(*a), sample(*b)
    assume(not one_row_each(ref, cur))
    order_a = data.draw(st.permutations(range(len(a[0]))))
    order_b = data.draw(st.permutations(range(len(b[0]))))
    ref_p = sample([a[0][i] for i in order_a], [a[1][i] for i in order_a])
    cur_p = sample([b[0][i] for i in order_b], [b[1][i] for i in order_b])
    out = M.continuous_metrics(ref, cur, quantile_edges(ref, bins), 1.0, M.CONTINUOUS_METHODS, EPS)
    out_p = M.continuous_metrics(ref_p, cur_p, quantile_edges(ref_p, bins), 1.0, M.CONTINUOUS_METHODS, EPS)
    assert out == out_p


@SETTINGS
@given(data=st.data(), ref_rows=CATEGORY_ROWS, cur_rows=CATEGORY_ROWS, top_n=st.integers(1, 10))
def test_categorical_metrics_invariant_to_row_order(data, ref_rows, cur_rows, top_n):
    ref_perm, cur_perm = data.draw(st.permutations(ref_rows)), data.draw(st.permutations(cur_rows))
    states = [categorical_profile(rows, top_n) for rows in (ref_rows, cur_rows, ref_perm, cur_perm)]
    for original, permuted in ((states[0], states[2]), (states[1], states[3])):
        assert (original.null_count, original.valid_count, original.categories, original.other_count) == (
                permuted.null_count, permuted.valid_count, permuted.categories, permuted.other_count)
    assume(states[0].valid_count and states[1].valid_count)
    ref, cur, ref_p, cur_p = (categorical_dist(s) for s in states)
    out = M.categorical_metrics(ref, cur, M.CATEGORICAL_METHODS, EPS)
    assert out == M.categorical_metrics(ref_p, cur_p, M.CATEGORICAL_METHODS, EPS)


# ------------------------------------------------------------------------------ 5. merge equals union

@st.composite
def partitioned(draw, rows_strategy):
    """Rows, split into 1-6 parts by an arbitrary assignment (parts may be empty), the parts in random order."""
    rows = draw(rows_strategy)
    parts = draw(st.integers(1, 6))
    owner = draw(st.lists(st.integers(0, parts - 1), min_size=len(rows), max_size=len(rows)))
    split = [[r for r, o in zip(rows, owner, strict=True) if o == j] for j in range(parts)]
    return rows, draw(st.permutations(split))


@SETTINGS
@given(drawn=partitioned(st.lists(ROW, min_size=0, max_size=400)), k=st.sampled_from([8, 16, 64, 200, K]))
def test_continuous_merge_equals_union(drawn, k):
    rows, parts = drawn
    states = [continuous_profile(part, k) for part in parts]
    merged = merge_all(states)
    # the union, counted directly from the rows
    x = np.array([math.nan if v is None else v for v in rows], float)
    finite = np.sort(x[np.isfinite(x)])
    n = len(finite)
    nulls = sum(v is None for v in rows)
    assert merged.row_count == len(rows)
    assert merged.null_count == nulls
    assert merged.nan_count == int(np.sum(np.isnan(x))) - nulls
    assert merged.inf_count == int(np.sum(np.isinf(x)))
    assert merged.valid_count == n
    sk = merged.sketch()
    assert sk.n == n
    assert WeightedSample.from_kll(merged.kll).n == n  # the numpy reader of the merged bytes
    if not n:
        assert merged.min is merged.max is merged.mean is merged.m2 is None
        return
    assert merged.min == finite[0] and merged.max == finite[-1]
    assert sk.get_min_value() == finite[0] and sk.get_max_value() == finite[-1]
    # mean and m2 against correctly rounded two-pass sums over the union. Chan's update is exact in exact
    # arithmetic; in doubles the mean difference carries an absolute error of a few ulp of the values, so
    # the tolerances get an absolute floor on the data's scale (m2: that error times n x scale)
    mean = math.fsum(finite) / n
    m2 = math.fsum((finite - mean) ** 2)
    scale = float(np.max(np.abs(finite)))
    assert merged.mean == pytest.approx(mean, rel=1e-9, abs=1e-12 * scale)
    assert merged.m2 == pytest.approx(m2, rel=1e-7, abs=1e-13 * n * scale ** 2 + 1e-300)
    assert pooled_std(states) == pytest.approx(math.sqrt(m2 / n), rel=1e-7, abs=4e-7 * scale)
    # the merged sketch's quantiles: their true rank in the union within the documented rank error
    eps = kll_rank_error(k)
    ranks = np.linspace(0, 1, 21)
    for r, q in zip(ranks, merged.quantiles(ranks), strict=True):
        lo, hi = np.searchsorted(finite, q, "left") / n, np.searchsorted(finite, q, "right") / n
        assert lo - eps <= r <= hi + eps, (r, q, lo, hi, eps)


@SETTINGS
@given(drawn=partitioned(CATEGORY_ROWS), top_n=st.integers(1, 8))
def test_categorical_merge_equals_union(drawn, top_n):
    rows, parts = drawn
    states = [categorical_profile(part, top_n) for part in parts]
    merged = merge_all(states, top_n)
    exact = Counter(v for v in rows if v is not None)
    nulls = sum(v is None for v in rows)
    assert merged.row_count == len(rows)
    assert merged.null_count == nulls
    assert merged.valid_count == len(rows) - nulls
    assert merged.mean is None and merged.m2 is None
    # every value is either kept or in other_count; kept counts never exceed the true ones
    assert sum(merged.categories.values()) + merged.other_count == merged.valid_count
    assert len(merged.categories) <= top_n
    assert all(0 < c <= exact[v] for v, c in merged.categories.items())
    if len(exact) <= top_n:
        # no state along the way can drop a value: the merge is exactly the union's counts. (With more distinct
        # values than top_n, even untruncated parts can lose counts in an intermediate merge, and the result
        # depends on the merge order: test_categorical_merge_order.)
        assert merged.categories == dict(exact)
        assert merged.other_count == 0
        assert merged.categories == categorical_profile(rows, top_n).categories
    # distinct count after merges: the HLL estimate (exact-ish in HLL's list mode at these sizes)
    assert abs(merged.distinct_count - len(exact)) <= 1 + 0.05 * len(exact)


# ------------------------------------------------------------------------------ bugs these properties found (fixed)

def test_ks_pvalue_one_row_each_side():
    """Excluded from the properties above (`one_row_each`); e.g. two consecutive slice chunks of one row."""
    one, other = WeightedSample.of([1.0], [1.0]), WeightedSample.of([2.0], [1.0])
    for ref, cur in ((one, one), (one, other)):
        _, p_value = M.ks(ref, cur)
        assert in_range("kolmogorov_smirnov_pvalue", p_value), p_value


def test_constant_reference_bins():
    """docs/statistics.md: bins [min, max] plus the leftover bins (-inf, min) and (max, inf), reference mass 0 there."""
    ref = WeightedSample.of(np.zeros(100), np.ones(100))
    below = WeightedSample.of(np.full(100, -5.0), np.ones(100))
    edges = quantile_edges(ref, 10)
    assert edges.tolist() == [0.0]
    assert ref.bin_probabilities(edges).tolist() == [0.0, 1.0, 0.0]
    out = M.continuous_metrics(ref, below, edges, 0.0, M.CONTINUOUS_METHODS, EPS)
    assert out["jensen_shannon"] == pytest.approx(1.0) and out["hellinger"] == pytest.approx(1.0)


def test_categorical_merge_order():
    parts = [["a", "a", "a", "a", "c"], ["b"], ["c"]]  # no part has more than top_n = 2 distinct values
    states = [categorical_profile(p, 2) for p in parts]
    union = categorical_profile([v for p in parts for v in p], 2)
    assert union.categories == {"a": 4, "c": 2}
    one_order = merge_all(states, 2)  # cut once at the end: pairwise cuts used to drop c:1 for the tie b:1
    other_order = merge_all([states[0], states[2], states[1]], 2)
    assert other_order.categories == union.categories
    assert one_order.categories == union.categories and one_order.other_count == union.other_count
