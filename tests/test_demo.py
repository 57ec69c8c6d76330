"""Demo data and the end-to-end demo command, on a small row count."""

from __future__ import annotations

import html
import json
import shutil
from datetime import timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from monitoring import demo_data
from monitoring.cli import main

from .helpers import webhook_receiver
from .mlflow_server import check_report, check_ui, free_port, metric_history, mlflow_server

ROOT = Path(__file__).resolve().parents[1]
ROWS = 150_000
CONTINUOUS_DEMO = {"car_value", "debt_to_income_ratio", "driver_tenure", "customer_age", "y_score"}
SHIFT_WEEK = demo_data.SHIFT_START.date().isoformat()  # a Monday: the shift starts its own weekly chunk


@pytest.fixture(scope="module")
def demo_tables(spark, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("demo") / "binary")
    return demo_data.write_demo(spark, out, rows=ROWS), out


def test_demo_data_has_the_injected_shifts(spark, demo_tables):
    tables, out = demo_tables
    pdf = spark.read.format("delta").load(tables.predictions).toPandas()
    assert len(pdf) == ROWS and pdf["id"].is_unique
    assert set(demo_data.FEATURES) <= set(pdf.columns)
    ts = pdf["ts"].dt.tz_localize(None) if pdf["ts"].dt.tz is not None else pdf["ts"]
    before = ts < np.datetime64(demo_data.SHIFT_START.replace(tzinfo=None))
    ref = ts < np.datetime64(demo_data.REFERENCE_END.replace(tzinfo=None))
    # covariate shift: the older cohort after SHIFT_START (+10 years of age, longer tenure)
    assert pdf.loc[~before, "customer_age"].mean() - pdf.loc[before, "customer_age"].mean() == pytest.approx(10, abs=1)
    assert pdf.loc[~before, "driver_tenure"].mean() > pdf.loc[before, "driver_tenure"].mean() + 2
    for unchanged in ("car_value", "debt_to_income_ratio"):
        a, b = pdf.loc[ref, unchanged], pdf.loc[~before, unchanged]
        assert abs(a.mean() - b.mean()) < 0.05 * a.std()
    # scores are probabilities, roughly calibrated against the labels on the reference
    labels = spark.read.format("delta").load(tables.labels).toPandas()
    joined = pdf.merge(labels, on="id")
    early = joined[joined["ts"] < joined["ts"].min() + np.timedelta64(90, "D")]
    assert early["y_score"].between(0, 1).all()
    assert early["y_score"].mean() == pytest.approx(early["label"].mean(), abs=0.03)
    # labels arrive late: none after the as-of date, recent months mostly unlabelled
    assert labels["label_ts"].max() <= np.datetime64(demo_data.LABELS_AS_OF.replace(tzinfo=None))
    december = (pdf["ts"].dt.month == 12) & (pdf["ts"].dt.year == 2025)
    coverage = joined["id"].isin(pdf.loc[december, "id"]).sum() / max(1, december.sum())
    assert coverage < 0.05
    assert len(joined[joined["ts"].dt.month == 2]) / (pdf["ts"].dt.month == 2).sum() > 0.9
    truth = json.loads((Path(out) / "ground_truth.json").read_text())
    assert truth["covariate_shift_features"] == ["customer_age", "driver_tenure"]


@pytest.mark.parametrize("variant", ["multiclass", "regression"])
def test_demo_variants(spark, tmp_path, variant):
    df = demo_data.demo_frame(spark, 5_000, variant)
    pdf = df.toPandas()
    if variant == "multiclass":
        total = pdf[["p_repaid", "p_late", "p_default"]].sum(axis=1)
        assert np.allclose(total, 1.0) and set(pdf["label"]) == set(demo_data.CLASSES)
    else:
        assert (pdf["y_pred"] > 0).all() and np.corrcoef(np.log(pdf["y_pred"]), np.log(pdf["label"]))[0, 1] > 0.3


def test_demo_command_end_to_end(spark, workdir, demo_tables, capsys, monkeypatch):
    """`driftline demo` on a prepared demo table, logging to a real `mlflow server`: reference + analysis
    profiles, drift metrics, one MLflow run; the injected covariate shift is alerted in exactly the
    injected features from its first chunk. The run's metric histories equal the metrics table (REST
    API), headless Chromium renders its pages, and notebooks/explore_results.ipynb executes on the output."""
    import yaml

    _, out = demo_tables
    shutil.copytree(out, workdir / "data/demo/binary")
    config = yaml.safe_load((ROOT / "conf" / "demo.yaml").read_text())
    with mlflow_server(free_port(), workdir) as base:
        config["mlflow"] = {**config.get("mlflow", {}), "tracking_uri": base}
        # 1000 sampled rows a side instead of 5000: the domain classifier's fits take a fifth of the time
        config["multivariate"]["classifier"]["sample_rows"] = 1000
        (workdir / "demo.yaml").write_text(yaml.safe_dump(config))
        with webhook_receiver(monkeypatch) as received:
            assert main(["demo", "--config", "demo.yaml"]) == 0
        _check_demo_results(spark, workdir, config, capsys, base, received)
        _execute_notebook(workdir, monkeypatch)


