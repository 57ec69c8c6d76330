"""`driftline init --table T`: the draft config of a predictions table names its roles and kinds as a
person would (checked against the table the helpers write), validates, and is never written over."""

from __future__ import annotations

import yaml

from monitoring.cli import main
from monitoring.config import parse_config

from .helpers import write_drift_tables


def test_init_drafts_a_valid_config(spark, tmp_path, capsys):
    preds, _ = write_drift_tables(spark, tmp_path)
    out = tmp_path / "draft.yaml"
    assert main(["init", "--table", preds, "--monitor", "drafted", "--out", str(out)]) == 0
    text = out.read_text()
    draft = yaml.safe_load(text)
    assert draft["source"] == {"table": preds, "id_column": "id", "timestamp_column": "ts"}
    assert draft["problem_type"] == "binary" and draft["outputs"]["score"] == "score"
    assert {f["name"]: f["kind"] for f in draft["features"]} == {"x": "continuous", "cat": "categorical"}
    assert draft["chunking"] == {"period": "1d"} and draft["monitor"] == "drafted"
    assert "positive_class: 1 is a guess" in text  # what was guessed is said at the top
    parse_config(draft)
    assert main(["validate", "--config", str(out)]) == 0
    assert main(["init", "--table", preds, "--out", str(out)]) == 2  # never overwrites
    assert "exists" in capsys.readouterr().err
