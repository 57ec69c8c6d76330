"""Fine bins for the Wasserstein distance: per chunk and continuous column, the exact count and sum of the
finite values in each of many narrow bins between the reference's minimum and maximum, plus one bin below
and one above. From them the distance is within a small, documented error of scipy's on the same rows
(docs/statistics.md, "Wasserstein"), and NannyML's binned estimate is reproduced exactly.

Bin index 0 holds the values below the first edge, 1..`slots` the inner bins (each [e_j-1, e_j), the last
closed), `slots` + 1 the values above the last edge. `asinh` bins are equal-width in asinh((x - center) /
scale): narrow where the reference is dense and log-like in its tails, continued beyond the reference's range;
`linear` bins are NannyML's: numpy.histogram's equal-width bins over [lo, hi], numpy's index included."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitoring.sketches import double_sql

ASINH, LINEAR = "asinh", "linear"
NANNYML_BINS = 10_000  # NannyML's WassersteinDistance n_bins
NANNYML_MIN_ROWS = 10_000  # below this many reference values NannyML computes the distance exactly


@dataclass(frozen=True)
class FineBins:
    """`bins` bins over the reference's range [lo, hi]; `asinh` bins continue at the same width in t for
    half as many again on each side, so that chunks compared with each other (CONSECUTIVE) keep narrow bins
    beyond the reference's range. The `slots` inner bins span [first, last]; one more bin each side holds
    the values beyond."""

    transform: str  # ASINH | LINEAR
    lo: float
    hi: float
    bins: int
    center: float = 0.0
    scale: float = 1.0

    # ------------------------------------------------------------------ construction and storage
    @classmethod
    def asinh(cls, lo: float, hi: float, center: float, scale: float, bins: int) -> FineBins:
        """Bins equal-width in asinh((x - center) / scale) over [lo, hi]; one bin when lo == hi."""
        if not hi > lo:
            return cls(LINEAR, lo, hi, 1)
        if not (np.isfinite(scale) and scale > 0):
            scale = hi - lo
        scale = max(scale, (hi - lo) * 1e-9)  # |u| <= 1e9 inside [lo, hi]: the extension stays finite
        center = min(max(center, lo), hi) if np.isfinite(center) else (lo + hi) / 2
        return cls(ASINH, lo, hi, bins, center, scale)

    @classmethod
    def nannyml(cls, lo: float, hi: float) -> FineBins:
        """NannyML's bins: `numpy.histogram(reference, bins=10_000)`'s (a constant widened by 0.5 each side)."""
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        return cls(LINEAR, lo, hi, NANNYML_BINS)

    def to_list(self) -> list[float]:
        return [1.0 if self.transform == ASINH else 0.0, self.lo, self.hi, float(self.bins), self.center,
                self.scale]

    @classmethod
    def from_list(cls, values) -> FineBins | None:
        if not values:
            return None
        kind, lo, hi, bins, center, scale = (float(v) for v in values)
        return cls(ASINH if kind == 1.0 else LINEAR, lo, hi, int(bins), center, scale)

    # ------------------------------------------------------------------ the bins
    @property
    def extra(self) -> int:
        """Bins beyond the reference's range on each side."""
        return self.bins // 2 if self.transform == ASINH else 0

    @property
    def slots(self) -> int:
        """Inner bins: index 1..slots; 0 below `first`, slots + 1 above `last`."""
        return self.bins + 2 * self.extra

    def _t(self, x):
        u = (x - self.center) / self.scale
        return np.sign(u) * np.log(np.abs(u) + np.sqrt(u * u + 1.0))

    def _grid(self) -> tuple[float, float]:
        """The first inner edge in t and the width of a bin in t (asinh)."""
        t0, t1 = self._t(self.lo), self._t(self.hi)
        width = (t1 - t0) / self.bins
        return t0 - self.extra * width, width

    def edges(self) -> np.ndarray:
        """The `slots` + 1 inner edges (`lo` and `hi` among them)."""
        if self.transform == LINEAR:
            e = np.arange(self.bins + 1) * ((self.hi - self.lo) / self.bins) + self.lo  # numpy.linspace's
        else:
            start, width = self._grid()
            e = self.center + self.scale * np.sinh(start + np.arange(self.slots + 1) * width)
            e[self.extra] = self.lo
        e[self.extra + self.bins] = self.hi
        return e

    def sql(self, x: str) -> str:
        """SQL text: the bin index of `x` (quoted), a finite double or null (`sketches.finite_sql`); null for null."""
        e = self.edges()
        first, last, k = double_sql(e[0]), double_sql(e[-1]), self.slots
        if self.hi == self.lo:  # a constant reference: its one bin
            inner = "0"
        elif self.transform == LINEAR:  # numpy.histogram: an estimate, then corrected against the edges
            lo, hi, step = double_sql(self.lo), double_sql(self.hi), double_sql((self.hi - self.lo) / k)

            def edge(m: str) -> str:
                return f"IF({m} >= {k}, {hi}, CAST({m} AS DOUBLE) * {step} + {lo})"
            guess = f"least({k - 1}, CAST(({x} - {lo}) / ({double_sql(self.hi - self.lo)}) * {k} AS INT))"
            inner = self._linear_index(x, guess, edge)
        else:
            c, s = double_sql(self.center), double_sql(self.scale)
            start, width = self._grid()
            u = f"(({x} - {c}) / {s})"
            t = f"(signum({u}) * ln(abs({u}) + sqrt({u} * {u} + 1D)))"
            guess = f"CAST(floor(({t} - {double_sql(start)}) * {double_sql(1 / width)}) AS INT)"
            # clamped to its side of lo and hi, which are compared exactly (a rounded logarithm may not be)
            lo_bin, hi_bin = self.extra, self.extra + self.bins - 1
            inner = (f"CASE WHEN {x} < {double_sql(self.lo)} THEN least({lo_bin - 1}, greatest(0, {guess})) "
                     f"WHEN {x} <= {double_sql(self.hi)} THEN least({hi_bin}, greatest({lo_bin}, {guess})) "
                     f"ELSE least({k - 1}, greatest({hi_bin + 1}, {guess})) END")
        return (f"CASE WHEN {x} IS NULL THEN NULL "
                f"WHEN {x} < {first} THEN 0 WHEN {x} > {last} THEN {k + 1} ELSE {inner} + 1 END")

    def _linear_index(self, x: str, guess: str, edge) -> str:
        """numpy.histogram's index of an inner value: the guess, one down when below its bin's lower edge,
        then one up when at or above the next edge (except in the last bin, closed at `hi`)."""
        k = self.bins
        down = f"({guess} - IF({x} < {edge(guess)}, 1, 0))"
        return f"({down} + IF({down} != {k - 1} AND {x} >= {edge(f'{down} + 1')}, 1, 0))"

    def index(self, x: np.ndarray) -> np.ndarray:
        """The numpy twin of `sql` for finite values."""
        x = np.asarray(x, float)
        e = self.edges()
        out = np.empty(len(x), np.int64)
        below, above = x < e[0], x > e[-1]
        inner = ~(below | above)
        v = x[inner]
        if self.hi == self.lo:
            i = np.zeros(len(v), np.int64)
        elif self.transform == LINEAR:
            i = np.minimum(((v - self.lo) / (self.hi - self.lo) * self.bins).astype(np.int64), self.bins - 1)
            i -= v < e[i]
            i += (i != self.bins - 1) & (v >= e[np.minimum(i + 1, self.bins)])
        else:
            start, width = self._grid()
            guess = np.floor((self._t(v) - start) * (1 / width))
            lo_bin, hi_bin = self.extra, self.extra + self.bins - 1
            i = np.where(v < self.lo, np.clip(guess, 0, lo_bin - 1),
                         np.where(v <= self.hi, np.clip(guess, lo_bin, hi_bin),
                                  np.clip(guess, hi_bin + 1, self.slots - 1))).astype(np.int64)
        out[below], out[above], out[inner] = 0, self.slots + 1, i + 1
        return out


