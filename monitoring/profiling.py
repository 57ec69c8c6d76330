"""The Spark pass: per chunk, every monitored column's sketch state.

Three aggregations over the chunked rows, collected as one union (one Spark job without adaptive
execution, whatever the number of columns or chunks): counts and moments of continuous columns (Spark's
code-generated hash aggregate; past its field limit, over stacked groups of columns, `SlotLayout`), their
KLL sketches (an object aggregate: mixing declarative aggregates into it makes them run uncompiled,
several times slower, see docs/performance.md; on Spark < 4.1 the
same sketches from the `datasketches` package in pandas UDFs, `kll_impl="python"`), and categorical
value counts grouped by chunk x column x value with the top-N kept per chunk and column inside Spark;
the same value counts, with the prediction id as one more column, give the duplicate ids of a chunk
(rows beyond the first per prediction id).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, IntegralType, StringType

from monitoring.chunking import CHUNK_COL, ChunkInfo, period_chunk, utc_from_micros
from monitoring.config import Chunking
from monitoring.errors import DataError
from monitoring.fine_bins import FineBins
from monitoring.performance.state import PerformanceState
from monitoring.session import session_conf
from monitoring.sketches import (
    CATEGORICAL,
    CONTINUOUS,
    HLL_LG_K,
    KLL_IMPLS,
    THIRD_MOMENT_FIELDS,
    ColumnProfile,
    continuous_inputs,
    finite_sql,
    histogram_counts,
    histogram_fields,
    histogram_terms,
    kll_agg,
    moment_aggs,
    python_kll_sketches,
    top_counts,
)
from monitoring.slices import SLICE_KEY, SLICE_VALUE, WHOLE
from monitoring.stores.tables import collect_union, quote_part

GROUP = [CHUNK_COL, SLICE_KEY, SLICE_VALUE]
DUPLICATE_IDS = "duplicate:ids"  # key in ChunkProfile.sums: rows beyond the first per prediction id


@dataclass
class ChunkProfile:
    """All column states of one chunk (and slice)."""

    chunk: ChunkInfo
    row_count: int
    columns: dict[str, ColumnProfile] = field(default_factory=dict)
    slice_key: str = ""
    slice_value: str = ""
    performance: PerformanceState | None = None
    # per-chunk sums of row expressions (failed-prediction checks, reconstruction errors), None when none
    sums: dict[str, float] | None = None
    id_range: tuple[str, str] | None = None  # smallest and largest prediction id, as text (with `id_col`)
    dataset: str = ""  # the dataset of a shared scan (`profile_chunks(by=...)`) the chunk belongs to
    # not None: the sketches (KLL, HLL) and sums were left in the profiles table (a light read; the run reads
    # them back for the chunks it compares: stores.profiles.load_states) and this is `columns_digest()`
    digest: bytes | None = None

    @property
    def loaded(self) -> bool:
        """Whether the column states are whole (not left in the table by a light read)."""
        return self.digest is None

    def columns_digest(self) -> bytes:
        """Digest of the chunk's column states and sums (what drift and data quality read), stored with
        them so a run compares a stored chunk's states without reading its sketches back."""
        if self.digest is not None:
            return self.digest
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((self.chunk.index, self.chunk.start, self.chunk.end, self.row_count,
                       sorted((self.sums or {}).items()))).encode())
        for name in sorted(self.columns):
            p = self.columns[name]
            h.update(repr((name, p.kind, p.row_count, p.null_count, p.nan_count, p.inf_count, p.valid_count, p.min,
                           p.max, p.mean, p.m2, p.m3, sorted(p.categories.items()), p.other_count,
                           p.distinct_count)).encode())
            h.update(repr((p.histogram, p.histogram_edges, p.fine_bins, p.fine_index, p.fine_counts,
                           p.fine_sums)).encode())
            h.update(p.kll or b"")
            h.update(p.hll or b"")
        return h.digest()


class ProfiledChunks(list):
    """The chunk profiles of one profiling pass (a list, in (index, slice) order), `null_timestamps`, the
    rows it found without a timestamp, and `outside`, the rows whose timestamp is outside the chunking's
    window (`chunking.timestamp_window`; both 0 unless the rows were chunked with `keep_null_ts`)."""

    def __init__(self, chunks: list[ChunkProfile], null_timestamps: int = 0, outside: int = 0,
                 also: dict[str, list[dict]] | None = None) -> None:
        super().__init__(chunks)
        self.null_timestamps = null_timestamps
        self.outside = outside
        self.also = also or {}  # the rows of `profile_chunks(also=...)`


