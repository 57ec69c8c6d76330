"""Test data for the exact histograms and the fine bins (tests/test_exact_histograms.py, tests/test_wasserstein.py):
daily chunks of heavy tails, ties, a skewed and a constant column with null, NaN and +-inf sprinkled, and one
fit and run over them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitoring.pipeline import fit, run
from tests.helpers import daily_ts, make_config

NAN_MARK = -12345.5  # pandas' NaN reaches Spark as null: a marker turned into a real NaN in Spark
DAYS, PER_DAY = 6, 1500


def _values(rng: np.random.Generator, n: int, day: np.ndarray) -> dict[str, np.ndarray]:
    """The test shapes: Cauchy tails, Poisson ties, a shifted lognormal, a constant; special values sprinkled."""
    heavy = rng.standard_cauchy(n) * (1 + (day >= 3))
    ties = rng.poisson(3 + (day >= 4), n).astype(float)
    skewed = rng.lognormal(0.2 * (day >= 2), 1.0, n)
    constant = np.full(n, 2.5)
    for x in (heavy, ties, skewed):
        x[rng.random(n) < 0.03] = np.nan
        x[rng.random(n) < 0.01] = np.inf
        x[rng.random(n) < 0.01] = -np.inf
    return {"heavy": heavy, "ties": ties, "skewed": skewed, "constant": constant}


def special_frame(seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = DAYS * PER_DAY
    day = np.repeat(np.arange(DAYS), PER_DAY)
    pdf = pd.DataFrame({"id": np.arange(n), "ts": daily_ts(rng, day), "day": day,
                        "score": rng.random(n)})
    for name, x in _values(rng, n, day).items():
        pdf[name] = np.where(np.isnan(x), NAN_MARK, x)
    pdf.loc[rng.random(n) < 0.02, "heavy"] = None  # nulls as well as NaN
    return pdf


def spark_frame(spark, pdf: pd.DataFrame, columns: list[str]):
    return spark.createDataFrame(pdf).selectExpr(
        "id", "ts", "score", *[f"CASE WHEN {c} = {NAN_MARK} THEN CAST('NaN' AS DOUBLE) ELSE {c} END AS {c}"
                              for c in columns])


def raw(pdf: pd.DataFrame, column: str) -> np.ndarray:
    x = pdf[column].to_numpy(dtype=float, na_value=np.nan)
    return np.where(x == NAN_MARK, np.nan, x)


def fit_and_run(spark, tmp_path, pdf: pd.DataFrame, columns: list[str], shared: bool, methods: list[str]):
    """Write `pdf` as a Delta table, fit its first 3 days as the reference with these continuous `methods` and
    run (`shared`: `run --fit`'s shared scan); KLL sketches far from exact (k 50): the values must not come
    from them. Returns (config, run result)."""
    table = str(tmp_path / "preds")
    spark_frame(spark, pdf, columns).write.format("delta").save(table)
    config = make_config(table, [(c, "continuous") for c in columns], str(tmp_path / "out"),
                         reference={"start": "2025-01-01", "end": "2025-01-04"},
                         drift={"continuous_methods": methods}, profile={"kll_k": 50})
    result = run(spark, config, fitted=fit(spark, config, analysis=True)) if shared else \
        (fit(spark, config), run(spark, config))[1]
    return config, result
