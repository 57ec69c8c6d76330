"""Per-column sketch states: the Spark expressions that compute them, and how they merge on the driver.

A `ColumnProfile` is a semigroup state: `merge` is associative and commutative (up to the KLL
sketch's own randomized compaction), so reference windows, slices and incremental runs are merges
of stored states, never rescans. Conventions (NaN/inf handling, moments) are in docs/profiles.md.
"""

from __future__ import annotations

import heapq
import logging
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import datasketches as ds
import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, StructField, StructType

from monitoring.config import KLL_CHOICES

log = logging.getLogger(__name__)

CONTINUOUS = "continuous"
CATEGORICAL = "categorical"
HLL_LG_K = 12  # HLL of distinct categories: ~1.6% relative standard error
NATIVE_KLL_SINCE = (4, 1)  # Spark version that added kll_sketch_agg_double
KLL_IMPLS = ("native", "python")
_PARTIAL_BYTES = 256 << 20  # per Python worker: partial KLL sketches held before they are flushed


def finite(x: Column) -> Column:
    """`x` as double with NaN and +-inf mapped to null: they are counted, not measured."""
    x = x.cast("double")
    return F.when(F.isnan(x) | (F.abs(x) == F.lit(float("inf"))), F.lit(None)).otherwise(x)


def finite_sql(column: str) -> str:
    """`finite` of the column `column` (quoted) as SQL text: one parse on the JVM instead of a Py4J call per
    node, which adds up to tens of seconds over hundreds of columns (docs/performance.md)."""
    x = f"CAST({column} AS DOUBLE)"
    return f"CASE WHEN isnan({x}) OR abs({x}) = CAST('Infinity' AS DOUBLE) THEN NULL ELSE {x} END"


def double_sql(value: float) -> str:
    """A finite double as an exact SQL double literal (the shortest repr round-trips)."""
    return f"{float(value)!r}D"


def continuous_inputs(col: str, alias: str) -> list[Column]:
    """Per-row inputs of one continuous column (`col` quoted), computed in a code-generated projection
    before the aggregations (an expression inside the KLL aggregate is evaluated row by row, uncompiled):
    its finite value, null and NaN flags."""
    x = f"CAST({col} AS DOUBLE)"
    return [F.expr(f"{finite_sql(col)} AS `{alias}__f`"), F.expr(f"CAST({x} IS NULL AS INT) AS `{alias}__isnull`"),
            F.expr(f"CAST(isnan({x}) AS INT) AS `{alias}__isnan`")]


def moment_aggs(alias: str, third: bool = False) -> list[Column]:
    """Declarative aggregates of one continuous column (Spark's code-generated hash aggregate); `third`: also
    the skewness (for the third central moment, `ColumnProfile.m3`)."""
    return [F.expr(f"{fn}(`{alias}__{of}`) AS `{alias}__{name}`")  # SQL text: one Py4J call each (finite_sql)
            for fn, of, name in (("sum", "isnull", "nulls"), ("sum", "isnan", "nan"), ("sum", "f", "sum"),
                                 ("var_pop", "f", "var"), *([("skewness", "f", "skew")] if third else []))]


THIRD_MOMENT_FIELDS = 4  # aggregation buffer fields `skewness` adds: its count, mean, m2 and m3


def bin_count(edges) -> int:
    """Bins of a histogram over `edges` (sorted, distinct): below the first edge, [e0, e1), ..., [e_last-1,
    e_last] (the last closed), above the last; one edge (a constant reference): below, equal, above."""
    return len(edges) + 1 if len(edges) > 1 else 3 if len(edges) == 1 else 0


PACKED = 2  # cumulative counts per long: 32 bits each (a chunk holds at most 2^31 - 1 rows)


