"""Concept drift per feature: has the relation between a feature and the target changed?

Per labelled row the model's residual r (binary: 1[label = positive] - score; multiclass: 1[label =
prediction] - the predicted class's score; regression: label - prediction). Per feature, the rows fall in
the reference's bins (continuous: the drift bin edges, by the inner edges, right-closed like
`numpy.searchsorted(..., side="right")`; categorical: the reference's top categories, the rest in one
bin; missing values in their own bin), and the profiling pass sums n, sum r, sum r^2 per chunk x feature
x bin (keys in `PerformanceState.values`, so they merge and are backfilled with the rest of the state).

Why the residual and not the raw label rate: a covariate shift moves the rows between bins and, through
the other features, the label rate inside a bin; the model's scores follow the inputs, so the residual
per bin stays put unless the inputs-target relation itself changed (that is what CBPE assumes too).

Per chunk and feature, against the reference (reference chunks: against the other reference chunks,
leave-one-out like the drift metrics), over the K bins holding rows in both, with the shift of bin b
d_b = mean_c,b - mean_ref,b, its weight w_b = 1 / (s_ref,b^2 (1/n_c,b + 1/n_ref,b)) and the shift common
to all bins dbar = sum w_b d_b / sum w_b:
- `relation_change`: z = Phi^-1(1 - p) of the chi-square test X = sum_b w_b (d_b - dbar)^2 with K - 1
  degrees of freedom; about N(0, 1) without change whatever the chunk size and label coverage, so
  thresholds learnt from the reference chunks (upper, std) carry over to thin, late-labelled chunks;
- `relation_shift`: sum_b n_c,b |d_b - dbar| / sum_b n_c,b, the size of the change in label (rate or
  target) units, for reading; no thresholds.
The common shift dbar is left out on purpose: a relation change in one feature moves the residual of
every bin of every other feature by about the same amount (the table-level realized-estimated gap of
monitoring/concept.py reports it); what differs across one feature's bins points at that feature.
Family `concept_drift`, comparison BASELINE. See docs/statistics.md "Concept drift".
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from scipy import special, stats

from monitoring.concept import CONCEPT_DRIFT
from monitoring.config import MonitorConfig
from monitoring.drift.compare import ANALYSIS, BASELINE, REFERENCE, MetricResult
from monitoring.labels import LABEL, LABELLED
from monitoring.performance.state import predicted
from monitoring.profiling import ChunkProfile
from monitoring.sketches import CONTINUOUS, double_sql, finite_sql
from monitoring.stores.tables import quote_part

RELATION_CHANGE, RELATION_SHIFT = "relation_change", "relation_shift"
PREFIX = "rel|"  # state keys rel|<bin>|<n, r or q>|<feature>; <bin>: index, MISSING or OTHER
MISSING, OTHER = -1, -2
GROUP_BITS = 12  # a REL entry holds the bins of features spanning at most this many bits: 4096 combinations
MARK = "rel#"  # key rel#<fingerprint> (value: chunks merged) marks states holding these bins' sums


@dataclass(frozen=True)
class RelationBins:
    """Per feature (name, kind, inner edges or categories) the bins the residual sums are kept in."""

    features: tuple[tuple[str, str, tuple], ...]

    @cached_property
    def _fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.features, default=str).encode()).hexdigest()[:16]

    def fingerprint(self) -> str:
        return self._fingerprint

    def mark(self) -> str:
        return MARK + self._fingerprint

    def layout(self) -> list[tuple[int, int, int]]:
        """Per feature (word, bit offset, width): where its bin code (bin + 2, so OTHER is 0 and MISSING 1)
        sits in the longs `packed` adds, 63 bits a word."""
        out, word, offset = [], 0, 0
        for _, kind, bounds in self.features:
            width = (len(bounds) + (2 if kind == CONTINUOUS else 1)).bit_length()  # of the largest code, bins + 1
            if offset + width > 63:
                word, offset = word + 1, 0
            out.append((word, offset, width))
            offset += width
        return out

    def words(self) -> list[str]:
        return [f"_dl_w{k}" for k in range(self.layout()[-1][0] + 1)]

    def packed(self, df: DataFrame) -> DataFrame:
        """`df` with every feature's bin packed in a few long columns (`words`): computed before the label
        join, so that the join's shuffle and sort carry a few longs instead of every feature. A bin is its
        index, MISSING or OTHER (continuous: by the inner edges, right-closed like
        `numpy.searchsorted(..., side="right")`; categorical: the reference's top categories). A continuous
        value is made finite (or flagged missing) in a projection of its own: binning the raw value
        repeats that test per edge, and in one projection of many features the code grows past what the
        JVM compiles (docs/performance.md)."""
        prepared: list[Column] = []
        codes: list[Column] = []
        for i, (name, kind, bounds) in enumerate(self.features):
            x, ok = f"_dl_x{i}", f"_dl_ok{i}"
            if kind == CONTINUOUS:  # SQL text: one Py4J call per expression instead of one per node
                value = finite_sql(quote_part(name))
                prepared += [F.expr(f"coalesce({value}, 0D) AS {x}"), F.expr(f"{value} IS NOT NULL AS {ok}")]
                codes.append(F.expr(f"CASE WHEN {ok} THEN {_search(x, bounds, 0, len(bounds))} "
                                    f"ELSE {MISSING - OTHER}L END"))
                continue
            prepared.append(F.col(quote_part(name)).cast("string").alias(x))
            value = F.col(x)
            known = F.array_position(F.array(*[F.lit(c) for c in bounds]), value) - 1 if bounds else F.lit(-1)
            codes.append(F.when(value.isNull(), F.lit(MISSING - OTHER))
                         .when(known >= 0, known - F.lit(OTHER)).otherwise(F.lit(0)).cast("long"))
        words: dict[int, Column] = {}
        for code, (word, offset, _) in zip(codes, self.layout(), strict=True):
            part = F.shiftleft(code, offset)
            words[word] = part if word not in words else words[word] + part
        named = [w.alias(n) for w, n in zip(words.values(), self.words(), strict=True)]
        return df.select("*", *prepared).select(*[F.col(quote_part(c)) for c in df.columns], *named)

    @cached_property
    def groups(self) -> list[tuple[int, int, int, tuple[tuple[int, int, int], ...]]]:
        """The REL entries of a row: consecutive features of one word whose codes span at most GROUP_BITS
        bits together (a wider feature alone), each (word, offset, width, members), a member being (feature,
        shift within the group, width). One entry per group instead of per feature: the label pass
        aggregates a few combined codes a row and `decode` splits their sums per feature (docs/performance.md)."""
        out: list[tuple[int, int, int, list[tuple[int, int, int]]]] = []
        for i, (word, offset, width) in enumerate(self.layout()):
            last = out[-1] if out else None
            if last is not None and last[0] == word and last[2] + width <= GROUP_BITS:
                out[-1] = (word, last[1], last[2] + width, last[3] + [(i, offset - last[1], width)])
            else:
                out.append((word, offset, width, [(i, 0, width)]))
        return [(w, o, n, tuple(m)) for w, o, n, m in out]

    def codes(self) -> str:
        """SQL text: the array of every group's combined code (its features' codes, bin - OTHER, side by side)
        read back from the words. One shift and one mask per group, nothing more: with an ANSI add and cast
        per element as well, the generated projection of 200 features outgrew what the JIT compiles and
        the label job ran 8x slower (measured, docs/performance.md)."""
        words = self.words()
        return "array(" + ", ".join(f"(shiftright(`{words[w]}`, {offset}) & {(1 << width) - 1})"
                                    for w, offset, width, _ in self.groups) + ")"

    def decode(self, group: int, code: int) -> list[tuple[str, int]]:
        """(feature, bin) of each member of group `group` (0-based) whose combined code is `code`."""
        return [(self.features[i][0], ((code >> shift) & ((1 << width) - 1)) + OTHER)
                for i, shift, width in self.groups[group][3]]


def _search(x: str, bounds: tuple, lo: int, hi: int) -> str:
    """SQL text: the code (bin + 2) of the finite `x` among bins lo..hi by binary search over the inner edges,
    the bin being the number of edges <= x, like `numpy.searchsorted(bounds, x, side="right")`, in about
    log2(bins) comparisons a row."""
    if lo == hi:
        return f"{lo - OTHER}L"
    mid = (lo + hi + 1) // 2
    return f"CASE WHEN {x} >= {double_sql(bounds[mid - 1])} THEN {_search(x, bounds, mid, hi)} " \
           f"ELSE {_search(x, bounds, lo, mid - 1)} END"


def relation_bins(columns: dict, config: MonitorConfig) -> RelationBins | None:
    """The bins of the monitored features from the whole-reference columns (name -> ReferenceColumn);
    None without labels."""
    if not config.labels:
        return None
    out = []
    for f in config.features:
        rc = columns.get(f.name)
        if rc is None:
            continue
        if f.kind == CONTINUOUS:
            out.append((f.name, f.kind, tuple(float(e) for e in rc.edges[1:-1])))
        else:
            out.append((f.name, f.kind, tuple(sorted(str(c) for c in rc.state.categories))))
    return RelationBins(tuple(out)) if out else None


def residual(config: MonitorConfig) -> Column:
    """A labelled row's residual (null when unlabelled or without the output it needs)."""
    label, labelled = F.col(LABEL), F.col(LABELLED)
    if config.problem_type == "regression":
        r = label - F.col(quote_part(config.outputs.prediction)).cast("double")
    elif config.problem_type == "binary":
        r = (label == F.lit(config.outputs.positive_class)).cast("double") \
            - F.col(quote_part(config.outputs.score)).cast("double")
    else:
        pred = predicted(config)  # the predicted class, as in the confusion cells
        scores = F.create_map(*[v for cls, col in config.outputs.class_scores.items()
                                for v in (F.lit(cls), F.col(quote_part(col)).cast("double"))])
        r = (label == pred).cast("double") - F.element_at(scores, pred)
    return F.when(labelled, r)


