"""Delta tables: reading sources at a pinned version, writing results by idempotent MERGE.

A table is named either by a path (anything with '/' or ':') or by a catalog name
(`catalog.schema.table`). All SQL built here quotes identifiers; no config value is pasted raw.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pyarrow as pa
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DataType, MapType, StructField, StructType

from monitoring.errors import ConfigError
from monitoring.stores import delta_log

log = logging.getLogger(__name__)
T = TypeVar("T")
COMMIT_ATTEMPTS = 6  # a commit that lost a race with another writer is retried (jittered backoff)
# Delta's optimistic-concurrency failures (classic Py4J and Spark Connect name them alike) and the losing
# side of two writers creating the same table
_CONFLICT = re.compile(r"DELTA_CONCURRENT|Concurrent(Append|DeleteRead|DeleteDelete|Transaction)Exception|"
                       r"MetadataChangedException|ProtocolChangedException|DELTA_METADATA_CHANGED|"
                       r"DELTA_PROTOCOL_CHANGED|DELTA_PATH_EXISTS|TABLE_OR_VIEW_ALREADY_EXISTS")


def is_path(name: str) -> bool:
    return "/" in name or ":" in name


def quote_part(part: str) -> str:
    """A quoted identifier (table name part or column) that survives dots, spaces and backticks."""
    return "`" + part.replace("`", "``") + "`"


def absolute(path: str) -> str:
    """Local relative paths are taken from the working directory; URIs (s3://, dbfs:/) stay as they are."""
    return path if ":" in path or os.path.isabs(path) else os.path.abspath(path)


def table_ident(name: str) -> str:
    """A SQL identifier for a table path or catalog name, safely quoted."""
    if is_path(name):
        return f"delta.{quote_part(absolute(name))}"
    parts = name.split(".")
    if not all(re.match(r"^[A-Za-z0-9_-]+$", p) for p in parts) or len(parts) > 3:
        raise ConfigError("table", f"'{name}' is neither a path nor a catalog name like catalog.schema.table")
    return ".".join(quote_part(p) for p in parts)


@dataclass(frozen=True)
class VersionedTable:
    """A Delta table read at a fixed version, so one run sees one snapshot."""

    name: str
    version: int
    df: DataFrame


def table_exists(spark: SparkSession, name: str, known: bool | None = None) -> bool:
    """Whether Delta table `name` exists; `known`: the caller already knows (no query). Resolving the
    table's schema reads its newest commit on the driver and runs no Spark job (DESCRIBE HISTORY runs one,
    DESCRIBE DETAIL three)."""
    return known if known is not None else _columns(spark, name) is not None


def _columns(spark: SparkSession, name: str) -> list[str] | None:
    """The columns of Delta table `name`, None when there is no such table (resolved on the driver). The
    catalog is asked first: a query that fails to resolve reaches Spark's ObservationManager listener once
    a run has observed metrics, and it logs the failure as an ERROR with a stack trace (Spark 4.1)."""
    ident = table_ident(name)
    try:
        if not spark.catalog.tableExists(ident):
            return None
        return spark.sql(f"SELECT * FROM {ident} LIMIT 0").columns
    except AnalysisException:
        return None


def newest_commit(spark: SparkSession, name: str) -> tuple[int, str | None]:
    """(version, userMetadata) of the newest commit of Delta table `name`: from a local table's log, without
    Spark (`delta_log.newest_commit`), else DESCRIBE HISTORY ... LIMIT 1 (one small Spark job). Raises
    AnalysisException or FileNotFoundError when there is no such Delta table."""
    local = delta_log.newest_commit(name)
    if local is not None:
        return local
    # a plain collect of the command's rows: a projection on top would cost a Spark job of its own
    rows = spark.sql(f"DESCRIBE HISTORY {table_ident(name)} LIMIT 1").collect()
    if not rows:
        raise FileNotFoundError(f"Delta table '{name}' has no commit")
    return int(rows[0]["version"]), rows[0]["userMetadata"]


def read_delta(spark: SparkSession, name: str, key: str, version: int | None = None) -> VersionedTable:
    """Read table `name` (config key `key`) at `version` (default: its latest); a clear error if it is
    missing."""
    ident = table_ident(name)
    try:
        if version is None:
            version = newest_commit(spark, name)[0]
    except (AnalysisException, FileNotFoundError) as exc:
        raise ConfigError(key, f"table '{name}' cannot be read as a Delta table ({first_line(exc)}). "
                               "Check the path or catalog name, and that the table was written.") from None
    df = spark.sql(f"SELECT * FROM {ident} VERSION AS OF {int(version)}")
    return VersionedTable(name, int(version), df)


def collect_union(frames: dict[str, DataFrame]) -> dict[str, list[dict]]:
    """The rows of every frame in `frames` (name -> frame, any schemas), from one query: each frame's
    columns travel as one struct column of a union, so small reads of several tables cost one Spark job
    (plus Delta's file listing per table) instead of one each. The rows come back through Arrow (a year of
    stored profiles: 2.6 s against 4.2 s as Rows); a row is a dict of that struct's fields, maps as dicts."""
    out: dict[str, list[dict]] = {name: [] for name in frames}
    if not frames:
        return out
    # every field nullable: a struct of the union that is null in the rows of the other frames cannot hold
    # non-null fields in Arrow (pyarrow refuses the conversion)
    parts = [frame.select(F.struct(*[F.col(quote_part(c)) for c in frame.columns])
                          .cast(_nullable(frame.schema)).alias(f"_dl_part{i}"))
             for i, frame in enumerate(frames.values())]
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part, allowMissingColumns=True)
    table = union.toArrow()
    for i, name in enumerate(frames):
        column = table.column(f"_dl_part{i}")
        maps = [f.name for f in column.type if pa.types.is_map(f.type)]  # Arrow gives (key, value) lists
        for row in column.to_pylist():
            if row is not None:
                for m in maps:
                    row[m] = dict(row[m]) if row[m] is not None else None
                out[name].append(row)
    return out


