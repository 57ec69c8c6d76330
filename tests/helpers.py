"""Test helpers: write small pandas frames as Delta tables and build configs around them; compare the
metrics of one monitor run in two places (another process or cluster vs this session)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitoring.config import MonitorConfig, parse_config


def daily_ts(rng: np.random.Generator, day: np.ndarray) -> pd.Series:
    """UTC timestamps (microseconds) spread over day `day` (0 = 2025-01-01) of each row, from `rng`."""
    micros = ((1735689600 + day * 86400 + rng.random(len(day)) * 86000) * 1e6).astype("int64")
    return pd.to_datetime(micros, unit="us", utc=True)


def write_delta(spark, df: pd.DataFrame, path: str, schema: str | None = None) -> str:
    sdf = spark.createDataFrame(df, schema=schema) if schema else spark.createDataFrame(df)
    sdf.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path)
    return path


def build_wheel(out: Path) -> Path:
    """`pip wheel` of this checkout into `out`; the driftline wheel's path."""
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(root)],
                   check=True, timeout=600)
    (whl,) = out.glob("driftline-*.whl")
    return whl


def make_config(table: str, features: list[tuple[str, str]], out: str, **overrides: Any) -> MonitorConfig:
    data: dict[str, Any] = {
        "monitor": "t",
        "problem_type": "binary",
        "source": {"table": table, "id_column": "id", "timestamp_column": "ts"},
        "features": [{"name": n, "kind": k} for n, k in features],
        "outputs": {"score": "score"},
        "chunking": {"period": "1d"},
        "reference": {"start": "2025-01-01", "end": "2025-01-02"},
        "output": {"path": out},
        "mlflow": {"enabled": False},
    }
    for key, value in overrides.items():
        data[key] = value
    return parse_config(data)


def estimates_by_chunk(result) -> dict[int, dict[str, Any]]:
    """chunk index -> metric -> the estimated-performance result (whole table, no comparison)."""
    from monitoring.performance.estimated import ESTIMATED

    out: dict[int, dict[str, Any]] = {}
    for r in result.metrics:
        if r.family == ESTIMATED and r.slice_key == "" and r.comparison == "NONE":
            out.setdefault(r.chunk.index, {})[r.metric] = r
    return out


CLASSES = ("a", "b", "c")


def write_drift_tables(spark, root: Path | str | None, days: int = 6, per_day: int = 3000,
                       problem_type: str = "binary", saver=None) -> tuple[str, str]:
    """A model's predictions (id, ts, x, cat and its outputs; x shifts by 0.5 from day 4 of 2025-01) and
    its labels, as Delta tables `<root>/preds` and `<root>/labels` (absolute paths). Binary: `score`, label
    0/1. Multiclass: class scores `p_a`, `p_b`, `p_c` (miscalibrated), `pred` and label one of CLASSES.
    `saver(df, name)` writes them elsewhere instead (e.g. as catalog tables) and returns the table name."""
    rng = np.random.default_rng(17)
    n = days * per_day
    day = np.repeat(np.arange(days), per_day)
    x = rng.normal(np.where(day >= 4, 0.5, 0.0), 1.0, n)
    score = 1 / (1 + np.exp(-(x + rng.normal(0, 1, n))))
    y = (rng.random(n) < 1 / (1 + np.exp(-x))).astype(int)
    micros = ((1735689600 + day * 86400 + rng.random(n) * 86000) * 1e6).astype("int64")
    ts = pd.to_datetime(micros, unit="us", utc=True)
    preds = pd.DataFrame({"id": np.arange(n), "ts": ts, "x": x,
                          "cat": np.where(x > 0.3, "a", np.where(x > -0.5, "b", "c")), "score": score})
    labels = pd.DataFrame({"id": np.arange(n), "label": y, "label_ts": ts})
    if problem_type == "multiclass":
        logits = np.column_stack([1.5 * x, rng.normal(0, 0.5, n), -1.5 * x])
        true_p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        labels["label"] = np.array(CLASSES)[np.minimum((rng.random(n)[:, None] > np.cumsum(true_p, axis=1)).sum(1), 2)]
        model = np.exp(0.6 * logits) / np.exp(0.6 * logits).sum(axis=1, keepdims=True)
        preds = preds.drop(columns="score").assign(pred=np.array(CLASSES)[np.argmax(model, axis=1)],
                                                   **{f"p_{c}": model[:, i] for i, c in enumerate(CLASSES)})
    if saver is None:
        root = Path(root).resolve()
        return (write_delta(spark, preds, str(root / "preds")), write_delta(spark, labels, str(root / "labels")))
    return saver(preds, "preds"), saver(labels, "labels")


