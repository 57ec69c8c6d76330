"""The MLflow artifacts `report.html` (the interactive page, monitoring/reporting/interactive.py) and
`charts/*.png`: per monitored column its headline drift metric against the reference (BASELINE, whole
table) and per headline performance metric realized and estimated with the estimate's band, as static
images MLflow's artifact view previews; `column_figure` draws one column's chart for notebooks.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from monitoring.config import MonitorConfig
from monitoring.drift.compare import ANALYSIS, BASELINE, DRIFT, REFERENCE, MetricResult
from monitoring.ranking import HEADLINE
from monitoring.reporting import interactive
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


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def write_report(config: MonitorConfig, results: list[MetricResult], run_id: str, root: Path,
                 distributions: list[interactive.Distribution] = ()) -> None:
    """`root/report.html` and `root/charts/<name>.png`."""
    chart_list = charts(config, results)
    (root / "charts").mkdir(parents=True, exist_ok=True)
    for c in chart_list:
        (root / "charts" / f"{c.name}.png").write_bytes(c.png)
    (root / "report.html").write_text(interactive.render(config, results, f"run {run_id}", distributions),
                                      encoding="utf-8")
