"""Incidents: a run's alerts grouped into the few things a user acts on.

One incident per subject (docs/alerts.md):
- a monitored column: its drift (BASELINE and CONSECUTIVE), data quality and feature-target relation
  alerts, whole table and slices (slice alerts roll up under the column);
- the model's performance: every realized and estimated performance metric (one drop in quality moves
  several metrics at once: ROC AUC, recall, F1, log loss are one incident, headed by the model's headline
  metric when it alerts);
- concept drift of the model: the realized-estimated gaps of the performance metrics;
- multivariate drift: the domain classifier and the PCA reconstruction error;
- a table-level data-quality metric (row count, duplicate ids, schema change, ...).

An incident is open when, for one of its families, the newest analysis chunk with a value alerts
(drift is judged on the newest chunk, label-dependent values on the newest labelled one; a quiet value
from labels on fewer than THIN of a chunk's rows is no evidence either way). It starts at
the earliest alert reached going back from there without crossing `QUIET` consecutive non-alerting
chunks (one quiet chunk inside a drift does not split it). Its headline is one alerting value of the
newest chunk: for a column the BASELINE drift metric furthest past its threshold (the measure "drift
that matters" ranks by, monitoring/ranking.py), else its furthest alert; a `declared_kind` alert (the
column's declared kind does not fit its values) heads its column's incident, as the cause and the fix.
`beyond` = (value - threshold) / |threshold| on the side crossed: the one unit of "how far" every
surface shows.

Severity: `high` for the model's performance (realized or estimated, on its bad side), concept drift
(the model's, or a feature's relation to the target) and a schema change; `medium` for whole-table
alerts on a column, multivariate drift and table data quality; `low` for alerts only in slices and
for columns that "drift that matters" weighs at zero. Incidents are listed by severity, then by the
ranking score (columns) or by `beyond`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass

from monitoring.config import MonitorConfig
from monitoring.drift.compare import ANALYSIS, BASELINE, MetricResult
from monitoring.performance.estimated import ESTIMATED as ESTIMATED_PERFORMANCE
from monitoring.performance.results import TABLE as TABLE_COLUMN
from monitoring.ranking import HEADLINE, PERFORMANCE_HEADLINE, rank_drift
from monitoring.registry import CONCEPT, DRIFT, GAPS, MULTIVARIATE, PERFORMANCE, QUALITY, metric
from monitoring.slices import WHOLE

HIGH, MEDIUM, LOW = "high", "medium", "low"
SEVERITIES = (HIGH, MEDIUM, LOW)
COLUMN, MODEL_PERFORMANCE, MODEL_CONCEPT, MODEL_MULTIVARIATE, TABLE_QUALITY = \
    "column", "performance", "concept drift", "multivariate drift", "data quality"
QUIET = 2  # consecutive quiet chunks that end an incident (going back in time)
THIN = 0.05  # a quiet value from labels on fewer than this share of its chunk's rows is no evidence
DECLARED_KIND, EMPTY_REFERENCE_COLUMN = "declared_kind", "empty_reference_column"  # monitoring/quality.py


@dataclass(frozen=True)
class Incident:
    """One open incident (module docstring). Chunk keys are the metrics table's `chunk_key`."""

    id: str  # subject@start chunk: stable across runs while the incident lasts
    kind: str  # COLUMN, MODEL_PERFORMANCE, MODEL_CONCEPT, MODEL_MULTIVARIATE or TABLE_QUALITY
    subject: str  # the column, or the metric for performance and table data quality
    severity: str
    score: float  # order within a severity
    start: str  # first chunk of the incident
    start_index: int
    last: str  # newest chunk with a value (it alerts)
    last_index: int
    chunks: int  # chunks with a value from start to last
    alerted_chunks: int
    families: tuple[str, ...]  # families alerting in the last chunk
    metric: str  # headline
    display: str  # the headline's registry display name
    family: str
    comparison: str
    value: float | None
    threshold: float | None
    direction: str  # "above" or "below" the threshold
    beyond: float | None  # (value - threshold) / |threshold| on the side crossed; None at a zero threshold
    slices: tuple[str, ...]  # "key=value" alerting in the last chunk
    whole: bool  # the whole table alerts in the last chunk (not only slices)
    alerts: int  # alerting values rolled up in the last chunk
    metrics: tuple[str, ...]  # alerting metrics in the last chunk

    def headline(self) -> str:
        """`display value vs threshold (+x%)`: the one-line "how much" every surface prints."""
        far = "" if self.beyond is None else f", {_percent(self.beyond)} {self.direction}"
        return f"{self.display} {_num(self.value)} (threshold {_num(self.threshold)}{far})"

    def line(self) -> str:
        """One line: severity, subject, headline, since when, and where."""
        span = f"since {self.start} ({self.alerted_chunks}/{self.chunks} chunks)"
        where = "" if not self.slices else \
            f"; slices {', '.join(self.slices[:3])}{' ...' if len(self.slices) > 3 else ''}"
        whole = "" if self.whole else " (slices only)"
        others = [m for m in self.metrics if m != self.metric]
        also = "" if self.kind != MODEL_PERFORMANCE or not others else \
            f"; also {', '.join(others[:4])}{f' +{len(others) - 4}' if len(others) > 4 else ''}"
        return f"[{self.severity}] {self.title()}{whole}: {self.headline()}, {span}{also}{where}"

    def title(self) -> str:
        return self.subject if self.kind == COLUMN else f"{self.kind}: {self.subject}"

    def to_dict(self) -> dict:
        return asdict(self) | {"title": self.title(), "headline_text": self.headline()}


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _percent(x: float) -> str:
    """How far past the threshold: a share of it (`34%`) up to twice the threshold, then a multiple (`9x`)."""
    return f"{x:.1%}" if x < 0.1 else f"{x:.0%}" if x < 1 else f"{x + 1:.3g}x"


