"""The report page (`report.html`): one self-contained HTML file with interactive plotly charts.

Order: the incidents (most severe first), then a chart per incident (its headline metric over the
reference and analysis chunks, thresholds dashed, the reference period shaded, alerts in red), the
drifting columns' distributions (reference against the newest chunk, from the stored sketches, when the
run has them in memory), then the
model's performance (realized against estimated with the estimate's +-3 SE band), multivariate drift,
table data quality, every column's headline drift in the ranking's order, and the slices that drift.
Names are the registry's display names; the table-level rows are "the model" or "the table", never
internal keys. plotly.js is inlined once, so the file needs no network.
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from monitoring.config import MonitorConfig
from monitoring.drift.compare import ANALYSIS, BASELINE, DRIFT, REFERENCE, MetricResult, exact_counts
from monitoring.drift.distributions import CategoryCounts, WeightedSample, aligned
from monitoring.incidents import (
    COLUMN,
    ESTIMATED_PERFORMANCE,
    MODEL_MULTIVARIATE,
    MODEL_PERFORMANCE,
    TABLE_COLUMN,
    Incident,
    incidents,
)
from monitoring.ranking import HEADLINE, PERFORMANCE_HEADLINE, rank_drift
from monitoring.redact import redact
from monitoring.registry import CONCEPT, GAPS, MULTIVARIATE, PERFORMANCE, QUALITY, metric
from monitoring.sketches import CONTINUOUS, ColumnProfile
from monitoring.slices import WHOLE

COLORS = {"high": "#c0392b", "medium": "#e67e22", "low": "#7f8c8d"}


@dataclass(frozen=True)
class Distribution:
    """A column's whole-reference state (with its drift bin edges) and one analysis chunk's state."""

    column: str
    reference: ColumnProfile
    edges: np.ndarray
    chunk: str
    current: ColumnProfile


def _distribution_chart(d: Distribution) -> str:
    """Reference vs chunk shares per drift bin (continuous: the exact counts the binned methods read, else
    the KLL sketches' mass, the bins outside the reference range included) or per category (the top
    categories, the rest as OTHER)."""
    import plotly.graph_objects as go

    if d.reference.kind == CONTINUOUS:
        e = d.edges
        exact = exact_counts(d.reference, e), exact_counts(d.current, e)
        if exact[0] is not None and exact[1] is not None:
            if not exact[0].sum() or not exact[1].sum():
                return ""
            p, q = exact[0] / exact[0].sum(), exact[1] / exact[1].sum()
        else:
            ref = WeightedSample.from_kll(d.reference.kll, extremes=(d.reference.min, d.reference.max))
            cur = WeightedSample.from_kll(d.current.kll, extremes=(d.current.min, d.current.max))
            if not ref.n or not cur.n:
                return ""
            p, q = ref.bin_probabilities(e), cur.bin_probabilities(e)
        inner = [f"= {e[0]:.4g}"] if len(e) == 1 else [f"{e[i]:.4g} .. {e[i + 1]:.4g}" for i in range(len(e) - 1)]
        labels = [f"< {e[0]:.4g}", *inner, f"> {e[-1]:.4g}"]
    else:
        labels, p, q = aligned(CategoryCounts.of(d.reference.categories, d.reference.other_count),
                               CategoryCounts.of(d.current.categories, d.current.other_count))
        if not p.sum() or not q.sum():
            return ""
        p, q = p / p.sum(), q / q.sum()
    fig = go.Figure([go.Bar(x=labels, y=p, name="reference"), go.Bar(x=labels, y=q, name=f"chunk {d.chunk}")])
    fig.update_layout(title={"text": f"{d.column}: share of rows, reference against {d.chunk}", "font": {"size": 15}},
                      barmode="group", height=330, font={"size": 12}, yaxis={"tickformat": ".0%"},
                      margin={"l": 50, "r": 20, "t": 50, "b": 40}, legend={"orientation": "h", "y": -0.3})
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"distribution-{abs(hash(d.column))}")


def _display(name: str) -> str:
    entry = metric(name)
    return entry.display if entry else name.replace("_", " ")


def _whole(results: list[MetricResult]) -> list[MetricResult]:
    return [r for r in results if (r.slice_key, r.slice_value) == WHOLE]


def _chart(div: str, title: str, lines: dict[str, list[MetricResult]], band_of: str | None = None) -> str:
    """One interactive chart: each line over chunk start, thresholds of the first line, alerts, reference."""
    import plotly.graph_objects as go

    fig = go.Figure()
    first: list[MetricResult] | None = None
    for label, rows in lines.items():
        rows = sorted((r for r in rows if r.value is not None), key=lambda r: (r.period != REFERENCE, r.chunk.index))
        if not rows:
            continue
        first = first or rows
        x = [r.chunk.start for r in rows]
        if label == band_of:
            lo = [r.lower_confidence if r.lower_confidence is not None else r.value for r in rows]
            hi = [r.upper_confidence if r.upper_confidence is not None else r.value for r in rows]
            fig.add_trace(go.Scatter(x=x, y=hi, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip"))
            fig.add_trace(go.Scatter(x=x, y=lo, mode="lines", line={"width": 0}, fill="tonexty",
                                     fillcolor="rgba(52,152,219,0.2)", name=f"{label} +-3 SE"))
        fig.add_trace(go.Scatter(x=x, y=[r.value for r in rows], mode="lines+markers", name=label,
                                 text=[r.chunk.key for r in rows], hovertemplate="%{text}: %{y:.4g}<extra></extra>"))
        alerts = [r for r in rows if r.alert and r.period == ANALYSIS]
        if alerts:
            fig.add_trace(go.Scatter(x=[r.chunk.start for r in alerts], y=[r.value for r in alerts], mode="markers",
                                     marker={"color": "red", "size": 9}, name=f"{label} alert",
                                     text=[r.chunk.key for r in alerts],
                                     hovertemplate="%{text}: %{y:.4g} alert<extra></extra>"))
    if first is None:
        return ""
    x = [r.chunk.start for r in first]
    for attr, name in (("upper_threshold", "upper threshold"), ("lower_threshold", "lower threshold")):
        values = [getattr(r, attr) for r in first]
        if any(v is not None for v in values):
            fig.add_trace(go.Scatter(x=x, y=values, mode="lines", name=name,
                                     line={"dash": "dash", "color": "gray", "width": 1}))
    analysis = [r.chunk.start for r in first if r.period == ANALYSIS]
    if analysis and first[0].period == REFERENCE:
        fig.add_vrect(x0=first[0].chunk.start, x1=analysis[0], fillcolor="lightblue", opacity=0.25, line_width=0,
                      annotation_text="reference", annotation_position="top left")
    fig.update_layout(title={"text": title, "font": {"size": 15}}, height=330, font={"size": 12},
                      margin={"l": 50, "r": 20, "t": 50, "b": 40}, legend={"orientation": "h", "y": -0.2})
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div)


def _incident_chart(i: Incident, results: list[MetricResult]) -> str:
    whole = _whole(results)
    div = f"incident-{abs(hash(i.id))}"
    if i.kind == COLUMN:
        rows = [r for r in whole if (r.column, r.family, r.metric, r.comparison) == (i.subject, i.family, i.metric,
                                                                                  i.comparison)]
        return _chart(div, f"{i.subject}: {i.display}", {i.display: rows})
    if i.kind == MODEL_PERFORMANCE:
        return _performance_chart(div, results, i.subject)
    rows = [r for r in whole if (r.column, r.family, r.metric, r.comparison) == (TABLE_COLUMN, i.family, i.metric,
                                                                              i.comparison)]
    return _chart(div, f"{i.title()}: {i.display}", {i.display: rows})


def _performance_chart(div: str, results: list[MetricResult], name: str) -> str:
    whole = _whole(results)
    realized = [r for r in whole if r.family == PERFORMANCE and r.metric == name]
    estimated = [r for r in whole if r.family == ESTIMATED_PERFORMANCE and r.metric == name and r.comparison == "NONE"]
    return _chart(div, f"{_display(name)}: realized and estimated", {"estimated": estimated, "realized": realized},
                  band_of="estimated")


def _incident_table(found: list[Incident]) -> str:
    if not found:
        return "<p>No open incidents: nothing alerts on its newest evaluated chunk.</p>"
    rows = "".join(
        f"<tr><td><span class='sev' style='background:{COLORS[i.severity]}'>{i.severity}</span></td>"
        f"<td>{html.escape(i.title())}</td><td>{html.escape(i.headline())}</td><td>{html.escape(i.start)}</td>"
        f"<td>{i.alerted_chunks}/{i.chunks}</td><td>{html.escape(', '.join(i.slices) or '-')}</td></tr>"
        for i in found)
    return ("<table id='incidents-table'><tr><th>severity</th><th>incident</th><th>headline</th><th>since</th>"
            f"<th>alerting chunks</th><th>slices</th></tr>{rows}</table>")


def _slices(results: list[MetricResult]) -> str:
    drifting: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in results:
        if r.period == ANALYSIS and r.slice_key and r.family == DRIFT and r.comparison == BASELINE and r.alert:
            drifting[(r.slice_key, r.slice_value)].add(r.column)
    if not drifting:
        return "<p>No slice drifts.</p>"
    rows = "".join(f"<tr><td>{html.escape(k)} = {html.escape(v)}</td>"
                   f"<td>{html.escape(', '.join(sorted(cols)))}</td></tr>" for (k, v), cols in sorted(drifting.items()))
    return f"<table><tr><th>slice</th><th>columns drifting (any chunk)</th></tr>{rows}</table>"


def render(config: MonitorConfig, results: list[MetricResult], run_label: str,
           distributions: list[Distribution] = ()) -> str:
    """The whole page (module docstring); `distributions`: the drifting columns' reference and newest
    chunk states, drawn after the incident charts."""
    from plotly.offline import get_plotlyjs

    found = incidents(results, config)
    whole = _whole(results)
    sections = [f"<h2 id='incidents'>Incidents</h2>{_incident_table(found)}"]
    charts = [c for c in (_incident_chart(i, results) for i in found) if c]
    if charts:
        sections.append("<h2>The incidents over time</h2>" + "".join(charts))
    shown = [c for c in (_distribution_chart(d) for d in distributions) if c]
    if shown:
        sections.append("<h2>Distributions of the drifting columns</h2>" + "".join(shown))
    performance = [m for m in dict.fromkeys([PERFORMANCE_HEADLINE[config.problem_type],
                                             *sorted({r.metric for r in whole if r.family == PERFORMANCE
                                                      and metric(r.metric) and metric(r.metric).default != "none"})])]
    perf_charts = [c for c in (_performance_chart(f"performance-{m}", results, m) for m in performance[:6]) if c]
    if perf_charts:
        sections.append("<h2>Model performance (realized and estimated)</h2>" + "".join(perf_charts))
    gaps = [r for r in whole if r.family == CONCEPT and r.comparison == GAPS
            and r.metric == PERFORMANCE_HEADLINE[config.problem_type]]
    if gaps:
        name = _display(gaps[0].metric)
        sections.append("<h2>Concept drift of the model</h2>" +
                        _chart("concept", f"{name}: realized - estimated", {"realized - estimated": gaps}))
    multi = sorted({r.metric for r in whole if r.family == MULTIVARIATE})
    if multi:
        sections.append(f"<h2>{html.escape(MODEL_MULTIVARIATE.capitalize())}</h2>" + "".join(
            _chart(f"multivariate-{m}", _display(m), {_display(m): [r for r in whole if r.family == MULTIVARIATE
                                                                  and r.metric == m]}) for m in multi))
    quality = sorted({r.metric for r in whole if r.family == QUALITY and r.column == TABLE_COLUMN})
    if quality:
        sections.append("<h2>Data quality of the table</h2>" + "".join(
            _chart(f"quality-{m}", _display(m), {_display(m): [r for r in whole if r.family == QUALITY
                                                              and r.column == TABLE_COLUMN and r.metric == m]})
            for m in quality))
    columns = []
    for c in rank_drift(results, config):
        rows = [r for r in whole if r.column == c.column and r.family == DRIFT and r.comparison == BASELINE]
        name = next((m for m in HEADLINE if any(r.metric == m for r in rows)), None)
        if name:
            columns.append(_chart(f"drift-{len(columns)}", f"{c.column}: {_display(name)} against the reference",
                                  {_display(name): [r for r in rows if r.metric == name]}))
    if columns:
        sections.append("<h2>Drift per column (ranked by drift that matters)</h2>" + "".join(columns))
    sections.append(f"<h2>Slices</h2>{_slices(results)}")
    style = ("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;font-size:15px}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:4px 9px;"
             "text-align:left}.sev{color:white;border-radius:3px;padding:1px 6px}h2{margin-top:1.6em}")
    head = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Driftline: {html.escape(config.monitor)}"
            f"</title><style>{style}</style><script>{get_plotlyjs()}</script></head><body>"
            f"<h1>Driftline monitor '{html.escape(config.monitor)}'</h1>"
            f"<p>{html.escape(run_label)}; {config.problem_type} model; chunks of "
            f"{html.escape(config.chunking.describe())}; source {html.escape(redact(config.source.table))}</p>")
    return head + "".join(sections) + "</body></html>"

