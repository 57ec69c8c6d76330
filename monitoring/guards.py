"""Guard rails: configs that run but measure nothing stop at fit with an error naming the key and the
fix; declared column kinds that do not fit the data become a data-quality alert (docs/config.md,
"Guard rails"). Pure checks of the fitted reference's states.

Errors (`check_labels`, at fit):
- binary: labels that never equal `outputs.positive_class` while at least two label values occur,
  and predictions (`outputs.prediction`) that never do while at least two prediction values occur;
- multiclass: most labels none of the classes of `outputs.class_scores`.
Data-quality results (`kind_problems`, a `declared_kind` alert per column on the newest chunk,
monitoring/quality.py): a `categorical` column whose distinct values exceed NEAR_UNIQUE of its values,
a `continuous` column of exactly two values (a flag); `empty_columns`, an `empty_reference_column` alert
per feature whose reference holds no valid value at all (all null, NaN or +-inf: its drift cannot be
measured, so it would otherwise vanish from every result). They are legitimate data too (a user id kept on
purpose, a constant column whose change must alert), so they inform rather than stop. Prediction values
outside a multiclass model's classes (`unknown_prediction_rate`) and a reference of fewer than 3
chunks (`reference_chunks`) are data-quality results as well.
"""

from __future__ import annotations

import logging

import numpy as np

from monitoring.config import MonitorConfig
from monitoring.errors import ConfigError
from monitoring.performance.state import INVALID_LABELS, PerformanceState
from monitoring.reference import FittedReference
from monitoring.sketches import CATEGORICAL, CONTINUOUS
from monitoring.slices import WHOLE

log = logging.getLogger(__name__)

NEAR_UNIQUE = 0.5  # distinct values / valid values of a categorical column
FEW_VALUES = 2  # distinct values of a continuous column that make it a flag (one: a constant, left alone)
MIN_ROWS = 100  # the column checks need this many valid values in the reference


def kind_problems(config: MonitorConfig, ref: FittedReference) -> list[tuple[str, str]]:
    """(column, what to do) for each feature whose declared kind does not fit its reference values."""
    columns = ref.columns.get(WHOLE, {})
    out = []
    for i, feature in enumerate(config.features):
        rc = columns.get(feature.name)
        if rc is None or rc.state.valid_count < MIN_ROWS:
            continue
        state, key = rc.state, f"features[{i}].kind"
        if feature.kind == CATEGORICAL and state.distinct_count > NEAR_UNIQUE * state.valid_count:
            out.append((feature.name, f"{key}: '{feature.name}' is declared categorical but about "
                                      f"{state.distinct_count:,} of its {state.valid_count:,} reference values are "
                                      "distinct (nearly unique: every chunk looks new); declare it continuous if it is "
                                      "a number, or leave it out of features if it is an id or free text"))
        if feature.kind == CONTINUOUS:
            values = np.unique(state.quantiles(np.linspace(0.0, 1.0, 101)))
            if len(values) == FEW_VALUES:
                out.append((feature.name, f"{key}: '{feature.name}' is declared continuous but its reference values "
                                          f"take only {values[0]:g} and {values[1]:g} (a flag); declare it "
                                          "categorical"))
    return out


def empty_columns(config: MonitorConfig, ref: FittedReference) -> list[tuple[str, str]]:
    """(column, what to do) for each feature without a single valid (finite, non-null) reference value."""
    columns = ref.columns.get(WHOLE, {})
    out = []
    for i, feature in enumerate(config.features):
        rc = columns.get(feature.name)
        if rc is not None and rc.state.valid_count == 0:
            s = rc.state
            what = f"{s.null_count:,} null, {s.nan_count:,} NaN, {s.inf_count:,} infinite" \
                if feature.kind == CONTINUOUS else f"{s.null_count:,} null"
            out.append((feature.name, f"features[{i}]: the reference holds no valid value of '{feature.name}' "
                                      f"({what} of {s.row_count:,} rows): its drift cannot be measured; fix the "
                                      "reference rows or leave it out of features"))
    return out


def check_labels(config: MonitorConfig, ref: FittedReference) -> None:
    """Labels and predictions against the configured classes, from the reference's performance states."""
    states = [cp.performance for cp in ref.chunks_of(WHOLE) if cp.performance is not None]
    if not states or config.problem_type == "regression" or config.labels is None:
        return
    merged = PerformanceState()
    for s in states:
        merged = merged.merge(s)
    values = merged.values
    where = f"column '{config.labels.label_column}' of {config.labels.table}"
    if config.problem_type == "multiclass":
        invalid, labelled = values.get(INVALID_LABELS, 0.0), values.get("labelled", 0.0)
        if invalid and invalid > labelled:
            raise ConfigError("outputs.class_scores", f"{invalid:,.0f} of the reference's {invalid + labelled:,.0f} "
                                                      f"labels in {where} are none of the classes "
                                                      f"{', '.join(config.outputs.class_scores)}; name the classes "
                                                      "as the labels spell them")
        return
    cells = [key.split("|")[1:] for key in values if key.startswith("cm|") and values[key]]
    labels, predictions = {c[0] for c in cells}, {c[1] for c in cells}
    positive = config.outputs.positive_class
    if len(labels) >= 2 and positive not in labels:
        raise ConfigError("outputs.positive_class", f"no label in {where} equals '{positive}'; the reference's "
                                                    f"labels are {', '.join(sorted(labels))}: set "
                                                    "outputs.positive_class to the label of the positive class")
    if labels and positive not in labels:
        log.warning("no label of the reference equals outputs.positive_class '%s' (only '%s'): realized "
                    "performance needs both classes", positive, next(iter(labels)))
    if config.outputs.prediction and len(predictions) >= 2 and positive not in predictions:
        raise ConfigError("outputs.prediction", f"no value of column '{config.outputs.prediction}' equals "
                                                f"outputs.positive_class '{positive}'; its values are "
                                                f"{', '.join(sorted(predictions))}: predictions and labels must "
                                                "spell the positive class the same way")
