"""Per-feature concept drift (monitoring/relation.py), end to end on a binary monitor with labels.

Days 0-9 are the reference, 1000 rows a day. `w` shifts by one sigma on days 11-12 (covariate shift only:
the model's score and the true relation both follow it); from day 13 the true effect of `x` on the label
triples while the model keeps scoring the old relation (concept drift in `x`). The stored residual sums
and both metrics are checked against pandas/scipy on the same rows.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from scipy import special, stats

from monitoring.labels import LABEL, LABELLED
from monitoring.pipeline import fit, run
from monitoring.relation import MISSING, OTHER, PREFIX, RELATION_CHANGE, RELATION_SHIFT, change_z, residual
from monitoring.slices import WHOLE

from .helpers import make_config, write_delta

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
DAYS, PER_DAY, REFERENCE_DAYS, SHIFT, CONCEPT = 16, 1000, 10, (11, 12), 13


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    day = np.repeat(np.arange(DAYS), PER_DAY)
    n = len(day)
    micros = ((START.timestamp() + day * 86400 + rng.random(n) * 86000) * 1e6).astype("int64")
    x, w = rng.normal(0, 1, n), rng.normal(0, 1, n) + np.isin(day, SHIFT) * 1.0
    g = rng.choice(np.array(["a", "b", "c", None], dtype=object), n, p=[0.5, 0.3, 0.15, 0.05])
    effect = pd.Series(g).map({"a": -0.4, "b": 0.3, "c": 0.8}).fillna(0.0).to_numpy()
    common = -0.5 + effect + 0.5 * w
    score = 1 / (1 + np.exp(-(common + 0.8 * x)))
    truth = 1 / (1 + np.exp(-(common + np.where(day >= CONCEPT, 2.4, 0.8) * x)))
    return pd.DataFrame({"id": np.arange(n), "ts": pd.to_datetime(micros, unit="us", utc=True), "day": day,
                         "x": x, "w": w, "g": g, "score": np.round(score, 6),
                         "label": (rng.random(n) < truth).astype(int)})


@pytest.fixture(scope="module")
def monitored(spark, tmp_path_factory):
    frame = _frame()
    root = tmp_path_factory.mktemp("relation")
    table = write_delta(spark, frame.drop(columns=["day", "label"]), str(root / "preds"))
    labels = write_delta(spark, frame[["id", "label"]].assign(label_ts=frame["ts"]), str(root / "labels"))
    config = make_config(table, [("x", "continuous"), ("w", "continuous"), ("g", "categorical")], str(root / "out"),
                         outputs={"score": "score", "positive_class": 1},
                         labels={"table": labels, "id_column": "id", "label_column": "label",
                                 "timestamp_column": "label_ts"},
                         reference={"start": "2025-01-01", "end": "2025-01-11"},
                         estimation={"enabled": False})
    reference = fit(spark, config)
    return frame, config, reference, run(spark, config)


def _bins(frame: pd.DataFrame, reference) -> dict[str, np.ndarray]:
    """Each row's bin per feature, computed independently of the Spark expression."""
    columns = reference.columns[WHOLE]
    out = {}
    for name in ("x", "w"):
        out[name] = np.searchsorted(columns[name].edges[1:-1], frame[name].to_numpy(), side="right")
    kept = sorted(columns["g"].state.categories)
    out["g"] = np.array([MISSING if v is None else kept.index(v) if v in kept else OTHER for v in frame["g"]])
    return out


def _cells(frame: pd.DataFrame, bins: np.ndarray) -> pd.DataFrame:
    r = frame["label"] - frame["score"]
    return pd.DataFrame({"b": bins, "r": r, "q": r * r}).groupby("b").agg(n=("r", "size"), r=("r", "sum"),
                                                                        q=("q", "sum"))


def _expected(chunk: pd.DataFrame, ref: pd.DataFrame) -> tuple[float, float]:
    """relation_change (z of the chi-square p-value) and relation_shift from the bin cells."""
    both = chunk.join(ref, lsuffix="_c", rsuffix="_r", how="inner")
    var = (both["q_r"] - both["r_r"] ** 2 / both["n_r"]) / (both["n_r"] - 1)
    d = both["r_c"] / both["n_c"] - both["r_r"] / both["n_r"]
    w = 1 / (var * (1 / both["n_c"] + 1 / both["n_r"]))
    level = np.average(d, weights=w)
    chi2 = float((w * (d - level) ** 2).sum())
    return float(stats.norm.isf(stats.chi2.sf(chi2, len(d) - 1))), float(np.average(np.abs(d - level),
                                                                                    weights=both["n_c"]))


