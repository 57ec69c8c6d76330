"""Incidents from alert series (pure: hand-built metric results, no Spark)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from monitoring.chunking import ChunkInfo
from monitoring.config import parse_config
from monitoring.drift.compare import ANALYSIS, BASELINE, MetricResult
from monitoring.incidents import HIGH, LOW, MEDIUM, incidents

START = datetime(2025, 1, 6, tzinfo=timezone.utc)
CONFIG_DICT = {
    "monitor": "m", "problem_type": "binary",
    "source": {"table": "/tmp/p", "id_column": "id", "timestamp_column": "ts"},
    "features": [{"name": "age", "kind": "continuous"}, {"name": "income", "kind": "continuous"},
                 {"name": "region", "kind": "categorical"}],
    "outputs": {"score": "s", "positive_class": 1},
    "chunking": {"period": "1w"},
    "reference": {"start": "2024-01-01", "end": "2025-01-06"},
    "output": {"path": "/tmp/o"}, "mlflow": {"enabled": False}}
CONFIG = parse_config(CONFIG_DICT)


def chunk(i: int) -> ChunkInfo:
    start = START + timedelta(weeks=i)
    return ChunkInfo(2900 + i, start.date().isoformat(), start, start + timedelta(weeks=1))


def series(column: str, family: str, metric: str, values: list[float | None], upper: float | None = None,
           lower: float | None = None, slice_=("", ""), comparison: str = BASELINE) -> list[MetricResult]:
    out = []
    for i, v in enumerate(values):
        alert = v is not None and ((upper is not None and v > upper) or (lower is not None and v < lower))
        out.append(MetricResult(ANALYSIS, chunk(i), *slice_, column, "continuous", family, metric, comparison, v,
                                1000, lower, upper, alert))
    return out


def test_a_drifting_column_is_one_incident_from_its_first_alert_across_one_quiet_chunk():
    ks = [0.01, 0.01, 0.3, 0.35, 0.01, 0.4, 0.45]  # starts in chunk 2, one quiet chunk (4) inside
    rows = series("age", "drift", "kolmogorov_smirnov", ks, upper=0.05)
    rows += series("age", "drift", "jensen_shannon", [0.01, 0.01, 0.2, 0.2, 0.01, 0.3, 0.2], upper=0.1)
    rows += series("age", "drift", "kolmogorov_smirnov", [0.01] * 6 + [0.9], upper=0.05, slice_=("region", "north"))
    rows += series("age", "drift", "kolmogorov_smirnov", [0.01] * 6 + [0.8], upper=0.05, slice_=("region", "south"))
    rows += series("income", "drift", "kolmogorov_smirnov", [0.01] * 7, upper=0.05)
    found = incidents(rows, CONFIG)
    assert len(found) == 1
    (age,) = found
    assert (age.subject, age.start, age.last) == ("age", chunk(2).key, chunk(6).key)
    assert (age.chunks, age.alerted_chunks) == (5, 4)
    # headline: the whole-table BASELINE drift metric furthest past its threshold (KS 0.45 / 0.05 = 9x)
    assert (age.metric, age.value, age.threshold, age.direction) == ("kolmogorov_smirnov", 0.45, 0.05, "above")
    assert age.beyond == pytest.approx(0.45 / 0.05 - 1)
    assert age.slices == ("region=north", "region=south") and age.whole and age.alerts == 4
    assert age.severity == MEDIUM and "Kolmogorov-Smirnov D 0.45 (threshold 0.05, 9x above)" in age.line()


def test_two_quiet_chunks_end_an_incident_and_an_old_one_is_not_open():
    rows = series("age", "drift", "kolmogorov_smirnov", [0.3, 0.3, 0.01, 0.01, 0.3, 0.3], upper=0.05)
    rows += series("income", "drift", "kolmogorov_smirnov", [0.3, 0.3, 0.3, 0.01, 0.01, 0.01], upper=0.05)
    (age,) = incidents(rows, CONFIG)
    assert (age.subject, age.start, age.chunks) == ("age", chunk(4).key, 2)


def test_performance_judged_on_its_newest_labelled_chunk_and_ranked_first():
    # realized ROC AUC has labels up to chunk 3 only; it fell below its lower threshold from chunk 2
    rows = series(":table", "performance", "roc_auc", [0.85, 0.84, 0.70, 0.68, None, None], lower=0.8)
    rows += series(":table", "estimated_performance", "roc_auc", [0.85] * 6, lower=0.8, comparison="NONE")
    rows += series("age", "drift", "kolmogorov_smirnov", [0.01] * 5 + [0.3], upper=0.05)
    rows += series("income", "drift", "kolmogorov_smirnov", [0.01] * 5 + [0.3], upper=0.05,
                   slice_=("region", "north"))
    found = incidents(rows, CONFIG)
    assert [(i.kind, i.subject, i.severity) for i in found] == [
        ("performance", "model", HIGH), ("column", "age", MEDIUM), ("column", "income", LOW)]
    auc = found[0]
    # the estimate of the newest chunk is fine, but realized ROC AUC is judged on its newest labelled chunk
    assert (auc.start, auc.last, auc.family, auc.metric, auc.value) == \
        (chunk(2).key, chunk(3).key, "performance", "roc_auc", 0.68)
    # once the estimate is judged fine on newer labelled chunks too, nothing is open
    recovered = series(":table", "performance", "roc_auc", [0.85, 0.84, 0.70, 0.68, 0.86, None], lower=0.8)
    assert not incidents(recovered + rows[6:12], CONFIG)


def test_model_performance_incident_uses_the_realized_value_and_names_the_side():
    rows = series(":table", "performance", "roc_auc", [0.85, 0.70, 0.68], lower=0.8)
    (auc,) = incidents(rows, CONFIG)
    assert (auc.start, auc.direction, auc.threshold, auc.value) == (chunk(1).key, "below", 0.8, 0.68)
    assert auc.beyond == pytest.approx((0.8 - 0.68) / 0.8)
    assert "ROC AUC 0.68 (threshold 0.8, 15% below)" in auc.line()


def test_performance_metrics_are_one_incident_headed_by_the_headline_metric():
    """A drop in quality moves several metrics: one `performance: model` incident, headed by ROC AUC (the
    binary headline) although recall is further past its threshold, its line naming the others."""
    rows = series(":table", "performance", "roc_auc", [0.85, 0.84, 0.78], lower=0.8)
    rows += series(":table", "performance", "recall", [0.6, 0.6, 0.3], lower=0.5)
    rows += series(":table", "performance", "log_loss", [0.4, 0.4, 0.5], upper=0.45)
    rows += series(":table", "estimated_performance", "f1", [0.7, 0.7, 0.6], lower=0.65, comparison="NONE")
    (found,) = incidents(rows, CONFIG)
    assert (found.kind, found.subject, found.metric, found.value) == ("performance", "model", "roc_auc", 0.78)
    assert found.metrics == ("f1", "log_loss", "recall", "roc_auc") and found.alerts == 4
    assert found.line().endswith("; also f1, log_loss, recall")
    alone = incidents(rows[3:], CONFIG)[0]  # without ROC AUC: the furthest past, realized before estimated
    assert (alone.metric, alone.value) == ("recall", 0.3)


def test_an_unimportant_column_is_low():
    config = parse_config({**CONFIG_DICT, "features": [{"name": "age", "kind": "continuous", "importance": 0.0},
                                                        {"name": "income", "kind": "continuous", "importance": 1.0}]})
    rows = series("age", "drift", "kolmogorov_smirnov", [0.01, 0.3], upper=0.05)
    rows += series("income", "drift", "kolmogorov_smirnov", [0.01, 0.2], upper=0.05)
    found = incidents(rows, config)
    assert [(i.subject, i.severity) for i in found] == [("income", MEDIUM), ("age", LOW)]
