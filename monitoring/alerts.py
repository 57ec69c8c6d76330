"""Alert delivery: which alerts a run reports (`--fail-on-alert`, webhook) and the webhook POST.

The alerts of a run are the alerting analysis results (whole table and slices) of its **latest
analysis chunk** and of the chunks whose performance a label backfill recomputed in this run: older
chunks keep their alerts in the `metrics` table, but a daily job must not fail every day for a drift
it already reported. See docs/alerts.md.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from monitoring.drift.compare import ANALYSIS, MetricResult

log = logging.getLogger(__name__)

FAMILIES = ("drift", "multivariate", "data_quality", "performance", "estimated_performance", "concept_drift")
EXIT_ALERTS = 3  # `driftline run --fail-on-alert` when the run's alerts fire
WEBHOOK_ENV = "DRIFTLINE_WEBHOOK_URL"
WEBHOOK_TIMEOUT_S = 10.0
LISTED = 20  # alerts spelled out in the webhook text


@dataclass(frozen=True)
class RunAlerts:
    chunks: tuple[str, ...]  # keys of the chunks looked at
    alerts: tuple[MetricResult, ...]

    def families(self) -> set[str]:
        return {r.family for r in self.alerts}


def run_alerts(results: list[MetricResult], recomputed: list[int] = ()) -> RunAlerts:
    """Alerting analysis results of the latest analysis chunk and of the `recomputed` chunk indexes."""
    analysis = [r for r in results if r.period == ANALYSIS]
    if not analysis:
        return RunAlerts((), ())
    latest = max(r.chunk.index for r in analysis)
    wanted = {latest, *recomputed}
    keys = tuple(sorted({r.chunk.key for r in analysis if r.chunk.index in wanted}))
    return RunAlerts(keys, tuple(r for r in analysis if r.alert and r.chunk.index in wanted))


def parse_families(text: str | None) -> tuple[str, ...]:
    """`--fail-on-alert` without a value: every family; else a comma-separated subset of FAMILIES."""
    if not text or text == "all":
        return FAMILIES
    chosen = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        raise ValueError(f"--fail-on-alert: unknown family {unknown[0]!r}; choose from {', '.join(FAMILIES)} or all")
    return chosen


def describe(r: MetricResult) -> str:
    where = "" if not r.slice_key else f" [{r.slice_key}={r.slice_value}]"
    column = "" if r.column == ":table" else f"{r.column} "
    bounds = f"[{_fmt(r.lower_threshold)}, {_fmt(r.upper_threshold)}]"
    return f"{r.chunk.key}{where}: {column}{r.family}.{r.metric} = {_fmt(r.value)} outside {bounds}"


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def webhook_payload(monitor: str, run_id: str, alerts: RunAlerts, mlflow_run: str | None) -> dict:
    """Slack-compatible (`text`) JSON with the alerts as structured fields for other receivers."""
    lines = [f"Driftline monitor '{monitor}': {len(alerts.alerts)} alerts in chunks {', '.join(alerts.chunks)}"]
    lines += [f"• {describe(r)}" for r in alerts.alerts[:LISTED]]
    if len(alerts.alerts) > LISTED:
        lines.append(f"… and {len(alerts.alerts) - LISTED} more (metrics table, run {run_id})")
    if mlflow_run:  # the id only: a tracking URI may hold credentials
        lines.append(f"MLflow run: {mlflow_run}")
    return {"text": "\n".join(lines), "monitor": monitor, "run_id": run_id, "chunks": list(alerts.chunks),
            "alerts": [{"chunk": r.chunk.key, "slice_key": r.slice_key, "slice_value": r.slice_value,
                        "column": r.column, "family": r.family, "metric": r.metric, "comparison": r.comparison,
                        "value": r.value, "lower_threshold": r.lower_threshold,
                        "upper_threshold": r.upper_threshold} for r in alerts.alerts]}


def post_webhook(url: str, payload: dict) -> bool:
    """POST the payload as JSON; False (and a logged warning) when the receiver fails: a webhook never
    fails a run whose results are already stored."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
            ok = 200 <= response.status < 300
    except (urllib.error.URLError, OSError) as exc:
        log.warning("alert webhook from $%s failed: %s", WEBHOOK_ENV, exc)
        return False
    if not ok:
        log.warning("alert webhook from $%s answered HTTP %s", WEBHOOK_ENV, response.status)
    return ok


def webhook_url() -> str | None:
    return os.environ.get(WEBHOOK_ENV) or None
