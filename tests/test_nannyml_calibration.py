"""`compatibility: nannyml` decides per class whether CBPE calibrates as NannyML 0.13.1 does
(`nannyml.calibration.needs_calibration`): its expected calibration error on hand-computed cases, its
degenerate cases, and a multiclass fit whose per-class decisions are those of the rule on the labelled
reference rows in id order (`make crosscheck` compares the decisions with NannyML's own on its multiclass
data: highstreet_card and upmarket_card calibrated, prepaid_card not)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.performance.nannyml_calibration import _ece, needs_calibration
from monitoring.pipeline import fit

from .helpers import make_config, write_delta


def test_ece_on_hand_computed_cases():
    """4 rows: 2 bins of 2 (NannyML halves the bin count up to 20 rows); 22 rows: 11 bins of 2 (range(0, 23,
    2) with its last edge moved to 22)."""
    p, y = np.array([0.9, 0.1, 0.8, 0.2]), np.array([1.0, 0.0, 1.0, 1.0])
    # sorted by p: (0.1, 0), (0.2, 1) | (0.8, 1), (0.9, 1): 0.5 |0.15 - 0.5| + 0.5 |0.85 - 1|
    assert _ece(y, p) == pytest.approx(0.5 * 0.35 + 0.5 * 0.15, rel=1e-12)
    p = np.linspace(0.0, 1.0, 22)
    y = (np.arange(22) % 3 == 0).astype(float)
    expected = sum(2 / 22 * abs(p[a:a + 2].mean() - y[a:a + 2].mean()) for a in range(0, 22, 2))
    assert _ece(y, p) == pytest.approx(expected, rel=1e-12)


def test_degenerate_cases_are_not_calibrated():
    rng = np.random.default_rng(1)
    p = rng.random(500)
    assert not needs_calibration(np.ones(500), p)  # one class
    assert not needs_calibration((p > 0.5).astype(float), p)  # a perfect ranking (AUC > 0.999)
    q = rng.random(5000)
    assert needs_calibration((rng.random(5000) < q ** 3).astype(float), q)  # far from calibrated


CLASSES = ["a", "b", "c"]


def _frame(rng: np.random.Generator, n: int = 9000) -> pd.DataFrame:
    """Class a's score is its probability (calibrated); b's and c's are squashed (miscalibrated)."""
    logits = rng.normal(0.0, 1.5, (n, 3))
    true_p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.minimum((rng.random(n)[:, None] > np.cumsum(true_p, axis=1)).sum(axis=1), 2)
    scores = true_p.copy()
    rest = np.sqrt(true_p[:, 1:])  # b and c share a's complement in squashed proportions
    scores[:, 1:] = rest / rest.sum(axis=1, keepdims=True) * (1 - true_p[:, :1])
    day = np.repeat(np.arange(3), n // 3)
    micros = ((1735689600 + day * 86400 + rng.random(n) * 86000) * 1e6).astype("int64")
    frame = pd.DataFrame({"id": rng.permutation(n), "ts": pd.to_datetime(micros, unit="us", utc=True),
                          "x1": logits[:, 0], "pred": np.array(CLASSES)[np.argmax(scores, axis=1)],
                          "y": np.array(CLASSES)[y]})
    for i, c in enumerate(CLASSES):
        frame[f"p_{c}"] = scores[:, i]
    return frame


def test_multiclass_fit_decides_per_class_as_nannyml(spark, tmp_path):
    """The stored calibrators are applied exactly for the classes the rule picks on the labelled reference
    rows in id order (ids shuffled against the table's order: the order is the id's)."""
    pdf = _frame(np.random.default_rng(1))  # a seed where the classes differ: the wiring per class shows
    preds = write_delta(spark, pdf.drop(columns=["y"]), str(tmp_path / "preds"))
    labels = write_delta(spark, pd.DataFrame({"id": pdf["id"], "label": pdf["y"], "label_ts": pdf["ts"]}),
                         str(tmp_path / "labels"))
    config = make_config(preds, [("x1", "continuous")], str(tmp_path / "out"), problem_type="multiclass",
                         outputs={"class_scores": {c: f"p_{c}" for c in CLASSES}, "prediction": "pred"},
                         labels={"table": labels, "label_column": "label", "timestamp_column": "label_ts"},
                         reference={"start": "2025-01-01", "end": "2025-01-04"}, compatibility="nannyml",
                         estimation={"calibration": "auto"})
    ref = fit(spark, config)
    rows = pdf.sort_values("id")
    expected = [needs_calibration((rows["y"] == c).to_numpy(float), rows[f"p_{c}"].to_numpy(float))
                for c in CLASSES]
    assert expected == [False, True, True]  # the case is what it was built to be
    assert [c.applied for c in ref.models.estimators.row_model.calibrators] == expected