def profile_chunks(df: DataFrame, columns: list[tuple[str, str]], chunking: Chunking, ts_col: str,
                   kll_k: int, top_n: int, kll_impl: str = "native",
                   sums: dict[str, Column] | None = None, id_col: str | None = None,
                   by: str | None = None, also: dict[str, DataFrame] | None = None,
                   histograms: dict[str, tuple[float, ...]] | None = None,
                   third_moment: bool = False, fine: dict[str, FineBins] | None = None) -> ProfiledChunks:
    """Profile every column of `df` per chunk and slice (`df` holds CHUNK_COL, SLICE_KEY and SLICE_VALUE,
    see `monitoring.slices.with_slices`); returns chunks in (index, slice) order. `kll_impl`: `native`
    (Spark >= 4.1) or `python` (`monitoring.sketches.resolve_kll_impl` picks one from `profile.kll`).
    `sums`: name -> numeric row expression; each chunk holds their sums (nulls skipped) in `sums`, with
    DUPLICATE_IDS when `id_col` is given. `by`: a column of `df` naming the dataset of each row (a scan
    shared by the reference and the analysis); chunks are then profiled per dataset, in `dataset`. `also`:
    small frames (name -> frame) collected by the same query, their rows returned in `also`. `histograms`:
    continuous column -> the reference's bin edges; their chunks get exact bin counts (`ColumnProfile.histogram`),
    counted in the moments' compiled aggregation. `third_moment`: continuous profiles get `m3` too. `fine`:
    continuous column -> the reference's fine bins (monitoring/fine_bins.py); their chunks get the exact count
    and sum per fine bin (`_fine_counts`, in the same query)."""
    if kll_impl not in KLL_IMPLS:
        raise ValueError(f"kll_impl '{kll_impl}' is not one of {', '.join(KLL_IMPLS)} (resolve_kll_impl resolves auto)")
    continuous = [c for c, k in columns if k == CONTINUOUS]
    categorical = [c for c, k in columns if k == CATEGORICAL]
    group = GROUP + ([by] if by else [])
    micros = F.unix_micros(F.col(quote_part(ts_col)).cast("timestamp"))
    aliases = [f"c{i}" for i in range(len(continuous))]
    sums = sums or {}
    summed = [e.cast("double").alias(f"_dl_sum{i}") for i, e in enumerate(sums.values())]
    ids = [F.col(quote_part(id_col)).alias("_dl_id")] if id_col else []
    per_row = [*group, micros.alias("_dl_ts"), *summed, *ids]
    inputs = df.select(*per_row, *[c for name, a in zip(continuous, aliases, strict=True)
                                   for c in continuous_inputs(quote_part(name), a)])
    # the id range: a min and max of text is no hash-aggregate buffer (it would sort the rows), so a text id
    # goes with the KLL sketches' object aggregate, which takes any buffer
    text_id = bool(id_col) and isinstance(df.schema[id_col].dataType, (StringType, BinaryType))
    in_kll = text_id and bool(continuous) and kll_impl == "native"
    id_range = [F.min("_dl_id").alias("_dl_id_lo"), F.max("_dl_id").alias("_dl_id_hi")] if id_col else []
    per_chunk = [F.count(F.lit(1)).alias("rows"), F.count("_dl_ts").alias("ts_n"), F.min("_dl_ts").alias("ts_min"),
                 F.max("_dl_ts").alias("ts_max"), *([] if in_kll else id_range),
                 *[F.sum(f"_dl_sum{i}").alias(f"_dl_sum{i}") for i in range(len(sums))]]
    bins = Bins.of(continuous, histograms)
    moments, layout = _moments(df, inputs, group, per_row, continuous, per_chunk, bins, third=third_moment)
    placed = F.col(CHUNK_COL).isNotNull()
    parts = {"m": moments}
    if continuous:
        parts["k"] = _kll_sketches(inputs.where(placed), group, aliases, kll_k, kll_impl, id_range if in_kll else [])
    if categorical or id_col:
        parts["v"] = _value_counts(df.where(placed), group, categorical, top_n, id_col)
    finely = _fine_entries(continuous, fine)
    if finely:
        parts["f"] = _fine_counts(df.where(placed), group, finely)
    also = {f"also:{name}": frame for name, frame in (also or {}).items()}
    with bins.session(df.sparkSession):
        found = {name: [] for name in ("m", "k", "v", "f")} | collect_union(parts | also)
    if layout.groups > 1:
        found["m"] = layout.unstack(found["m"], group)
    # rows without a timestamp or outside the window (kept by `with_chunk_index(keep_null_ts=True)`) form the
    # null chunk: counted here, left out of everything else
    unplaced = [r for r in found["m"] if r[CHUNK_COL] is None and (r[SLICE_KEY], r[SLICE_VALUE]) == WHOLE]
    outside = sum(int(r["ts_n"]) for r in unplaced)
    null_ts = sum(int(r["rows"]) for r in unplaced) - outside
    moments = [r for r in found["m"] if r[CHUNK_COL] is not None]
    sketches = {_key(r, by): r for r in found["k"]}

    # a chunk's bounds come from the whole table, so every slice of a chunk shares them
    infos = {int(r[CHUNK_COL]): period_chunk(chunking.period, int(r[CHUNK_COL])) if chunking.period else ChunkInfo(
        int(r[CHUNK_COL]), f"chunk-{r[CHUNK_COL]}", utc_from_micros(r["ts_min"]), utc_from_micros(r["ts_max"]))
        for r in moments if (r[SLICE_KEY], r[SLICE_VALUE]) == WHOLE}
    chunks: dict[tuple[int, str, str, str], ChunkProfile] = {}
    for r in moments:
        key = _key(r, by)
        cp = ChunkProfile(infos[key[0]], int(r["rows"]), slice_key=key[1], slice_value=key[2], dataset=key[3])
        if sums:
            cp.sums = {name: float(r[f"_dl_sum{i}"] or 0.0) for i, name in enumerate(sums)}
        if id_col:
            lo, hi = (sketches[key] if in_kll else r)["_dl_id_lo"], (sketches[key] if in_kll else r)["_dl_id_hi"]
            cp.id_range = (str(lo), str(hi)) if lo is not None else None
        for i, name in enumerate(continuous):
            cp.columns[name] = _continuous_profile(name, r, sketches[key], f"c{i}", cp.row_count)
            bins.apply(cp.columns[name], r, i)
        chunks[key] = cp

    duplicates: dict[tuple[int, str, str, str], int] = {}
    _set_fine(chunks, continuous, fine, found["f"], by)
    for r in found["v"]:
        if r["i"] == ID_ENTRY:
            duplicates[_key(r, by)] = int(r["other"] or 0)
            continue
        name = categorical[r["i"]]
        chunk = chunks[_key(r, by)]
        chunk.columns[name] = ColumnProfile(
            column=name, kind=CATEGORICAL, row_count=chunk.row_count, null_count=int(r["nulls"]),
            valid_count=chunk.row_count - int(r["nulls"]),
            categories=top_counts({k: int(v) for k, v in (r["top"] or {}).items()}, top_n),
            other_count=int(r["other"] or 0), distinct_count=int(r["distinct"]), hll=r["hll"])
    if id_col is not None:
        for key, cp in chunks.items():
            cp.sums = (cp.sums or {}) | {DUPLICATE_IDS: float(duplicates.get(key, 0))}
    _empty_fine(chunks.values(), finely)
    return ProfiledChunks([chunks[k] for k in sorted(chunks)], null_ts, outside,
                          {name.removeprefix("also:"): found[name] for name in also})