def _check_demo_results(spark, workdir: Path, config: dict, capsys, base: str, received: list[dict]) -> None:
    import mlflow

    profiles = spark.read.format("delta").load(str(workdir / "output/car_loans/profiles")).where("slice_key = ''")
    # features, score and prediction, the performance state and the `:sums` row (failed-prediction counts)
    columns = len(config["features"]) + 2 + 2
    assert profiles.where("dataset = 'reference'").count() == 26 * columns
    assert profiles.where("dataset = 'analysis'").count() == 26 * columns
    metrics = spark.read.format("delta").load(str(workdir / "output/car_loans/metrics"))
    alerted = metrics.where("period = 'analysis' AND family = 'drift' AND comparison = 'BASELINE' AND alert "
                            "AND slice_key = ''").select("column_name", "chunk_start").distinct().collect()
    weeks: dict[str, list[str]] = {}
    for r in alerted:
        weeks.setdefault(r[0], []).append(r[1].strftime("%Y-%m-%d"))
    # the injected features alert in the week holding SHIFT_START and in every later week
    for feature in demo_data.SHIFTED:
        after = sorted(w for w in weeks[feature] if w >= SHIFT_WEEK)
        assert after[0] == SHIFT_WEEK and len(after) == 17, feature
    # chance alerts elsewhere (unchanged features, shifted ones before the shift) stay rare on these
    # ~2.9k-row weekly chunks at 5 sigma; the 1M-row demo had none (docs/statistics.md)
    false_alarms = sum(len(v) for k, v in weeks.items() if k in demo_data.GROUND_TRUTH.unchanged_features)
    false_alarms += sum(w < SHIFT_WEEK for f in demo_data.SHIFTED for w in weeks[f])
    assert false_alarms <= 6, weeks
    out = capsys.readouterr().out
    assert "customer_age" in out and "0 ids without a prediction" in out
    incident_lines = _check_incidents(received)
    # three label regimes: old chunks fully labelled, recent ones partly, the newest none
    auc = metrics.where("family = 'performance' AND metric = 'roc_auc' AND period = 'analysis' AND slice_key = ''")
    auc = sorted(auc.select("chunk_start", "value", "label_coverage", "note").collect())
    assert auc[0]["label_coverage"] > 0.9 and auc[0]["value"] > 0.6
    assert any(0.1 < r["label_coverage"] < 0.9 and r["value"] is not None for r in auc)
    assert auc[-1]["label_coverage"] == 0 and auc[-1]["value"] is None and "insufficient" in auc[-1]["note"]
    _check_estimates(metrics)
    _check_concept_features(metrics)
    # the domain classifier (on in the demo config) tells the shifted weeks from the reference, not the
    # earlier ones
    auc = {r["chunk_start"].strftime("%Y-%m-%d"): r for r in metrics.where(
        "period = 'analysis' AND family = 'multivariate' AND metric = 'classifier_auc'").collect()}
    assert len(auc) == 26
    assert all(r["alert"] == (week >= SHIFT_WEEK) for week, r in auc.items()), \
        {w: (r["value"], r["alert"]) for w, r in auc.items()}
    client = mlflow.tracking.MlflowClient(base)
    exp = client.get_experiment_by_name("driftline/car_loans")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    # through the REST API: a column's headline drift metric's history is the metrics table's analysis
    # rows, step = chunk ordinal 0..25, timestamp = chunk end, with its threshold next to it
    rows = metrics.where("period = 'analysis' AND family = 'drift' AND comparison = 'BASELINE' AND slice_key = '' "
                         "AND metric = 'kolmogorov_smirnov' AND column_name = 'customer_age'").collect()
    first = min(r["chunk_index"] for r in rows)
    want = sorted((r["chunk_index"] - first, int(r["chunk_end"].astimezone(timezone.utc).timestamp() * 1000),
                   r["value"]) for r in rows)
    run_id = runs[0].info.run_id
    key = "drift/customer_age.kolmogorov_smirnov"
    assert len(want) == 26 and metric_history(base, run_id, key) == want and [w[0] for w in want] == list(range(26))
    thresholds = metric_history(base, run_id, f"{key}.upper_threshold")
    assert [(s, t) for s, t, _ in thresholds] == [(s, t) for s, t, _ in want]
    assert {v for *_, v in thresholds} == {r["upper_threshold"] for r in rows}
    check_ui(base, exp.experiment_id, run_id, runs[0].info.run_name, key, "demo")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the classic runs view
    # CBPE needs no labels: every analysis chunk has an estimate in MLflow, realized ones only where labelled
    assert len(client.get_metric_history(run_id, "estimated/roc_auc")) == 26
    assert 0 < len(client.get_metric_history(run_id, "performance/roc_auc")) < 26
    assert len(client.get_metric_history(run_id, "performance/roc_auc.lower_threshold")) == \
        len(client.get_metric_history(run_id, "performance/roc_auc"))
    rows_logged = client.get_metric_history(run_id, "quality/row_count")
    expected_rows = profiles.where("dataset = 'analysis' AND column_name = 'y_score'").groupBy().sum("row_count")
    assert sum(m.value for m in rows_logged) == expected_rows.collect()[0][0]
    # fewer, named keys: per column its headline drift metric, per thresholded performance metric its value
    keys = set(runs[0].data.metrics)
    assert {k for k in keys if k.startswith("drift/") and not k.endswith("_threshold")} == {
        f"drift/{c}.{'kolmogorov_smirnov' if c in CONTINUOUS_DEMO else 'jensen_shannon'}"
        for c in [f["name"] for f in config["features"]] + ["y_score", "y_pred"]}
    assert len(keys) < 120, sorted(keys)
    inputs = {d.dataset.name: d for d in client.get_run(run_id).inputs.dataset_inputs}
    tags = runs[0].data.tags
    assert set(inputs) == {f"predictions@v{tags['driftline.source_version']}",
                           f"labels@v{tags['driftline.labels_version']}"}, set(inputs)
    artifacts = {f.path for f in client.list_artifacts(runs[0].info.run_id)}
    assert {"report.html", "charts", "alerts.json", "config.json", "results"} <= artifacts
    # every surface lists the same incidents with the same numbers: the summary, the webhook (above),
    # alerts.json, the MLflow run's description and the report
    description = runs[0].data.tags["mlflow.note.content"]
    local = Path(client.download_artifacts(runs[0].info.run_id, "", str(workdir / "artifacts")))
    stored = json.loads((local / "alerts.json").read_text())
    report = html.unescape((local / "report.html").read_text())
    sent = received[0]["json"]["incidents"]
    assert [i["headline_text"] for i in stored["incidents"]] == [i["headline_text"] for i in sent]
    for line in incident_lines:
        assert line in out and line in description, line
    for incident in stored["incidents"]:
        assert incident["headline_text"] in report and incident["title"] in report
    check_report(local / "report.html", "demo")  # in Chromium: incidents first, interactive charts, no internal names
    assert "Distributions of the drifting columns" in report and "customer_age: share of rows" in report


