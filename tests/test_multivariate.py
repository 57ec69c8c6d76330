"""Multivariate drift by PCA reconstruction error on a correlation-only change.

Two features `a` and `b` are standard normal with correlation +0.9 in the reference days and -0.9 from
day 8 on; their marginals never change, nor do `noise` (independent normal) and `cat` (3 categories with
fixed shares, 5% null). Univariate drift cannot see the flip; the reconstruction error must alert on every
flipped chunk and on none before. Each chunk's value must equal NannyML's preprocessing and PCA rebuilt
with scikit-learn on the same rows (mean imputation, most-frequent imputation + frequency encoding,
StandardScaler, PCA(n_components=0.65), mean Euclidean reconstruction error) within 1e-9 relative.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from monitoring.config import parse_config
from monitoring.pipeline import fit, run

from .helpers import write_delta

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
DAYS, REF_DAYS, FLIP_DAY, PER_DAY = 12, 6, 8, 1500
SAMPLE_ROWS = 10_000  # above the reference's 9000 rows: the classifier sees every row, as in the check below
FEATURES = [("a", "continuous"), ("b", "continuous"), ("noise", "continuous"), ("cat", "categorical")]


def _frame(seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    day = np.repeat(np.arange(DAYS), PER_DAY)
    n = len(day)
    rho = np.where(day >= FLIP_DAY, -0.9, 0.9)
    a = rng.normal(0, 1, n)
    b = rho * a + np.sqrt(1 - rho ** 2) * rng.normal(0, 1, n)
    a[rng.random(n) < 0.02] = np.nan  # imputed with the reference mean
    cat = rng.choice(np.array(["x", "y", "z"], dtype=object), n, p=[0.5, 0.3, 0.2])
    cat[rng.random(n) < 0.05] = None
    micros = ((START.timestamp() + day * 86400 + rng.random(n) * 86000) * 1e6).astype("int64")
    return pd.DataFrame({"id": np.arange(n), "ts": pd.to_datetime(micros, unit="us", utc=True), "day": day, "a": a,
                         "b": b, "noise": rng.normal(5, 2, n), "cat": cat, "score": rng.random(n)})


def _nannyml_errors(frame: pd.DataFrame) -> dict[int, tuple[float, float]]:
    """day -> (mean reconstruction error, its sampling error: std (ddof 1) / sqrt(rows)), NannyML's
    DataReconstructionDriftCalculator steps with sklearn."""
    names = [n for n, _ in FEATURES]
    ref = frame[frame["day"] < REF_DAYS][names].copy()
    mean = ref["a"].mean()
    mode = ref["cat"].value_counts().sort_index().idxmax()
    ref_imputed = ref.assign(a=ref["a"].fillna(mean), cat=ref["cat"].fillna(mode))
    freq = ref_imputed["cat"].value_counts(normalize=True).to_dict()

    def encode(df: pd.DataFrame) -> np.ndarray:
        df = df.assign(a=df["a"].fillna(mean), cat=df["cat"].fillna(mode))
        return df.assign(cat=df["cat"].map(freq).fillna(0.0).astype(float))[names].to_numpy(float)

    scaler = StandardScaler().fit(encode(ref))
    pca = PCA(n_components=0.65, random_state=16).fit(scaler.transform(encode(ref)))
    out = {}
    for day, rows in frame.groupby("day"):
        z = scaler.transform(encode(rows[names]))
        errors = np.linalg.norm(z - pca.inverse_transform(pca.transform(z)), axis=1)
        out[int(day)] = float(errors.mean()), float(errors.std(ddof=1) / np.sqrt(len(errors)))
    return out


@pytest.fixture(scope="module")
def monitored(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("multivariate")
    frame = _frame()
    table = write_delta(spark, frame, str(root / "preds"), "id long, ts timestamp, day long, a double, b double, "
                                                             "noise double, cat string, score double")
    config = parse_config({
        "monitor": "mv", "problem_type": "binary",
        "source": {"table": table, "id_column": "id", "timestamp_column": "ts"},
        "features": [{"name": n, "kind": k} for n, k in FEATURES], "outputs": {"score": "score"},
        "chunking": {"period": "1d"}, "reference": {"start": "2025-01-01", "end": "2025-01-07"},
        "output": {"path": str(root / "out")}, "mlflow": {"enabled": False},
        "multivariate": {"classifier": {"enabled": True, "sample_rows": SAMPLE_ROWS}}})
    fit(spark, config)
    return frame, run(spark, config)


def _by_day(result, family: str, metric: str, column: str = ":table", period: str = "analysis",
            comparison: str = "NONE") -> dict:
    return {r.chunk.index - 20089: r for r in result.metrics if (r.family, r.metric, r.column, r.period, r.slice_key,
                                                                   r.comparison)
            == (family, metric, column, period, "", comparison)}


def test_reconstruction_error_equals_nannyml_steps_in_sklearn(monitored):
    frame, result = monitored
    expected = _nannyml_errors(frame)
    rows = {**_by_day(result, "multivariate", "reconstruction_error", period="reference"),
            **_by_day(result, "multivariate", "reconstruction_error")}
    assert sorted(rows) == list(range(DAYS))
    for day, r in rows.items():
        assert r.value == pytest.approx(expected[day][0], rel=1e-9), day
        assert r.sampling_error == pytest.approx(expected[day][1], rel=1e-6), day
        assert r.row_count == PER_DAY


def test_correlation_flip_alerts_multivariate_not_univariate(monitored):
    _, result = monitored
    errors = _by_day(result, "multivariate", "reconstruction_error")
    assert {d for d, r in errors.items() if r.alert} == set(range(FLIP_DAY, DAYS))
    flipped = [errors[d].value for d in range(FLIP_DAY, DAYS)]
    steady = [errors[d].value for d in range(REF_DAYS, FLIP_DAY)]
    assert min(flipped) > max(steady) + 10 * errors[FLIP_DAY].sampling_error
    # in units of the reference chunks' spread, the flip moves the reconstruction error by > 10 sigma in every
    # flipped chunk, and the univariate drift of a and b by < 3 sigma on average (noise: single chunks vary)
    def z(values: list[float], reference: list[float]) -> float:
        return (np.mean(values) - np.mean(reference)) / np.std(reference)

    mv_ref = [r.value for r in _by_day(result, "multivariate", "reconstruction_error", period="reference").values()]
    assert min(z([v], mv_ref) for v in flipped) > 10
    for column in ("a", "b"):
        for metric in ("kolmogorov_smirnov", "jensen_shannon", "hellinger"):
            drift = _by_day(result, "drift", metric, column, comparison="BASELINE")
            ref = [r.value for r in _by_day(result, "drift", metric, column, "reference", "BASELINE").values()]
            assert z([drift[d].value for d in range(FLIP_DAY, DAYS)], ref) < 3, (column, metric)


def test_band_and_thresholds(monitored):
    _, result = monitored
    r = _by_day(result, "multivariate", "reconstruction_error")[REF_DAYS]
    assert r.lower_confidence == pytest.approx(r.value - 3 * r.sampling_error, rel=1e-12)
    assert r.upper_confidence == pytest.approx(r.value + 3 * r.sampling_error, rel=1e-12)
    ref_rows = [x for x in _by_day(result, "multivariate", "reconstruction_error", period="reference").values()]
    values = np.array([x.value for x in ref_rows])
    assert r.upper_threshold == pytest.approx(values.mean() + 3 * values.std(), rel=1e-9)


def _nannyml_auc(frame: pd.DataFrame, day: int) -> float:
    """NannyML's domain classifier on all reference rows vs the day's rows: LightGBM with default
    hyperparameters, categories as pandas categoricals, 5 stratified folds, ROC AUC of the pooled
    out-of-fold scores (shuffled folds, seed 13, as the monitor's)."""
    names = [n for n, _ in FEATURES]
    rows = pd.concat([frame[frame["day"] < REF_DAYS].sort_values("id"), frame[frame["day"] == day].sort_values("id")])
    x = rows[names].reset_index(drop=True)
    x["cat"] = pd.Categorical(x["cat"], categories=sorted(x["cat"].dropna().unique()))
    y = (rows["day"].to_numpy() == day).astype(float)
    scores = np.empty(len(y))
    for train, test in StratifiedKFold(n_splits=5, shuffle=True, random_state=13).split(x, y):
        model = LGBMClassifier(random_state=13, deterministic=True, force_row_wise=True, n_jobs=1, verbose=-1)
        scores[test] = model.fit(x.iloc[train], y[train]).predict_proba(x.iloc[test])[:, 1]
    return float(roc_auc_score(y, scores))


def test_domain_classifier_flags_the_flip_and_equals_nannyml_steps(monitored):
    frame, result = monitored
    auc = _by_day(result, "multivariate", "classifier_auc")
    assert sorted(auc) == list(range(REF_DAYS, DAYS))
    assert {d for d, r in auc.items() if r.alert} == set(range(FLIP_DAY, DAYS))
    assert all(r.value > 0.8 for d, r in auc.items() if d >= FLIP_DAY)
    assert all(0.45 <= r.value <= 0.6 for d, r in auc.items() if d < FLIP_DAY)
    assert (auc[REF_DAYS].lower_threshold, auc[REF_DAYS].upper_threshold) == (0.45, 0.65)
    for day in (REF_DAYS, FLIP_DAY):
        assert auc[day].value == pytest.approx(_nannyml_auc(frame, day), abs=1e-12), day
