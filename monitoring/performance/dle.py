"""Direct loss estimation (DLE, NannyML's method) for regression.

At `fit`, one LightGBM regressor per loss (absolute, squared, absolute percentage, squared log error)
learns the per-row loss from the features and the prediction on a sample of the labelled reference
rows (trained on the driver: NannyML's model with its default hyperparameters, and a loss model needs
no more rows than a sample gives). At profiling, a pandas UDF predicts every row's losses in Spark
(negative predictions clipped to 0) and the performance state sums them per chunk; estimated MAE, MSE,
RMSE, MAPE, MSLE, RMSLE are those sums / n (square roots for the R-metrics). See
docs/estimated-performance.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from monitoring.sketches import CATEGORICAL
from monitoring.stores.tables import quote_part

LOSSES = ("ae", "se", "ape", "sle")  # absolute, squared, absolute percentage, squared log error
MAPE_EPS = float(np.finfo(np.float64).eps)
SEED = 7


@dataclass(frozen=True)
class LossModels:
    """The fitted loss models with what is needed to encode rows for them."""

    features: tuple[tuple[str, str], ...]  # (column, kind) in model order; the prediction comes last
    prediction: str
    categories: dict[str, list[str]] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)  # loss -> LightGBM model text
    training_rows: int = 0

    def fingerprint(self) -> str:
        text = json.dumps([self.features, self.prediction, self.categories, sorted(self.models.items())])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def settings(self) -> str:
        return json.dumps({"features": self.features, "prediction": self.prediction, "categories": self.categories,
                           "training_rows": self.training_rows})

    def outputs(self) -> tuple[str, ...]:
        return tuple(self.models)

    def column(self) -> Column:
        return predicted_losses(self)

    @classmethod
    def from_stored(cls, settings: str, models: dict[str, str]) -> LossModels:
        s = json.loads(settings)
        return cls(tuple(tuple(f) for f in s["features"]), s["prediction"], s["categories"], models,
                   s["training_rows"])


def encode(frame: pd.DataFrame, features: tuple[tuple[str, str], ...], prediction: str,
           categories: dict[str, list[str]]) -> pd.DataFrame:
    """Model inputs: continuous columns as float (missing = NaN, which LightGBM routes itself),
    categorical ones as pandas categoricals over the reference's categories (unseen = missing)."""
    out = {}
    for name, kind in features:
        if kind == CATEGORICAL:
            out[name] = pd.Categorical(frame[name].astype("string"), categories=categories[name])
        else:
            out[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    out[prediction] = pd.to_numeric(frame[prediction], errors="coerce").astype("float64")
    return pd.DataFrame(out)


def losses(y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    e = p - y
    out = {"ae": np.abs(e), "se": e * e, "ape": np.abs(e) / np.maximum(np.abs(y), MAPE_EPS)}
    if (y >= 0).all() and (p >= 0).all():
        out["sle"] = (np.log1p(y) - np.log1p(p)) ** 2
    return out


def fit_loss_models(frame: pd.DataFrame, features: tuple[tuple[str, str], ...], prediction: str,
                    label: str) -> LossModels:
    """Train one LGBMRegressor (default hyperparameters, fixed seed, deterministic) per loss on
    `frame` (labelled reference rows with a prediction)."""
    import lightgbm as lgb

    categories = {name: sorted(frame[name].dropna().astype(str).unique().tolist())
                  for name, kind in features if kind == CATEGORICAL}
    x = encode(frame, features, prediction, categories)
    targets = losses(frame[label].to_numpy(float), frame[prediction].to_numpy(float))
    models = {}
    for name, target in targets.items():
        model = lgb.LGBMRegressor(random_state=SEED, deterministic=True, n_jobs=1, verbose=-1)
        model.fit(x, target)
        models[name] = model.booster_.model_to_string()
    return LossModels(features, prediction, categories, models, len(frame))


_BOOSTERS: dict[str, object] = {}  # model text hash -> parsed booster, per Python worker


def _booster(text: str):
    import lightgbm as lgb

    key = hashlib.sha256(text.encode()).hexdigest()
    if key not in _BOOSTERS:
        _BOOSTERS[key] = lgb.Booster(model_str=text)
    return _BOOSTERS[key]


def predicted_losses(models: LossModels) -> Column:
    """A struct column of every row's predicted losses (clipped at 0), computed by a pandas UDF."""
    names = [n for n, _ in models.features]
    schema = StructType([StructField(k, DoubleType()) for k in models.models])
    texts, features, prediction, categories = dict(models.models), models.features, models.prediction, \
        models.categories

    @F.pandas_udf(schema)
    def predict(*cols: pd.Series) -> pd.DataFrame:
        frame = pd.DataFrame({name: c for name, c in zip([*names, prediction], cols, strict=True)})
        x = encode(frame, features, prediction, categories)
        return pd.DataFrame({k: np.maximum(_booster(t).predict(x), 0.0) for k, t in texts.items()})

    inputs = [F.col(quote_part(n)).cast("string") if k == CATEGORICAL else F.col(quote_part(n)).cast("double")
              for n, k in features]
    return predict(*inputs, F.col(quote_part(prediction)).cast("double"))