def drift_config(monitor: str, preds: str, labels: str, output: dict[str, str], kll_k: int = 2000,
                 problem_type: str = "binary") -> dict:
    """The raw config (a dict, as YAML would give) monitoring `write_drift_tables`' tables: reference
    2025-01-01..04, daily chunks, results to `output` ({"path": dir} or {"schema": name}), no MLflow."""
    outputs = {"score": "score"} if problem_type == "binary" else \
        {"class_scores": {c: f"p_{c}" for c in CLASSES}, "prediction": "pred"}
    return {"monitor": monitor, "problem_type": problem_type,
            "source": {"table": preds, "id_column": "id", "timestamp_column": "ts"},
            "features": [{"name": "x", "kind": "continuous"}, {"name": "cat", "kind": "categorical"}],
            "outputs": outputs,
            "labels": {"table": labels, "label_column": "label", "timestamp_column": "label_ts"},
            "chunking": {"period": "1d"}, "reference": {"start": "2025-01-01", "end": "2025-01-04"},
            "profile": {"kll_k": kll_k}, "output": output, "mlflow": {"enabled": False}}


def metric_key(r) -> tuple:
    return (r.period, r.chunk.index, r.slice_key, r.slice_value, r.column, r.family, r.metric, r.comparison)


def from_sketch(r) -> bool:
    """Whether a metric row is read from KLL sketches (continuous drift, out-of-range shares) or binned by
    edges taken from them (the per-feature concept drift of continuous features)."""
    return r.kind == "continuous" and (r.family in ("drift", "concept_drift") or r.metric == "out_of_range")


def assert_same_metrics(ours: list, theirs: list, kll_k: int, exact_sketches: bool = False) -> None:
    """The same set of metric rows; every value not read from a KLL sketch (realized and estimated
    performance, categorical drift, missing rates, counts) within 1e-9. KLL sketches rebuilt in another JVM
    compact randomly, so continuous drift and out-of-range shares differ within the sketch bound: KS and
    out_of_range by at most 2 x (rank error of each side) = 4 x kll_rank_error(k); `exact_sketches` (the
    same session built both) asks 1e-9 there too."""
    from monitoring.sketches import kll_rank_error

    a_rows, b_rows = {metric_key(r): r for r in ours}, {metric_key(r): r for r in theirs}
    assert a_rows.keys() == b_rows.keys() and len(a_rows) > 100, sorted(a_rows.keys() ^ b_rows.keys())[:10]
    bound = 4 * kll_rank_error(kll_k)
    sketched = 0
    for key, a in a_rows.items():
        b = b_rows[key]
        if a.value is None or b.value is None:
            assert a.value is None and b.value is None, key
        elif from_sketch(a) and not exact_sketches:
            sketched += 1
            if a.metric in ("kolmogorov_smirnov", "out_of_range"):
                assert abs(a.value - b.value) <= bound, key
        else:
            sketched += from_sketch(a)
            assert b.value == pytest.approx(a.value, rel=1e-9, abs=1e-12), key
    assert sketched > 0 and any(k[5] == "estimated_performance" for k in a_rows)


def assert_registered(results: list) -> None:
    """Every metric of a run's results is in the metric registry, under its family (performance names also
    serve estimated performance and the concept-drift gaps) and for its column kind."""
    from monitoring.registry import PERFORMANCE, metric

    shared = {"estimated_performance", "concept_drift"}  # families reporting the performance metrics' names
    for r in results:
        entry = metric(r.metric)
        assert entry is not None, f"{r.family}/{r.metric} is not in monitoring/registry.py"
        families = {entry.family} | (shared if entry.family == PERFORMANCE else set())
        assert r.family in families and r.kind in entry.kinds, (r.family, r.metric, r.kind)


@contextlib.contextmanager
def webhook_receiver(monkeypatch) -> Iterator[list[dict]]:
    """An HTTP server on 127.0.0.1 as $DRIFTLINE_WEBHOOK_URL; yields the list of the POSTs it received
    (`type`: Content-Type, `json`: the body)."""
    received: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"type": self.headers["Content-Type"], "json": json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("DRIFTLINE_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    try:
        yield received
    finally:
        server.shutdown()