def _check_incidents(received: list[dict]) -> list[str]:
    """The webhook got one message of at most 12 lines: at most 10 open incidents, among them the injected
    covariate shift (customer_age, driver_tenure from SHIFT_WEEK) and concept drift (the model's
    realized-estimated gap and debt_to_income_ratio's relation to the target, from the week holding
    CONCEPT_START); ROC AUC going up raises nothing. Returns the incident lines of its text."""
    assert len(received) == 1
    payload = received[0]["json"]
    found = {(i["kind"], i["subject"]): i for i in payload["incidents"]}
    assert 1 <= len(found) <= 10, list(found)
    concept_week = (demo_data.CONCEPT_START - timedelta(days=demo_data.CONCEPT_START.weekday())).date().isoformat()
    for feature in demo_data.SHIFTED:
        assert found[("column", feature)]["start"] == SHIFT_WEEK and found[("column", feature)]["severity"] == "medium"
    assert found[("concept drift", "model")]["start"] == concept_week
    assert found[("concept drift", "model")]["severity"] == "high"
    dti = found[("column", demo_data.GROUND_TRUTH.concept_drift_feature)]
    assert dti["start"] == concept_week and "concept_drift" in dti["families"] and dti["severity"] == "high"
    assert not any(i["kind"] == "performance" and i["direction"] == "above" and i["metric"] == "roc_auc"
                   for i in payload["incidents"])
    text = payload["text"].splitlines()
    assert len(text) <= 12 and text[-1].startswith("MLflow run: http://127.0.0.1:") and "/runs/" in text[-1]
    return [line[2:] for line in text if line.startswith("• ")]


