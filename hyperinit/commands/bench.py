"""``hyperinit bench``: run the benchmark suite (resumable, sharded) and write its report."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``hyperinit bench`` on the CLI's subparsers."""
    p = sub.add_parser("bench", help="run the benchmark suite (resumable) and write REPORT.md")
    p.add_argument("suite", nargs="?", default="default", help="quick, default, full or gpu")
    p.add_argument("--quick", action="store_true", help="the tiny suite (a few minutes on CPU)")
    p.add_argument("--report-only", action="store_true", help="only (re)write the report")
    p.add_argument("--results", default=None, help="cell JSON folder (hyperinit-bench/SUITE)")
    p.add_argument("--also", action="append", help="more result folders for the report")
    p.add_argument("--report", default=None, help="report path (RESULTS/REPORT.md)")
    p.add_argument("--c2l", default=None, help="a C2L checkpoint: adds c2l:<path> cells")
    p.add_argument("--only", action="append", help="run cells with this tag (core, sweep...)")
    p.add_argument("--init", action="append", help="run cells with this init label")
    p.add_argument("--shard", default="0/1", help="I/N: run every N-th cell from the I-th")
    p.add_argument("--max-cells", type=int, default=None, help="stop after this many cells")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 when shared)")
    p.add_argument("--device", default="cpu", help="cpu, cuda ...")
    p.add_argument("--data-root", default=None, help="data folder (HYPERINIT_DATA)")
    p.add_argument("--list", action="store_true", help="list the cells and time estimates")
    p.set_defaults(func=run)
    return p


def _writes_report(args: argparse.Namespace) -> bool:
    """Only shard 0 (or a --report-only run) writes the report."""
    return args.report_only or args.shard.split("/")[0] == "0"


def run(args: argparse.Namespace) -> int:
    """Run ``hyperinit bench``; returns the exit status."""
    from hyperinit.bench.report import write_report
    from hyperinit.bench.suites import estimate_seconds, get_suite, run_suite

    suite = "quick" if args.quick else args.suite
    results = Path(args.results or f"hyperinit-bench/{suite}")
    report = Path(args.report or results / "REPORT.md")
    shown = os.path.relpath(results) if results.resolve().is_relative_to(Path.cwd()) else results
    command = f"hyperinit bench {suite} --results {shown}" + (
        f" --c2l {args.c2l}" if args.c2l else ""
    )
    cells = get_suite(suite, c2l=args.c2l)
    if not args.report_only:
        if args.list:
            total = sum(estimate_seconds(c) for c in cells)
            for c in cells:
                print(f"{c.key():<80} {estimate_seconds(c) / 60:7.1f} min  {','.join(c.tags)}")
            print(
                f"{len(cells)} cells, about {total / 3600:.1f} h of cell time (1 thread each): "
                f"{total / 7200:.1f} h with two workers (--threads 1 --shard 0/2 and 1/2) on "
                "2 CPU cores"
            )
            return 0
        if args.threads:
            torch.set_num_threads(args.threads)
        i, n = (int(v) for v in args.shard.split("/"))
        run_suite(
            cells,
            results,
            shard=(i, n),
            tags=tuple(args.only or ()),
            inits=tuple(args.init or ()),
            max_cells=args.max_cells,
            device=args.device,
            data_root=args.data_root,
        )
    if _writes_report(args):
        dirs = [results, *map(Path, args.also or [])]
        path = write_report(dirs, report, command=command, planned=cells)
        print(f"report: {path}")
    return 0
