"""The metric registry (monitoring/registry.py): threshold rules work for every metric a run produces,
performance included; improving performance does not alert by default; docs/metrics.md is the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitoring.config import parse_config
from monitoring.errors import ConfigError
from monitoring.pipeline import fit, run
from monitoring.registry import CONFUSION, markdown
from tests.helpers import assert_registered, drift_config, write_drift_tables

ROOT = Path(__file__).resolve().parents[1]


def test_docs_table_is_the_registry():
    assert (ROOT / "docs" / "metrics.md").read_text() == markdown(), \
        "docs/metrics.md is stale: python -m monitoring.registry > docs/metrics.md"


@pytest.mark.parametrize("name", ["roc_auc", "f1", "mae", "f1_macro", "accuracy", "missing_rate", "row_count",
                                  "failed_prediction_rate", "reconstruction_error", "relation_change",
                                  "confusion_a_b", CONFUSION.name, "*"])
def test_thresholds_accept_every_metric(name):
    raw = drift_config("m", "/tmp/p", "/tmp/l", {"path": "/tmp/o"})
    raw["drift"] = {"thresholds": [{"metric": name, "type": "constant", "lower": 0.5}]}
    assert parse_config(raw).drift.thresholds[0].metric == name


def test_unknown_metric_names_the_key_and_a_fix():
    raw = drift_config("m", "/tmp/p", "/tmp/l", {"path": "/tmp/o"})
    raw["drift"] = {"thresholds": [{"metric": "roc_auk", "type": "constant", "lower": 0.5}]}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert "drift.thresholds[0].metric" in str(err.value) and "Did you mean 'roc_auc'" in str(err.value)


def test_performance_rules_are_applied(spark, tmp_path):
    preds, labels = write_drift_tables(spark, tmp_path, days=7, per_day=400)
    raw = drift_config("rules", preds, labels, {"path": str(tmp_path / "out")}, kll_k=200)
    raw["drift"] = {"thresholds": [{"metric": "roc_auc", "type": "constant", "lower": 0.99},
                                   {"metric": "row_count", "type": "constant", "lower": 10**6}]}
    config = parse_config(raw)
    result = run(spark, config, fitted=fit(spark, config, analysis=True))
    assert_registered(result.metrics)
    analysis = [r for r in result.metrics if r.period == "analysis" and r.slice_key == "" and r.comparison == "NONE"]

    def rows(family: str, metric: str) -> list:
        found = [r for r in analysis if r.family == family and r.metric == metric]
        assert len(found) == 4, (family, metric, len(found))
        return found

    # a constant lower bound on realized ROC AUC: every chunk is below 0.99 and alerts; the estimated ROC AUC
    # shares the realized metric's thresholds
    for family in ("performance", "estimated_performance"):
        for r in rows(family, "roc_auc"):
            assert (r.lower_threshold, r.upper_threshold) == (0.99, None) and r.value < 0.99 and r.alert, r
    for r in rows("data_quality", "row_count"):
        assert r.lower_threshold == 10**6 and r.alert, r
    # defaults: scores alert only downwards, losses only upwards, counts never
    for r in rows("performance", "f1"):
        assert r.lower_threshold is not None and r.upper_threshold is None, r
    for r in rows("performance", "log_loss"):
        assert r.lower_threshold is None and r.upper_threshold is not None, r
    for r in rows("performance", "true_positive"):
        assert (r.lower_threshold, r.upper_threshold, r.alert) == (None, None, False), r