def test_residual_sums_and_metrics_match_pandas(monitored):
    frame, _, reference, result = monitored
    bins = _bins(frame, reference)
    by_day = {cp.chunk.index: cp for cp in result.profiles.whole} | \
        {cp.chunk.index: cp for cp in reference.chunks_of(WHOLE)}
    day_of = {i: int((cp.chunk.start.replace(tzinfo=timezone.utc) - START).days) for i, cp in by_day.items()}
    ref_rows = frame["day"] < REFERENCE_DAYS
    values = {(r.chunk.index, r.column, r.metric): r for r in result.metrics
              if r.family == "concept_drift" and (r.slice_key, r.slice_value) == WHOLE}
    checked = 0
    for index, cp in by_day.items():
        day = frame["day"] == day_of[index]
        for name, b in bins.items():
            cells = _cells(frame[day], b[day.to_numpy()])
            state = cp.performance.values
            for bin_, row in cells.iterrows():
                for stat in ("n", "r", "q"):
                    assert state[f"{PREFIX}{bin_}|{stat}|{name}"] == pytest.approx(row[stat], rel=1e-9, abs=1e-9)
            if day_of[index] < REFERENCE_DAYS:  # reference chunks: against the other reference days
                others = ref_rows & ~day
                ref_cells = _cells(frame[others], b[others.to_numpy()])
            else:
                ref_cells = _cells(frame[ref_rows], b[ref_rows.to_numpy()])
            change, shift = _expected(cells, ref_cells)
            assert values[(index, name, RELATION_CHANGE)].value == pytest.approx(change, rel=1e-6, abs=1e-6)
            assert values[(index, name, RELATION_SHIFT)].value == pytest.approx(shift, rel=1e-9)
            checked += 1
    assert checked == DAYS * 3


def test_concept_drift_alerts_in_the_changed_feature_only(monitored):
    _, _, _, result = monitored
    alerts = {(int((r.chunk.start.replace(tzinfo=timezone.utc) - START).days), r.column) for r in result.metrics
              if r.family == "concept_drift" and r.metric == RELATION_CHANGE and r.alert and r.slice_key == ""}
    assert alerts == {(d, "x") for d in range(CONCEPT, DAYS)}
    # the covariate shift of w is drift, not concept drift
    drifted = {int((r.chunk.start.replace(tzinfo=timezone.utc) - START).days) for r in result.metrics
               if r.family == "drift" and r.column == "w" and r.alert and r.period == "analysis"}
    assert set(SHIFT) <= drifted


@pytest.mark.parametrize("problem, row, expected", [
    ("binary", {"score": 0.3, "label": "1"}, 0.7),
    ("binary", {"score": 0.3, "label": "0"}, -0.3),
    ("multiclass", {"pa": 0.2, "pb": 0.5, "pc": 0.3, "label": "b"}, 0.5),  # predicted b, right
    ("multiclass", {"pa": 0.2, "pb": 0.5, "pc": 0.3, "label": "c"}, -0.5),  # predicted b, wrong
    ("regression", {"pred": 2.5, "label": 4.0}, 1.5),
])
def test_residual_per_problem_type(spark, tmp_path, problem, row, expected):
    outputs = {"binary": {"score": "score", "positive_class": 1}, "multiclass": {
        "class_scores": {"a": "pa", "b": "pb", "c": "pc"}}, "regression": {"prediction": "pred"}}[problem]
    config = make_config(str(tmp_path / "t"), [("x", "continuous")], str(tmp_path / "o"), problem_type=problem,
                         outputs=outputs, labels={"table": str(tmp_path / "l"), "id_column": "id",
                                                  "label_column": "label", "timestamp_column": "ts"})
    label = float(row["label"]) if problem == "regression" else row["label"]
    df = spark.createDataFrame([{k: v for k, v in row.items() if k != "label"}]) \
        .withColumn(LABEL, F.lit(label)).withColumn(LABELLED, F.lit(True))
    assert df.select(residual(config)).first()[0] == pytest.approx(expected, abs=1e-12)
    assert df.withColumn(LABELLED, F.lit(False)).select(residual(config)).first()[0] is None


@pytest.mark.parametrize(("chi2", "dof", "z"), [(1600, 1, 39.982678), (3000, 9, 54.257573), (1e5, 20, 315.939074),
                                                 (1e7, 60, 3162.155896)])
