"""What the NannyML side of the cross-checks does alike (runs in .venv-nannyml): NannyML's synthetic datasets with
the analysis targets joined, running ids, numbers for JSON."""

from __future__ import annotations

import os

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import nannyml as nml  # noqa: E402
import pandas as pd  # noqa: E402

CLASSES = ["highstreet_card", "prepaid_card", "upmarket_card"]
LOADERS = {"car_loan": "load_synthetic_car_loan_dataset",
           "multiclass": "load_synthetic_multiclass_classification_dataset",
           "car_price": "load_synthetic_car_price_dataset",
           "car_loan_dq": "load_synthetic_car_loan_data_quality_dataset"}
TARGETS = {"car_loan": "repaid", "car_loan_dq": "repaid", "multiclass": "y_true", "car_price": "y_true"}


def load(dataset: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(reference, analysis with its targets, target column); binary targets and predictions as int; each row a
    running `id` (the analysis after the reference) in place of NannyML's own."""
    reference, analysis, targets = getattr(nml, LOADERS[dataset])()
    target = TARGETS[dataset]
    analysis = analysis.merge(targets, on="id") if dataset == "multiclass" else \
        analysis.merge(targets[[target]], left_index=True, right_index=True)
    if target == "repaid":
        for frame in (reference, analysis):
            frame["repaid"] = frame["repaid"].astype(int)
            frame["y_pred"] = frame["y_pred"].astype(int)
    reference = reference.drop(columns=[c for c in ("id", "identifier") if c in reference.columns])
    analysis = analysis.drop(columns=[c for c in ("id", "identifier") if c in analysis.columns])
    reference.insert(0, "id", range(len(reference)))
    analysis.insert(0, "id", range(len(reference), len(reference) + len(analysis)))
    return reference, analysis, target


def num(x) -> float | None:
    """A JSON number, None for NaN and None."""
    return None if x is None or x != x else float(x)
