"""Exact histograms (issue 21): every continuous column's chunk counts in the reference's bins, counted in the
profiling pass, and the binned distances (Jensen-Shannon, Hellinger, PSI) computed from them equal a numpy and
scipy computation on the same rows and the same edges within 1e-9: heavy tails, ties on the edges, null, NaN,
inf and a constant column; one compiled aggregation and the stacked layout of many columns; a fit and run,
and `run --fit`'s shared scan."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon

from monitoring.chunking import with_chunk_index
from monitoring.config import Chunking, Period
from monitoring.drift.distributions import bin_counts, bin_index
from monitoring.pipeline import fit, reference_table, run
from monitoring.profiling import profile_chunks
from monitoring.slices import with_slices
from monitoring.stores.reference import read_reference
from tests.helpers import make_config
from tests.special_values import DAYS, fit_and_run, raw, spark_frame, special_frame

EPS = 1e-4  # drift.psi_epsilon's default


def test_bin_index_convention():
    """Below the first edge, inner bins closed on the left, the largest edge in the last inner bin, above it;
    one edge: below, equal, above."""
    edges = np.array([0.0, 1.0, 2.0])
    assert bin_index(np.array([-1, 0, 0.5, 1, 1.5, 2, 3]), edges).tolist() == [0, 1, 1, 2, 2, 2, 3]
    assert bin_index(np.array([1, 2, 3]), np.array([2.0])).tolist() == [0, 1, 2]
    assert bin_counts(np.array([np.nan, np.inf, 1.0, 5.0]), edges).tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("copies", [1, 8], ids=["one-aggregation", "stacked"])
def test_profiled_counts_equal_numpy(spark, copies):
    """Each chunk's counts equal numpy's on the same rows, in edges with data values on them (ties), a
    constant column's single edge and out-of-range rows on both sides; 8 copies of the 4 columns (32) pass
    the compiled aggregation's field limit and are counted in stacked groups."""
    pdf = special_frame()
    base = ["heavy", "ties", "skewed", "constant"]
    names = [f"{c}_{k}" if k else c for k in range(copies) for c in base]
    for name in names:
        pdf[name] = pdf[name.split("_")[0]]
    reference = pdf[pdf["day"] < 2]
    edges = {}
    for name in names:
        x = raw(reference, name)
        x = x[np.isfinite(x)]
        edges[name] = tuple(np.unique(np.concatenate([[x.min()], np.quantile(x, np.arange(1, 10) / 10), [x.max()]])))
    assert len(edges["constant"]) == 1 and len(edges["ties"]) < 11  # a constant and ties on the edges
    chunking = Chunking(period=Period(1, "d"))
    df = with_slices(with_chunk_index(spark_frame(spark, pdf, names), chunking, "ts", "id"), {})
    chunks = profile_chunks(df, [(c, "continuous") for c in names], chunking, "ts", 50, 20, histograms=edges)
    assert len(chunks) == DAYS
    for cp in chunks:
        rows = pdf[pdf["day"] == cp.chunk.index - chunks[0].chunk.index]
        for name in names:
            p = cp.columns[name]
            expected = bin_counts(raw(rows, name), np.array(edges[name]))
            assert p.histogram == expected.tolist(), (cp.chunk.key, name)
            assert sum(p.histogram) == p.valid_count and p.histogram_edges == list(edges[name])


def _js(p, q) -> float:
    return float(jensenshannon(p, q, base=2))


def _hellinger(p, q) -> float:
    return float(np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2) / 2))


def _psi(p, q) -> float:
    p, q = np.maximum(p, EPS), np.maximum(q, EPS)
    return float(np.sum((q - p) * np.log(q / p)))


EXACT = {"jensen_shannon": _js, "hellinger": _hellinger, "psi": _psi}


@pytest.mark.parametrize("shared", [False, True], ids=["fit-then-run", "run-fit-shared-scan"])
def test_binned_distances_equal_numpy_on_the_same_rows(spark, tmp_path, shared):
    """Every BASELINE (the analysis against the whole reference, a reference chunk against the reference
    without it) and CONSECUTIVE value of the three binned methods equals numpy/scipy on the same rows and
    the stored edges, within 1e-9."""
    pdf = special_frame(11)
    columns = ["heavy", "ties", "skewed", "constant"]
    config, result = fit_and_run(spark, tmp_path, pdf, columns, shared, list(EXACT))
    edges = {c: rc.edges for c, rc in read_reference(spark, reference_table(config), "t").columns[("", "")].items()}
    by_day = {d: pdf[pdf["day"] == d] for d in range(DAYS)}
    first = min(r.chunk.index for r in result.metrics)
    counts = {(d, c): bin_counts(raw(by_day[d], c), edges[c]) for d in range(DAYS) for c in columns}
    reference_days = range(3)
    checked = 0
    for r in result.metrics:
        if r.metric not in EXACT or r.slice_key or r.column not in columns:
            continue
        day = r.chunk.index - first
        q = counts[(day, r.column)]
        if r.comparison == "CONSECUTIVE":
            p = counts[(day - 1, r.column)]
        else:
            p = sum(counts[(d, r.column)] for d in reference_days if not (r.period == "reference" and d == day))
        expected = EXACT[r.metric](p / p.sum(), q / q.sum())
        assert r.value == pytest.approx(expected, rel=1e-9, abs=1e-12), (r.period, r.comparison, day, r.column,
                                                                          r.metric)
        checked += 1
    assert checked == len(columns) * len(EXACT) * (2 * DAYS - 1)  # BASELINE every day, CONSECUTIVE from day 1


