"""The reference: per-reference-chunk profiles (for thresholds) plus the merged whole-reference state
per slice and column, with the bin edges drift methods use. Stored in the `reference` table
(monitoring/stores/reference.py)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from monitoring.drift.distributions import WeightedSample, quantile_edges
from monitoring.profiling import ChunkProfile
from monitoring.sketches import CONTINUOUS, ColumnProfile, merge_all
from monitoring.slices import WHOLE

if TYPE_CHECKING:
    from monitoring.pipeline import FittedModels

SliceKey = tuple[str, str]


@dataclass
class ReferenceColumn:
    state: ColumnProfile
    edges: np.ndarray
    chunk_count: int


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


def merge_reference(chunks: list[ChunkProfile], bins: int, top_n: int) -> dict[SliceKey, dict[str, ReferenceColumn]]:
    """Merge the chunk states per slice and column; continuous columns get reference-quantile bin edges
    from the concatenated chunk sketches (deterministic, see docs/statistics.md)."""
    grouped: dict[SliceKey, dict[str, list[ColumnProfile]]] = defaultdict(lambda: defaultdict(list))
    for cp in chunks:
        for name, p in cp.columns.items():
            grouped[(cp.slice_key, cp.slice_value)][name].append(p)
    out: dict[SliceKey, dict[str, ReferenceColumn]] = {}
    for key, columns in grouped.items():
        out[key] = {}
        for name, profiles in columns.items():
            edges = np.empty(0)
            if profiles[0].kind == CONTINUOUS:
                samples = [WeightedSample.from_kll(p.kll, p.mean, (p.min, p.max)) for p in profiles]
                edges = quantile_edges(WeightedSample.concat(samples), bins)
            out[key][name] = ReferenceColumn(merge_all(profiles, top_n), edges, len(profiles))
    return out
