"""The readable summary printed at the end of a run: which columns drifted, since when, how much;
where the results are and what to open."""

from __future__ import annotations

import shutil
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from monitoring.alerts import RunAlerts, incident_lines, run_alerts
from monitoring.config import MonitorConfig
from monitoring.drift.compare import ANALYSIS, BASELINE, DATA_QUALITY, DRIFT, MetricResult
from monitoring.pipeline import RunResult, metrics_table, profiles_table, reference_table
from monitoring.ranking import HEADLINE, PERFORMANCE_HEADLINE, rank_drift
from monitoring.redact import redact
from monitoring.slices import WHOLE


@dataclass(frozen=True)
class ColumnDrift:
    """BASELINE drift of one column over the analysis chunks."""

    column: str
    kind: str
    first_alert: str | None
    alerted_chunks: int
    chunks: int
    alerted_metrics: tuple[str, ...]
    headline: str | None
    latest: float | None
    upper_threshold: float | None


def column_drift(results: list[MetricResult], slice_key: tuple[str, str] = WHOLE) -> list[ColumnDrift]:
    """Per column: the first chunk with a BASELINE drift alert, how many chunks alerted, on which metrics."""
    by_column: dict[str, list[MetricResult]] = defaultdict(list)
    for r in results:
        if (r.period, r.family, r.comparison) == (ANALYSIS, DRIFT, BASELINE) and \
                (r.slice_key, r.slice_value) == slice_key:
            by_column[r.column].append(r)
    out = []
    for column, rows in by_column.items():
        alerted = sorted({r.chunk.index: r.chunk.key for r in rows if r.alert}.items())
        newest = max(r.chunk.index for r in rows)
        # the headline: the metric furthest past its threshold on the newest chunk (as the incidents and
        # "drift that matters" measure it), else the first of HEADLINE the column has
        ratios = {r.metric: r.value / r.upper_threshold for r in rows if r.chunk.index == newest and
                  r.metric in HEADLINE and r.value is not None and r.upper_threshold}
        headline = max(ratios, key=ratios.get) if ratios else \
            next((m for m in HEADLINE if any(r.metric == m for r in rows)), None)
        last = max((r for r in rows if r.metric == headline), key=lambda r: r.chunk.index, default=None)
        out.append(ColumnDrift(column, rows[0].kind, alerted[0][1] if alerted else None, len(alerted),
                               len({r.chunk.index for r in rows}), tuple(sorted({r.metric for r in rows if r.alert})),
                               headline, last.value if last else None, last.upper_threshold if last else None))
    return out


def _print_performance(config: MonitorConfig, result: RunResult) -> None:
    """Label coverage regimes and the headline realized metric of the analysis chunks."""
    rows = {r.chunk.index: r for r in result.metrics if (r.period, r.family, r.slice_key, r.metric) ==
            (ANALYSIS, "performance", "", PERFORMANCE_HEADLINE[config.problem_type])}
    if not rows:
        return
    ordered = [rows[i] for i in sorted(rows)]
    full = [r for r in ordered if (r.label_coverage or 0) >= 0.9]
    none = [r for r in ordered if not r.label_coverage]
    partial = [r for r in ordered if r not in full and r not in none]
    metric = ordered[0].metric

    def span(rs: list[MetricResult]) -> str:
        return f"{len(rs)} ({rs[0].chunk.key} .. {rs[-1].chunk.key})" if rs else "0"

    print(f"\nrealized performance ({metric}); label coverage: >=90% in {span(full)} chunks, partial in "
          f"{span(partial)}, none in {span(none)}")
    plan = result.profiles.backfill
    if plan:
        keys = [c.chunk.key for c in result.profiles.whole if c.chunk.index in set(plan.chunks)]
        print(f"  labels landed (label table version {plan.since} -> {plan.until}): recomputed {len(keys)} chunks "
              f"({', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}); {plan.reason}")
    if result.labels:
        s = result.labels
        print(f"  labels ({s.scope}): {s.labels:,} rows, {s.duplicates:,} duplicates (latest kept), "
              f"{s.null_labels:,} null, {s.unknown_ids:,} ids without a prediction")
    defined = [r for r in ordered if r.value is not None]
    alerts = [r for r in defined if r.alert]
    if defined:
        thr = defined[0]
        print(f"  {len(defined)} chunks with enough labels: {metric} {min(r.value for r in defined):.4f} .. "
              f"{max(r.value for r in defined):.4f} (thresholds {_fmt(thr.lower_threshold)} .. "
              f"{_fmt(thr.upper_threshold)}); alerts in {len(alerts)}: "
              f"{', '.join(r.chunk.key for r in alerts[:12]) or '-'}")
    skipped = len(ordered) - len(defined)
    if skipped:
        print(f"  {skipped} chunks without a value (too few labels: see the `note` column of the metrics table)")