def _execute_notebook(workdir: Path, monkeypatch) -> None:
    """The results notebook runs top to bottom on the demo output through the public API (its own kernel
    and Spark session), started from notebooks/ (Jupyter's default) and from the repo root: the incidents
    come first, then the alerting columns' charts."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("DRIFTLINE_CONFIG", str(workdir / "demo.yaml"))
    monkeypatch.setenv("DRIFTLINE_WORKDIR", str(workdir))
    for start in (ROOT / "notebooks", ROOT):
        nb = nbformat.read(ROOT / "notebooks" / "explore_results.ipynb", as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(start)}}).execute()
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
        assert "customer_age" in text and "drift metrics logged" in text, text[:2000]
        first_rich = next(o for o in outputs if "text/html" in o.get("data", {}))
        assert "incidents" in first_rich["data"]["text/html"] and "customer_age" in first_rich["data"]["text/html"]
        assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3


def _check_estimates(metrics) -> None:
    """CBPE on the demo: under covariate shift alone the realized ROC AUC lies in the estimate's +-3 SE
    band in >= 90% of labelled chunks; after the concept drift the estimate misses and the gap
    (estimate - realized rows) shows it; the newest, unlabelled chunks still get an estimate."""
    base = "period = 'analysis' AND metric = 'roc_auc' AND slice_key = ''"
    est = {r["chunk_start"]: r for r in metrics.where(
        f"{base} AND family = 'estimated_performance' AND comparison = 'NONE'").collect()}
    real = {r["chunk_start"]: r["value"] for r in metrics.where(f"{base} AND family = 'performance'").collect()
            if r["value"] is not None}
    gaps = {r["chunk_start"]: r["value"] for r in metrics.where(
        f"{base} AND family = 'estimated_performance' AND comparison = 'REALIZED'").collect()}
    concept = demo_data.CONCEPT_START.replace(tzinfo=None)
    before = [d for d in real if d + timedelta(days=7) <= concept]
    inside = [d for d in before if est[d]["lower_confidence"] <= real[d] <= est[d]["upper_confidence"]]
    assert len(before) >= 8 and len(inside) >= 0.9 * len(before), (len(inside), len(before))
    after = [d for d in real if d >= concept]
    assert after and all(gaps[d] == pytest.approx(est[d]["value"] - real[d], abs=1e-12) for d in after)
    assert np.mean([abs(gaps[d]) for d in after]) > 2 * np.mean([abs(gaps[d]) for d in before])
    newest = max(est)
    assert newest not in real and est[newest]["value"] is not None and est[newest]["sampling_error"] > 0
    # concept drift (realized - estimated): quiet under covariate shift alone, alerting from the first
    # labelled chunk of the injected concept drift
    concept = {r["chunk_start"]: r for r in metrics.where(f"{base} AND family = 'concept_drift'").collect()}
    assert set(concept) == set(real)
    assert all(concept[d]["value"] == pytest.approx(real[d] - est[d]["value"], abs=1e-12) for d in real)
    assert sum(concept[d]["alert"] for d in before) <= 1, [(d, concept[d]["value"]) for d in before]
    assert concept[min(after)]["alert"] and sum(concept[d]["alert"] for d in after) >= 0.8 * len(after)


def _check_concept_features(metrics) -> None:
    """Per-feature concept drift (the residual's pattern across a feature's reference bins): no feature
    alerts before the concept drift, covariate-shift weeks included; from the first week holding the
    drift (it starts on a Wednesday) on, the injected feature alerts in every labelled week and the
    others stay quiet (at most one chance alert)."""
    rows = metrics.where("period = 'analysis' AND family = 'concept_drift' AND metric = 'relation_change' "
                         "AND slice_key = ''").select("column_name", "chunk_start", "alert", "value").collect()
    assert {r["column_name"] for r in rows} == set(demo_data.FEATURES)
    concept = demo_data.CONCEPT_START.replace(tzinfo=None)
    first = concept - timedelta(days=concept.weekday())
    before = [r for r in rows if r["chunk_start"] < first]
    assert len({r["chunk_start"] for r in before}) >= 12 and not any(r["alert"] for r in before), \
        [(r["column_name"], r["chunk_start"], r["value"]) for r in before if r["alert"]]
    injected = demo_data.GROUND_TRUTH.concept_drift_feature
    alerted = sorted(r["chunk_start"] for r in rows if r["column_name"] == injected and r["alert"])
    assert alerted[0] == first and len(alerted) >= 8, alerted
    assert sum(r["alert"] for r in rows if r["column_name"] != injected) <= 1
