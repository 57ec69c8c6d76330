"""DLE against an independent computation on the same rows: the same LightGBM loss models trained with
the same settings in the test, applied to each chunk's rows with numpy (1e-9 relative); sampling errors
from the reference's realized losses (1e-9); and under covariate shift the estimated RMSE tracks the
realized one across chunks (correlation >= 0.9)."""

from __future__ import annotations

import math

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from monitoring.pipeline import fit, run

from .helpers import assert_registered, estimates_by_chunk, make_config, write_delta

REF_DAYS, DAYS, PER_DAY = 3, 9, 3000


@pytest.fixture(scope="module")
def dle(spark, tmp_path_factory):
    rng = np.random.default_rng(31)
    n = DAYS * PER_DAY
    day = np.repeat(np.arange(DAYS), PER_DAY)
    # x2 drifts upward after the reference; the model's error grows with x2 (heteroscedastic)
    x1 = rng.normal(0, 1, n)
    x2 = rng.normal(np.where(day >= REF_DAYS, 0.25 * (day - REF_DAYS + 1), 0.0), 1.0)
    region = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    pred = 50 + 10 * x1 + 3 * x2
    y = pred + rng.normal(0, 1, n) * np.exp(0.5 * x2) * np.where(region == "c", 2.0, 1.0)
    micros = ((1735689600 + day * 86400 + rng.random(n) * 86000) * 1e6).astype("int64")
    ts = pd.to_datetime(micros, unit="us", utc=True)
    pdf = pd.DataFrame({"id": np.arange(n), "ts": ts, "x1": x1, "x2": x2, "region": region, "pred": pred})
    root = tmp_path_factory.mktemp("dle")
    preds = write_delta(spark, pdf, str(root / "preds"))
    labels = write_delta(spark, pd.DataFrame({"id": np.arange(n), "label": y, "label_ts": ts}), str(root / "labels"))
    config = make_config(preds, [("x1", "continuous"), ("x2", "continuous"), ("region", "categorical")],
                         str(root / "out"), problem_type="regression", outputs={"prediction": "pred"},
                         labels={"table": labels, "label_column": "label", "timestamp_column": "label_ts"},
                         reference={"start": "2025-01-01", "end": "2025-01-04"})
    fit(spark, config)
    return pdf.assign(y=y, day=day), run(spark, config)



def _independent(pdf: pd.DataFrame) -> dict[int, dict[str, float]]:
    ref = pdf[pdf["day"] < REF_DAYS]

    def frame(d: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"x1": d["x1"], "x2": d["x2"],
                             "region": pd.Categorical(d["region"], categories=["a", "b", "c"]), "pred": d["pred"]})

    e = ref["pred"] - ref["y"]
    targets = {"ae": np.abs(e), "se": e * e, "ape": np.abs(e) / np.maximum(np.abs(ref["y"]), np.finfo(float).eps),
               "sle": (np.log1p(ref["y"]) - np.log1p(ref["pred"])) ** 2}
    models = {k: lgb.LGBMRegressor(random_state=7, deterministic=True, n_jobs=1, verbose=-1).fit(frame(ref), t)
              for k, t in targets.items()}
    out = {}
    for d in range(DAYS):
        rows = pdf[pdf["day"] == d]
        loss = {k: np.maximum(m.predict(frame(rows)), 0).mean() for k, m in models.items()}
        out[d] = {"mae": loss["ae"], "mse": loss["se"], "rmse": math.sqrt(loss["se"]), "mape": loss["ape"],
                  "msle": loss["sle"], "rmsle": math.sqrt(loss["sle"])}
    return out


def test_dle_estimates_equal_the_same_models_applied_with_numpy(dle):
    pdf, result = dle
    assert_registered(result.metrics)  # a regression run's metric names are all in the registry
    est, want = estimates_by_chunk(result), _independent(pdf)
    first = min(est)
    assert len(est) == DAYS
    for index, metrics in est.items():
        for name, value in want[index - first].items():
            assert metrics[name].value == pytest.approx(value, rel=1e-9), (index, name)


def test_dle_sampling_errors_from_reference_losses(dle):
    pdf, result = dle
    ref = pdf[pdf["day"] < REF_DAYS]
    e = ref["pred"] - ref["y"]
    se = (e * e).to_numpy()
    for metrics in estimates_by_chunk(result).values():
        assert metrics["mae"].sampling_error == pytest.approx(np.std(np.abs(e)) / math.sqrt(PER_DAY), rel=1e-9)
        assert metrics["mse"].sampling_error == pytest.approx(np.std(se) / math.sqrt(PER_DAY), rel=1e-9)
        assert metrics["rmse"].sampling_error == pytest.approx(
            math.sqrt(np.std(se) ** 2 / (4 * PER_DAY * se.mean())), rel=1e-9)


def test_estimated_rmse_tracks_realized_under_covariate_shift(dle):
    _, result = dle
    est = estimates_by_chunk(result)
    realized = {r.chunk.index: r.value for r in result.metrics if r.family == "performance" and r.metric == "rmse"
                and r.slice_key == "" and r.value is not None}
    chunks = sorted(realized)
    assert len(chunks) == DAYS
    corr = np.corrcoef([est[i]["rmse"].value for i in chunks], [realized[i] for i in chunks])[0, 1]
    assert corr >= 0.9, corr
