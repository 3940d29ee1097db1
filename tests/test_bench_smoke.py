"""`bench/run.py --smoke` runs every bench at tiny sizes and prints every table, so the benches never rot.

Nothing here times anything: the figures are printed, not asserted. What is
checked is that each bench ran to its end (the warm cycle and the naive
recipe stop with an error when a write did not land) and reported.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_bench_runs_and_prints_its_table() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke"], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    out = done.stdout
    assert done.returncode == 0, f"bench/run.py --smoke exited {done.returncode}:\n{out[-3000:]}\n{done.stderr[-3000:]}"
    assert "Machine:" in out and "Python" in out and "SQLite" in out and "PostgreSQL" in out
    for title in ("README scenario", "Naive recipe beside crmhub", "Warm cycle over history"):
        assert f"## {title}" in out, f"no {title} table:\n{out}"
    for crm in ("salesforce", "zendesk", "hubspot"):  # the README scenario delivered everything, nothing dead
        assert re.search(rf"^\| {crm} \| 24 \| 0 \|", out, re.M), out
    assert re.search(r"^\| salesforce \| \d+ \| \d+ \| [\d.]+ \| [\d.]+ \| [\d.]+x \|", out, re.M), out  # the ratio
    assert re.search(r"^\| sqlite \| 200 \| [\d.]+ \| [\d.]+ \|", out, re.M), out
    assert re.search(r"^\| postgresql \| (200 \| [\d.]+ \||skipped: )", out, re.M), out
    if (ROOT / "bench" / "latency.py").exists():
        assert "## Webhook latency" in out, out
    assert "| error |" not in out, out  # a failed bench's table is its one error row
