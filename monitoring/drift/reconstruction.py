"""Multivariate drift by data reconstruction with PCA (NannyML's DataReconstructionDriftCalculator).

Preprocessing as NannyML's: missing values imputed (continuous: the reference mean; categorical: the
reference's most frequent value), categories frequency-encoded (the share of the reference rows holding
the category, after imputation; a category the reference does not hold encodes as 0), every column
standardised with the reference mean and population std (a constant column keeps scale 1). PCA keeps the
fewest components whose explained variance ratio sums above `n_components` (a float in (0, 1); an
integer keeps that many). A row's reconstruction error is the Euclidean norm of its standardised vector
minus its projection back from the components; a chunk's value is the mean error of its rows.

Fitting needs no row on the driver: the imputation, encoding and scaling come from the merged reference
states; the covariance of the standardised columns is one aggregation over the reference rows; the
eigen-decomposition runs on the d x d matrix. The model is then a Spark expression (`row_error`), summed
per chunk in the profiling pass like any other state (`ChunkProfile.sums`: rows, sum, sum of squares), so
analysis chunks, slices and incremental runs need nothing extra. Details in docs/multivariate.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from monitoring.drift.compare import ANALYSIS, NO_COMPARISON, REFERENCE, MetricResult
from monitoring.performance.results import TABLE
from monitoring.profiling import ChunkProfile
from monitoring.sketches import CATEGORICAL, CONTINUOUS, ColumnProfile, finite
from monitoring.stores.tables import quote_part

N, SUM, SUMSQ = "reconstruction:n", "reconstruction:sum", "reconstruction:sumsq"  # keys in ChunkProfile.sums


@dataclass(frozen=True)
class Reconstruction:
    """A fitted PCA reconstruction: per column (name, kind, imputed value, encoding), the scaler and the
    projection onto the residual space P = I - W^T W (W: the kept components, k x d)."""

    columns: tuple[tuple[str, str], ...]
    impute: tuple[float | str, ...]
    encodings: tuple[tuple[tuple[str, float], ...], ...]  # categorical: (value, frequency); continuous: ()
    center: tuple[float, ...]
    scale: tuple[float, ...]
    pca_mean: tuple[float, ...]
    residual: tuple[tuple[float, ...], ...]  # P, d x d
    components: int
    explained_variance: float  # ratio kept
    settings: str = ""  # the config it was fitted with (columns, n_components)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @staticmethod
    def from_json(text: str) -> Reconstruction:
        d = json.loads(text)
        d["columns"] = tuple(tuple(c) for c in d["columns"])
        d["encodings"] = tuple(tuple(tuple(e) for e in enc) for enc in d["encodings"])
        d["residual"] = tuple(tuple(r) for r in d["residual"])
        return Reconstruction(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode()).hexdigest()[:16]

    def standardized(self) -> list[Column]:
        """The standardised columns z_i of a row (imputed, encoded, scaled), as Spark expressions."""
        out = []
        for (name, kind), fill, enc, mu, sd in zip(self.columns, self.impute, self.encodings, self.center,
                                                  self.scale, strict=True):
            col = F.col(quote_part(name))
            if kind == CONTINUOUS:
                x = F.coalesce(finite(col), F.lit(float(fill)))
            else:
                value = F.coalesce(col.cast("string"), F.lit(str(fill)))
                lookup = F.create_map(*[F.lit(v) for pair in enc for v in pair]) if enc else None
                x = F.coalesce(F.element_at(lookup, value), F.lit(0.0)) if lookup is not None else F.lit(0.0)
            out.append((x - F.lit(mu)) / F.lit(sd))
        return out

    def row_error(self) -> Column:
        """The reconstruction error of a row: || P (z - pca_mean) ||."""
        u = [z - F.lit(m) for z, m in zip(self.standardized(), self.pca_mean, strict=True)]
        squares = []
        for row in self.residual:
            terms = [u_j * F.lit(p) for u_j, p in zip(u, row, strict=True) if p != 0.0]
            r = terms[0] if terms else F.lit(0.0)
            for t in terms[1:]:
                r = r + t
            squares.append(r * r)
        total = squares[0]
        for sq in squares[1:]:
            total = total + sq
        return F.sqrt(total)

    def sums(self) -> dict[str, Column]:
        """The per-chunk sums the profiling pass adds: rows, sum and sum of squares of the errors."""
        e = self.row_error()
        return {N: F.lit(1), SUM: e, SUMSQ: e * e}


def preprocessing(states: dict[str, ColumnProfile], columns: list[tuple[str, str]]
                  ) -> tuple[list[float | str], list[tuple[tuple[str, float], ...]], np.ndarray, np.ndarray]:
    """Imputed values, encodings, centers and scales from the merged reference states (module docstring)."""
    impute, encodings, center, scale = [], [], [], []
    for name, kind in columns:
        s = states[name]
        n = s.row_count
        if kind == CONTINUOUS:
            mean = s.mean if s.mean is not None else 0.0
            var = (s.m2 or 0.0) / n if n else 0.0  # imputed rows sit at the mean: no deviation
            impute.append(mean)
            encodings.append(())
            center.append(mean)
            scale.append(math.sqrt(var))
            continue
        counts = dict(s.categories)
        # SimpleImputer(most_frequent): the most frequent value, the smallest among ties
        mode = min(counts, key=lambda v: (-counts[v], v)) if counts else ""
        counts[mode] = counts.get(mode, 0) + s.null_count
        freq = {v: c / n for v, c in counts.items()}
        # a row holds value v with probability freq[v] and then encodes as freq[v]
        mean = sum(f * f for f in freq.values())
        var = sum(f ** 3 for f in freq.values()) - mean * mean
        impute.append(mode)
        encodings.append(tuple(sorted(freq.items())))
        center.append(mean)
        scale.append(math.sqrt(max(var, 0.0)))
    scale_arr = np.asarray(scale, float)
    scale_arr[scale_arr <= 1e-12 * np.maximum(1.0, np.abs(center))] = 1.0  # StandardScaler: constant -> 1
    return impute, encodings, np.asarray(center, float), scale_arr


NUMERIC_TYPES = re.compile(r"(tinyint|smallint|int|bigint|float|double|decimal\(.*\))")


def nannyml_kinds(columns: list[tuple[str, str]], schema: dict[str, str]) -> list[tuple[str, str]]:
    """NannyML's kinds for the reconstruction (`nannyml.base._split_features_by_type`, from the pandas dtypes):
    a column of a numeric type is continuous, any other (text, boolean) categorical, whatever its declared
    kind (univariate drift keeps the declared one: NannyML's `treat_as_categorical`)."""
    return [(name, CONTINUOUS if NUMERIC_TYPES.fullmatch(schema.get(name, "")) else CATEGORICAL)
            for name, _ in columns]


def continuous_states(rows: DataFrame, names: list[str]) -> dict[str, ColumnProfile]:
    """Continuous reference states (row count, nulls, mean, m2 of the finite values) of columns profiled under
    another kind, from one aggregation of the reference `rows`."""
    if not names:
        return {}
    aggs = [F.count(F.lit(1)).alias("rows")]
    for i, name in enumerate(names):
        x = finite(F.col(quote_part(name)).cast("double"))
        aggs += [F.count(x).alias(f"n{i}"), F.avg(x).alias(f"mean{i}"), F.var_pop(x).alias(f"var{i}")]
    r = rows.agg(*aggs).first()
    out = {}
    for i, name in enumerate(names):
        n = int(r[f"n{i}"])
        out[name] = ColumnProfile(column=name, kind=CONTINUOUS, row_count=int(r["rows"]),
                                  null_count=int(r["rows"]) - n, valid_count=n,
                                  mean=float(r[f"mean{i}"]) if n else None,
                                  m2=float(r[f"var{i}"]) * n if n else None)
    return out


def fit_reconstruction(rows: DataFrame, states: dict[str, ColumnProfile], columns: list[tuple[str, str]],
                       n_components: float, settings: str = "") -> Reconstruction:
    """Fit on the reference `rows`: preprocessing from `states`, then one aggregation for the mean and
    covariance of the standardised columns, then PCA on the driver."""
    impute, encodings, center, scale = preprocessing(states, columns)
    draft = Reconstruction(tuple(columns), tuple(impute), tuple(encodings), tuple(center), tuple(scale),
                           (0.0,) * len(columns), (), 0, 0.0)
    z = draft.standardized()
    d = len(z)
    pairs = [(i, j) for i in range(d) for j in range(i, d)]
    aggs = [F.count(F.lit(1)).alias("n")] + [F.sum(zi).alias(f"s{i}") for i, zi in enumerate(z)]
    aggs += [F.sum(z[i] * z[j]).alias(f"p{i}_{j}") for i, j in pairs]
    r = rows.agg(*aggs).first()
    n = int(r["n"])
    if n < 2:
        raise ValueError("the reference needs at least two rows to fit the PCA of the reconstruction error")
    mean = np.array([r[f"s{i}"] for i in range(d)], float) / n
    second = np.zeros((d, d))
    for i, j in pairs:
        second[i, j] = second[j, i] = r[f"p{i}_{j}"] / n
    cov = second - np.outer(mean, mean)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0.0, None), vectors[:, order]
    ratio = values / values.sum() if values.sum() > 0 else np.full(d, 1.0 / d)
    if 0 < n_components < 1:
        k = int(np.searchsorted(np.cumsum(ratio), n_components, side="right")) + 1  # sklearn's rule
    else:
        k = int(n_components)
    k = max(1, min(k, d))
    w = vectors[:, :k].T  # k x d
    residual = np.eye(d) - w.T @ w
    return Reconstruction(tuple(columns), tuple(impute), tuple(encodings), tuple(center), tuple(scale),
                          tuple(float(m) for m in mean), tuple(tuple(float(v) for v in row) for row in residual),
                          k, float(ratio[:k].sum()), settings)