HISTOGRAM_MAX_FIELDS = 200  # spark.sql.codegen.maxFields of a pass with exact histograms (see Bins)


@dataclass(frozen=True)
class Bins:
    """The exact histograms of a profiling pass: per continuous column (by position) its reference edges, or
    None. Each column's per-row packed cumulative counts (`sketches.histogram_terms`, `c<i>__h<m>`) are
    summed in the moments' compiled aggregation: 6 more fields per column for 10 bins. Spark compiles an
    aggregation of at most `spark.sql.codegen.maxFields` (100) fields and runs a wider one uncompiled,
    several times slower; 13 columns' moments and counts (~170 fields) compile as one aggregation under
    HISTOGRAM_MAX_FIELDS (measured, docs/performance.md part 14), more columns are stacked in groups."""

    edges: tuple[tuple[float, ...] | None, ...]

    @classmethod
    def of(cls, continuous: list[str], histograms: dict[str, tuple[float, ...]] | None) -> Bins:
        histograms = histograms or {}
        return cls(tuple(tuple(histograms[c]) if histograms.get(c) is not None and len(histograms[c]) else None
                         for c in continuous))

    @property
    def fields(self) -> int:
        """The most aggregation fields of a column (every slot of a stacked layout sums this many)."""
        return max((histogram_fields(e) for e in self.edges if e is not None), default=0)

    def terms(self, i: int, x: str) -> list[str]:
        """SQL text: column `i`'s packed per-row counts of the finite double `x` (quoted)."""
        e = self.edges[i]
        return [] if e is None else histogram_terms(x, e)

    def raw(self, df: DataFrame, continuous: list[str]) -> DataFrame:
        """`df` with each counted column's packed counts `_dl_h<i>_<m>` of its raw value (a stacked layout)."""
        if not self.fields:
            return df
        finite = [F.expr(f"{finite_sql(quote_part(c))} AS `_dl_x{i}`") for i, (c, e) in
                  enumerate(zip(continuous, self.edges, strict=True)) if e is not None]
        return df.select("*", *finite).select("*", *[F.expr(f"{t} AS `_dl_h{i}_{m}`") for i in range(len(self.edges))
                                                    for m, t in enumerate(self.terms(i, f"`_dl_x{i}`"))])

    def limit(self, spark) -> int:
        """The field limit the pass's aggregation is laid out for and runs with (`session`)."""
        limit = int(spark.conf.get("spark.sql.codegen.maxFields", "100"))
        return max(limit, HISTOGRAM_MAX_FIELDS) if self.fields else limit

    def session(self, spark):
        """The pass's session setting: the field limit of `limit` while it runs (nothing without counts)."""
        if not self.fields:
            return contextlib.nullcontext()
        return session_conf(spark, "spark.sql.codegen.maxFields", str(self.limit(spark)))

    def apply(self, p: ColumnProfile, r: dict, i: int) -> None:
        """Set the counts of column `i` on its profile from an aggregated row."""
        e = self.edges[i]
        if e is not None and int(r["rows"]) >= 2 ** 31:  # a 32-bit packed count would overflow
            raise DataError(f"chunk {r[CHUNK_COL]} holds {int(r['rows']):,} rows, more than the 2^31 - 1 its exact "
                            f"histograms (column '{p.column}') can count; cut the table into smaller chunks "
                            "(chunking.period or chunking.size)")
        if e is not None:
            p.histogram = histogram_counts([r[f"c{i}__h{m}"] for m in range(histogram_fields(e))], e)
            p.histogram_edges = list(e)


