"""The reference: per-reference-chunk profiles (for thresholds) plus the merged whole-reference state
per slice and column, with the bin edges drift methods use. Stored in the `reference` table."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from monitoring.drift.distributions import WeightedSample, quantile_edges
from monitoring.profile_store import REFERENCE_SCHEMA, state_from_row, state_values
from monitoring.profiling import ChunkProfile
from monitoring.sketches import CONTINUOUS, ColumnProfile, merge_all
from monitoring.slices import WHOLE
from monitoring.tables import replace_rows, table_exists, table_ident

if TYPE_CHECKING:
    from monitoring.pipeline import FittedModels

SliceKey = tuple[str, str]
SCHEMA_PREFIX = ":schema:"  # rows `:schema:<column>` hold the table's schema at fit, the type in column_kind


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


def write_reference(spark: SparkSession, table: str, monitor: str, ref: FittedReference, kll_k: int) -> int:
    """Replace this monitor's rows of the `reference` table by `ref`'s merged states (one commit)."""
    now = datetime.now(timezone.utc)
    rows = [(monitor, key[0], key[1], name, rc.state.kind, rc.chunk_count, *state_values(rc.state, kll_k),
             [float(e) for e in rc.edges] if rc.state.kind == CONTINUOUS else None, ref.source_version,
             ref.signature, now)
            for key, columns in ref.columns.items() for name, rc in columns.items()]
    empty = state_values(ColumnProfile("", ""), kll_k)
    rows += [(monitor, "", "", SCHEMA_PREFIX + name, kind, 0, *empty, None, ref.source_version, ref.signature, now)
             for name, kind in (ref.schema or {}).items()]
    replace_rows(spark, table, spark.createDataFrame(rows, REFERENCE_SCHEMA), {"monitor": monitor})
    return len(rows)


@dataclass(frozen=True)
class StoredReference:
    columns: dict[SliceKey, dict[str, ReferenceColumn]]
    source_version: int | None
    signature: str
    schema: dict[str, str] | None


def read_reference(spark: SparkSession, table: str, monitor: str, exists: bool | None = None) -> StoredReference:
    """The stored merged states of one monitor, its source version, signature and schema."""
    if not table_exists(spark, table, exists):
        return parse_reference([])
    return parse_reference(reference_query(spark, table, monitor).collect())


def reference_query(spark: SparkSession, table: str, monitor: str) -> DataFrame:
    """The stored reference rows of one monitor (for `parse_reference`; the table exists)."""
    return spark.sql(f"SELECT * FROM {table_ident(table)}").where(F.col("monitor") == monitor)


def parse_reference(rows: list) -> StoredReference:
    """The stored reference from the rows of `reference_query` (none: nothing stored)."""
    out: dict[SliceKey, dict[str, ReferenceColumn]] = defaultdict(dict)
    schema = {}
    for r in rows:
        if r["column_name"].startswith(SCHEMA_PREFIX):
            schema[r["column_name"][len(SCHEMA_PREFIX):]] = r["column_kind"]
            continue
        edges = np.asarray(r["bin_edges"] or [], float)
        out[(r["slice_key"], r["slice_value"])][r["column_name"]] = ReferenceColumn(
            ColumnProfile(**state_from_row(r)), edges, int(r["chunk_count"]))
    version = rows[0]["source_version"] if rows else None
    return StoredReference(dict(out), version, rows[0]["signature"] if rows else "", schema or None)