def _nullable(kind: DataType) -> DataType:
    """`kind` with every struct field, array element and map value nullable."""
    if isinstance(kind, StructType):
        return StructType([StructField(f.name, _nullable(f.dataType), True) for f in kind.fields])
    if isinstance(kind, ArrayType):
        return ArrayType(_nullable(kind.elementType), True)
    if isinstance(kind, MapType):
        return MapType(kind.keyType, _nullable(kind.valueType), True)
    return kind


def change_feed(spark: SparkSession, name: str, since: int, until: int) -> DataFrame:
    """The rows inserted, updated or deleted in table versions (since, until] (Delta's change data feed,
    with its `_change_type` column); raises AnalysisException when the feed does not cover them."""
    reader = (spark.read.format("delta").option("readChangeFeed", "true")
              .option("startingVersion", since + 1).option("endingVersion", until))
    return reader.load(absolute(name)) if is_path(name) else reader.table(name)


def chunks_in(indices, alias: str = "t") -> str:
    """SQL: the row's chunk_index (of the table aliased `alias`; "" for none) is one of `indices` (integers)."""
    column = f"{alias}.chunk_index" if alias else "chunk_index"
    return f"{column} IN ({', '.join(str(int(i)) for i in sorted(indices)) or 'NULL'})"


def sql_string(value: str) -> str:
    """A SQL string literal (Spark's backslash escapes)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def merge_rows(spark: SparkSession, name: str, rows: DataFrame, keys: list[str]) -> None:
    """Upsert `rows` into Delta table `name` by `keys` (created on first use): a rerun replaces rows."""
    ident = table_ident(name)
    if not retry_conflicts(lambda: ensure_table(spark, name, rows.schema, rows), name):
        return  # created holding `rows`: what the MERGE into an empty table would leave
    view = f"_dl_merge_{uuid.uuid4().hex}"  # unique: two runs in one session must not share it
    rows.createOrReplaceTempView(view)
    on = " AND ".join(f"t.{quote_part(k)} <=> s.{quote_part(k)}" for k in keys)
    merge = f"MERGE INTO {ident} t USING {view} s ON {on} WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
    try:
        retry_conflicts(lambda: spark.sql(merge), name)
    finally:
        spark.catalog.dropTempView(view)


def replace_rows(spark: SparkSession, name: str, rows: DataFrame, scope: dict[str, str],
                 prefix: tuple[str, str] | None = None, scope_where: str | None = None) -> None:
    """Replace every row of Delta table `name` in `scope` (column -> value; with `prefix` (column, text)
    also: that column starts with that text; with `scope_where`, SQL over the table's columns without an
    alias, also: the rows it selects) by `rows`, which all lie in that scope, in one overwrite commit
    (Delta's replaceWhere: no join with the target, so cheaper than a MERGE when the scope is rewritten
    whole); the table is created on first use."""
    if not retry_conflicts(lambda: ensure_table(spark, name, rows.schema, rows), name):
        return
    where = " AND ".join(f"{quote_part(k)} = {sql_string(v)}" for k, v in scope.items())
    if prefix is not None:
        where += f" AND startswith({quote_part(prefix[0])}, {sql_string(prefix[1])})"
    if scope_where is not None:
        where += f" AND ({scope_where})"
    writer = rows.write.format("delta").mode("overwrite").option("replaceWhere", where)
    retry_conflicts(lambda: writer.save(absolute(name)) if is_path(name) else writer.saveAsTable(name), name)


def retry_conflicts(commit: Callable[[], T], name: str, attempts: int = COMMIT_ATTEMPTS) -> T:
    """Run `commit` (one Delta commit), again after a jittered backoff when it lost a race with another
    writer of table `name` (Delta's conflict checks then failed it without writing anything); after
    `attempts` losses the last conflict is raised."""
    for attempt in range(1, attempts + 1):
        try:
            return commit()
        except Exception as exc:
            conflict = _CONFLICT.search(f"{type(exc).__name__} {exc}")
            if attempt == attempts or not conflict:
                raise
            wait = min(8.0, 0.25 * 2 ** attempt) * (0.5 + random.random())
            log.warning("%s: commit conflicted with another writer (%s); retrying in %.1fs (attempt %d of %d)",
                        name, conflict.group(0), wait, attempt + 1, attempts)
            time.sleep(wait)
    raise AssertionError("unreachable")


def ensure_table(spark: SparkSession, name: str, schema: StructType, rows: DataFrame | None = None) -> bool:
    """True when the table exists (columns a newer Driftline writes are added to an older table); else
    create it holding `rows` (or empty) in one commit and return False. Without deletion vectors: the
    feature costs every read of a table about 0.3 s of Delta jobs (measured on a year of daily profiles,
    docs/performance.md part 12), and Driftline's writes replace ranges of chunks that its files hold
    whole or nearly."""
    existing = _columns(spark, name)
    if existing is not None:
        missing = [f for f in schema.fields if f.name not in existing]
        if missing:
            cols = ", ".join(f"{quote_part(f.name)} {f.dataType.simpleString()}" for f in missing)
            spark.sql(f"ALTER TABLE {table_ident(name)} ADD COLUMNS ({cols})")
        return True
    data = rows if rows is not None else spark.createDataFrame([], schema)
    # "error": when another writer created the table meanwhile this fails (and the caller's retry MERGEs)
    # instead of appending a second copy of rows the other writer may hold too
    writer = data.write.format("delta").mode("error").option("delta.enableDeletionVectors", "false")
    if is_path(name):
        writer.save(absolute(name))
    else:
        writer.saveAsTable(name)
    return False


def first_line(exc: Exception, limit: int = 300) -> str:
    """The first line of an exception's message (its type's name when the message is empty), for one-line
    reasons in errors and logs."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
