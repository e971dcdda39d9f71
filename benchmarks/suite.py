"""Run the bundled benchmark suite into benchmarks/results/ and write benchmarks/results/REPORT.md.

The same as ``hyperinit bench`` with the repository's result folders; every finished cell is a
JSON file in ``benchmarks/results/suite_<SUITE>/cells/`` and is never rerun, so stop and restart
at will (unfinished cells resume from their last epoch):

    nohup python benchmarks/suite.py default --threads 1 --shard 0/2 > /tmp/bench0.log 2>&1 &
    nohup python benchmarks/suite.py default --threads 1 --shard 1/2 > /tmp/bench1.log 2>&1 &
    python benchmarks/suite.py default --report-only      # regenerate REPORT.md from the JSON
    python benchmarks/suite.py default --list             # the cells and their time estimates
"""

from __future__ import annotations

import sys
from pathlib import Path

from hyperinit.cli import main

RESULTS = Path(__file__).resolve().parent / "results"

if __name__ == "__main__":
    args = sys.argv[1:]
    suite = next((a for a in args if not a.startswith("-")), "default")
    if "--quick" in args:
        suite = "quick"
    extra = []
    if "--results" not in args:
        extra += ["--results", str(RESULTS / f"suite_{suite}")]
    if "--report" not in args:
        extra += ["--report", str(RESULTS / "REPORT.md")]
    sys.exit(main(["bench", *args, *extra]))
