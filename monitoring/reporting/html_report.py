"""The self-contained HTML report of a run and its PNG charts (MLflow artifacts `report.html`, `charts/`).

Incidents first (monitoring/incidents.py, the lines every surface shows), then the overview (alerts
per family and column), then one chart per monitored column (its headline drift
metric against the reference, BASELINE, whole table) and per headline performance metric (realized and
estimated overlaid, the estimate's confidence band). Every chart shows the reference and analysis
chunks, the thresholds and the alerting chunks in red. Charts are PNGs, embedded as base64 so the HTML
file needs nothing else.
"""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from monitoring.config import MonitorConfig
from monitoring.drift.compare import ANALYSIS, BASELINE, DRIFT, REFERENCE, MetricResult
from monitoring.incidents import incidents
from monitoring.ranking import HEADLINE, rank_drift
from monitoring.slices import WHOLE

HEADLINE_PERFORMANCE = {"binary": ("roc_auc", "f1", "accuracy"), "multiclass": ("roc_auc_macro", "f1_macro",
                                                                                 "accuracy"),
                        "regression": ("rmse", "mae")}
ESTIMATED = "estimated_performance"


@dataclass(frozen=True)
class Chart:
    name: str  # file stem
    title: str
    png: bytes


def _series(results: list[MetricResult]) -> list[MetricResult]:
    return sorted(results, key=lambda r: (r.period != REFERENCE, r.chunk.index))


def _plot(title: str, lines: dict[str, list[MetricResult]], band_of: str | None = None) -> bytes:
    buffer = io.BytesIO()
    _figure(title, lines, band_of).savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def column_figure(results: list[MetricResult], column: str):
    """A matplotlib figure of `column`'s headline drift metric (BASELINE, whole table) over the reference
    and analysis chunks, with thresholds and alerts; None when the column has no drift results."""
    rows = [r for r in results if (r.family, r.comparison, r.column, r.slice_key, r.slice_value) ==
            (DRIFT, BASELINE, column, *WHOLE)]
    metric = next((m for m in HEADLINE if any(r.metric == m for r in rows)), None)
    if metric is None:
        return None
    return _figure(f"{column}: {metric} vs reference", {metric: [r for r in rows if r.metric == metric]})


def _figure(title: str, lines: dict[str, list[MetricResult]], band_of: str | None = None):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.2), dpi=90)
    ax = fig.subplots()
    first = None
    for label, rows in lines.items():
        rows = [r for r in _series(rows) if r.value is not None]
        if not rows:
            continue
        first = first or rows
        x = [r.chunk.start for r in rows]
        ax.plot(x, [r.value for r in rows], marker="o", markersize=3, linewidth=1.2, label=label)
        if label == band_of:
            lo = [r.lower_confidence if r.lower_confidence is not None else r.value for r in rows]
            hi = [r.upper_confidence if r.upper_confidence is not None else r.value for r in rows]
            ax.fill_between(x, lo, hi, alpha=0.2, label=f"{label} +-3 SE")
        alerts = [r for r in rows if r.alert and r.period == ANALYSIS]
        ax.scatter([r.chunk.start for r in alerts], [r.value for r in alerts], color="red", zorder=3, s=25,
                   label="alert" if alerts else None)
    if first:
        x = [r.chunk.start for r in first]
        for attr, style in (("upper_threshold", "--"), ("lower_threshold", ":")):
            values = [getattr(r, attr) for r in first]
            if any(v is not None for v in values):
                ax.plot(x, [v if v is not None else float("nan") for v in values], style, color="gray",
                        linewidth=1, label=attr.replace("_", " "))
        analysis = [r.chunk.start for r in first if r.period == ANALYSIS]
        if analysis:
            ax.axvspan(first[0].chunk.start, analysis[0], color="lightblue", alpha=0.25, label="reference")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.tick_params(labelsize=7)
    fig.autofmt_xdate()
    return fig


def charts(config: MonitorConfig, results: list[MetricResult]) -> list[Chart]:
    whole = [r for r in results if (r.slice_key, r.slice_value) == WHOLE]
    by_column: dict[str, dict[str, list[MetricResult]]] = defaultdict(lambda: defaultdict(list))
    for r in whole:
        if r.family == DRIFT and r.comparison == BASELINE:
            by_column[r.column][r.metric].append(r)
    out = []
    for column, metrics in by_column.items():
        metric = next((m for m in HEADLINE if m in metrics), None)
        if metric:
            title = f"{column}: {metric} vs reference"
            out.append(Chart(f"drift_{_stem(column)}", title, _plot(title, {metric: metrics[metric]})))
    for metric in HEADLINE_PERFORMANCE[config.problem_type]:
        realized = [r for r in whole if r.family == "performance" and r.metric == metric]
        estimated = [r for r in whole if r.family == ESTIMATED and r.metric == metric and r.comparison == "NONE"]
        if any(r.value is not None for r in realized + estimated):
            title = f"performance: {metric} (realized and estimated)"
            out.append(Chart(f"performance_{metric}", title,
                             _plot(title, {"estimated": estimated, "realized": realized}, band_of="estimated")))
    return out


