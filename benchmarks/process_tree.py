"""Wall time and peak resident memory of a command and every process it starts (read from /proc).

The benchmark compares whole process trees: Driftline's Python driver plus the Spark JVM it launches,
NannyML's Python process plus anything it forks. Sampled every `interval` seconds, so a spike shorter
than that can be missed; the kernel's own per-process high-water mark (VmHWM) of every process seen is
also kept, and the reported tree peak is the larger of the sampled sum and the largest single VmHWM.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Measured:
    """One command's wall time, exit code and memory (MB): the tree's peak sum and each process's peak."""

    seconds: float
    returncode: int
    peak_tree_mb: float
    peak_by_command: dict[str, float] = field(default_factory=dict)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(root: int) -> list[int]:
    tree, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, []))
    return out


def _status_mb(pid: int) -> tuple[str, float, float]:
    """(command name, current RSS MB, peak RSS MB) from /proc/<pid>/status."""
    name, rss, hwm = "?", 0.0, 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Name:"):
            name = line.split()[1]
        elif line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return name, rss, hwm


def run_measured(cmd: list[str], env: dict[str, str] | None = None, cwd: str | None = None,
                 log_path: Path | None = None, interval: float = 0.2) -> Measured:
    """Run `cmd` to completion (output to `log_path`), sampling its process tree's memory."""
    log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    peak_sum, by_pid = 0.0, {}
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_sum
        while not done.is_set():
            total = 0.0
            for pid in _descendants(proc.pid):
                try:
                    name, rss, hwm = _status_mb(pid)
                except (OSError, ValueError):
                    continue
                total += rss
                by_pid[pid] = (name, max(hwm, by_pid.get(pid, (name, 0.0))[1]))
            peak_sum = max(peak_sum, total)
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    returncode = proc.wait()
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    if log_path:
        log.close()
    by_command: dict[str, float] = {}
    for name, hwm in by_pid.values():
        by_command[name] = max(by_command.get(name, 0.0), hwm)
    return Measured(seconds, returncode, max([peak_sum, *by_command.values()]), by_command)
