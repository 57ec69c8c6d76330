"""Which chunks' stored results a run can keep: content fingerprints of what a chunk's results depend on.

A chunk's drift and data-quality results are a function of its column states, the previous chunk's
(CONSECUTIVE drift), the fitted reference and the compare settings; its realized and estimated performance
of its performance state, the reference and the settings. Fingerprints hash exactly these, one per part,
and are stored with every metric row (`inputs`); a run recomputes the chunks where a fingerprint changed
(in any slice) and keeps the stored rows of the others,
so a daily run compares one new chunk, not a year of them. Content hashes rather than version bookkeeping:
a run that failed between writing profiles and metrics is repaired by the next one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from monitoring.config import MonitorConfig
from monitoring.drift.compare import DATA_QUALITY, DRIFT
from monitoring.drift.reconstruction import MULTIVARIATE
from monitoring.profiling import ChunkProfile

COMPARE_FORMAT = 6  # bump when the compare code changes what it produces from the same states
COLUMNS, PERFORMANCE = "columns", "performance"  # the two parts a chunk's results depend on


# config sections no result depends on: where results go and how the session is built
_NOT_RESULTS = ("monitor", "output", "mlflow", "spark")


def result_settings(config: MonitorConfig) -> dict:
    """The config's settings the results depend on: all but where results go, how the session is built
    and the feature importances, which only rank the results (monitoring/ranking.py)."""
    settings = {k: v for k, v in asdict(config).items() if k not in _NOT_RESULTS}
    settings["features"] = [{k: v for k, v in f.items() if k != "importance"} for f in settings["features"]]
    return settings


def compare_settings(config: MonitorConfig, reference_signature: str, reference_version: int | None,
                     schema_changes: list[tuple[str, str]] = (), null_timestamps: int = 0, outside: int = 0) -> str:
    """Hash of every setting the results may depend on besides the chunk states (the whole config but
    where results go, e.g. thresholds, methods, label coverage rules, estimation), the fitted reference
    and the source's schema changes since the fit and its rows without a timestamp or outside the chunking's
    window (rare: a change recomputes every chunk's results)."""
    settings = result_settings(config) | {
        "format": COMPARE_FORMAT, "reference_fit": [reference_signature, reference_version],
        "schema_changes": list(schema_changes), "null_timestamps": null_timestamps}
    if outside:  # absent when 0: results stored before the window existed keep their fingerprints
        settings["outside_window"] = outside
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def performance_hash(cp: ChunkProfile) -> bytes:
    """Digest of a chunk's performance state values (not its label version, which a label backfill
    advances without changing values); the stored digest when the values were left in the table."""
    return cp.performance.values_digest()


def fingerprints(chunks: list[ChunkProfile], settings: str) -> dict[tuple[str, str, int, str], str]:
    """(slice_key, slice_value, chunk index, part) -> fingerprint of the inputs of that chunk's results:
    part COLUMNS (drift, data quality: its and the previous chunk's column states) or PERFORMANCE
    (realized and estimated performance: its performance state, when it has one), each with the settings."""
    out: dict[tuple[str, str, int, str], str] = {}
    previous: dict[tuple[str, str], bytes] = {}
    for cp in sorted(chunks, key=lambda c: (c.slice_key, c.slice_value, c.chunk.index)):
        key = (cp.slice_key, cp.slice_value)
        own = cp.columns_digest()
        parts = [(COLUMNS, previous.get(key, b"") + own)]
        if cp.performance is not None:
            parts.append((PERFORMANCE, performance_hash(cp)))
        for part, data in parts:
            out[(*key, cp.chunk.index, part)] = hashlib.blake2b(settings.encode() + data, digest_size=16).hexdigest()
        previous[key] = own
    return out


def part_of(family: str) -> str:
    """Which fingerprint part a result family depends on."""
    return COLUMNS if family in (DRIFT, DATA_QUALITY, MULTIVARIATE) else PERFORMANCE


def with_predecessors(chunks: list[ChunkProfile], indices: set[int]) -> list[ChunkProfile]:
    """The chunks (of one slice, in order) with an index in `indices` and the chunk before each, so the
    CONSECUTIVE comparison of every wanted chunk sees its real predecessor."""
    keep = set()
    for i, cp in enumerate(chunks):
        if cp.chunk.index in indices:
            keep.add(i)
            if i:
                keep.add(i - 1)
    return [chunks[i] for i in sorted(keep)]