@dataclass(frozen=True)
class EstimateCheck:
    """Estimated vs realized values of one metric over the labelled analysis chunks."""

    metric: str
    estimated: list[MetricResult]
    inside: list[MetricResult]  # labelled chunks whose realized value lies in the estimate's band
    outside: list[tuple[MetricResult, float]]  # the others, with realized - estimate


def estimate_check(results: list[MetricResult], metric: str) -> EstimateCheck:
    key = (ANALYSIS, "", metric)
    est = {r.chunk.index: r for r in results if (r.period, r.slice_key, r.metric) == key
           and r.family == "estimated_performance" and r.comparison == "NONE"}
    real = {r.chunk.index: r for r in results if (r.period, r.slice_key, r.metric) == key
            and r.family == "performance" and r.value is not None}
    inside, outside = [], []
    for i in sorted(set(est) & set(real)):
        e, actual = est[i], real[i].value
        if e.lower_confidence is not None and e.lower_confidence <= actual <= e.upper_confidence:
            inside.append(e)
        else:
            outside.append((e, actual - (e.value or 0.0)))
    return EstimateCheck(metric, [est[i] for i in sorted(est)], inside, outside)


def _print_estimation(config: MonitorConfig, result: RunResult) -> None:
    check = estimate_check(result.metrics, PERFORMANCE_HEADLINE[config.problem_type])
    defined = [r for r in check.estimated if r.value is not None]
    if not defined:
        return
    alerts = [r.chunk.key for r in defined if r.alert]
    method = "DLE" if config.problem_type == "regression" else "CBPE"
    print(f"\nestimated performance ({method}, needs no labels): {check.metric} {min(r.value for r in defined):.4f} .. "
          f"{max(r.value for r in defined):.4f}; alerts in {len(alerts)}: {', '.join(alerts[:12]) or '-'}")
    labelled = len(check.inside) + len(check.outside)
    if labelled:
        largest = sorted(check.outside, key=lambda x: -abs(x[1]))[:6]
        worst = ", ".join(f"{r.chunk.key} ({gap:+.4f})" for r, gap in largest)
        print(f"  where labels exist, the realized value lies in the estimate's +-3 SE band in {len(check.inside)} of "
              f"{labelled} chunks; outside (realized - estimate): {worst or '-'}")


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _print_ranking(config: MonitorConfig, result: RunResult, shown: int = 10) -> None:
    """Drift that matters: the alerting columns of the newest chunk by score (monitoring/ranking.py)."""
    ranked = [c for c in rank_drift(result.metrics, config) if c.alerted]
    print(f"\ndrift that matters (newest chunk, ranked by drift x {_weighting(config)}): "
          f"{len(ranked)} alerting columns")
    for c in ranked[:shown]:
        print(f"  {c.column:<26}score {_fmt(c.score)}  drift/threshold {_fmt(c.drift)}  importance "
              f"{_fmt(c.importance)}  corr. with performance {_fmt(c.correlation)}")


def _weighting(config: MonitorConfig) -> str:
    return "importance" if any(f.importance is not None for f in config.features) else \
        "|correlation with the performance change|"