def _nannyml_binned(reference: np.ndarray, chunk: np.ndarray) -> dict[str, float]:
    """NannyML 0.13.1's continuous Jensen-Shannon and Hellinger (drift/univariate/methods.py): Doane edges of
    the reference, np.histogram proportions, the chunk's rows outside the reference range in one extra bin."""
    edges = np.histogram_bin_edges(reference, bins="doane")
    p = np.histogram(reference, edges)[0] / len(reference)
    q = np.histogram(chunk, edges)[0] / len(chunk)
    leftover = (len(chunk) - np.histogram(chunk, edges)[0].sum()) / len(chunk)
    if leftover > 0:
        p, q = np.append(p, 0.0), np.append(q, leftover)
    return {"jensen_shannon": _js(p, q), "hellinger": float(np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2))
                                                          / np.sqrt(2))}


def test_compatibility_nannyml_bins_by_doane(spark, tmp_path):
    """`compatibility: nannyml`: the stored edges are numpy's Doane edges of the reference's finite values
    (from the exact moments, third included), and every chunk's Jensen-Shannon and Hellinger (each chunk,
    reference chunks included, against the whole reference) equals NannyML's formula on the same rows
    within 1e-9."""
    pdf = special_frame(5)
    columns = ["heavy", "ties", "skewed", "constant"]
    table = str(tmp_path / "preds")
    spark_frame(spark, pdf, columns).write.format("delta").save(table)
    config = make_config(table, [(c, "continuous") for c in columns], str(tmp_path / "out"),
                         reference={"start": "2025-01-01", "end": "2025-01-04"}, compatibility="nannyml",
                         drift={"continuous_methods": ["jensen_shannon", "hellinger"]}, profile={"kll_k": 50})
    fit(spark, config)
    result = run(spark, config)
    edges = {c: rc.edges for c, rc in read_reference(spark, reference_table(config), "t").columns[("", "")].items()}

    def finite(rows: pd.DataFrame, column: str) -> np.ndarray:
        x = raw(rows, column)
        return x[np.isfinite(x)]

    reference = pdf[pdf["day"] < 3]
    for c in columns:
        expected = np.histogram_bin_edges(finite(reference, c), bins="doane")
        assert edges[c] == pytest.approx(expected, rel=1e-12, abs=1e-12), c
    first = min(r.chunk.index for r in result.metrics)
    checked = 0
    for r in result.metrics:
        if r.metric in ("jensen_shannon", "hellinger") and r.column in columns and r.comparison == "BASELINE" \
                and not r.slice_key:
            rows = pdf[pdf["day"] == r.chunk.index - first]
            expected = _nannyml_binned(finite(reference, r.column), finite(rows, r.column))[r.metric]
            assert r.value == pytest.approx(expected, rel=1e-9, abs=1e-12), (r.period, r.chunk.key, r.column, r.metric)
            checked += 1
    assert checked == len(columns) * 2 * DAYS


def test_a_chunk_too_large_for_the_packed_counts_is_refused():
    """Two 32-bit counts share a long: a chunk of 2^31 rows or more is refused with an error naming the chunk,
    the column and the setting to change, instead of counts that wrapped around."""
    from monitoring.chunking import CHUNK_COL
    from monitoring.errors import DataError
    from monitoring.profiling import Bins
    from monitoring.sketches import CONTINUOUS, ColumnProfile

    bins = Bins.of(["x"], {"x": (0.0, 1.0)})
    row = {"rows": 2 ** 31, CHUNK_COL: 7, "c0__h0": 0, "c0__h1": 0}
    with pytest.raises(DataError, match=r"chunk 7 .*column 'x'.*chunking.period"):
        bins.apply(ColumnProfile("x", CONTINUOUS), row, 0)
    row["rows"] = 3
    row["c0__h0"] = 3 + (2 << 32)  # 3 finite values, 2 of them >= 0
    row["c0__h1"] = 1  # 1 above 1
    p = ColumnProfile("x", CONTINUOUS)
    bins.apply(p, row, 0)
    assert p.histogram == [1, 1, 1] and p.histogram_edges == [0.0, 1.0]
