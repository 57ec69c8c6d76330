"""The SparkSession: the platform's where there is one, else an embedded local Spark with Delta.

Decision order (see docs/architecture.md):
1. an active session (notebook, Databricks job, a test) is used as it is;
2. `SPARK_REMOTE` set: a Spark Connect session to that address;
3. running under spark-submit or on Databricks: the session the platform configured (jars untouched);
4. otherwise the embedded default: local Spark with the Delta jars from the local cache. The first run
   asks Spark's resolver (Ivy, Maven Central) for them and caches them; later runs pass the cached jars
   with `spark.jars` and need no network.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

from pyspark.sql import SparkSession

from monitoring.redact import redact

log = logging.getLogger(__name__)

SCALA_VERSION = "2.13"
# Jars Spark already ships; Ivy lists them as Delta's transitive dependencies.
_PROVIDED_PREFIXES = ("org.apache.logging.log4j_", "org.slf4j_")


def cache_dir() -> Path:
    """Driftline's local cache (jars): $DRIFTLINE_CACHE, else ~/.cache/driftline."""
    return Path(os.environ.get("DRIFTLINE_CACHE") or Path.home() / ".cache" / "driftline")


def delta_coordinate() -> str:
    """Maven coordinate of the Delta jar matching the installed pyspark and delta-spark."""
    import pyspark

    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_{SCALA_VERSION}:{version('delta-spark')}"


def _ivy_dir() -> Path:
    return cache_dir() / ("ivy-" + delta_coordinate().replace(":", "_"))


def cached_delta_jars() -> list[str]:
    """The cached Delta jars (empty before the first resolution)."""
    jar_dir = _ivy_dir() / "jars"
    if not jar_dir.is_dir():
        return []
    jars = sorted(str(p) for p in jar_dir.glob("*.jar") if not p.name.startswith(_PROVIDED_PREFIXES))
    return jars if any("delta-spark" in j for j in jars) else []


def platform_provides_spark() -> bool:
    """True under spark-submit (the launcher sets PYSPARK_GATEWAY_PORT) or on Databricks."""
    return bool(os.environ.get("PYSPARK_GATEWAY_PORT") or os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def get_spark(extra_conf: dict[str, str] | None = None, app_name: str = "driftline") -> SparkSession:
    """Return the session to run on (see module docstring); sets the session time zone to UTC."""
    spark = SparkSession.getActiveSession()
    if spark is None:
        if os.environ.get("SPARK_REMOTE"):
            spark = SparkSession.builder.remote(os.environ["SPARK_REMOTE"]).appName(app_name).getOrCreate()
            log.info("Spark Connect session at %s", redact(os.environ["SPARK_REMOTE"]))
        elif platform_provides_spark():
            spark = SparkSession.builder.appName(app_name).getOrCreate()
        else:
            spark = embedded_session(extra_conf or {}, app_name)
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    return spark


# The embedded JVM holds states, not rows: rows stream through aggregations (and spill), so a 1g heap
# serves 100M rows. The serial collector, a smaller code cache and two malloc arenas keep the JVM's
# memory outside the heap small (docs/performance.md, "Memory of the embedded default"). HotSpot leaves
# methods over 8000 bytes of bytecode interpreted; Spark generates such methods for aggregations over many
# columns (the per-feature bins of the label pass: 3.6 s instead of 17 s warm at 1M rows when compiled).
EMBEDDED_HEAP = "1g"
EMBEDDED_JAVA_OPTIONS = "-XX:+UseSerialGC -XX:ReservedCodeCacheSize=96m -XX:-DontCompileHugeMethods"


VERBOSE_ENV = "DRIFTLINE_VERBOSE"  # set by `driftline --verbose`: Spark's own log4j defaults (warnings)
QUIET_LOG4J = Path(__file__).with_name("log4j2-quiet.properties")


def java_options(given: str = EMBEDDED_JAVA_OPTIONS) -> str:
    """The embedded driver's JVM options: `given` (EMBEDDED_JAVA_OPTIONS, or the config's own
    `spark.driver.extraJavaOptions`), and Spark logging errors only unless $DRIFTLINE_VERBOSE is set or
    the options name their own log4j2 configuration."""
    if os.environ.get(VERBOSE_ENV) or "log4j2.configurationFile" in given:
        return given
    return f"{given} -Dlog4j2.configurationFile={QUIET_LOG4J.as_uri()}"


def embedded_session(extra_conf: dict[str, str], app_name: str = "driftline") -> SparkSession:
    """A local Spark with Delta configured; `extra_conf` (the config's `spark:` section) wins."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")  # read by the JVM's C library when it starts
    builder = (
        SparkSession.builder.master(extra_conf.get("spark.master", "local[*]"))
        .appName(app_name)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.driver.memory", EMBEDDED_HEAP)
        .config("spark.driver.extraJavaOptions", java_options())
        .config("spark.sql.shuffle.partitions", "8")
        # adaptive execution runs every shuffle stage as a Spark job of its own and re-plans between them;
        # a local driver gains nothing from it on aggregations to a few rows per chunk, and pays in jobs
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.sql.sources.parallelPartitionDiscovery.parallelism", "2")
        # a run compiles ~200 generated classes (Spark keeps the last 100): a session that runs the monitor
        # again (a daily run after the last one, the tests) compiles most of them once, 1-2 s a run saved
        .config("spark.sql.codegen.cache.maxEntries", "2000")
    )
    jars = cached_delta_jars()
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    else:
        log.info("resolving %s from Maven Central into %s (once)", delta_coordinate(), _ivy_dir())
        builder = builder.config("spark.jars.packages", delta_coordinate()).config("spark.jars.ivy", str(_ivy_dir()))
    for key, value in extra_conf.items():
        builder = builder.config(key, java_options(value) if key == "spark.driver.extraJavaOptions" else value)
    spark = builder.getOrCreate()
    if not jars and not cached_delta_jars():
        log.warning("Delta jars were not cached under %s; the next run will resolve them again", _ivy_dir())
    return spark


SHUFFLE_PARTITIONS = "spark.sql.shuffle.partitions"
ROWS_PER_SHUFFLE_PARTITION = 1_000_000  # the embedded default's 8 partitions at 10M rows: ~1M each


@contextmanager
def session_conf(spark: SparkSession, key: str, value: str | None):
    """Queries run inside see session setting `key` = `value` (unchanged when `value` is None); the setting
    before is restored after."""
    if value is None:
        yield
        return
    before = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def few_partitions(spark: SparkSession, rows: int):
    """Queries run inside shuffle into ~one partition per ROWS_PER_SHUFFLE_PARTITION of `rows` (at least one,
    at most the session's setting): a daily run aggregates a day of rows, and 8 partitions per shuffle of a
    4-aggregation query cost it 32 tasks of ~50 ms each. Without adaptive execution, Spark keeps the
    session's count however small the input; a setting that is not a number ("auto") is left alone."""
    setting = str(spark.conf.get(SHUFFLE_PARTITIONS, "200"))
    if not setting.isdigit():
        return session_conf(spark, SHUFFLE_PARTITIONS, None)
    wanted = max(1, min(int(setting), math.ceil(rows / ROWS_PER_SHUFFLE_PARTITION)))
    return session_conf(spark, SHUFFLE_PARTITIONS, str(wanted) if wanted < int(setting) else None)
