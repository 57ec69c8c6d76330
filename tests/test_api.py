"""The public Python API (`monitoring.Monitor`, `Results`) on a small labelled monitor: a config from a
dict, fit + run in one call, results as pandas and Spark equal to the metrics table, the incidents equal
to the CLI's, figures of the alerting columns, the stored results and the HTML report."""

from __future__ import annotations

import pandas as pd
import pytest

import monitoring as dl
from monitoring.alerts import run_alerts
from monitoring.ranking import HEADLINE
from monitoring.stores.metrics import read_metrics

from .helpers import drift_config, write_drift_tables


@pytest.fixture(scope="module")
def ran(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    preds, labels = write_drift_tables(spark, root)
    data = drift_config("api", preds, labels, {"path": str(root / "out")})
    data["drift"] = {"thresholds": [{"metric": "kolmogorov_smirnov", "type": "constant", "upper": 0.1}]}
    monitor = dl.Monitor.from_dict(data, spark)
    return monitor, monitor.run(fit=True), root


def test_run_returns_what_the_metrics_table_holds(spark, ran):
    monitor, results, root = ran
    stored = read_metrics(spark, str(root / "out" / "metrics"), "api")
    frame = results.to_pandas()
    assert len(frame) == len(stored.results) == len(results.metrics) > 0
    assert results.to_spark(spark).count() == len(frame)
    # one metric value, three ways: the result object, its pandas frame, the Delta table
    ks = [r for r in results.metrics if (r.period, r.column, r.metric, r.comparison, r.slice_key) ==
          ("analysis", "x", "kolmogorov_smirnov", "BASELINE", "")]
    newest = max(ks, key=lambda r: r.chunk.index)
    row = frame[(frame.period == "analysis") & (frame.column_name == "x") & (frame.metric == "kolmogorov_smirnov")
                & (frame.comparison == "BASELINE") & (frame.slice_key == "")
                & (frame.chunk_index == newest.chunk.index)]
    table = results.to_spark(spark).where(
        f"period = 'analysis' AND column_name = 'x' AND metric = 'kolmogorov_smirnov' AND comparison = 'BASELINE' "
        f"AND slice_key = '' AND chunk_index = {newest.chunk.index}").collect()
    assert row["value"].item() == newest.value == table[0]["value"]
    assert isinstance(results.run.run_id, str) and results.reporting_error is None


def test_incidents_plots_and_stored_results(spark, ran):
    monitor, results, root = ran
    # x shifts by 0.5 sd from day 4 on (write_drift_tables): with KS above 0.1 alerting, x is an incident
    incidents = results.incidents()
    direct = run_alerts(results.metrics, monitor.config).incidents
    assert [i.headline() for i in incidents] == [i.headline() for i in direct]
    x = next(i for i in incidents if i.subject == "x")
    newest = [r for r in results.metrics if (r.period, r.column, r.family, r.comparison, r.slice_key) ==
              ("analysis", "x", "drift", "BASELINE", "") and r.alert and r.chunk.key == x.last]
    head = max((r for r in newest if r.metric in HEADLINE), key=lambda r: r.value / r.upper_threshold)
    assert x.start == "2025-01-05"
    assert (x.metric, x.value, x.threshold) == (head.metric, head.value, head.upper_threshold)
    assert x.line() in results.summary() and "x" in results._repr_html_()
    table = results.incident_table()
    assert isinstance(table, pd.DataFrame) and list(table["subject"]) == [i.subject for i in incidents]
    figures = results.plot()
    columns = [i.subject for i in incidents if i.kind == "column"]
    assert [f.axes[0].get_title().split(":")[0] for f in figures][:len(columns)] == columns
    assert "x: kolmogorov_smirnov vs reference" in [f.axes[0].get_title() for f in figures]
    again = monitor.results()  # the stored results: no run
    assert again.run is None and len(again.metrics) == len(results.metrics)
    assert [i.id for i in again.incidents()] == [i.id for i in incidents]
    report = monitor.report(root / "report")
    assert report.is_file() and "Incidents" in report.read_text()
    # the run holds the reference and newest-chunk states of its drifting columns: the report draws them,
    # and the shares it draws are those of the rows (x's newest-chunk share below the reference median)
    (dist,) = [d for d in results.distributions() if d.column == "x"]
    frame = spark.read.format("delta").load(str(root / "preds")).toPandas()
    newest = frame[frame["ts"].dt.strftime("%Y-%m-%d") == dist.chunk]["x"]
    reference = frame[frame["ts"] < pd.Timestamp("2025-01-04")]["x"]  # toPandas: naive UTC (session time zone)
    from monitoring.drift.distributions import WeightedSample

    shares = WeightedSample.from_kll(dist.current.kll).bin_probabilities(dist.edges)
    below = (newest < dist.edges[len(dist.edges) // 2]).mean()
    assert shares[: len(dist.edges) // 2 + 1].sum() == pytest.approx(below, abs=0.02)  # KLL rank error bound
    assert dist.reference.valid_count == len(reference)
    from monitoring.drift.distributions import bin_counts  # the report draws the exact counts the distances read

    assert dist.current.histogram == bin_counts(newest.to_numpy(float), dist.edges).tolist()
    assert dist.reference.histogram == bin_counts(reference.to_numpy(float), dist.edges).tolist()
    from monitoring.reporting.html_report import write_report

    write_report(monitor.config, results.metrics, "api", root / "with", results.distributions())
    assert "Distributions of the drifting columns" in (root / "with" / "report.html").read_text()
    # stored results draw the same states, read back from the reference and profiles tables
    (stored,) = [d for d in monitor.stored_distributions(again) if d.column == "x"]
    assert (stored.chunk, stored.current.kll, stored.reference.valid_count) == \
        (dist.chunk, dist.current.kll, dist.reference.valid_count)
    assert list(stored.edges) == pytest.approx(list(dist.edges), rel=1e-12)
    assert "Distributions of the drifting columns" in report.read_text()