def _bins(values: dict[str, float]) -> dict[str, dict[int, np.ndarray]]:
    """feature -> bin -> [n, sum r, sum r^2] of one state's values."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for key, v in values.items():
        if not key.startswith(PREFIX):
            continue
        b, stat, feature = key[len(PREFIX):].split("|", 2)
        cell = out.setdefault(feature, {}).setdefault(int(b), np.zeros(3))
        cell["nrq".index(stat)] += v
    return out


def _total(parts: list[dict[str, dict[int, np.ndarray]]]) -> dict[str, dict[int, np.ndarray]]:
    out: dict[str, dict[int, np.ndarray]] = {}
    for part in parts:
        for feature, cells in part.items():
            for b, cell in cells.items():
                out.setdefault(feature, {}).setdefault(b, np.zeros(3))
                out[feature][b] = out[feature][b] + cell
    return out


def _compare(chunk: dict[int, np.ndarray], reference: dict[int, np.ndarray]) -> tuple[float, float] | None:
    """(relation_change, relation_shift) of one feature; None when fewer than two bins can be compared."""
    d, w, n = [], [], []
    for b, (nc, rc, _) in chunk.items():
        ref = reference.get(b)
        if nc <= 0 or ref is None or ref[0] < 2:
            continue
        nr, rr, qr = ref
        var = (qr - rr * rr / nr) / (nr - 1)
        if var <= 0:
            continue
        d.append(rc / nc - rr / nr)
        w.append(1 / (var * (1 / nc + 1 / nr)))
        n.append(nc)
    if len(d) < 2:
        return None
    d, w, n = np.array(d), np.array(w), np.array(n)
    level = float(w @ d / w.sum())  # the shift common to all bins: the table-level gap, not this feature's
    chi2 = float(w @ (d - level) ** 2)
    return change_z(chi2, len(d) - 1), float(n @ np.abs(d - level) / n.sum())


def change_z(chi2: float, dof: int) -> float:
    """The z-score of a chi-square statistic: Phi^-1(1 - p) from log p, so that tiny p stay finite. scipy's
    `chi2.logsf` underflows to -inf from about chi2 = 1500 (a strong concept drift on a million rows), so
    there log p comes from the asymptotic expansion of the upper incomplete gamma function,
    log Q(a, y) = (a - 1) log y - y - log Gamma(a) + log(1 + (a - 1) / y + (a - 1)(a - 2) / y^2), a = dof / 2,
    y = chi2 / 2 (relative error of p below 1e-6 where it takes over; docs/statistics.md)."""
    log_p = float(stats.chi2.logsf(chi2, dof))
    if not math.isfinite(log_p):
        a, y = dof / 2.0, chi2 / 2.0
        log_p = (a - 1) * math.log(y) - y - math.lgamma(a) + math.log1p((a - 1) / y + (a - 1) * (a - 2) / y ** 2)
    return -float(special.ndtri_exp(log_p))


def relation_results(reference: list[ChunkProfile], analysis: list[ChunkProfile],
                     bins: RelationBins) -> list[MetricResult]:
    """Both metrics for every feature of every reference and analysis chunk of one slice holding the
    sums of `bins`; thresholds are applied by the caller."""
    mark = bins.mark()
    ref = [(cp, _bins(cp.performance.values)) for cp in reference if cp.performance and mark in cp.performance.values]
    whole = _total([b for _, b in ref])
    out: list[MetricResult] = []
    todo = [(REFERENCE, cp, b, i) for i, (cp, b) in enumerate(ref)]
    todo += [(ANALYSIS, cp, _bins(cp.performance.values), None) for cp in analysis
             if cp.performance and mark in cp.performance.values]
    for period, cp, cells, i in todo:
        against = whole if i is None else _total([b for j, (_, b) in enumerate(ref) if j != i])
        for name, kind, _ in bins.features:
            if name not in cells or name not in against:
                continue
            compared = _compare(cells[name], against[name])
            if compared is None:
                continue
            labelled = sum(c[0] for c in cells[name].values())
            for metric, value in zip((RELATION_CHANGE, RELATION_SHIFT), compared, strict=True):
                out.append(MetricResult(period, cp.chunk, cp.slice_key, cp.slice_value, name, kind, CONCEPT_DRIFT,
                                        metric, BASELINE, value if math.isfinite(value) else None, cp.row_count,
                                        label_coverage=labelled / cp.row_count if cp.row_count else None))
    return out
