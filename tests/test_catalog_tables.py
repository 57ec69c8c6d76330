"""Tables named by catalog names instead of paths: source and labels as managed Delta tables of a schema
in the session catalog (`dl_catalog_test.preds`, two-part names), results to `output.schema:
spark_catalog.dl_catalog_test` (three-part names, as Unity Catalog's `main.monitoring`). `fit` and `run`
create the result tables under those names, and the metrics equal the same monitor on path tables in
this session (tests/helpers.assert_same_metrics)."""

from __future__ import annotations

import pytest

from monitoring.config import parse_config
from monitoring.pipeline import fit, run
from monitoring.stores.metrics import read_metrics
from monitoring.stores.tables import quote_part, sql_string

from .helpers import assert_same_metrics, drift_config, write_drift_tables

SCHEMA = "dl_catalog_test"
DAYS, PER_DAY, K = 5, 1000, 2000


@pytest.fixture
def schema(spark, tmp_path):
    """A schema of the session catalog whose managed tables live under tmp (the session's warehouse
    directory is fixed when it starts, so the schema gets an explicit LOCATION)."""
    spark.sql(f"DROP SCHEMA IF EXISTS {quote_part(SCHEMA)} CASCADE")
    spark.sql(f"CREATE SCHEMA {quote_part(SCHEMA)} LOCATION {sql_string(str(tmp_path / 'warehouse'))}")
    try:
        yield SCHEMA
    finally:
        spark.sql(f"DROP SCHEMA IF EXISTS {quote_part(SCHEMA)} CASCADE")


def test_catalog_names_equal_paths(spark, schema, tmp_path):
    def save_as_table(df, name: str) -> str:
        spark.createDataFrame(df).write.format("delta").mode("overwrite").saveAsTable(f"{schema}.{name}")
        return f"{schema}.{name}"

    preds, labels = write_drift_tables(spark, None, DAYS, PER_DAY, saver=save_as_table)
    assert (preds, labels) == (f"{schema}.preds", f"{schema}.labels")
    by_name = parse_config(drift_config("catalog", preds, labels, {"schema": f"spark_catalog.{schema}"}, K))
    fit(spark, by_name)
    run(spark, by_name)

    tables = {r.tableName: r.isTemporary for r in spark.sql(f"SHOW TABLES IN {quote_part(schema)}").collect()}
    assert {"preds", "labels", "profiles", "reference", "metrics"} <= set(tables) and not any(tables.values())
    detail = spark.sql(f"DESCRIBE DETAIL spark_catalog.{schema}.metrics").collect()[0]
    assert detail["format"] == "delta" and detail["location"].startswith(f"file:{tmp_path / 'warehouse'}")

    paths = write_drift_tables(spark, tmp_path / "tables", DAYS, PER_DAY)
    by_path = parse_config(drift_config("catalog", *paths, {"path": str(tmp_path / "out")}, K))
    fit(spark, by_path)
    run(spark, by_path)
    ours = read_metrics(spark, str(tmp_path / "out" / "metrics"), "catalog").results
    theirs = read_metrics(spark, f"spark_catalog.{schema}.metrics", "catalog").results
    # same data, same session: the KLL sketches agree too, so every value is asked within 1e-9
    assert_same_metrics(ours, theirs, K, exact_sketches=True)
