"""Run the bundled benchmark suite into benchmarks/results/ and write benchmarks/results/REPORT.md.

The same as ``hyperinit bench`` with the repository's result folders (``--out DIR``: DIR instead
of benchmarks/results); every finished cell is a JSON file in
``benchmarks/results/suite_<SUITE>/cells/`` and is never rerun, so stop and restart at will
(unfinished cells resume from their last epoch):

    nohup python benchmarks/suite.py default --threads 1 --shard 0/2 > /tmp/bench0.log 2>&1 &
    nohup python benchmarks/suite.py default --threads 1 --shard 1/2 > /tmp/bench1.log 2>&1 &
    python benchmarks/suite.py default --report-only      # regenerate REPORT.md from the JSON
    python benchmarks/suite.py default --list             # the cells and their time estimates
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hyperinit.bench.report import write_report
from hyperinit.bench.suites import get_suite
from hyperinit.cli import build_parser, main

RESULTS = Path(__file__).resolve().parent / "results"

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--out" in args:  # results folder (default benchmarks/results)
        i = args.index("--out")
        RESULTS = Path(args[i + 1]).resolve()
        del args[i : i + 2]
    suite = next((a for a in args if not a.startswith("-")), "default")
    if "--quick" in args:
        suite = "quick"
    extra = []
    if "--results" not in args:
        extra += ["--results", str(RESULTS / f"suite_{suite}")]
    if "--report" not in args:
        extra += ["--report", str(RESULTS / "REPORT.md")]
    argv = ["bench", *args, *extra]
    code = main(argv)
    ns = build_parser().parse_args(argv)
    if code == 0 and not ns.list and (ns.report_only or ns.shard.startswith("0/")):
        # the repository's report also carries the panel and the goal scoreboard (goals.py)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from goals import goal_section, panel_section

        results = Path(ns.results)
        shown = (
            os.path.relpath(results) if results.resolve().is_relative_to(Path.cwd()) else results
        )
        write_report(
            [results, *map(Path, ns.also or [])],
            ns.report,
            command=f"hyperinit bench {suite} --results {shown}"
            + (f" --c2l {ns.c2l}" if ns.c2l else ""),
            planned=get_suite(suite, c2l=ns.c2l),
            extra_sections=[panel_section(RESULTS / "panel"), goal_section],
        )
    sys.exit(code)
