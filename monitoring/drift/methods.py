"""Univariate drift methods on rebuilt distributions. Formulas, bins, epsilon and log base are in
docs/statistics.md; every function here is pure numpy/scipy on small arrays."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from monitoring.drift.distributions import OTHER, CategoryCounts, WeightedSample, aligned
from monitoring.registry import CATEGORICAL_METHODS, CONTINUOUS_METHODS  # noqa: F401 - the defaults, named here too

QUALITY_METHODS = ("out_of_range", "unseen")  # reported as data quality (against the reference only)


# ------------------------------------------------------------------------------ on two distributions

def joint_cdfs(reference: WeightedSample, current: WeightedSample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every point of both samples (sorted) and both step CDFs P(X <= x) there, from one sort."""
    points, inverse = np.unique(np.concatenate([reference.values, current.values]), return_inverse=True)
    split = len(reference.values)
    cdfs = [np.cumsum(np.bincount(idx, weights=s.weights, minlength=len(points))) / s.n
            for idx, s in ((inverse[:split], reference), (inverse[split:], current))]
    return points, cdfs[0], cdfs[1]


KS_EXACT_MAX_N = 10_000  # above this effective size the p-value uses the limiting distribution


def ks_pvalue(d: float, n: float, m: float) -> float:
    """P(D >= d) for sizes n, m: scipy's `kstwo` (finite-size, what ks_2samp 'asymp' uses) up to an
    effective size n m / (n + m) of 10k, the Kolmogorov limit `kstwobign` at sqrt(en) d above it (kstwo
    takes up to a second per call there; the two differ by O(1/sqrt(en)))."""
    en = n * m / (n + m)
    if en <= KS_EXACT_MAX_N:  # an effective size below 1 (one row each side: 0.5) counts as 1
        return float(stats.kstwo.sf(d, max(1, int(np.round(en)))))
    return float(stats.kstwobign.sf(d * np.sqrt(en)))


def ks(reference: WeightedSample, current: WeightedSample, joint=None) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic (sup of the CDF difference, evaluated at every point
    of both samples) and its p-value for the true sizes (`ks_pvalue`)."""
    _, f_ref, f_cur = joint or joint_cdfs(reference, current)
    d = float(np.max(np.abs(f_ref - f_cur)))
    return d, ks_pvalue(d, reference.n, current.n)


def wasserstein(reference: WeightedSample, current: WeightedSample, joint=None) -> float:
    """Wasserstein-1 = A + B, A and B the integrals of the positive and negative parts of F_ref - F_cur.
    A - B = mean_cur - mean_ref, known exactly from the moments when both means are given; then only
    the smaller part comes from the sketches (W = |A - B| + 2 min(A, B)), which removes most of the
    sketch error for shifts (see docs/statistics.md)."""
    points, f_ref, f_cur = joint or joint_cdfs(reference, current)
    diff = (f_ref - f_cur)[:-1] * np.diff(points)
    above, below = float(np.sum(diff[diff > 0])), float(-np.sum(diff[diff < 0]))
    if reference.mean is None or current.mean is None:
        return above + below
    return abs(current.mean - reference.mean) + 2 * min(above, below)


def out_of_range(reference: WeightedSample, current: WeightedSample) -> float:
    """Share of the current values below the reference minimum or above its maximum."""
    lo, hi = reference.values[0], reference.values[-1]
    return float(current.cdf(lo, inclusive=False) + 1.0 - current.cdf(hi, inclusive=True))


def unseen(reference: CategoryCounts, current: CategoryCounts, rows: int | None = None) -> float | None:
    """Share of the current non-null values (of all `rows`, nulls included, when given: NannyML's) whose
    category the reference never held; None when the reference was truncated to its top-N (a value it did
    not keep may be one of its others: unknowable)."""
    if OTHER in reference.counts:
        return None
    new = sum(v for k, v in current.counts.items() if k not in reference.counts)
    return float(new / (rows or current.n))


def chi2(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """Pearson chi-square of the 2 x K contingency table as `scipy.stats.chi2_contingency` computes it by
    default (NannyML calls it so): with Yates' continuity correction when dof = 1 (two categories), each
    count moved towards its expected value by at most 0.5; categories with no count on either side are
    dropped, so unseen categories add finite terms."""
    table = np.vstack([reference_counts, current_counts]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    if table.shape[1] == 2:  # dof 1: Yates, as scipy
        diff = expected - table
        table = table + np.sign(diff) * np.minimum(0.5, np.abs(diff))
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, float(stats.chi2.sf(statistic, table.shape[1] - 1))


# ------------------------------------------------------------------------------ on two histograms

def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance, log base 2 (in [0, 1])."""
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def hellinger(p: np.ndarray, q: np.ndarray) -> float:
    """Hellinger distance: ||sqrt(p) - sqrt(q)||_2 / sqrt(2) (in [0, 1])."""
    return float(np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2) / 2))


