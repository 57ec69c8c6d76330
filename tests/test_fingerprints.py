"""Fingerprints of chunk states (monitoring/fingerprints.py): the performance digest is that of the sorted
keys and their values (so results stored by earlier versions keep their fingerprints) whatever the order
the aggregation returned the keys in, and any changed value changes it."""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timezone

import numpy as np

from monitoring.chunking import ChunkInfo
from monitoring.fingerprints import performance_hash
from monitoring.performance.state import PerformanceState
from monitoring.profiling import ChunkProfile


def _chunk(values: dict[str, float]) -> ChunkProfile:
    info = ChunkInfo(0, "c", datetime(2025, 1, 1, tzinfo=timezone.utc), datetime(2025, 1, 2, tzinfo=timezone.utc))
    return ChunkProfile(info, 10, performance=PerformanceState(values))


def test_performance_digest_is_that_of_the_sorted_state():
    rng = random.Random(3)
    values = {f"{p}|1|{y}|{b}": rng.random() for p in ("h", "s", "a", "as") for y in (0, 1) for b in range(2000)}
    keys = sorted(values)
    expected = hashlib.blake2b("\0".join(keys).encode(), digest_size=16)
    expected.update(np.array([values[k] for k in keys], dtype=float).tobytes())
    shuffled = list(values.items())
    rng.shuffle(shuffled)
    assert performance_hash(_chunk(dict(shuffled))) == performance_hash(_chunk(values)) == expected.digest()
    changed = dict(values) | {keys[7]: values[keys[7]] + 1e-12}
    assert performance_hash(_chunk(changed)) != expected.digest()
