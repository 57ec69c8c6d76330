"""Driftline's univariate drift and data quality under `compatibility: nannyml` vs NannyML's (after
crosscheck/nannyml_univariate.py), every reference and analysis chunk.

    python crosscheck/compare_univariate.py DATASET OUT_DIR   # car_loan, multiclass, car_price, car_loan_dq

Writes the rows as Delta tables, runs `fit` and `run` with 5000-row chunks and compares per chunk, column
and method the value, both thresholds and the alert. Compared: categorical chi2 (alert: p < 0.05),
Jensen-Shannon, L-infinity and Hellinger, continuous Jensen-Shannon and Hellinger (Doane bins, exact counts),
Wasserstein (NannyML's 10,000 bins, exact counts and sums), the missing and unseen rates (1e-6 relative);
Kolmogorov-Smirnov (0.003, the KLL sketches' bound; thresholds 0.01). Also checks Driftline's default
Wasserstein (2048 asinh fine bins) of every chunk against the whole reference: within 1% of scipy's
`wasserstein_distance` on the same rows. Prints a markdown summary (also
OUT_DIR/univariate_DATASET/univariate_vs_nannyml.md, with every failed check); exits 1 when a compared check
fails.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy.stats import wasserstein_distance  # noqa: E402

from crosscheck.driftline_side import close, read_rows, session, write_tables  # noqa: E402
from monitoring.config import Drift, parse_config  # noqa: E402
from monitoring.drift.compare import BASELINE  # noqa: E402
from monitoring.fine_bins import FineBins, FineCounts  # noqa: E402
from monitoring.fine_bins import wasserstein as fine_wasserstein  # noqa: E402
from monitoring.pipeline import fit, run  # noqa: E402
from monitoring.registry import DRIFT, QUALITY  # noqa: E402
from monitoring.slices import WHOLE  # noqa: E402

KS_VALUE, KS_THRESHOLD, REL = 0.003, 0.01, 1e-6
DEFAULT_W_REL = 0.01  # issue 21: Driftline's own Wasserstein within 1% of scipy's


def default_wasserstein(frames: dict, continuous: list[str], size: int) -> tuple[int, float]:
    """Driftline's default Wasserstein (fine bins of the reference: `reference.fine_bins_of`'s rule with exact
    quartiles) of every reference and analysis chunk against the whole reference, against scipy's on the same
    rows: (values, largest relative difference)."""
    checked, worst = 0, 0.0
    for column in continuous:
        reference = frames["reference"][column].to_numpy(float)
        reference = reference[np.isfinite(reference)]
        q1, median, q3 = np.quantile(reference, [0.25, 0.5, 0.75])
        spec = FineBins.asinh(reference.min(), reference.max(), median, (q3 - q1) / 2, Drift().wasserstein_bins)
        whole = FineCounts.of_values(spec, reference)
        for frame in frames.values():
            values = frame[column].to_numpy(float)
            for start in range(0, len(values), size):
                x = values[start:start + size]
                x = x[np.isfinite(x)]
                ours = fine_wasserstein(spec, whole, FineCounts.of_values(spec, x))
                worst = max(worst, abs(ours / wasserstein_distance(reference, x) - 1))
                checked += 1
    return checked, worst


def main() -> int:
    dataset, out = sys.argv[1], (Path(sys.argv[2]) / f"univariate_{sys.argv[1]}").resolve()
    nanny = json.loads((out / "nannyml_univariate.json").read_text())
    frames = read_rows(out)
    spark = session()
    delta = out / "delta"
    write_tables(spark, delta, frames)
    continuous, categorical = nanny["continuous"], nanny["categorical"]
    config = parse_config({
        "monitor": f"{dataset}_univariate", "compatibility": "nannyml", "problem_type": "binary",
        "source": {"table": str(delta / "analysis"), "id_column": "id", "timestamp_column": "timestamp"},
        "features": [{"name": c, "kind": "continuous"} for c in continuous]
        + [{"name": c, "kind": "categorical"} for c in categorical],
        "outputs": {"score": continuous[0]}, "chunking": {"size": nanny["chunk_size"]},
        "reference": {"table": str(delta / "reference")},
        "drift": {"continuous_methods": ["kolmogorov_smirnov", "jensen_shannon", "wasserstein", "hellinger"],
                  "categorical_methods": ["chi2", "jensen_shannon", "l_infinity", "hellinger", "unseen"]},
        "output": {"path": str(out / "driftline")}, "mlflow": {"enabled": False}})
    fit(spark, config, refresh=True)
    result = run(spark, config, refresh=True)
    ours: dict[tuple[str, int, str, str], object] = {}
    for r in result.metrics:
        if (r.slice_key, r.slice_value) == WHOLE and ((r.family == DRIFT and r.comparison == BASELINE)
                                                      or r.family == QUALITY):
            ours[(r.period, r.chunk.index, r.column, r.metric)] = r
    index = {p: sorted({k[1] for k in ours if k[0] == p}) for p in ("reference", "analysis")}
    keys = {p: sorted({r["key"] for r in nanny["rows"] if r["period"] == p}, key=lambda k: int(k[1:].split(":")[0]))
            for p in ("reference", "analysis")}
    if any(len(index[p]) != len(keys[p]) for p in index):
        print(f"chunk counts differ: Driftline {[len(v) for v in index.values()]}, NannyML "
              f"{[len(v) for v in keys.values()]}")
        return 1
    chunk_of = {(p, k): i for p in keys for k, i in zip(keys[p], index[p], strict=True)}
    stats: dict[tuple[str, str], dict] = defaultdict(lambda: {"checks": 0, "failed": 0, "max": 0.0, "alerts": 0})
    failed = []
    for n in nanny["rows"]:
        kind = "continuous" if n["column"] in continuous else "categorical"
        d = ours.get((n["period"], chunk_of[(n["period"], n["key"])], n["column"], n["metric"]))
        s = stats[(kind, n["metric"])]
        if d is None:
            s["checks"] += 1
            s["failed"] += 1
            failed.append(f"| {n['period']} | {n['key']} | {n['column']} | {n['metric']} | missing in Driftline |")
            continue
        alert = ours[(d.period, d.chunk.index, d.column, "chi2_pvalue")].alert if n["metric"] == "chi2" else d.alert
        diff = abs((d.value or 0.0) - (n["value"] or 0.0))
        s["max"] = max(s["max"], diff / abs(n["value"]) if n["metric"] == "wasserstein" and n["value"] else diff)
        ks = n["metric"] == "kolmogorov_smirnov"
        ok = (close(d.value, n["value"], 0 if ks else REL, KS_VALUE if ks else 1e-12)
              and close(d.lower_threshold, n["lower_threshold"], 0 if ks else REL, KS_THRESHOLD if ks else 1e-12)
              and close(d.upper_threshold, n["upper_threshold"], 0 if ks else REL, KS_THRESHOLD if ks else 1e-12))
        s["checks"] += 1
        s["failed"] += not ok
        s["alerts"] += bool(alert) != n["alert"]
        if not ok or bool(alert) != n["alert"]:
            failed.append(f"| {n['period']} | {n['key']} | {n['column']} | {n['metric']} | D {d.value:.6g} "
                          f"[{d.lower_threshold}, {d.upper_threshold}] alert {bool(alert)} / N {n['value']:.6g} "
                          f"[{n['lower_threshold']}, {n['upper_threshold']}] alert {n['alert']} |")
    lines = [f"NannyML {nanny['nannyml']} univariate drift and data quality on {dataset}, chunk size "
             f"{nanny['chunk_size']}, Driftline with `compatibility: nannyml`", "",
             "| kind | method | values | outside tolerance | alerts different | largest difference |",
             "| --- | --- | --- | --- | --- | --- |"]
    for (kind, metric), s in sorted(stats.items()):
        lines.append(f"| {kind} | {metric} | {s['checks'] or '-'} | {s['failed']} | {s['alerts']} | "
                     f"{s['max']:.2g}{' (relative)' if metric == 'wasserstein' else ''} |")
    lines += ["", "| period | chunk | column | metric | Driftline / NannyML |", "| --- | --- | --- | --- | --- |",
              *failed]
    checked, worst = default_wasserstein(frames, continuous, nanny["chunk_size"])
    summary = (f"Driftline's default Wasserstein (2048 fine bins) against scipy on the same rows: {checked} chunk "
               f"values, largest relative difference {worst:.2g} (tolerance {DEFAULT_W_REL})")
    text = "\n".join(lines) + "\n\n" + summary + "\n"
    (out / "univariate_vs_nannyml.md").write_text(text)
    print(text)
    bad = sum(s["failed"] + s["alerts"] for s in stats.values()) + (worst > DEFAULT_W_REL)
    print(f"{bad} compared checks outside tolerance or with a different alert")
    spark.stop()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