def _moments(df: DataFrame, inputs: DataFrame, group: list[str], per_row: list[Column], continuous: list[str],
             per_chunk: list[Column], bins: Bins, moments: bool = True,
             third: bool = False) -> tuple[DataFrame, SlotLayout]:
    """The code-generated aggregation per chunk: `per_chunk`, the moments of every continuous column (unless
    not `moments`; `third`: with the skewness) and the counts of `bins`, in one compiled aggregation or
    stacked groups (`SlotLayout`)."""
    per_column = (MOMENT_FIELDS + (THIRD_MOMENT_FIELDS if third else 0) if moments else 0) + bins.fields
    layout = SlotLayout.fit(len(continuous), len(group) + 1 + len(per_chunk), bins.limit(df.sparkSession),
                            max(1, per_column))

    def aggs(alias: str, terms: list[str]) -> list[Column]:
        return [*(moment_aggs(alias, third) if moments else []),
                *[F.expr(f"sum({t}) AS `{alias}__h{m}`") for m, t in enumerate(terms)]]

    if layout.groups == 1:  # the terms inside the sums, over the finite value computed once below them
        return inputs.groupBy(*group).agg(*per_chunk, *[m for i in range(len(continuous))
                                                        for m in aggs(f"c{i}", bins.terms(i, f"`c{i}__f`"))]), layout
    counted = [[f"_dl_h{i}_{m}" for m in range(histogram_fields(e))] if e else []
               for i, e in enumerate(bins.edges)]
    slots = bins.raw(df, continuous).select(*per_row, layout.stack(continuous, counted, bins.fields)).select(
        "*", *[c for j in range(layout.size) for c in continuous_inputs(f"`s{j}`", f"s{j}")],
        *[F.col(f"h{j}_{m}").alias(f"s{j}__h{m}") for j in range(layout.size) for m in range(bins.fields)])
    return slots.groupBy(*group, SLOT_GROUP).agg(*per_chunk, *[
        m for j in range(layout.size) for m in aggs(f"s{j}", [f"`s{j}__h{k}`" for k in range(bins.fields)])]), layout