def _print_quality(result: RunResult) -> None:
    """Data-quality alerts of the whole table, per metric: the columns (table-level: the chunks) alerted."""
    by_metric: dict[str, list[str]] = {}
    for r in sorted(result.metrics, key=lambda r: (r.metric, r.column, r.chunk.index)):
        if r.family == DATA_QUALITY and r.alert and r.period == ANALYSIS and (r.slice_key, r.slice_value) == WHOLE:
            what = r.note if r.note else _fmt(r.value)
            where = r.chunk.key if r.column.startswith(":") else f"{r.column} {r.chunk.key}"
            by_metric.setdefault(r.metric, []).append(f"{where}: {what}")
    if by_metric:
        print("\ndata-quality alerts:")
        for metric, items in by_metric.items():
            shown = ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")
            print(f"  {metric}: {shown}")


def print_summary(config: MonitorConfig, result: RunResult, mlflow_run: str | None,
                  alerts: RunAlerts | None = None, link: str | None = None) -> None:
    """The run's summary: the incidents first (the lines the webhook, alerts.json, the report and the MLflow
    run description show), then the details behind them."""
    whole = result.profiles.whole
    print()
    print(f"== Driftline: monitor '{config.monitor}' ==")
    if whole:
        alerts = alerts or run_alerts(result.metrics, config)
        lines = incident_lines(config.monitor, alerts)
        print(lines[0].split(": ", 1)[1])
        for line in lines[1:]:
            print(f"  {line}")
    if not whole:
        print("analysis: no rows after the reference window")
    else:
        step = result.profiles.increment
        reused = " (stored profiles reused: source unchanged)" if result.profiles.reused else \
            f" (re-profiled {len(step.chunks)} chunks changed since version {step.since}, reused the rest)" \
            if step and step.chunks is not None else ""
        print(f"analysis: {len(whole)} chunks ({config.chunking.describe()}), {result.profiles.row_count:,} rows, "
              f"{whole[0].chunk.key} .. {whole[-1].chunk.key}, source version {result.source_version}{reused}")
        ref_chunks = [c for c in result.reference.chunks if (c.slice_key, c.slice_value) == WHOLE]
        print(f"reference: {len(ref_chunks)} chunks, {sum(c.row_count for c in ref_chunks):,} rows; thresholds "
              "learnt from them (docs/statistics.md)")
        _print_ranking(config, result)
        drifts = column_drift(result.metrics)
        drifted = [d for d in drifts if d.first_alert]
        print(f"\ndrift vs reference: {len(drifted)} of {len(drifts)} columns alerted")
        print(f"  {'column':<26}{'since':<12}{'chunks':>8}  {'latest':<40}  alerting metrics")
        for d in sorted(drifts, key=lambda d: (d.first_alert is None, d.first_alert or "", d.column)):
            latest = f"{d.headline} {_fmt(d.latest)} (thr {_fmt(d.upper_threshold)})" if d.headline else "-"
            print(f"  {d.column:<26}{d.first_alert or '-':<12}{f'{d.alerted_chunks}/{d.chunks}':>8}  {latest:<40}  "
                  f"{', '.join(d.alerted_metrics) or '-'}")
        _print_quality(result)
        _print_performance(config, result)
        _print_estimation(config, result)
        for key in result.reference.slices():
            if key == WHOLE:
                continue
            sliced = [d for d in column_drift(result.metrics, key) if d.first_alert]
            names = ", ".join(f"{d.column} (since {d.first_alert})" for d in sliced) or "none"
            print(f"slice {key[0]} = {key[1]}: drifted columns: {names}")
    print(f"\ntables: {metrics_table(config)} (metrics), {profiles_table(config)} (profiles), "
          f"{reference_table(config)} (reference)")
    if mlflow_run:
        print(f"MLflow run {mlflow_run} in experiment '{config.mlflow.experiment}'")
        if link:  # a tracking server: its page, without the URI's credentials
            print(f"open it: {link}")
        else:
            beside = Path(sys.executable).parent / "mlflow"
            mlflow_cmd = str(beside) if beside.exists() and not shutil.which("mlflow") else "mlflow"
            print(f"open it with: {mlflow_cmd} ui --backend-store-uri {redact(config.mlflow.tracking_uri)}")
