"""`crmhub ...` under yappi (CPU time, every thread), for `bench/latency.py --profile DIR`: a developer aid.

    .venv/bin/python bench/profiled_daemon.py OUT.prof run --config settings.yaml

yappi is a dev tool, not a dependency (`pip install yappi`). On exit (SIGTERM
ends `crmhub run` normally) it writes OUT.prof (pstats format, load it with
`python -m pstats`) and OUT.txt: the top functions by own and by total time.
"""

from __future__ import annotations

import io
import pstats
import sys
from pathlib import Path

import yappi  # type: ignore[import-not-found]  # a dev tool, installed by hand


def main() -> None:
    out = Path(sys.argv[1])
    sys.argv = ["crmhub", *sys.argv[2:]]
    yappi.set_clock_type("cpu")
    yappi.start()
    try:
        from crmhub.cli import main as crmhub_main

        crmhub_main()
    finally:
        yappi.stop()
        yappi.get_func_stats().save(str(out), type="pstat")
        text = io.StringIO()
        stats = pstats.Stats(str(out), stream=text)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)
        out.with_suffix(".txt").write_text(text.getvalue())


if __name__ == "__main__":
    main()