def histogram_terms(x: str, edges) -> list[str]:
    """SQL text: per-row longs whose sums over a chunk are its exact histogram in `edges`, packed
    (`histogram_counts` unpacks them). `x` (a column name, quoted) is a finite double or null. The sums
    are cumulative counts, c0 = #(x > -inf) (the finite values), #(x >= e) for the edges but the last, and
    #(x > e_last), two to a long: branch-free comparisons of each value once, in a few aggregation fields
    (a bin index compared with every bin costs 3-4x as much: docs/performance.md, part 14)."""
    inner = [f"{x} >= {double_sql(e)}" for e in edges[:max(len(edges) - 1, 1)]]
    conditions = [f"{x} > CAST('-Infinity' AS DOUBLE)", *inner, f"{x} > {double_sql(edges[-1])}"]
    return [" + ".join(f"shiftleft(CAST({c} AS BIGINT), {32 * k})" if k else f"CAST({c} AS BIGINT)"
                       for k, c in enumerate(conditions[j:j + PACKED]))
            for j in range(0, len(conditions), PACKED)]


def histogram_fields(edges) -> int:
    """The longs `histogram_terms` packs a histogram over `edges` in."""
    return math.ceil(bin_count(edges) / PACKED)


def histogram_counts(sums: list[int | None], edges) -> list[int]:
    """The bin counts (`bin_count` of them) from the sums of `histogram_terms` (None: no value summed)."""
    cumulative = []
    for total in sums:
        total = int(total or 0)
        cumulative += [(total >> (32 * k)) & 0xFFFFFFFF for k in range(PACKED)]
    cumulative = cumulative[:bin_count(edges)]
    return [a - b for a, b in zip(cumulative, cumulative[1:], strict=False)] + [cumulative[-1]]


def kll_agg(alias: str, kll_k: int) -> Column:
    """The KLL sketch of the finite values; it also yields their exact count, min and max (Spark >= 4.1)."""
    native = getattr(F, "kll_sketch_agg_double", None)  # a pyspark < 4.1 client may talk to a 4.1 server
    kll = native(f"{alias}__f", F.lit(kll_k)) if native else F.expr(f"kll_sketch_agg_double(`{alias}__f`, {kll_k})")
    return kll.alias(f"{alias}__kll")


_resolved: set[tuple[str, str, str]] = set()


def resolve_kll_impl(spark: SparkSession, setting: str = "auto") -> str:
    """`native` or `python`: how `profile.kll` (`auto`, `native`, `python`) builds KLL sketches on `spark`.

    `auto` is native when the Spark version the session talks to (`spark.version`: the server's, also
    over Spark Connect) is 4.1 or newer, the first with `kll_sketch_agg_double`; older runtimes (e.g.
    Databricks LTS on Spark 3.5 / 4.0) get the `datasketches` fallback, which writes the same sketches.
    Logs the choice once per process and setting."""
    if setting not in KLL_CHOICES:
        raise ValueError(f"profile.kll '{setting}' is not one of {', '.join(KLL_CHOICES)}")
    version = spark.version
    impl = setting if setting != "auto" else "native" if spark_version(version) >= NATIVE_KLL_SINCE else "python"
    if (version, setting, impl) not in _resolved:
        _resolved.add((version, setting, impl))
        how = "Spark's kll_sketch_agg_double" if impl == "native" else "the datasketches package (pandas UDFs)"
        log.info("KLL sketches: %s (profile.kll: %s, Spark %s)", how, setting, version)
    return impl


def spark_version(version: str) -> tuple[int, int]:
    """(major, minor) of a Spark version string such as '3.5.2' or '4.1.0-SNAPSHOT'."""
    m = re.match(r"\s*(\d+)\.(\d+)", version)
    if not m:
        raise ValueError(f"cannot read the Spark version '{version}'")
    return int(m.group(1)), int(m.group(2))


