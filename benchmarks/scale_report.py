"""The table of a full `benchmarks/scale.py` run in docs/performance.md (between the scale markers)."""

from __future__ import annotations

import re
from pathlib import Path

BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"


def _mb(x: float) -> str:
    return f"{x:,.0f}"


def table(result: dict, source: str) -> str:
    m = result["machine"]
    lines = [f"Measured {result['date']} on {m['cpus']} cores, {m['memory_gb']} GiB ({m['platform']}, Python "
             f"{m['python']}); raw figures in `benchmarks/results/{source}`.", "",
             "| rows | bare scan-aggregate s (warm) | monitor run s (warm) | x bare | Spark jobs (bare / run) "
             "| `driftline run --fit --full` s | cold floor s | its s per 1M rows | its peak MB (Python / JVM) "
             "| NannyML s "
             "| NannyML peak MB | NannyML / Driftline time | Driftline / NannyML memory |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for e in result["sizes"]:
        w, d = e["warm"], e["driftline_e2e"]
        procs = d["peak_by_process_mb"]
        py = max((v for k, v in procs.items() if k.startswith("python")), default=0.0)
        n = e.get("nannyml")
        if n and n["returncode"] == 0:
            nanny = [f"{n['seconds']:.0f}", _mb(n["peak_tree_mb"]), f"{e['speedup_vs_nannyml']:.2f}",
                     f"{e['memory_ratio_to_nannyml']:.2f}"]
        elif n:
            nanny = [f"failed (exit {n['returncode']})", _mb(n["peak_tree_mb"]), "-", "-"]
        else:
            nanny = ["not run", "-", "-", "-"]
        jobs, med = w["spark_jobs"], w["median_seconds"]
        run = f"{med['monitor_run']:.1f}" if "monitor_run" in med else "-"
        ratio = f"{w['ratio_run_to_bare']:.2f}" if "ratio_run_to_bare" in w else "-"
        cells = [f"{e['rows'] / 1e6:g}M", f"{med['bare_scan_aggregate']:.1f}", run, ratio,
                 f"{jobs['bare_scan_aggregate']} / {jobs.get('monitor_run', '-')}", f"{d['seconds']:.0f}",
                 f"{e['cold_floor']['seconds']:.0f}" if "cold_floor" in e else "-",
                 f"{e['e2e_seconds_per_million_rows']:.1f}", f"{_mb(d['peak_tree_mb'])} ({_mb(py)} / "
                 f"{_mb(procs.get('java', 0.0))})", *nanny]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| features | monitor run s (after the fit, same session) | Spark jobs |", "| --- | --- | --- |"]
    for c in result["columns"]:
        if c["seconds"] is None:
            lines.append(f"| {c['features']} | not finished: {c.get('note', '')} | - |")
        else:
            lines.append(f"| {c['features']} | {c['seconds']:.1f} | {c['spark_jobs']} |")
    agreed = [e for e in result["sizes"] if e["warm"].get("agreement")]
    if agreed:
        lines += ["", "| rows | values compared with NannyML | max difference per metric | outside tolerance |",
                  "| --- | --- | --- | --- |"]
        for e in agreed:
            a = e["warm"]["agreement"]
            worst = ", ".join(f"{k} {v:.2g}" for k, v in sorted(a["max_difference"].items()))
            lines.append(f"| {e['rows'] / 1e6:g}M | {a['compared']} | {worst} | {len(a['failures'])} |")
    return "\n".join(lines)


def write_table(result: dict, doc: Path, source: str) -> None:
    """Replace the text between the scale markers of `doc` with this run's table."""
    text = doc.read_text()
    block = f"{BEGIN}\n{table(result, source)}\n{END}"
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text)