def _stem(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def render(config: MonitorConfig, results: list[MetricResult], chart_list: list[Chart], run_id: str) -> str:
    """The report page: drift that matters (the alerting columns of the newest chunk, ranked), the overview
    table of alerts per family and column, then the charts."""
    alerts: dict[tuple[str, str], list[MetricResult]] = defaultdict(list)
    for r in results:
        if r.period == ANALYSIS and r.alert and (r.slice_key, r.slice_value) == WHOLE:
            alerts[(r.family, r.column)].append(r)
    rows = []
    for (family, column), items in sorted(alerts.items()):
        chunks = sorted({(r.chunk.index, r.chunk.key) for r in items})
        metrics = ", ".join(sorted({r.metric for r in items}))
        rows.append(f"<tr><td>{html.escape(family)}</td><td>{html.escape(column)}</td><td>{len(chunks)}</td>"
                    f"<td>{html.escape(chunks[0][1])}</td><td>{html.escape(metrics)}</td></tr>")
    table = ("<table><tr><th>family</th><th>column</th><th>alerting chunks</th><th>first</th><th>metrics</th></tr>"
             + "".join(rows) + "</table>") if rows else "<p>No alerts in the analysis chunks.</p>"
    found = incidents(results, config)
    incident_rows = "".join(
        f"<tr class='{i.severity}'><td>{i.severity}</td><td>{html.escape(i.title())}</td>"
        f"<td>{html.escape(i.headline())}</td><td>{html.escape(i.start)}</td><td>{i.alerted_chunks}/{i.chunks}</td>"
        f"<td>{html.escape(', '.join(i.slices) or '-')}</td></tr>" for i in found)
    incident_table = ("<table id='incidents'><tr><th>severity</th><th>incident</th><th>headline</th><th>since</th>"
                      f"<th>alerting chunks</th><th>slices</th></tr>{incident_rows}</table>") if found \
        else "<p>No open incidents.</p>"
    ranked = [c for c in rank_drift(results, config) if c.alerted]
    ranking = ("<table><tr><th>column</th><th>score</th><th>drift / threshold</th><th>importance</th>"
               "<th>correlation with performance</th></tr>" + "".join(
                   f"<tr><td>{html.escape(c.column)}</td><td>{_num(c.score)}</td><td>{_num(c.drift)}</td>"
                   f"<td>{_num(c.importance)}</td><td>{_num(c.correlation)}</td></tr>" for c in ranked)
               + "</table>") if ranked else "<p>No column drifts on the newest chunk.</p>"
    figures = "".join(
        f"<figure id='{c.name}'><img alt='{html.escape(c.title)}' src='data:image/png;base64,"
        f"{base64.b64encode(c.png).decode()}'/><figcaption>{html.escape(c.title)}</figcaption></figure>"
        for c in chart_list)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Driftline: {html.escape(config.monitor)}"
            "</title><style>body{font-family:sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}figure{margin:1.5em 0}"
            "img{max-width:100%}</style></head><body>"
            f"<h1>Driftline monitor '{html.escape(config.monitor)}'</h1>"
            f"<p>run {html.escape(run_id)}; problem type {config.problem_type}; chunking "
            f"{html.escape(config.chunking.describe())}; source {html.escape(config.source.table)}</p>"
            f"<h2>Incidents</h2>{incident_table}"
            f"<h2>Drift that matters (newest chunk)</h2>{ranking}"
            f"<h2>Alerts (analysis chunks, whole table)</h2>{table}<h2>Charts</h2>{figures}</body></html>")


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def write_report(config: MonitorConfig, results: list[MetricResult], run_id: str, root: Path) -> None:
    """`root/report.html` and `root/charts/<name>.png`."""
    chart_list = charts(config, results)
    (root / "charts").mkdir(parents=True, exist_ok=True)
    for c in chart_list:
        (root / "charts" / f"{c.name}.png").write_bytes(c.png)
    (root / "report.html").write_text(render(config, results, chart_list, run_id), encoding="utf-8")
