"""The benchmark's memory meter (benchmarks/process_tree.py) against processes of known size."""

from __future__ import annotations

import sys

from benchmarks.process_tree import run_measured

# a parent holding 300 MB that starts a child holding 200 MB while the parent still holds its 300 MB
PROGRAM = """
import subprocess, sys, time
block = bytearray(300 * 2**20)
for i in range(0, len(block), 4096): block[i] = 1
child = "b = bytearray(200 * 2**20)\\nfor i in range(0, len(b), 4096): b[i] = 1\\nimport time; time.sleep(1.5)"
subprocess.run([sys.executable, "-c", child], check=True)
sys.exit(7)
"""


def test_tree_peak_counts_parent_and_child_together():
    m = run_measured([sys.executable, "-c", PROGRAM], interval=0.1)
    assert m.returncode == 7
    # 300 + 200 MB touched, plus two interpreters (~10-30 MB each); never the sum of more than both
    assert 500 <= m.peak_tree_mb <= 600, m
    assert 300 <= max(m.peak_by_command.values()) <= 360, m.peak_by_command
    assert m.seconds >= 1.5
