"""Delta tables past their first checkpoint (written every 10 commits) stay readable.

delta-spark 4.1.0 with pyspark 4.1.4 failed here (NoSuchMethodError in the checkpoint's Parquet schema
reader); the profiles and metrics tables reach 10 commits after a few runs.
"""

from __future__ import annotations


def test_table_with_a_checkpoint_reads_back(spark, tmp_path):
    path = str(tmp_path / "t")
    for i in range(12):
        spark.range(i * 10, (i + 1) * 10).write.format("delta").mode("append").save(path)
    df = spark.read.format("delta").load(path)
    assert df.where("id >= 5").count() == 115
    assert sorted(r.id for r in df.where("id < 3").collect()) == [0, 1, 2]
