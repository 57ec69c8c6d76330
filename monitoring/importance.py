"""Feature importances of the monitored model from the MLflow model registry, for the drift ranking.

Used when the config names the registered model (`mlflow.model_name` and `mlflow.model_version`) and
gives no `features[].importance`. Supported flavours: scikit-learn (an estimator or a Pipeline whose last
step has `feature_importances_` or `coef_`; the mean |coef| over classes) and LightGBM (a Booster or an
LGBMModel: total gain). Feature names come from the model (`feature_names_in_`, LightGBM's feature
names); importances are normalised to sum 1 over the configured features the model knows, and a
configured feature the model does not use gets 0. Anything else (another flavour, no names, no
importances, the registry unreachable) logs why and leaves the ranking to its correlation fallback:
importances refine the ranking, they never fail a run. See docs/statistics.md "Drift that matters".
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from monitoring.config import MonitorConfig

log = logging.getLogger(__name__)


def _sklearn_importances(model) -> tuple[list[str], np.ndarray] | None:
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        names = getattr(final, "feature_names_in_", None)
    if hasattr(final, "feature_importances_"):
        values = np.asarray(final.feature_importances_, float)
    elif hasattr(final, "coef_"):
        values = np.abs(np.atleast_2d(np.asarray(final.coef_, float))).mean(axis=0)
    else:
        return None
    if names is None or len(names) != len(values):
        return None
    return [str(n) for n in names], values


def _lightgbm_importances(model) -> tuple[list[str], np.ndarray]:
    booster = model.booster_ if hasattr(model, "booster_") else model
    return list(booster.feature_name()), np.asarray(booster.feature_importance(importance_type="gain"), float)


def model_importances(config: MonitorConfig) -> dict[str, float] | None:
    """feature -> importance of the registered model version, or None (the reason is logged)."""
    name, version = config.mlflow.model_name, config.mlflow.model_version
    if not name or not version:
        return None
    uri = f"models:/{name}/{version}"
    try:
        import mlflow

        mlflow.set_tracking_uri(config.mlflow.tracking_uri)
        flavors = mlflow.models.get_model_info(uri).flavors
        if "sklearn" in flavors:
            found = _sklearn_importances(mlflow.sklearn.load_model(uri))
        elif "lightgbm" in flavors:
            found = _lightgbm_importances(mlflow.lightgbm.load_model(uri))
        else:
            log.warning("model %s (flavours %s): no importances read from this flavour; ranking drift by "
                        "correlation with performance instead", uri, ", ".join(flavors))
            return None
    except Exception as exc:  # the registry or the model: importances are optional, the run goes on
        log.warning("model %s: could not read feature importances (%s); ranking drift by correlation with "
                    "performance instead", uri, exc)
        return None
    if found is None:
        log.warning("model %s exposes no feature names with importances; ranking drift by correlation with "
                    "performance instead", uri)
        return None
    by_name = dict(zip(*found, strict=True))
    known = {f.name: max(float(by_name.get(f.name, 0.0)), 0.0) for f in config.features}
    total = sum(known.values())
    if total <= 0:
        log.warning("model %s: none of the configured features has an importance; check the feature names", uri)
        return None
    return {k: v / total for k, v in known.items()}


def with_model_importances(config: MonitorConfig) -> MonitorConfig:
    """`config` with `features[].importance` from the registered model when the config gives none."""
    if any(f.importance is not None for f in config.features):
        return config
    importances = model_importances(config)
    if importances is None:
        return config
    log.info("feature importances from model %s v%s: %s", config.mlflow.model_name, config.mlflow.model_version,
             ", ".join(f"{k} {v:.3f}" for k, v in sorted(importances.items(), key=lambda kv: -kv[1])))
    return replace(config, features=tuple(replace(f, importance=importances[f.name]) for f in config.features))