def _subject(r: MetricResult) -> tuple[str, str] | None:
    """(kind, subject) of an alert's incident; None for values that never make one."""
    if r.column != TABLE_COLUMN and r.family in (DRIFT, QUALITY, CONCEPT):
        return COLUMN, r.column
    if r.family == PERFORMANCE or (r.family == ESTIMATED_PERFORMANCE and r.comparison == "NONE"):
        return MODEL_PERFORMANCE, "model"
    if r.family in (CONCEPT, ESTIMATED_PERFORMANCE):  # the realized-estimated gaps, both signs
        return MODEL_CONCEPT, "model"
    if r.family == MULTIVARIATE:
        return MODEL_MULTIVARIATE, "model"
    if r.family == QUALITY:
        return TABLE_QUALITY, r.metric
    return None


def _beyond(r: MetricResult) -> tuple[str, float | None]:
    """The side crossed and how far past it, relative to the threshold."""
    v, lo, hi = r.value, r.lower_threshold, r.upper_threshold
    if v is not None and hi is not None and v > hi:
        return "above", (v - hi) / abs(hi) if hi else None
    if v is not None and lo is not None and v < lo:
        return "below", (lo - v) / abs(lo) if lo else None
    return "above", None


def _headline(rows: list[MetricResult], prefer: str) -> MetricResult:
    """The alerting value that heads the incident: whole-table BASELINE drift of a headline metric
    furthest past its threshold, else the model's headline performance metric `prefer` (realized before
    estimated), else realized before estimated performance, else the furthest alert."""
    whole = [r for r in rows if (r.slice_key, r.slice_value) == WHOLE] or rows
    declared = [r for r in whole if r.metric in (DECLARED_KIND, EMPTY_REFERENCE_COLUMN)]
    if declared:  # the column's kind does not fit its values: the cause of its other alerts, and the fix
        return declared[0]
    whole = [r for r in whole if r.metric == prefer] or whole

    def far(r: MetricResult) -> float:
        return _beyond(r)[1] or 0.0

    drift = [r for r in whole if r.family == DRIFT and r.comparison == BASELINE and r.metric in HEADLINE]
    if drift:
        return max(drift, key=far)
    realized = [r for r in whole if r.family == PERFORMANCE]
    return max(realized or whole, key=far)


