"""Alert delivery: which incidents a run reports (`--fail-on-alert`, webhook, alerts.json) and the
webhook POST.

The alerts of a run are the alerting analysis results (whole table and slices) of its **latest
analysis chunk** and of the chunks whose performance a label backfill recomputed in this run: older
chunks keep their alerts in the `metrics` table. They are reported as incidents
(monitoring/incidents.py): every surface lists the open incidents, and `--fail-on-alert` fires on
those with an alert in this run's chunks, optionally only from a severity up or in some families.
See docs/alerts.md.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from monitoring.config import MonitorConfig
from monitoring.drift.compare import ANALYSIS, MetricResult
from monitoring.incidents import SEVERITIES, Incident, incidents

log = logging.getLogger(__name__)

FAMILIES = ("drift", "multivariate", "data_quality", "performance", "estimated_performance", "concept_drift")
EXIT_ALERTS = 3  # `driftline run --fail-on-alert` when the run's alerts fire
WEBHOOK_ENV = "DRIFTLINE_WEBHOOK_URL"
WEBHOOK_TIMEOUT_S = 10.0
LISTED = 10  # incidents spelled out in the webhook text


@dataclass(frozen=True)
class RunAlerts:
    chunks: tuple[str, ...]  # keys of the chunks looked at
    alerts: tuple[MetricResult, ...]
    incidents: tuple[Incident, ...] = ()  # every open incident, most severe first
    indexes: tuple[int, ...] = ()  # the chunks looked at, as indexes

    def families(self) -> set[str]:
        return {r.family for r in self.alerts}

    def fresh(self) -> list[Incident]:
        """The open incidents with an alert in this run's chunks."""
        return [i for i in self.incidents if i.last_index in self.indexes]


def run_alerts(results: list[MetricResult], config: MonitorConfig, recomputed: list[int] = ()) -> RunAlerts:
    """Alerting analysis results of the latest analysis chunk and of the `recomputed` chunk indexes, and
    the open incidents of all results."""
    analysis = [r for r in results if r.period == ANALYSIS]
    if not analysis:
        return RunAlerts((), ())
    latest = max(r.chunk.index for r in analysis)
    wanted = {latest, *recomputed}
    keys = tuple(sorted({r.chunk.key for r in analysis if r.chunk.index in wanted}))
    return RunAlerts(keys, tuple(r for r in analysis if r.alert and r.chunk.index in wanted),
                     tuple(incidents(results, config)), tuple(sorted(wanted)))


@dataclass(frozen=True)
class Gate:
    """What `--fail-on-alert` fails on: incidents of these families from this severity up."""

    families: tuple[str, ...] = FAMILIES
    severity: str = SEVERITIES[-1]

    def fired(self, alerts: RunAlerts) -> list[Incident]:
        worst = SEVERITIES.index(self.severity)
        return [i for i in alerts.fresh() if SEVERITIES.index(i.severity) <= worst
                and set(i.families) & set(self.families)]


def parse_gate(text: str | None) -> Gate:
    """`--fail-on-alert` without a value (or `all`): every incident; else a comma-separated list of
    families (FAMILIES) and at most one severity (SEVERITIES: that severity and worse)."""
    chosen = tuple(f.strip() for f in (text or "").split(",") if f.strip() and f.strip() != "all")
    unknown = [f for f in chosen if f not in FAMILIES and f not in SEVERITIES]
    if unknown:
        raise ValueError(f"--fail-on-alert: unknown family or severity {unknown[0]!r}; choose families from "
                         f"{', '.join(FAMILIES)}, a severity from {', '.join(SEVERITIES)}, or all")
    severities = [f for f in chosen if f in SEVERITIES]
    if len(severities) > 1:
        raise ValueError(f"--fail-on-alert: one severity at most (it means 'this or worse'), got {severities}")
    families = tuple(f for f in chosen if f in FAMILIES) or FAMILIES
    return Gate(families, severities[0] if severities else SEVERITIES[-1])


def incident_lines(monitor: str, alerts: RunAlerts) -> list[str]:
    """The incident summary every surface shows: a headline, then one line per incident (LISTED)."""
    found = alerts.incidents
    counts = ", ".join(f"{n} {s}" for s in SEVERITIES if (n := sum(i.severity == s for i in found)))
    head = f"Driftline monitor '{monitor}': {len(found)} open incidents" + (f" ({counts})" if found else "") + \
        f"; {len(alerts.alerts)} alerts in chunks {', '.join(alerts.chunks) or '-'}"
    lines = [head, *(f"• {i.line()}" for i in found[:LISTED])]
    if len(found) > LISTED:
        lines.append(f"… and {len(found) - LISTED} more incidents (alerts.json, the report)")
    return lines


def webhook_payload(monitor: str, run_id: str, alerts: RunAlerts, mlflow_run: str | None,
                    link: str | None = None) -> dict:
    """Slack-compatible (`text`: the incident summary and a link to the MLflow run) JSON, with the incidents
    and the alerts as structured fields for other receivers."""
    lines = incident_lines(monitor, alerts)
    if mlflow_run:  # a link without credentials, else the id only
        lines.append(f"MLflow run: {link or mlflow_run}")
    return {"text": "\n".join(lines), "monitor": monitor, "run_id": run_id, "chunks": list(alerts.chunks),
            "mlflow_run": mlflow_run, "mlflow_link": link,
            "incidents": [i.to_dict() for i in alerts.incidents],
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