def chunk_error(sums: dict[str, float] | None) -> tuple[float | None, float | None, int]:
    """(mean reconstruction error, its sampling error, rows) of a chunk from its sums. The sampling error is
    NannyML's: the std (ddof 1) of the chunk's row errors / sqrt(rows)."""
    if not sums or not sums.get(N):
        return None, None, 0
    n = int(sums[N])
    mean = sums[SUM] / n
    if n < 2:
        return mean, None, n
    var = max(sums[SUMSQ] - sums[SUM] * sums[SUM] / n, 0.0) / (n - 1)
    return mean, math.sqrt(var / n), n


MULTIVARIATE, METRIC = "multivariate", "reconstruction_error"
SAMPLING_ERROR_RANGE = 3  # confidence band: value +- 3 sampling errors (NannyML's SAMPLING_ERROR_RANGE)


def reconstruction_results(reference: list[ChunkProfile], analysis: list[ChunkProfile],
                           reference_sums: dict[tuple[int, str, str], dict[str, float]],
                           model: Reconstruction) -> list[MetricResult]:
    """`reconstruction_error` rows (family multivariate, column `:table`) of one slice's reference and analysis
    chunks: the mean error, its sampling error and a +-3 SE band (the lower end at least 0). Thresholds are
    applied by the caller from the reference rows."""
    out = []
    for period, chunks in ((REFERENCE, reference), (ANALYSIS, analysis)):
        for cp in chunks:
            sums = reference_sums.get((cp.chunk.index, cp.slice_key, cp.slice_value)) if period == REFERENCE \
                else cp.sums
            value, se, n = chunk_error(sums)
            if value is None:
                continue
            r = MetricResult(period, cp.chunk, cp.slice_key, cp.slice_value, TABLE, "table", MULTIVARIATE, METRIC,
                             NO_COMPARISON, value, n, sampling_error=se)
            if se is not None:
                r.lower_confidence = max(value - SAMPLING_ERROR_RANGE * se, 0.0)
                r.upper_confidence = value + SAMPLING_ERROR_RANGE * se
            out.append(r)
    return out