def count_bins(df: DataFrame, columns: list[tuple[str, str]], histograms: dict[str, tuple[float, ...]],
               chunks: list[ChunkProfile], by: str | None = None, fine: dict[str, FineBins] | None = None) -> None:
    """Exact bin counts (and the fine bins' counts and sums, `fine`) of the continuous `columns` of `chunks`
    (profiled before the edges were known: the reference at fit) from one query over `df` (chunked rows, as
    profiled), set on their profiles."""
    continuous = [c for c, k in columns if k == CONTINUOUS]
    bins = Bins.of(continuous, histograms)
    finely = _fine_entries(continuous, fine)
    if not (bins.fields or finely) or not chunks:
        return
    group = GROUP + ([by] if by else [])
    placed = df.where(F.col(CHUNK_COL).isNotNull())
    per_row = [F.col(quote_part(g)) for g in group]
    frames = {}
    if bins.fields:
        inputs = placed.select(*per_row, *[F.expr(f"{finite_sql(quote_part(c))} AS `c{i}__f`")
                                           for i, c in enumerate(continuous)])
        frames["h"], layout = _moments(placed, inputs, group, per_row, continuous,
                                       [F.count(F.lit(1)).alias("rows")], bins, moments=False)
    if finely:
        frames["f"] = _fine_counts(placed, group, finely)
    with bins.session(df.sparkSession):
        found = {"h": [], "f": []} | collect_union(frames)
    if bins.fields and layout.groups > 1:
        found["h"] = layout.unstack(found["h"], group)
    counted = {_key(r, by): r for r in found["h"]}
    by_chunk = {(cp.chunk.index, cp.slice_key, cp.slice_value, cp.dataset if by else ""): cp for cp in chunks}
    _set_fine(by_chunk, continuous, fine, found["f"], by)
    for key, cp in by_chunk.items():
        r = counted.get(key)
        if r is None:  # a chunk the rows no longer hold: no counts rather than zeros
            continue
        for i, name in enumerate(continuous):
            if name in cp.columns:
                bins.apply(cp.columns[name], r, i)
    _empty_fine(chunks, finely)


SLOT_GROUP = "_dl_g"
MOMENT_FIELDS = 6  # aggregation buffer fields of `moment_aggs`: three sums, and var_pop's count, mean and m2
_SLOT = re.compile(r"s(\d+)__(\w+)")


