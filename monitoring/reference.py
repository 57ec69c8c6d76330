"""The reference: per-reference-chunk profiles (for thresholds) plus the merged whole-reference state
per slice and column, with the bin edges drift methods use. Stored in the `reference` table
(monitoring/stores/reference.py)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from monitoring.drift.distributions import WeightedSample, doane_edges, quantile_edges
from monitoring.fine_bins import FineBins
from monitoring.profiling import ChunkProfile
from monitoring.sketches import CONTINUOUS, ColumnProfile, merge_all, merge_fine, merge_histograms
from monitoring.slices import WHOLE

if TYPE_CHECKING:
    from monitoring.pipeline import FittedModels

SliceKey = tuple[str, str]


@dataclass
class ReferenceColumn:
    state: ColumnProfile
    edges: np.ndarray
    chunk_count: int
    fine: FineBins | None = None  # the whole reference's fine bins (Wasserstein), the same in every slice


@dataclass
class FittedReference:
    """Reference chunk profiles and merged states, keyed by slice (WHOLE = the whole table)."""

    chunks: list[ChunkProfile]
    columns: dict[SliceKey, dict[str, ReferenceColumn]] = field(default_factory=dict)
    source_version: int | None = None
    signature: str = ""
    schema: dict[str, str] | None = None  # column -> type of the source table at fit (None: not stored)
    models: FittedModels | None = None  # set by `fit`: its estimation models and PCA, for a run in this process

    def slices(self) -> list[SliceKey]:
        return sorted(self.columns)

    def chunks_of(self, key: SliceKey) -> list[ChunkProfile]:
        return [cp for cp in self.chunks if (cp.slice_key, cp.slice_value) == key]

    def edges(self, key: SliceKey) -> dict[str, np.ndarray]:
        return {c: rc.edges for c, rc in self.columns.get(key, {}).items()}

    def slice_values(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for k, v in self.slices():
            if (k, v) != WHOLE:
                out[k].append(v)
        return dict(out)


def merge_reference(chunks: list[ChunkProfile], bins: int, top_n: int, nannyml: bool = False,
                    fine_bins: int = 0) -> dict[SliceKey, dict[str, ReferenceColumn]]:
    """Merge the chunk states per slice and column; continuous columns get reference-quantile bin edges
    from the concatenated chunk sketches of the whole reference (deterministic, see docs/statistics.md),
    or with `nannyml` (`compatibility: nannyml`) NannyML's Doane bins from its exact moments; the same in
    every slice: the bins a chunk's exact counts are kept in (`bin_edges`). With `fine_bins` (Wasserstein
    is computed) they also get the whole reference's fine bins (`fine_bins_of`; NannyML's with `nannyml`)."""
    grouped = _by_slice_and_column(chunks)
    merged = {key: {name: merge_all(profiles, top_n) for name, profiles in columns.items()}
              for key, columns in grouped.items()}
    whole: dict[str, np.ndarray] = {}
    fine: dict[str, FineBins] = {}
    for name, profiles in grouped.get(WHOLE, {}).items():
        state = merged[WHOLE][name]
        if state.kind != CONTINUOUS:
            continue
        if fine_bins and state.valid_count:
            fine[name] = fine_bins_of(state, fine_bins, nannyml)
        if nannyml and state.valid_count and state.m3 is not None:
            whole[name] = doane_edges(state.valid_count, state.mean, state.m2, state.m3, state.min, state.max)
        else:
            samples = [WeightedSample.from_kll(p.kll, p.mean, (p.min, p.max)) for p in profiles]
            whole[name] = quantile_edges(WeightedSample.concat(samples), bins)
    return {key: {name: ReferenceColumn(merged[key][name], whole.get(name, np.empty(0)), len(profiles),
                                        fine.get(name))
                  for name, profiles in columns.items()}
            for key, columns in grouped.items()}


def fine_bins_of(state: ColumnProfile, bins: int, nannyml: bool = False) -> FineBins:
    """The fine bins of a whole reference's continuous state: `bins` bins equal-width in asinh((x - median) /
    half the interquartile range) between its exact minimum and maximum (the median and quartiles from its
    KLL sketch; the standard deviation when the quartiles coincide), or NannyML's 10,000 equal-width bins."""
    if nannyml:
        return FineBins.nannyml(state.min, state.max)
    q1, median, q3 = (float(q) for q in state.quantiles([0.25, 0.5, 0.75]))
    scale = (q3 - q1) / 2 if q3 > q1 else (float(np.sqrt(state.m2 / state.valid_count)) if state.m2 else 0.0)
    return FineBins.asinh(state.min, state.max, median, scale, bins)


def _by_slice_and_column(chunks: list[ChunkProfile]) -> dict[SliceKey, dict[str, list[ColumnProfile]]]:
    """The column states of `chunks` per slice and column, in chunk order."""
    grouped: dict[SliceKey, dict[str, list[ColumnProfile]]] = defaultdict(lambda: defaultdict(list))
    for cp in chunks:
        for name, p in cp.columns.items():
            grouped[(cp.slice_key, cp.slice_value)][name].append(p)
    return grouped


def bin_edges(columns: dict[SliceKey, dict[str, ReferenceColumn]]) -> dict[str, tuple[float, ...]]:
    """Continuous column -> the whole reference's bin edges: the bins of every chunk's exact counts."""
    return {name: tuple(float(e) for e in rc.edges) for name, rc in columns.get(WHOLE, {}).items()
            if rc.state.kind == CONTINUOUS and len(rc.edges)}


def fine_bins(columns: dict[SliceKey, dict[str, ReferenceColumn]]) -> dict[str, FineBins]:
    """Continuous column -> the whole reference's fine bins (columns without any: none)."""
    return {name: rc.fine for name, rc in columns.get(WHOLE, {}).items() if rc.fine is not None}


def counted(chunks: list[ChunkProfile], edges: dict[str, tuple[float, ...]],
            fine: dict[str, FineBins] | None = None) -> bool:
    """Whether every continuous column of `chunks` with edges holds exact counts in those edges (and, with
    fine bins, its counts in them)."""
    bins = {name: spec.to_list() for name, spec in (fine or {}).items()}
    return all(p.counted_in(edges[name])
               for cp in chunks for name, p in cp.columns.items() if name in edges and p.valid_count) and all(
        p.fine_counted_in(bins[name]) for cp in chunks for name, p in cp.columns.items() if name in bins)


def add_histograms(columns: dict[SliceKey, dict[str, ReferenceColumn]], chunks: list[ChunkProfile]) -> None:
    """Set the merged states' exact counts: their chunks' summed (counted after the edges were known)."""
    parts = _by_slice_and_column(chunks)
    for key, cols in columns.items():
        for name, rc in cols.items():
            if rc.state.kind == CONTINUOUS and parts[key][name]:
                counts, sums = merge_histograms(parts[key][name]), merge_fine(parts[key][name])
                rc.state = replace(rc.state, **(counts if counts["histogram"] is not None else {}),
                                   **(sums if sums["fine_counts"] is not None else {}))