@dataclass(frozen=True)
class FineCounts:
    """Dense counts and value sums per fine bin (index 0 below, `slots` + 1 above)."""

    counts: np.ndarray
    sums: np.ndarray

    @classmethod
    def of(cls, spec: FineBins, index, counts, sums) -> FineCounts:
        n, s = np.zeros(spec.slots + 2), np.zeros(spec.slots + 2)
        idx = np.asarray(index, np.int64)
        np.add.at(n, idx, np.asarray(counts, float))
        np.add.at(s, idx, np.asarray(sums, float))
        return cls(n, s)

    @classmethod
    def of_values(cls, spec: FineBins, x: np.ndarray) -> FineCounts:
        """From the rows themselves (tests, the numpy twin of a profiling pass)."""
        x = np.asarray(x, float)
        x = x[np.isfinite(x)]
        idx = spec.index(x)
        return cls(np.bincount(idx, minlength=spec.slots + 2).astype(float),
                   np.bincount(idx, weights=x, minlength=spec.slots + 2))

    def __add__(self, other: FineCounts) -> FineCounts:
        return FineCounts(self.counts + other.counts, self.sums + other.sums)

    def __sub__(self, other: FineCounts) -> FineCounts:
        return FineCounts(self.counts - other.counts, self.sums - other.sums)

    @property
    def n(self) -> float:
        return float(self.counts.sum())


