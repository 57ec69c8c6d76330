"""The settings a config's `spark:` section may give the embedded Spark: the trust model of the config file.

A config is data, not code: whoever may edit a monitor's YAML must not be able to run commands or load
code on the machine that runs it. Spark settings reach the driver JVM's command line and class loaders,
so the section takes only what sizes, places and connects a job (docs/reliability.md, "The config file"):
- memory, cores and parallelism, shuffle partitions, the session time zone, the master URL, the UI and
  event log switches;
- `spark.sql.*` settings, but none that names classes or jars to load (extensions, catalogs, listeners,
  the Hive metastore's jars);
- `spark.hadoop.*` (storage endpoints and keys), but no key naming a script or command;
- `spark.databricks.delta.*` (Delta's own settings);
- JVM options (`spark.driver.extraJavaOptions`) only from a fixed set of flags: heap and stack sizes,
  boolean `-XX:` switches and a few numeric `-XX:` sizes. `-XX:OnOutOfMemoryError=<command>`, `-javaagent`,
  `-agentpath`, `-D` properties and class paths are refused: they run commands or load code.
Extra packages (`spark.jars.packages`) are refused too: a jar on the class path is code (its service
providers are instantiated when Spark lists data sources). Anything else is a ConfigError naming the key;
operators who need more set it where the machine's owner does (spark-submit's `--conf` or `--packages`,
`spark-defaults.conf`, the cluster's configuration), never in the YAML.
"""

from __future__ import annotations

import re

from monitoring.errors import ConfigError

ALLOWED = frozenset({
    "spark.master", "spark.app.name", "spark.driver.memory", "spark.driver.cores", "spark.driver.maxResultSize",
    "spark.driver.memoryOverhead", "spark.executor.memory", "spark.executor.cores", "spark.executor.instances",
    "spark.executor.memoryOverhead", "spark.cores.max", "spark.default.parallelism", "spark.memory.fraction",
    "spark.memory.storageFraction", "spark.memory.offHeap.enabled", "spark.memory.offHeap.size",
    "spark.local.dir", "spark.ui.enabled", "spark.ui.port", "spark.ui.showConsoleProgress",
    "spark.eventLog.enabled", "spark.eventLog.dir", "spark.eventLog.compress",
    "spark.driver.extraJavaOptions", "spark.network.timeout", "spark.task.maxFailures",
})
PREFIXES = ("spark.sql.", "spark.hadoop.", "spark.databricks.delta.")
REFUSED = ("spark.sql.extensions", "spark.sql.catalog.", "spark.sql.hive.metastore.jars",
           "spark.sql.queryExecutionListeners", "spark.sql.streaming.streamingQueryListeners")
_RUNS = re.compile(r"script|command|cmd|exec|shell", re.IGNORECASE)
_FLAG = re.compile(r"-XX:[+-][A-Za-z0-9]+|-Xm[sx][0-9]+[kKmMgG]?|-Xss[0-9]+[kKmMgG]?")
SIZED_XX = frozenset({"ReservedCodeCacheSize", "MaxMetaspaceSize", "MaxDirectMemorySize", "TieredStopAtLevel",
                      "ParallelGCThreads", "ConcGCThreads", "CICompilerCount", "MaxRAMPercentage",
                      "InitialRAMPercentage", "MaxGCPauseMillis", "G1HeapRegionSize", "InitiatingHeapOccupancyPercent"})
_SIZED = re.compile(r"-XX:(?P<name>[A-Za-z0-9]+)=[0-9]+(\.[0-9]+)?[kKmMgG]?")
DENIED_FLAGS = frozenset({"OnOutOfMemoryError", "OnError"})  # named in the error: they run a command


def check_spark_settings(settings: dict[str, str]) -> None:
    """Raise ConfigError for the first setting of `spark:` outside the policy above."""
    for key, value in settings.items():
        where = f'spark["{key}"]'
        allowed = key in ALLOWED or (key.startswith(PREFIXES) and not key.startswith(REFUSED))
        if not allowed or (key.startswith("spark.hadoop.") and _RUNS.search(key)):
            raise ConfigError(where, "not a setting a config may give (a config is data: it cannot set what loads "
                                     "code or runs commands). Allowed: memory, cores, parallelism, spark.sql.*, "
                                     "spark.hadoop.* storage settings, spark.databricks.delta.*, a few JVM flags "
                                     "(docs/reliability.md); set anything else with spark-submit --conf or the "
                                     "cluster's configuration")
        if key == "spark.driver.extraJavaOptions":
            _check_java_options(value, where)


def _check_java_options(value: str, key: str) -> None:
    for option in value.split():
        sized = _SIZED.fullmatch(option)
        if _FLAG.fullmatch(option) or (sized and sized["name"] in SIZED_XX):
            continue
        name = option.split("=")[0].lstrip("-").removeprefix("XX:")
        why = "it runs a command" if name in DENIED_FLAGS else "only heap and stack sizes, boolean -XX: switches " \
            f"and the sizes {', '.join(sorted(SIZED_XX))} are accepted"
        raise ConfigError(key, f"the JVM option '{option}' is refused ({why}); pass JVM options with "
                                           "spark-submit --driver-java-options where they are needed")