def psi(p: np.ndarray, q: np.ndarray, epsilon: float) -> float:
    """Population stability index sum((q - p) ln(q / p)), proportions floored at `epsilon`."""
    p, q = np.maximum(p, epsilon), np.maximum(q, epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def l_infinity(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.max(np.abs(p - q)))


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Half the L1 distance, clipped to 1 (disjoint supports sum to 1 + rounding, e.g. 1.0000000000000002)."""
    return min(1.0, float(np.sum(np.abs(p - q)) / 2))


# method -> its value on two histograms (reference p, current q) with the PSI epsilon
HISTOGRAM_METHODS = {
    "jensen_shannon": lambda p, q, eps: jensen_shannon(p, q),
    "hellinger": lambda p, q, eps: hellinger(p, q),
    "psi": psi,
    "l_infinity": lambda p, q, eps: l_infinity(p, q),
    "total_variation": lambda p, q, eps: total_variation(p, q),
}


# ------------------------------------------------------------------------------ per column kind

def continuous_metrics(reference: WeightedSample, current: WeightedSample, edges: np.ndarray, reference_std: float,
                       methods: tuple[str, ...], epsilon: float,
                       binned: tuple[np.ndarray, np.ndarray] | None = None,
                       distance: float | None = None) -> dict[str, float | None]:
    """Every metric of the chosen methods, reference vs current (both non-empty). `binned`: both sides'
    probabilities in the bins of `edges` from exact counts; else the bins' mass is read from the sketches.
    `distance`: the Wasserstein distance from both sides' fine bins (else estimated from the sketches)."""
    out: dict[str, float | None] = {}
    p = q = joint = None
    if HISTOGRAM_METHODS.keys() & set(methods):
        p, q = binned or (reference.bin_probabilities(edges), current.bin_probabilities(edges))
    if "kolmogorov_smirnov" in methods or ("wasserstein" in methods and distance is None):
        joint = joint_cdfs(reference, current)
    for method in methods:
        if method == "kolmogorov_smirnov":
            out["kolmogorov_smirnov"], out["kolmogorov_smirnov_pvalue"] = ks(reference, current, joint)
        elif method == "wasserstein":
            w = wasserstein(reference, current, joint) if distance is None else distance
            out["wasserstein"] = w
            out["wasserstein_normalized"] = w / reference_std if reference_std > 0 else None
        elif method in HISTOGRAM_METHODS:
            out[method] = HISTOGRAM_METHODS[method](p, q, epsilon)
        elif method == "out_of_range":
            out[method] = out_of_range(reference, current)
    return out


def categorical_metrics(reference: CategoryCounts, current: CategoryCounts, methods: tuple[str, ...],
                        epsilon: float, rows: int | None = None) -> dict[str, float | None]:
    _, ref_counts, cur_counts = aligned(reference, current)
    p, q = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
    out: dict[str, float | None] = {}
    for method in methods:
        if method == "chi2":
            out["chi2"], out["chi2_pvalue"] = chi2(ref_counts, cur_counts)
        elif method in HISTOGRAM_METHODS:
            out[method] = HISTOGRAM_METHODS[method](p, q, epsilon)
        elif method == "unseen":
            out[method] = unseen(reference, current, rows)
    return out
