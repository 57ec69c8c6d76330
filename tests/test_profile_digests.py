"""A run reads the stored sketches and performance values of only the chunks it compares
(monitoring/stores/profiles.py): each `:performance` row stores the digest of its values and each column
row the digest of its chunk's column states; a light read leaves the values and sketches in the table and
gives those digests (the values' equal to a digest computed independently), `load_states` reads them back
exactly, a table written before the `digest` column is read whole, and a state whose values or sketches
were not read cannot be written back."""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from monitoring.chunking import ChunkInfo
from monitoring.performance.state import PerformanceState
from monitoring.profiling import ChunkProfile
from monitoring.sketches import CONTINUOUS, ColumnProfile
from monitoring.stores.profiles import (
    PROFILE_SCHEMA,
    load_states,
    parse_profiles,
    profiles_query,
    write_profiles,
)

START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _chunks(seed: int) -> list[ChunkProfile]:
    rng = random.Random(seed)
    out = []
    for i in range(3):
        info = ChunkInfo(100 + i, f"day-{i}", START + timedelta(days=i), START + timedelta(days=i + 1))
        values = {f"h|1|{y}|{b}": float(rng.randint(0, 50)) for y in (0, 1) for b in range(300)}
        values |= {"rows": 1000.0 + i, "labelled": 900.0, "logloss": rng.random() * 100}
        column = ColumnProfile("x", CONTINUOUS, row_count=1000 + i, valid_count=1000 + i, min=0.0, max=1.0,
                               mean=0.5, m2=80.0, kll=rng.randbytes(64), hll=rng.randbytes(16))
        out.append(ChunkProfile(info, 1000 + i, {"x": column},
                                performance=PerformanceState(values, f"{i}00", f"{i}99", 4)))
    return out


def _independent_digest(values: dict[str, float]) -> bytes:
    keys = sorted(values)
    h = hashlib.blake2b("\0".join(keys).encode(), digest_size=16)
    h.update(np.array([values[k] for k in keys], dtype=float).tobytes())
    return h.digest()


def _read(spark, table: str, light: bool) -> list[ChunkProfile]:
    rows = profiles_query(spark, table, "m", ["analysis"], light=("analysis",) if light else ()).collect()
    return parse_profiles(rows, ["analysis"]).chunks["analysis"]


def test_a_light_read_leaves_the_values_and_gives_their_digest(spark, tmp_path):
    table = str(tmp_path / "profiles")
    chunks = _chunks(1)
    write_profiles(spark, table, "m", "analysis", chunks, 200, 7, "sig")

    light = _read(spark, table, light=True)
    assert [c.chunk.index for c in light] == [100, 101, 102]
    for stored, original in zip(light, chunks, strict=True):
        assert not stored.performance.loaded
        assert stored.performance.values_digest() == _independent_digest(original.performance.values)
        assert (stored.performance.id_min, stored.performance.id_max, stored.performance.labels_version) == \
            (original.performance.id_min, original.performance.id_max, 4)
        # the sketches stay in the table too; the chunk's digest is that of its states as written
        assert not stored.loaded and stored.columns["x"].kll is None and stored.columns["x"].hll is None
        assert stored.columns["x"].mean == 0.5 and stored.columns_digest() == original.columns_digest()

    load_states(spark, table, "m", "analysis", light[1:])
    assert not light[0].performance.loaded
    for stored, original in zip(light[1:], chunks[1:], strict=True):
        assert stored.loaded and stored.columns["x"] == original.columns["x"]
        assert stored.performance.values == original.performance.values
        assert stored.performance.values_digest() == _independent_digest(original.performance.values)

    with pytest.raises(ValueError, match="day-0.*load_states"):
        write_profiles(spark, table, "m", "analysis", light[:1], 200, 8, "sig")
    light[0].digest = None  # as if loaded: its performance values are still in the table
    with pytest.raises(ValueError, match="day-0.*load_states"):
        write_profiles(spark, table, "m", "analysis", light[:1], 200, 8, "sig")
    assert all(c.performance.loaded for c in _read(spark, table, light=False))


def test_rows_written_before_the_digest_column_are_read_whole(spark, tmp_path):
    table = str(tmp_path / "old_profiles")
    chunks = _chunks(2)
    write_profiles(spark, table, "m", "analysis", chunks, 200, 7, "sig")
    old = spark.read.format("delta").load(table).drop("digest")  # as an older Driftline wrote it
    old.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(table)
    assert "digest" not in spark.read.format("delta").load(table).columns
    assert PROFILE_SCHEMA.fieldNames()[-1] == "digest"

    stored = _read(spark, table, light=True)
    assert all(c.performance.loaded for c in stored)
    assert [c.performance.values for c in stored] == [c.performance.values for c in chunks]
