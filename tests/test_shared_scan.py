"""`run --fit` profiles the reference and the analysis in the same passes (monitoring/pipeline.py,
`shares_scan`): its stored results equal those of a separate fit and run on the same tables (every
value not read from a KLL sketch within 1e-9, sketched ones within the sketch bound; the label counts,
null timestamps and stored profiles the same), and it reads each table fewer times.

Binary (labels, CBPE, a slice, the reconstruction error, rows without a timestamp) and multiclass, whose
calibrators are a row model applied in a second label pass."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from monitoring.config import parse_config
from monitoring.pipeline import fit, metrics_table, profiles_table, run
from monitoring.relation import PREFIX
from monitoring.stores.metrics import read_metrics
from tests.helpers import assert_registered, assert_same_metrics, drift_config, write_drift_tables
from tests.spark_budget import spark_budget

KLL_K = 200
BINNED = (PREFIX, "rel#")  # state keys of the residual sums per reference bin, and their mark


def _config(preds: str, labels: str, out: str, problem_type: str):
    raw = drift_config("shared", preds, labels, {"path": out}, KLL_K, problem_type)
    raw["slices"] = {"expressions": ["cat"]}
    return parse_config(raw)


def _profiles(spark, config) -> dict[tuple, dict]:
    """Every stored profile row by key: counts, chunk bounds, categories, id range, label version and
    signature as they are; means and the `extra` sums (performance states, per-chunk sums) as numbers (not
    their `digest`, a hash of the exact sums, which differ in the last bits when summed in another order)."""
    rows = spark.read.format("delta").load(profiles_table(config)).drop(
        "computed_at", "kll", "hll", "digest", "histogram", "histogram_edges").collect()
    return {(r.dataset, r.chunk_index, r.slice_key, r.slice_value, r.column_name): r.asDict() for r in rows}


def _assert_same_profiles(a: dict[tuple, dict], b: dict[tuple, dict]) -> None:
    """The same profile rows. Not compared: what depends on the reference's bin edges, which come from KLL
    sketches (rebuilt, they compact differently): the residual sums per bin, their mark, the exact histograms
    (`_profiles` leaves them out) and the analysis's signature."""
    assert a.keys() == b.keys() and len(a) > 20, sorted(a.keys() ^ b.keys())[:10]
    for key, x in a.items():
        y = b[key]
        for name, value in x.items():
            if name == "signature" and key[0] == "analysis":
                continue
            if name == "extra" and value is not None:
                mine, theirs = ({k: v for k, v in m.items() if not k.startswith(BINNED)} for m in (value, y[name]))
                assert theirs.keys() == mine.keys(), key
                assert all(theirs[k] == pytest.approx(v, rel=1e-9, abs=1e-9) for k, v in mine.items()), key
            elif name in ("mean", "m2", "min", "max") and value is not None:
                assert y[name] == pytest.approx(value, rel=1e-9, abs=1e-12), (key, name)
            else:
                assert y[name] == value, (key, name)


@pytest.mark.parametrize("problem_type", ["binary", "multiclass"])
def test_run_fit_shares_its_scan(spark, tmp_path, problem_type):
    preds, labels = write_drift_tables(spark, tmp_path, days=6, per_day=700, problem_type=problem_type)
    # rows without a timestamp: counted by the profiling pass, in no chunk
    (spark.read.format("delta").load(preds).limit(4).withColumn("ts", F.lit(None).cast("timestamp"))
     .withColumn("id", F.col("id") + 10**6).write.format("delta").mode("append").save(preds))
    apart = _config(preds, labels, str(tmp_path / "apart"), problem_type)
    shared = _config(preds, labels, str(tmp_path / "shared"), problem_type)

    with spark_budget(spark) as separate:
        fit(spark, apart, refresh=True)
        expected = run(spark, apart, refresh=True)
    with spark_budget(spark) as together:
        fitted = fit(spark, shared, refresh=True, analysis=True)
        assert fitted.models is not None and fitted.models.analysis is not None, "the shared scan was not taken"
        got = run(spark, shared, refresh=True, fitted=fitted)

    assert got.profiles.null_timestamps == expected.profiles.null_timestamps == 4
    assert got.labels == expected.labels and got.labels.labels > 0
    assert got.compared == expected.compared and len(got.compared) == 3
    stored = [read_metrics(spark, metrics_table(c), c.monitor, True).results for c in (apart, shared)]
    assert_same_metrics(stored[0], stored[1], KLL_K)
    assert_registered(got.metrics)
    _assert_same_profiles(_profiles(spark, apart), _profiles(spark, shared))
    # each table read fewer times: one profiling pass and one label join serve both datasets
    assert together.scans_of(labels) < separate.scans_of(labels), (together.scans_of(labels),
                                                                    separate.scans_of(labels))
    assert together.scans_of(preds) < separate.scans_of(preds), (together.scans_of(preds), separate.scans_of(preds))
    assert together.jobs < separate.jobs, (together.jobs, separate.jobs)
    print(problem_type, "separate", separate.jobs, separate.scans_of(preds), separate.scans_of(labels),
          "shared", together.jobs, together.scans_of(preds), together.scans_of(labels))
