"""Distributions rebuilt from stored states, on the driver: no raw rows.

A continuous column's distribution is the weighted sample a KLL sketch retains (items with their
weights); several chunks' samples are combined by concatenation, which is exact and deterministic
(a sketch merge would compact, randomly). A categorical column's distribution is its value counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import datasketches as ds
import numpy as np

OTHER = "__other__"  # values a profile did not keep individually (beyond top-N)


_EMPTY, _SINGLE_ITEM = 1, 4  # KLL preamble flags


def kll_items(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Retained items and their weights of a serialized KLL doubles sketch (numpy parse of the compact
    format; the `datasketches` iterator if the parse does not add up to the sketch's n)."""
    parsed = parse_compact_kll(blob)
    if parsed is not None:
        return parsed
    pairs = np.array(list(ds.kll_doubles_sketch.deserialize(blob)), dtype=float).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def parse_compact_kll(blob: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """DataSketches' compact KLL doubles layout: 20-byte preamble (n at byte 8, number of levels at
    byte 18), level offsets (uint32, the last omitted), min, max, then the retained items level by
    level; an item at level h weighs 2^h. None when the bytes do not add up."""
    flags = blob[3]
    if flags & _EMPTY:
        return np.empty(0), np.empty(0)
    if flags & _SINGLE_ITEM:
        return np.frombuffer(blob, "<f8", 1, 8).copy(), np.ones(1)
    n = int(np.frombuffer(blob, "<u8", 1, 8)[0])
    num_levels = blob[18]
    levels = np.frombuffer(blob, "<u4", num_levels, 20).astype(np.int64)
    items = np.frombuffer(blob, "<f8", offset=20 + 4 * num_levels + 16)
    sizes = np.diff(np.append(levels, levels[0] + len(items)))
    if np.any(sizes < 0):
        return None
    weights = np.repeat(2.0 ** np.arange(num_levels), sizes)
    return (items.copy(), weights) if len(weights) == len(items) and weights.sum() == n else None


@dataclass(frozen=True)
class WeightedSample:
    """Sorted distinct values with their total weights: the step CDF of a (merged) sketch."""

    values: np.ndarray
    weights: np.ndarray
    cumulative: np.ndarray = field(repr=False)
    mean: float | None = None  # the exact mean of the sketched values (from the moments), when known

    @classmethod
    def of(cls, values: np.ndarray, weights: np.ndarray, mean: float | None = None) -> WeightedSample:
        values, weights = np.asarray(values, float), np.asarray(weights, float)
        distinct, inverse = np.unique(values, return_inverse=True)
        summed = np.bincount(inverse, weights=weights, minlength=len(distinct))
        return cls(distinct, summed, np.cumsum(summed), mean)

    @classmethod
    def from_kll(cls, blob: bytes | None, mean: float | None = None,
                 extremes: tuple[float | None, float | None] = (None, None)) -> WeightedSample:
        """The sketch's items; the exact min and max (a sketch need not retain them as items) join
        with weight 0, so ranges and bin edges use the true extremes while every CDF is unchanged."""
        if not blob:
            return cls.of(np.empty(0), np.empty(0))
        values, weights = kll_items(blob)
        known = [x for x in extremes if x is not None]
        return cls.of(np.concatenate([values, known]), np.concatenate([weights, np.zeros(len(known))]), mean)

    @classmethod
    def concat(cls, samples: list[WeightedSample]) -> WeightedSample:
        if not samples:
            return cls.of(np.empty(0), np.empty(0))
        mean = None
        if all(s.mean is not None for s in samples):
            mean = sum(s.mean * s.n for s in samples) / sum(s.n for s in samples)
        return cls.of(np.concatenate([s.values for s in samples]), np.concatenate([s.weights for s in samples]),
                      mean)

    @property
    def n(self) -> float:
        return float(self.cumulative[-1]) if len(self.cumulative) else 0.0

    def cdf(self, x: np.ndarray | float, inclusive: bool = True) -> np.ndarray:
        """P(X <= x) (inclusive) or P(X < x)."""
        idx = np.searchsorted(self.values, x, side="right" if inclusive else "left")
        below = np.where(idx > 0, self.cumulative[np.maximum(idx - 1, 0)], 0.0)
        return below / self.n

    def quantiles(self, ranks: np.ndarray) -> np.ndarray:
        """The smallest value whose CDF reaches each rank (the inverse of the step CDF)."""
        idx = np.searchsorted(self.cumulative / self.n, np.asarray(ranks, float) - 1e-12, side="left")
        return self.values[np.minimum(idx, len(self.values) - 1)]

    def bin_probabilities(self, edges: np.ndarray) -> np.ndarray:
        """Mass per bin for reference `edges` [min, e1, ..., max]: (-inf, min), [min, e1), ...,
        [e_last, max], (max, inf): the first and last are the leftover bins outside the reference range
        (one edge, a constant reference: (-inf, e), [e, e], (e, inf))."""
        bounds = self.cdf(edges, inclusive=False)
        if len(edges) == 1:  # a constant reference: (-inf, e), [e, e], (e, inf)
            bounds = np.append(bounds, self.cdf(edges[-1], inclusive=True))
        else:
            bounds[-1] = self.cdf(edges[-1], inclusive=True)
        return np.diff(np.concatenate([[0.0], bounds, [1.0]]))


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The histogram bin of each value (what `sketches.histogram_counts` counts): 0 below the first edge, then
    `searchsorted(edges, x, side="right")` with the largest edge in the last inner bin, len(edges) above it;
    one edge: 0 below, 1 equal, 2 above."""
    values, edges = np.asarray(values, float), np.asarray(edges, float)
    if len(edges) == 1:
        return np.where(values < edges[0], 0, np.where(values > edges[0], 2, 1))
    idx = np.searchsorted(edges, values, side="right")
    return np.where(values == edges[-1], len(edges) - 1, idx)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Exact counts of the finite `values` in the bins of `edges` (`bin_index`)."""
    values = np.asarray(values, float)
    finite = values[np.isfinite(values)]
    return np.bincount(bin_index(finite, edges), minlength=len(edges) + 1 if len(edges) > 1 else 3)


def doane_edges(n: int, mean: float, m2: float, m3: float, lo: float, hi: float) -> np.ndarray:
    """`numpy.histogram_bin_edges(x, bins="doane")` from the exact count, mean, second and third central
    moment sums, min and max of x (what NannyML's continuous Jensen-Shannon and Hellinger bin by): equal-width
    bins between min and max, ceil(ptp / width) of them, width = ptp / (1 + log2 n + log2(1 + |g1| / sg1));
    one bin when the values are constant (min - 0.5, max + 0.5)."""
    width = 0.0
    if n > 2:
        sg1 = np.sqrt(6.0 * (n - 2) / ((n + 1.0) * (n + 3)))
        sigma = np.sqrt(m2 / n)
        if sigma > 0.0:
            g1 = m3 / n / sigma ** 3
            width = (hi - lo) / (1.0 + np.log2(n) + np.log2(1.0 + np.absolute(g1) / sg1))
    first, last = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
    count = int(np.ceil((last - first) / width)) if width else 1
    return np.linspace(first, last, count + 1, endpoint=True)


def quantile_edges(sample: WeightedSample, bins: int) -> np.ndarray:
    """Reference bin edges: min, the inner quantiles 1/bins .. (bins-1)/bins, max; duplicates dropped
    (discrete data yields fewer, wider bins)."""
    if sample.n == 0:
        return np.empty(0)
    inner = sample.quantiles(np.arange(1, bins) / bins)
    return np.unique(np.concatenate([[sample.values[0]], inner, [sample.values[-1]]]))


@dataclass(frozen=True)
class CategoryCounts:
    """Counts of the non-null values of a categorical column; values beyond top-N sit in OTHER."""

    counts: dict[str, float]

    @classmethod
    def of(cls, categories: dict[str, int], other: int) -> CategoryCounts:
        counts = {str(k): float(v) for k, v in categories.items() if v}
        if other:
            counts[OTHER] = counts.get(OTHER, 0.0) + float(other)
        return cls(counts)

    @classmethod
    def concat(cls, parts: list[CategoryCounts]) -> CategoryCounts:
        total: dict[str, float] = {}
        for part in parts:
            for k, v in part.counts.items():
                total[k] = total.get(k, 0.0) + v
        return cls(total)

    @property
    def n(self) -> float:
        return float(sum(self.counts.values()))


def aligned(reference: CategoryCounts, current: CategoryCounts) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Both count vectors over the union of categories (sorted; categories absent from both dropped)."""
    keys = sorted(set(reference.counts) | set(current.counts))
    return (keys, np.array([reference.counts.get(k, 0.0) for k in keys]),
            np.array([current.counts.get(k, 0.0) for k in keys]))