def _severity(kind: str, whole: bool, rows: list[MetricResult], weight: float | None) -> str:
    if kind in (MODEL_PERFORMANCE, MODEL_CONCEPT) or any(r.metric == "schema_change" for r in rows) or \
            (whole and any(r.family == CONCEPT for r in rows)):
        return HIGH
    if not whole or weight == 0.0:
        return LOW
    return MEDIUM


def incidents(results: list[MetricResult], config: MonitorConfig) -> list[Incident]:
    """The open incidents of the analysis results, most severe first (module docstring)."""
    groups: dict[tuple[str, str], list[MetricResult]] = defaultdict(list)
    for r in results:
        if r.period == ANALYSIS:
            subject = _subject(r)
            if subject is not None:
                groups[subject].append(r)
    ranking = {c.column: c for c in rank_drift(results, config)}
    out = []
    for (kind, subject), rows in groups.items():
        found = _incident(kind, subject, rows, ranking.get(subject) if kind == COLUMN else None, config.problem_type)
        if found is not None:
            out.append(found)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(out, key=lambda i: (order[i.severity], -i.score, i.title()))


def _incident(kind: str, subject: str, rows: list[MetricResult], ranked, problem_type: str) -> Incident | None:
    """The incident of one subject, None unless open: each family is judged on its own newest valued
    chunk (drift on the newest chunk, label-dependent values on the newest labelled one)."""
    valued = [r for r in rows if r.value is not None and
              (r.alert or r.label_coverage is None or r.label_coverage >= THIN)]
    if not valued:
        return None
    newest = {f: max(r.chunk.index for r in valued if r.family == f) for f in {r.family for r in valued}}
    latest = [r for r in valued if r.alert and r.chunk.index == newest[r.family]]
    if not latest:
        return None
    open_families = {r.family for r in latest}
    last_index = max(newest[f] for f in open_families)
    whole = any((r.slice_key, r.slice_value) == WHOLE for r in latest)
    counted = [r for r in valued if r.family in open_families and (not whole or (r.slice_key, r.slice_value) == WHOLE)]
    evaluated = sorted({r.chunk.index for r in counted})
    alerting = {r.chunk.index for r in counted if r.alert}
    start, quiet = last_index, 0
    for index in reversed(evaluated):
        if index in alerting:
            start, quiet = index, 0
        else:
            quiet += 1
            if quiet >= QUIET:
                break
    keys = {r.chunk.index: r.chunk.key for r in rows}
    head = _headline(latest, PERFORMANCE_HEADLINE[problem_type])
    direction, beyond = _beyond(head)
    weight = None
    if ranked is not None and ranked.drift:
        weight = ranked.score / ranked.drift
    severity = _severity(kind, whole, latest, weight)
    score = ranked.score if ranked is not None and ranked.score else (beyond or 0.0)
    entry = metric(head.metric)
    display = entry.display if entry else head.metric
    if head.family == ESTIMATED_PERFORMANCE:
        display = f"estimated {display}"
    elif head.comparison == GAPS:
        display = f"{display} realized - estimated"
    slices = tuple(sorted({f"{r.slice_key}={r.slice_value}" for r in latest if r.slice_key}))
    span = [i for i in evaluated if start <= i <= last_index]
    return Incident(
        id=f"{kind}:{subject}@{keys[start]}", kind=kind, subject=subject, severity=severity,
        score=float(score) if math.isfinite(score) else 0.0, start=keys[start], start_index=start,
        last=keys[last_index], last_index=last_index, chunks=len(span),
        alerted_chunks=len([i for i in span if i in alerting]),
        families=tuple(sorted({r.family for r in latest})), metric=head.metric,
        display=display, family=head.family, comparison=head.comparison,
        value=head.value, threshold=head.upper_threshold if direction == "above" else head.lower_threshold,
        direction=direction, beyond=beyond, slices=slices, whole=whole, alerts=len(latest),
        metrics=tuple(sorted({r.metric for r in latest})))
