"""The `reference` table: one row per monitor x slice x column with the merged state and bin edges, plus
rows `:schema:<column>` holding the source table's schema at fit."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from monitoring.fine_bins import FineBins
from monitoring.reference import FittedReference, ReferenceColumn, SliceKey
from monitoring.sketches import CONTINUOUS, ColumnProfile
from monitoring.stores.profiles import REFERENCE_SCHEMA, state_from_row, state_values, with_missing
from monitoring.stores.tables import replace_rows, table_exists, table_ident

SCHEMA_PREFIX = ":schema:"  # rows `:schema:<column>` hold the table's schema at fit, the type in column_kind


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
    return with_missing(spark.sql(f"SELECT * FROM {table_ident(table)}").where(F.col("monitor") == monitor),
                        REFERENCE_SCHEMA)


def parse_reference(rows: list) -> StoredReference:
    """The stored reference from the rows of `reference_query` (none: nothing stored)."""
    out: dict[SliceKey, dict[str, ReferenceColumn]] = defaultdict(dict)
    schema = {}
    for r in rows:
        if r["column_name"].startswith(SCHEMA_PREFIX):
            schema[r["column_name"][len(SCHEMA_PREFIX):]] = r["column_kind"]
            continue
        edges = np.asarray(r["bin_edges"] or [], float)
        state = ColumnProfile(**state_from_row(r))
        out[(r["slice_key"], r["slice_value"])][r["column_name"]] = ReferenceColumn(
            state, edges, int(r["chunk_count"]), FineBins.from_list(state.fine_bins))
    version = rows[0]["source_version"] if rows else None
    return StoredReference(dict(out), version, rows[0]["signature"] if rows else "", schema or None)
