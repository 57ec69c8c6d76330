"""Concept drift from the gap between realized and estimated performance.

CBPE and DLE model covariate shift: they re-weigh the reference's relation between inputs (scores) and
target by the chunk's inputs. Where labels exist, a realized performance that departs from the estimate
is what the covariate shift does not explain: the relation itself changed. Per chunk with both values:
value = realized - estimated (negative: worse than the inputs explain, for metrics where higher is
better), sampling error sqrt(SE_realized^2 + SE_estimated^2), band value +- 3 SE, and the family's
usual thresholds learnt from the reference chunks' gaps (two-sided std). Family `concept_drift`, column
`:table`, comparison ESTIMATED, the metric named as the performance metric. See docs/statistics.md.
"""

from __future__ import annotations

import math

from monitoring.drift.compare import NO_COMPARISON, MetricResult
from monitoring.performance.estimated import ESTIMATED
from monitoring.performance.results import PERFORMANCE, TABLE
from monitoring.registry import CONCEPT as CONCEPT_DRIFT
from monitoring.registry import GAPS as VS_ESTIMATED  # the comparison of the gap rows: realized vs estimated

BAND = 3


def concept_results(performance: list[MetricResult]) -> list[MetricResult]:
    """Gap rows of one slice from its realized and estimated results (reference and analysis chunks);
    thresholds are applied by the caller."""
    estimated = {(r.period, r.chunk.index, r.metric): r for r in performance
                 if r.family == ESTIMATED and r.comparison == NO_COMPARISON and r.value is not None}
    out = []
    for real in performance:
        if real.family != PERFORMANCE or real.value is None:
            continue
        est = estimated.get((real.period, real.chunk.index, real.metric))
        if est is None:
            continue
        gap = real.value - est.value
        errors = [e for e in (real.sampling_error, est.sampling_error) if e is not None]
        se = math.sqrt(sum(e * e for e in errors)) if len(errors) == 2 else None
        r = MetricResult(real.period, real.chunk, real.slice_key, real.slice_value, TABLE, "table", CONCEPT_DRIFT,
                         real.metric, VS_ESTIMATED, gap, real.row_count, sampling_error=se,
                         label_coverage=real.label_coverage)
        if se is not None:
            r.lower_confidence, r.upper_confidence = gap - BAND * se, gap + BAND * se
        out.append(r)
    return out