@dataclass(frozen=True)
class SlotLayout:
    """How the moments of many continuous columns fit Spark's code generation: `groups` groups of `size`
    slots. Past `spark.sql.codegen.maxFields` aggregation fields (about 15 columns) Spark runs the aggregate
    uncompiled, and var_pop alone then costs more than all the KLL sketches (docs/performance.md, part 9);
    so each row is stacked into `groups` rows of `size` columns (one `inline`, no second scan) and the
    moments are aggregated per chunk and group, compiled. One group: the columns as they are."""

    columns: int
    groups: int
    size: int

    @classmethod
    def fit(cls, columns: int, fixed: int, max_fields: int, per_column: int = MOMENT_FIELDS) -> SlotLayout:
        """The fewest groups whose aggregation has at most `max_fields` fields, `fixed` of them not the
        `per_column` fields of each column."""
        groups = max(1, math.ceil(columns / max(1, (max_fields - fixed) // per_column)))
        return cls(columns, groups, math.ceil(columns / groups))

    def stack(self, names: list[str], counted: list[list[str]] | None = None, fields: int = 0) -> Column:
        """The generator of one row per group: SLOT_GROUP and slots `s0`.. as doubles (nulls past the end);
        with `counted` (per column, the names of its packed histogram counts), also `h<j>_<m>` for m < `fields`
        (longs, null where a column has fewer)."""
        def slot(i: int) -> Column:
            return F.col(quote_part(names[i])).cast("double") if i < self.columns else F.lit(None).cast("double")

        def count(i: int, m: int) -> Column:
            has = counted is not None and i < self.columns and m < len(counted[i])
            return F.col(counted[i][m]) if has else F.lit(None).cast("long")

        return F.inline(F.array(*[
            F.struct(F.lit(g).alias(SLOT_GROUP), *[slot(g * self.size + j).alias(f"s{j}") for j in range(self.size)],
                     *[count(g * self.size + j, m).alias(f"h{j}_{m}") for j in range(self.size) for m in range(fields)])
            for g in range(self.groups)]))

    def unstack(self, rows: list[dict], group: list[str]) -> list[dict]:
        """One dict per chunk key from its groups' rows: slot `s<j>__<m>` of group g becomes `c<g*size+j>__<m>`;
        the per-chunk aggregates are the same in every group (each row is in each group once)."""
        merged: dict[tuple, dict] = {}
        for r in rows:
            values = dict(r)
            g = values.pop(SLOT_GROUP)
            out = merged.setdefault(tuple(values[c] for c in group), {})
            for name, value in values.items():
                m = _SLOT.fullmatch(name)
                if m is None:
                    out.setdefault(name, value)
                elif (i := g * self.size + int(m[1])) < self.columns:
                    out[f"c{i}__{m[2]}"] = value
        return list(merged.values())


def _kll_sketches(inputs: DataFrame, group: list[str], aliases: list[str], kll_k: int, kll_impl: str,
                  extra: list[Column]) -> DataFrame:
    if kll_impl == "python":
        return python_kll_sketches(inputs, group, aliases, kll_k)
    return inputs.groupBy(*group).agg(*[kll_agg(a, kll_k) for a in aliases], *extra)


def _key(r, by: str | None) -> tuple[int, str, str, str]:
    return int(r[CHUNK_COL]), r[SLICE_KEY], r[SLICE_VALUE], r[by] if by else ""


def _continuous_profile(name: str, r, sketch_row, alias: str, row_count: int) -> ColumnProfile:
    kll = sketch_row[f"{alias}__kll"]
    nulls, nan = int(r[f"{alias}__nulls"]), int(r[f"{alias}__nan"])
    nonnull = row_count - nulls
    p = ColumnProfile(column=name, kind=CONTINUOUS, row_count=row_count, null_count=nulls,
                      nan_count=nan, kll=bytes(kll) if kll is not None else None)
    sk = p.sketch()
    n = int(sk.n) if sk is not None else 0
    p.valid_count, p.inf_count = n, nonnull - nan - n
    if n:
        p.min, p.max = float(sk.get_min_value()), float(sk.get_max_value())
        p.mean = float(r[f"{alias}__sum"]) / n
        p.m2 = float(r[f"{alias}__var"]) * n
        if f"{alias}__skew" in r:  # Spark's skewness is sqrt(n) m3 / m2^1.5 (null or NaN when m2 = 0)
            skew = r[f"{alias}__skew"]
            p.m3 = float(skew) * p.m2 ** 1.5 / math.sqrt(n) if skew is not None and p.m2 > 0 and \
                math.isfinite(skew) else 0.0
    return p


ID_ENTRY = -1  # the value-count entry of the prediction id, for the duplicate-id count


def _fine_entries(continuous: list[str], fine: dict[str, FineBins] | None) -> list[tuple[int, str, FineBins]]:
    """(position, column, fine bins) of the continuous columns counted in fine bins."""
    return [(j, c, fine[c]) for j, c in enumerate(continuous) if fine and fine.get(c) is not None]


def _empty_fine(chunks, finely: list[tuple[int, str, FineBins]]) -> None:
    """Empty fine bins for the counted columns of `chunks` without a finite value (no aggregated row)."""
    for cp in chunks:
        for _, name, spec in finely:
            p = cp.columns.get(name)
            if p is not None and p.fine_counts is None and p.valid_count == 0:
                p.fine_bins, p.fine_index, p.fine_counts, p.fine_sums = spec.to_list(), [], [], []


def _set_fine(chunks: dict[tuple[int, str, str, str], ChunkProfile], continuous: list[str],
              fine: dict[str, FineBins], rows: list[dict], by: str | None) -> None:
    """Set the fine-bin counts and sums of `chunks`' continuous profiles from `_fine_counts` rows."""
    found: dict[tuple, list[tuple[int, int, float]]] = {}
    for r in rows:
        found.setdefault((_key(r, by), int(r["i"])), []).append((int(r["k"]), int(r["n"]), float(r["s"])))
    for (key, j), bins in found.items():
        cp = chunks.get(key)
        if cp is None or continuous[j] not in cp.columns:
            continue
        p = cp.columns[continuous[j]]
        bins.sort()
        p.fine_bins = fine[p.column].to_list()
        p.fine_index, p.fine_counts, p.fine_sums = (list(v) for v in zip(*bins, strict=True))


def _fine_counts(df: DataFrame, group: list[str], finely: list[tuple[int, str, FineBins]]) -> DataFrame:
    """One aggregation of the finite values of the `finely` columns by chunk x slice x column (`i`, its position
    among the continuous columns) x fine bin (`k`): count `n` and sum `s`. Its own aggregation over numeric keys
    (inside the value counts' aggregation it cost more: docs/performance.md part 15)."""
    rows = df.select(*group, *[F.expr(f"{finite_sql(quote_part(name))} AS `_dl_fine{j}`") for j, name, _ in finely])
    entries = ", ".join(f"{j}, CAST({spec.sql(f'`_dl_fine{j}`')} AS INT), `_dl_fine{j}`" for j, _, spec in finely)
    return (rows.selectExpr(*[f"`{g}`" for g in group], f"stack({len(finely)}, {entries}) AS (i, k, x)")
            .where(F.col("k").isNotNull())
            .groupBy(*group, "i", "k").agg(F.count(F.lit(1)).alias("n"), F.sum("x").alias("s")))


def _value_counts(df: DataFrame, group: list[str], categorical: list[str], top_n: int,
                  id_col: str | None) -> DataFrame:
    """One aggregation of value counts by chunk x slice x column x value, then per chunk x slice x column
    (`i`, the column's position): top-N value counts as a map, the rest's total, nulls, the exact number of
    distinct values and an HLL sketch of them (for merges); with `id_col` also, as column ID_ENTRY, the
    rows beyond the first of each non-null prediction id in `other` (duplicate ids). Both branches read
    the same shuffled counts (Spark reuses the exchange): one scan."""
    # an integral id travels as a long in `k`: cheaper to hash and shuffle than its text (docs/performance.md)
    integral = bool(id_col) and isinstance(df.schema[id_col].dataType, IntegralType)
    no_key = F.lit(None).cast("long")
    pairs = F.explode(F.array(*[
        F.struct(F.lit(i).alias("i"), F.col(quote_part(name)).cast("string").alias("v"), no_key.alias("k"))
        for i, name in enumerate(categorical)
    ] + ([F.struct(F.lit(ID_ENTRY).alias("i"),
                   (F.lit(None) if integral else F.col(quote_part(id_col))).cast("string").alias("v"),
                   (F.col(quote_part(id_col)) if integral else no_key).cast("long").alias("k"))]
         if id_col else []))).alias("kv")
    counts = (df.select(*group, pairs).select(*group, "kv.i", "kv.v", "kv.k")
              .groupBy(*group, "i", "v", "k").agg(F.count(F.lit(1)).alias("n"),
                                                  # an aggregate, not the grouping key: a filter on it is not
                                                  # pushed below the aggregation, so both branches share it
                                                  # (1: a non-null id, 2: the null id, 0: a column's value)
                                                  F.max(F.when(F.col("i") != ID_ENTRY, 0)
                                                        .when(F.col("v").isNull() & F.col("k").isNull(), 2)
                                                        .otherwise(1)).alias("entry")))
    values = counts.where(F.col("entry") == 0)
    order = Window.partitionBy(*group, "i").orderBy(F.col("v").isNull(), F.desc("n"), F.asc("v"))
    ranked = values.withColumn("rank", F.row_number().over(order))
    is_value = F.col("v").isNotNull()
    kept = is_value & (F.col("rank") <= top_n)
    out = ranked.groupBy(*group, "i").agg(
        F.map_from_entries(F.collect_list(F.when(kept, F.struct("v", "n")))).alias("top"),
        F.sum(F.when(is_value & ~kept, F.col("n"))).alias("other"),
        F.coalesce(F.sum(F.when(~is_value, F.col("n"))), F.lit(0)).alias("nulls"),
        F.count("v").alias("distinct"),
        F.hll_sketch_agg("v", F.lit(HLL_LG_K)).alias("hll"),
    )
    if id_col is None:
        return out
    dupes = counts.where((F.col("entry") == 1) & (F.col("n") > 1)) \
        .groupBy(*group, "i").agg(F.sum(F.col("n") - 1).alias("other"))
    return out.unionByName(dupes, allowMissingColumns=True)
