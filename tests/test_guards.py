"""Guard rails (issue 20): configs that would run and measure nothing end in an error that names the key
and the fix (`driftline fit`, exit 2, nothing of the reference's profiles written), or in an alerting
data-quality result naming it (a declared kind that does not fit the values, a reference too small for
thresholds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from monitoring.cli import main
from monitoring.stores.metrics import read_metrics

from .helpers import daily_ts, write_delta

DAYS, PER_DAY = 5, 400


@pytest.fixture(scope="module")
def tables(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("guards")
    rng = np.random.default_rng(11)
    n = DAYS * PER_DAY
    day = np.repeat(np.arange(DAYS), PER_DAY)
    score = rng.random(n)
    frame = pd.DataFrame({
        "id": np.arange(n),
        "ts": daily_ts(rng, day),
        "x": rng.normal(0, 1, n), "flag": rng.integers(0, 2, n).astype(float),
        "code": [f"c{i}" for i in range(n)],  # unique per row
        "score": score, "pred": (score >= 0.5).astype(int)})
    labels = pd.DataFrame({"id": np.arange(n), "label": (rng.random(n) < score).astype(int),
                           "label_ts": frame["ts"] + pd.Timedelta(hours=1)})
    return root, write_delta(spark, frame, str(root / "preds")), write_delta(spark, labels, str(root / "labels"))


def _config(root: Path, preds: str, labels: str, name: str, **changes) -> str:
    data = {"monitor": name, "problem_type": "binary",
            "source": {"table": preds, "id_column": "id", "timestamp_column": "ts"},
            "features": [{"name": "x", "kind": "continuous"}],
            "outputs": {"score": "score", "prediction": "pred", "positive_class": 1},
            "labels": {"table": labels, "id_column": "id", "label_column": "label", "timestamp_column": "label_ts"},
            "chunking": {"period": "1d"}, "reference": {"start": "2025-01-01", "end": "2025-01-04"},
            "output": {"path": str(root / f"out_{name}")}, "mlflow": {"enabled": False}, **changes}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_labels_that_never_name_the_positive_class_stop_at_fit(spark, tables, capsys):
    root, preds, labels = tables
    changes = {"outputs": {"score": "score", "prediction": "pred", "positive_class": "yes"}}
    assert main(["fit", "--config", _config(root, preds, labels, "positive", **changes)]) == 2
    err = capsys.readouterr().err
    assert "config key 'outputs.positive_class'" in err and "the reference's labels are 0, 1" in err, err
    assert not (root / "out_positive" / "profiles").exists()  # the reference's profiles were not written


@pytest.mark.parametrize(("name", "features", "key", "says"), [
    ("unique", [{"name": "x", "kind": "continuous"}, {"name": "code", "kind": "categorical"}], "features[1].kind",
     "declare it continuous if it is a number, or leave it out"),
    ("flag", [{"name": "x", "kind": "continuous"}, {"name": "flag", "kind": "continuous"}], "features[1].kind",
     "take only 0 and 1 (a flag); declare it categorical"),
])
def test_a_kind_that_does_not_fit_the_values_is_a_quality_alert(spark, tables, capsys, name, features, key, says):
    """Fit says so, and every run alerts on the column's `declared_kind` (its incident names the fix)."""
    root, preds, labels = tables
    assert main(["run", "--fit", "--config", _config(root, preds, labels, name, features=features)]) == 0
    out = capsys.readouterr().out
    assert f"check {key}" in out and says in out, out
    stored = read_metrics(spark, str(root / f"out_{name}" / "metrics"), name)
    (row,) = [r for r in stored.results if r.metric == "declared_kind"]
    column = features[1]["name"]
    assert (row.column, row.alert, row.chunk.key, row.family) == (column, True, "2025-01-05", "data_quality")
    assert says in row.note
    assert f"[medium] {column}: declared kind does not fit the values 1 (threshold 0)" in out, out


def test_predictions_that_never_name_the_positive_class(spark, tables, capsys):
    """Labels spell the positive class 1, the predictions 'Y'/'N': the prediction key is named."""
    root, preds, labels = tables
    frame = spark.read.format("delta").load(preds).toPandas()
    frame["pred"] = np.where(frame["pred"] == 1, "Y", "N")
    other = write_delta(spark, frame, str(root / "preds_yn"))
    assert main(["fit", "--config", _config(root, other, labels, "yn")]) == 2
    err = capsys.readouterr().err
    assert "config key 'outputs.prediction'" in err and "its values are N, Y" in err, err


def test_a_reference_of_two_chunks_is_an_alerting_quality_result(spark, tables, capsys):
    root, preds, labels = tables
    path = _config(root, preds, labels, "small", reference={"start": "2025-01-01", "end": "2025-01-03"})
    assert main(["run", "--fit", "--config", path]) == 0
    stored = read_metrics(spark, str(root / "out_small" / "metrics"), "small")
    (row,) = [r for r in stored.results if r.metric == "reference_chunks"]
    assert (row.value, row.lower_threshold, row.alert, row.chunk.key) == (2.0, 3.0, True, "2025-01-05")
    assert "widen reference.start/end" in row.note
    out = capsys.readouterr().out
    assert "[medium] data quality: reference_chunks: reference chunks (thresholds need 3) 2 (threshold 3, 33% below)" \
        in out, out
    # the same monitor with three reference chunks has no such row
    path = _config(root, preds, labels, "enough")
    assert main(["run", "--fit", "--config", path]) == 0
    assert not [r for r in read_metrics(spark, str(root / "out_enough" / "metrics"), "enough").results
                if r.metric == "reference_chunks"]