def wasserstein(spec: FineBins, reference: FineCounts, current: FineCounts) -> float:
    """Sum over the bins of |the integral of F_ref - F_cur over the bin|, each integral exact from the bins'
    counts and sums: the exact Wasserstein-1 distance when F_ref - F_cur keeps its sign within every bin,
    and a lower bound within the documented error otherwise (a sign change inside one narrow bin)."""
    e = spec.edges()
    n_r, n_c = reference.n, current.n
    # integral over a bin [a, b) of P(X < x) dx = (b - a) P(X < b) - (sum of its values - count a) / N
    f_r, f_c = np.cumsum(reference.counts) / n_r, np.cumsum(current.counts) / n_c
    k, first, last = spec.slots, e[0], e[-1]
    a, b = e[:-1], e[1:]
    inner = ((b - a) * (f_r[1:k + 1] - f_c[1:k + 1])
             - (reference.sums[1:k + 1] - reference.counts[1:k + 1] * a) / n_r
             + (current.sums[1:k + 1] - current.counts[1:k + 1] * a) / n_c)
    below = ((reference.counts[0] * first - reference.sums[0]) / n_r
             - (current.counts[0] * first - current.sums[0]) / n_c)
    above = ((current.sums[k + 1] - current.counts[k + 1] * last) / n_c
             - (reference.sums[k + 1] - reference.counts[k + 1] * last) / n_r)
    return float(np.abs(inner).sum() + abs(below) + abs(above))


def nannyml_wasserstein(spec: FineBins, reference: FineCounts, current: FineCounts) -> float:
    """NannyML 0.13.1's binned estimate (`WassersteinDistance._calculate`, reference of >= 10k values): the
    reference CDF at the right edge of each of its 10,000 bins against the current one, plus the exact
    parts below and above the reference's range, with NannyML's (n + 1) / N offset of the current CDF
    when values lie below it. `reference` holds no values outside [lo, hi] (it is the reference)."""
    k, n = spec.bins, current.n
    ref_cdf = np.cumsum(reference.counts[1:k + 1] / reference.n)
    smaller, bigger = current.counts[0], current.counts[k + 1]
    offset = (smaller + 1) / n if smaller > 0 else 0.0
    data_cdf = np.cumsum(current.counts[1:k + 1] / n) + offset
    e = spec.edges()
    within = np.sum(np.abs(ref_cdf - data_cdf) * (e[1] - e[0]))
    return float(within + (smaller * spec.lo - current.sums[0]) / n + (current.sums[k + 1] - bigger * spec.hi) / n)
