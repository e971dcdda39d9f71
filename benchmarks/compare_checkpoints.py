"""Compare two hypernetwork checkpoints of one modality downstream, paired by seed.

Fine-tunes ResNet-18 and the two held-out architectures of ``tools/downstream_check.py`` on the
modality's task (10 % of the labels, 5 epochs, 64 px) from PyTorch's default init and from each
checkpoint, for N seeds. Seed s gives both checkpoints the same data order and noise seed, so
the per-run differences B - A are paired. Decides whether a retrained checkpoint should replace
the shipped one. Cells are cached (``runs/downstream``), so re-running only adds what is new.
Writes ``<out>/compare_<modality>_<name>.{json,md}`` (default ``benchmarks/results``).

    python benchmarks/compare_checkpoints.py --modality ct \\
        --a hyperinit/checkpoints/ct --b runs/long/ckpt/ct --name long --seeds 6
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from hyperinit.bench.quick import TASK, compare_checkpoints, write_comparison

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CELLS = ROOT / "runs" / "downstream"
DATA_CACHE = ROOT / "runs" / "downstream_cache"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modality", required=True, choices=sorted(TASK))
    p.add_argument("--a", required=True, type=Path, help="the shipped checkpoint directory")
    p.add_argument("--b", required=True, type=Path, help="the candidate checkpoint directory")
    p.add_argument("--name", default="candidate", help="suffix of the result files")
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--cells", type=Path, default=CELLS, help="cell cache (default runs/downstream)")
    p.add_argument(
        "--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)"
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = compare_checkpoints(args.modality, args.a, args.b, args.seeds, args.cells, DATA_CACHE)
    print(write_comparison(result, args.name, args.out).read_text())


if __name__ == "__main__":
    main()