def python_kll_sketches(inputs: DataFrame, group: list[str], aliases: list[str], kll_k: int) -> DataFrame:
    """`group` and one `<alias>__kll` column per alias: the KLL sketch of the non-null `<alias>__f` values of
    each group of `inputs`, built with the `datasketches` package, for Spark < 4.1 (`kll_agg` there).

    The same sketches as the native aggregate (DataSketches' KllDoublesSketch, compact serialization, same
    k; a group without values gets the empty sketch, as natively) and the same two phases: every input
    partition sketches its rows per group (`mapInPandas`, memory bounded by flushing), then a grouped-
    aggregate pandas UDF merges a group's partial sketches. Raw values are never shuffled and a chunk's
    rows are sketched in parallel, like Spark's partial aggregation."""
    fields = inputs.schema  # one analysis (an RPC over Spark Connect)
    schema = StructType([fields[g] for g in group] + [StructField(f"{a}__kll", BinaryType()) for a in aliases])
    columns = [f"{a}__f" for a in aliases]
    keys = list(group)
    max_sketches = max(1, _PARTIAL_BYTES // (24 * kll_k))  # a KLL sketch holds at most ~3k doubles

    # the functions Spark runs reference only third-party modules, so Python workers need no Driftline
    def flush(sketches: dict[tuple, list]) -> pd.DataFrame:
        out = pd.DataFrame([list(k) for k in sketches], columns=keys)
        for i, name in enumerate(schema.names[len(keys):]):
            out[name] = [sks[i].serialize() for sks in sketches.values()]
        return out

    def partial(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        sketches: dict[tuple, list] = {}
        for pdf in batches:
            values = [pdf[c].to_numpy(dtype=float, na_value=np.nan) for c in columns]
            for key, rows in pdf.groupby(keys, sort=False, dropna=False).indices.items():
                key = key if isinstance(key, tuple) else (key,)
                if key not in sketches:
                    if len(sketches) * len(columns) >= max_sketches:
                        yield flush(sketches)
                        sketches = {}
                    sketches[key] = [ds.kll_doubles_sketch(kll_k) for _ in columns]
                for sk, v in zip(sketches[key], values, strict=True):
                    v = v[rows]
                    v = v[~np.isnan(v)]  # nulls (NaN and inf were mapped to null before)
                    if v.size:
                        sk.update(v)
        if sketches:
            yield flush(sketches)

    @F.pandas_udf("binary")
    def merge(blobs: pd.Series) -> bytes:
        blobs = [bytes(b) for b in blobs if b is not None]
        if len(blobs) == 1:
            return blobs[0]
        sk = ds.kll_doubles_sketch(kll_k)
        for b in blobs:
            sk.merge(ds.kll_doubles_sketch.deserialize(b))
        return sk.serialize()

    partials = inputs.select(*keys, *columns).mapInPandas(partial, schema)
    return partials.groupBy(*keys).agg(*[merge(f"{a}__kll").alias(f"{a}__kll") for a in aliases])



@dataclass
class ColumnProfile:
    """Mergeable state of one column in one chunk (and slice).

    Continuous: counts, exact min/max/mean/m2 (sum of squared deviations) of the finite values, a KLL
    sketch of them. Categorical: the top-N value counts, the rest summed in `other_count`, and an HLL
    sketch of the distinct values (exact `distinct_count` from one pass; HLL estimate after merges).
    """

    column: str
    kind: str
    row_count: int = 0
    null_count: int = 0
    nan_count: int = 0
    inf_count: int = 0
    valid_count: int = 0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    m2: float | None = None
    m3: float | None = None  # sum of cubed deviations, when profiled with the third moment (Doane's bins)
    kll: bytes | None = None
    categories: dict[str, int] = field(default_factory=dict)
    other_count: int = 0
    distinct_count: int = 0
    hll: bytes | None = None
    # continuous: exact counts of the finite values in the bins of `histogram_edges` (the whole reference's
    # edges, `bin_count` bins: below the first edge, the inner bins, above the last), None when not counted
    histogram: list[int] | None = None
    histogram_edges: list[float] | None = None
    # continuous: the exact count and value sum of the finite values per fine bin (monitoring/fine_bins.py)
    # of `fine_bins` (FineBins.to_list()), sparse (the bins holding values), None when not counted
    fine_bins: list[float] | None = None
    fine_index: list[int] | None = None
    fine_counts: list[int] | None = None
    fine_sums: list[float] | None = None

    # ------------------------------------------------------------------ derived statistics
    @property
    def missing_rate(self) -> float | None:
        """Share of rows that are null or NaN."""
        return (self.null_count + self.nan_count) / self.row_count if self.row_count else None

    @property
    def infinite_rate(self) -> float | None:
        """Share of rows that are +-inf (left out of every distribution statistic, like missing values)."""
        return self.inf_count / self.row_count if self.row_count else None

    def sketch(self) -> ds.kll_doubles_sketch | None:
        return ds.kll_doubles_sketch.deserialize(self.kll) if self.kll else None

    def counted_in(self, edges) -> bool:
        """Whether `histogram` holds the exact counts in `edges`."""
        return self.histogram is not None and self.histogram_edges == [float(e) for e in edges]

    def fine_counted_in(self, bins: list[float]) -> bool:
        """Whether the fine-bin fields hold the counts in the fine bins `bins` (`FineBins.to_list()`)."""
        return self.fine_counts is not None and self.fine_bins == bins

    def quantiles(self, ranks: list[float] | np.ndarray) -> np.ndarray:
        sk = self.sketch()
        if sk is None or sk.is_empty():
            return np.full(len(ranks), np.nan)
        return np.asarray(sk.get_quantiles(list(map(float, ranks))))

    # ------------------------------------------------------------------ merging
    def merge(self, other: ColumnProfile, top_n: int | None = None) -> ColumnProfile:
        """The state of the union of both row sets (Chan et al. for the moments)."""
        if (self.column, self.kind) != (other.column, other.kind):
            raise ValueError(f"cannot merge profiles of {self.column}/{self.kind} and {other.column}/{other.kind}")
        n = self.valid_count + other.valid_count
        mean, m2, m3 = self.mean, self.m2, self.m3
        if self.kind == CATEGORICAL:
            mean = m2 = m3 = None
        elif other.valid_count and self.valid_count:
            na, nb = self.valid_count, other.valid_count
            delta = other.mean - self.mean
            mean = self.mean + delta * nb / n
            m2 = self.m2 + other.m2 + delta * delta * na * nb / n
            m3 = None if self.m3 is None or other.m3 is None else (  # Pebay's pairwise update
                self.m3 + other.m3 + delta ** 3 * na * nb * (na - nb) / n ** 2
                + 3 * delta * (na * other.m2 - nb * self.m2) / n)
        elif other.valid_count:
            mean, m2, m3 = other.mean, other.m2, other.m3
        merged = replace(
            self,
            row_count=self.row_count + other.row_count,
            null_count=self.null_count + other.null_count,
            nan_count=self.nan_count + other.nan_count,
            inf_count=self.inf_count + other.inf_count,
            valid_count=n,
            min=_opt(min, self.min, other.min),
            max=_opt(max, self.max, other.max),
            mean=mean,
            m2=m2,
            m3=m3,
            kll=_merge_kll(self.kll, other.kll),
            hll=_merge_hll(self.hll, other.hll),
            **merge_histograms([self, other]),
            **merge_fine([self, other]),
        )
        if self.kind == CATEGORICAL:
            counts = dict(self.categories)
            for value, count in other.categories.items():
                counts[value] = counts.get(value, 0) + count
            kept = top_counts(counts, top_n or max(len(self.categories), len(other.categories), 1))
            merged.categories = kept
            merged.other_count = self.other_count + other.other_count + sum(counts.values()) - sum(kept.values())
            merged.distinct_count = _hll_estimate(merged.hll) if merged.hll else len(counts)
        return merged


def top_counts(counts: dict[str, int], n: int) -> dict[str, int]:
    """The n largest counts (ties broken by value, so the choice is deterministic)."""
    return dict(heapq.nsmallest(n, counts.items(), key=lambda kv: (-kv[1], kv[0])))


def pooled_std(profiles: list[ColumnProfile]) -> float:
    """Population std of the finite values of all `profiles` together, from their moments only."""
    n = mean = m2 = 0.0
    for p in profiles:
        if p.valid_count:
            total = n + p.valid_count
            delta = p.mean - mean
            mean += delta * p.valid_count / total
            m2 += p.m2 + delta * delta * n * p.valid_count / total
            n = total
    return float(np.sqrt(m2 / n)) if n else 0.0


def merge_all(profiles: list[ColumnProfile], top_n: int | None = None) -> ColumnProfile:
    """The union of all `profiles`; categorical counts are summed over every part first and cut to the
    `top_n` largest once (default: as many as the largest part keeps), so the result does not depend on
    the order of the parts (pairwise cuts would drop counts that later parts make large)."""
    if not profiles:
        raise ValueError("nothing to merge")
    out = profiles[0]
    for p in profiles[1:]:
        out = out.merge(p, sys.maxsize)
    if out.kind == CATEGORICAL:
        kept = top_counts(out.categories, top_n or max(len(p.categories) for p in profiles) or 1)
        out = replace(out, categories=kept,
                      other_count=out.other_count + sum(out.categories.values()) - sum(kept.values()))
    return out


def merge_histograms(parts: list[ColumnProfile]) -> dict:
    """`histogram` and `histogram_edges` of the union of `parts`: the summed counts when every part was
    counted in the same bins, else none (a part without counts makes the union's unknown)."""
    first = parts[0]
    if any(not p.counted_in(first.histogram_edges) for p in parts):  # parts[0] first: None edges stop there
        return {"histogram": None, "histogram_edges": None}
    return {"histogram": [sum(counts) for counts in zip(*(p.histogram for p in parts), strict=True)],
            "histogram_edges": first.histogram_edges}


def merge_fine(parts: list[ColumnProfile]) -> dict:
    """The fine-bin fields of the union of `parts`: counts and sums added bin by bin when every part was
    counted in the same fine bins, else none."""
    first = parts[0]
    if any(not p.fine_counted_in(first.fine_bins) for p in parts):
        return {"fine_bins": None, "fine_index": None, "fine_counts": None, "fine_sums": None}
    counts: dict[int, int] = {}
    sums: dict[int, float] = {}
    for p in parts:
        for i, n, s in zip(p.fine_index, p.fine_counts, p.fine_sums, strict=True):
            counts[i] = counts.get(i, 0) + n
            sums[i] = sums.get(i, 0.0) + s
    index = sorted(counts)
    return {"fine_bins": first.fine_bins, "fine_index": index, "fine_counts": [counts[i] for i in index],
            "fine_sums": [sums[i] for i in index]}


def _opt(fn, a, b):
    return b if a is None else a if b is None else fn(a, b)


def _merge_kll(a: bytes | None, b: bytes | None) -> bytes | None:
    if not a or not b:
        return a or b
    sk = ds.kll_doubles_sketch.deserialize(a)
    sk.merge(ds.kll_doubles_sketch.deserialize(b))
    return sk.serialize()


def _merge_hll(a: bytes | None, b: bytes | None) -> bytes | None:
    if not a or not b:
        return a or b
    union = ds.hll_union(HLL_LG_K)
    union.update(ds.hll_sketch.deserialize(a))
    union.update(ds.hll_sketch.deserialize(b))
    return union.get_result(ds.tgt_hll_type.HLL_8).serialize_compact()


def _hll_estimate(blob: bytes) -> int:
    return int(round(ds.hll_sketch.deserialize(blob).get_estimate()))


def kll_rank_error(k: int) -> float:
    """DataSketches' a-priori normalized rank error (99% confidence, single-sided ranks)."""
    return ds.kll_doubles_sketch.get_normalized_rank_error(k, False)
