"""What the Driftline side of every cross-check does alike: an embedded session, NannyML's rows as Delta
tables, tolerance checks."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession

from monitoring.session import embedded_session


def session() -> SparkSession:
    spark = embedded_session({"spark.master": "local[2]", "spark.sql.shuffle.partitions": "4"}, "crosscheck")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    return spark


def read_rows(out: Path) -> dict[str, pd.DataFrame]:
    """The reference and analysis rows a NannyML script exported; NannyML's CSVs hold the timestamps as text."""
    frames = {p: pd.read_parquet(out / f"{p}.parquet") for p in ("reference", "analysis")}
    for frame in frames.values():
        frame["timestamp"] = pd.to_datetime(frame["timestamp"]).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    return frames


def write_tables(spark: SparkSession, delta: Path, tables: dict[str, pd.DataFrame]) -> None:
    for name, frame in tables.items():
        spark.createDataFrame(frame).write.format("delta").mode("overwrite").option("overwriteSchema", "true") \
            .save(str(delta / name))


def paired_chunks(ours: dict[tuple[str, int], object],
                  nanny_chunks: list[dict]) -> list[tuple[str, tuple, dict]] | None:
    """(period, Driftline's chunk key, NannyML's chunk) for every reference then analysis chunk, in order:
    `ours` is keyed (period, chunk index), `nanny_chunks` carry their period. None (said) when a period's
    chunk counts differ."""
    pairs = []
    for period in ("reference", "analysis"):
        mine = sorted(k for k in ours if k[0] == period)
        theirs = [c for c in nanny_chunks if c["period"] == period]
        if len(mine) != len(theirs):
            print(f"{period} chunk counts differ: Driftline {len(mine)}, NannyML {len(theirs)}")
            return None
        pairs += [(period, key, chunk) for key, chunk in zip(mine, theirs, strict=True)]
    return pairs


def close(a: float | None, b: float | None, rel: float, abs_: float = 1e-12) -> bool:
    """Both missing, or within `rel` relative or `abs_` absolute."""
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def chunk_line(period: str, chunk: str, metric: str, ours, theirs: dict, ok: bool, digits: int) -> str:
    """A markdown row of one chunk's metric, Driftline's result `ours` / NannyML's `theirs`: value, sampling
    error, thresholds, alert and the verdict, numbers to `digits` significant digits."""
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.{digits}g}"

    return (f"| {period} | {chunk} | {metric} | {f(ours.value)} / {f(theirs['value'])} | "
            f"{f(ours.sampling_error)} / {f(theirs['sampling_error'])} | {f(ours.lower_threshold)}, "
            f"{f(ours.upper_threshold)} / {f(theirs['lower_threshold'])}, {f(theirs['upper_threshold'])} | "
            f"{bool(ours.alert)} / {theirs['alert']} | {'yes' if ok else '**FAIL**'} |")
