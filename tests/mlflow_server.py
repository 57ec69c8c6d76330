"""A real `mlflow server` on 127.0.0.1 for the tests, its REST API, and headless Chromium on its UI."""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"  # Debian's package, installed by `make test` (Makefile: browser)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000", "--virtual-time-budget=8000"]


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768+), so that no JVM or client socket that binds
    port 0 in between can be handed the same port before the server under test binds it."""
    while True:
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@contextmanager
def mlflow_server(port: int, root: Path):
    """`mlflow server` with a SQLite store and local artifacts under `root`, until the block ends."""
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1",
                               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                               "--artifacts-destination", str(root / "artifacts")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              # no background-job runner: MLflow 3 starts a dozen huey consumer processes
                              # for server-side jobs (GenAI scorers) that the tests never use
                              env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "mlflow server did not start"
                time.sleep(1)
        yield base
    finally:
        server.terminate()
        server.wait(30)


def rest_get(base: str, endpoint: str, **params) -> dict:
    query = "&".join(f"{k}={urllib.request.quote(str(v))}" for k, v in params.items())
    with urllib.request.urlopen(f"{base}/api/2.0/mlflow/{endpoint}?{query}", timeout=30) as response:
        return json.loads(response.read())


def rest_runs(base: str, experiment_name: str) -> tuple[str, list[dict]]:
    """(experiment id, its runs) through the REST API."""
    experiment = rest_get(base, "experiments/get-by-name", experiment_name=experiment_name)["experiment"]
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/runs/search", method="POST",
                                     data=json.dumps({"experiment_ids": [experiment["experiment_id"]]}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return experiment["experiment_id"], json.loads(response.read()).get("runs", [])


def metric_history(base: str, run_id: str, key: str) -> list[tuple[int, int, float]]:
    """(step, timestamp ms, value) of a metric, sorted."""
    history = rest_get(base, "metrics/get-history", run_id=run_id, metric_key=key)["metrics"]
    return sorted((m["step"], m["timestamp"], m["value"]) for m in history)


def _chromium(url: str, *args: str, profile: Path) -> str:
    done = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def check_ui(base: str, experiment_id: str, run_id: str, run_name: str, metric: str, name: str) -> None:
    """Headless Chromium renders the MLflow UI's run page and the chart page of `metric`: the rendered
    DOM shows the run name and the metric; screenshots go to .cache/screenshots/<name>_*.png."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run `make test` (it installs it) or `make browser`"
    shots = ROOT / ".cache" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    pages = {  # the run page as Driftline links it: MLflow 3's classic (model training) view
        "run": (f"{base}/#/experiments/{experiment_id}/runs/{run_id}/model-metrics?workflowType=machine_learning",
                run_name),
        "metric": (f"{base}/#/metric/?runs={json.dumps([run_id])}&metric={urllib.request.quote(json.dumps(metric))}"
                   f"&experiments={json.dumps([experiment_id])}&plot_metric_keys="
                   f"{urllib.request.quote(json.dumps([metric]))}&x_axis=step&workflowType=machine_learning", metric),
    }
    for page, (url, expected) in pages.items():
        shot = shots / f"{name}_{page}.png"
        with tempfile.TemporaryDirectory() as profile:
            dom = _chromium(url, "--dump-dom", profile=Path(profile))
            assert run_name in dom and expected in dom, (page, dom[:3000])
            if page == "run":  # the classic view's navigation (Runs, Models), not the GenAI one's
                assert ">Runs<" in dom and "Evaluation runs" not in dom, dom[:3000]
            _chromium(url, f"--screenshot={shot}", profile=Path(profile))
        assert shot.stat().st_size > 10_000


def check_report(report: Path, name: str) -> str:
    """Headless Chromium renders a report.html: the incidents section comes first, plotly drew interactive
    charts, and no internal name (`:table`, `:performance`, `_dl_`) shows; a screenshot goes to
    .cache/screenshots/<name>_report.png. Returns the rendered DOM."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run `make test` (it installs it) or `make browser`"
    shots = ROOT / ".cache" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        dom = _chromium(report.as_uri(), "--dump-dom", profile=Path(profile))
        _chromium(report.as_uri(), f"--screenshot={shots / f'{name}_report.png'}", "--window-size=1400,3000",
                  profile=Path(profile))
    headings = re.findall(r"<h2[^>]*>(.*?)</h2>", dom)
    assert headings and headings[0] == "Incidents", headings
    assert dom.count("js-plotly-plot") >= 3 and "main-svg" in dom  # plotly ran and drew its SVGs
    visible = re.sub(r"<script.*?</script>|<style.*?</style>", "", dom, flags=re.S)
    assert not re.search(r":table|:performance|_dl_", visible), re.findall(r".{40}(?::table|_dl_).{40}", visible)[:3]
    return dom