def test_change_z_stays_finite_where_scipy_underflows(chi2, dof, z):
    """A change so strong that scipy's chi2.logsf underflows (a concept drift on a million rows; at 1M rows
    the demo's relation_change was null exactly there) still gets its z: the expected values were computed
    with mpmath at 50 digits (log of the regularized upper incomplete gamma function)."""
    assert not np.isfinite(stats.chi2.logsf(chi2, dof))
    assert change_z(chi2, dof) == pytest.approx(z, abs=1e-5)
    grid = np.linspace(1000, 2000, 201)  # increasing across the switch to the expansion
    values = [change_z(x, dof) for x in grid]
    assert all(b > a for a, b in zip(values[:-1], values[1:], strict=True))
    assert change_z(300, dof) == pytest.approx(-special.ndtri_exp(stats.chi2.logsf(300, dof)), rel=1e-12)


def test_packed_bins_and_their_sums_match_numpy(spark):
    """Many features over several packed words (their bins aggregated in groups of features), with NaN,
    infinities, values on the edges, nulls and unseen categories, summed per (chunk, slice) group with null
    slice values: the REL entries equal numpy, and the CELL entries of the same aggregation still count every
    row once (those without a residual too)."""
    from monitoring.performance.state import CELL, REL, _cells
    from monitoring.relation import GROUP_BITS, RelationBins

    rng = np.random.default_rng(11)
    n, edges = 4000, tuple(float(e) for e in np.linspace(-1.5, 1.5, 9))
    frame = pd.DataFrame({f"c{i}": rng.normal(size=n).round(1) for i in range(40)})
    frame.iloc[::7, 3] = np.nan
    frame.iloc[::11, 5] = np.inf
    frame.iloc[::13, 5] = -np.inf
    frame["k"] = rng.choice(np.array(["a", "b", "zz", None], dtype=object), n)
    frame["chunk"] = rng.integers(0, 3, n)
    frame["s"] = rng.choice(np.array(["u", None], dtype=object), n)
    frame["_dl_r"] = np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n))  # unlabelled rows: no residual
    frame["_dl_score0"], frame["_dl_bad"], frame["_dl_ok"] = rng.random(n), 0, False
    frame["_dl_l"] = frame["_dl_p"] = None
    bins = RelationBins(tuple((f"c{i}", "continuous", edges) for i in range(40)) + (("k", "categorical", ("a", "b")),))
    assert len(bins.words()) == 3  # 40 x 4 bits + 2 bits over 63-bit words
    packed = bins.packed(spark.createDataFrame(frame).withColumn("_dl_touch", F.lit(False))
                         .withColumns({c: F.col(c).cast("string") for c in ("_dl_l", "_dl_p")}))
    rows = _cells(packed, make_config("t", [("k", "categorical")], "/tmp/unused"), ["chunk", "s"], 0, 0,
                  F.max("_dl_touch").alias("_dl_touch"), bins).collect()
    # one REL entry per group of features (3 x 4 bits a group; the last word: 3, 3, 3, then 1 with k)
    assert len(bins.groups) == 14 and all(width <= GROUP_BITS for _, _, width, _ in bins.groups)
    names, got = [name for name, _, _ in bins.features], {}
    for r in rows:
        for name, bin_ in bins.decode(r["f"] - 1, r["b"]) if r["t"] == REL else ():
            key = (r["chunk"], r["s"], names.index(name), bin_)
            got[key] = tuple(a + b for a, b in zip(got.get(key, (0, 0.0, 0.0)), (r["n"], r["rx"], r["rx2"]),
                                                   strict=True))
    cells = pd.Series([r["n"] for r in rows if r["t"] == CELL],
                      [(r["chunk"], r["s"]) for r in rows if r["t"] == CELL]).groupby(level=0).sum()
    sizes = frame.fillna({"s": "<null>"}).groupby(["chunk", "s"]).size()
    assert cells.to_dict() == {(c, None if s == "<null>" else s): n for (c, s), n in sizes.items()}
    frame = frame[frame["_dl_r"].notna()]

    expected = {}
    for f, (name, _, _) in enumerate(bins.features):
        v = frame[name]
        if name == "k":
            b = np.array([MISSING if x is None else ("a", "b").index(x) if x in ("a", "b") else OTHER for x in v])
        else:
            x = v.to_numpy(dtype=float)
            b = np.where(np.isfinite(x), np.searchsorted(edges, x, side="right"), MISSING)
        cells = pd.DataFrame({"chunk": frame["chunk"], "s": frame["s"].fillna("<null>"), "b": b, "r": frame["_dl_r"]})
        for (chunk, s, bin_), g in cells.groupby(["chunk", "s", "b"]):
            expected[(chunk, None if s == "<null>" else s, f, bin_)] = (len(g), g["r"].sum(), (g["r"] ** 2).sum())
    assert got.keys() == expected.keys()
    for key, (count, total, squares) in expected.items():
        assert got[key][0] == count
        assert got[key][1:] == pytest.approx((total, squares), rel=1e-9, abs=1e-9)
