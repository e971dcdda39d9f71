"""Is EfficientNet-B0's deficit on DRIVE under the quick protocol a late onset, or does it last?

The panel's quick protocol trains DRIVE (2 labelled images, 128 px) for 5 epochs of 8 steps;
every init ends near its start (test Dice 0.05-0.2) and the shipped fundus checkpoint is behind
default init on EfficientNet-B0 (−0.062 ± 0.023 Dice, 0/6 seeds ahead), the one pair of the
panel that is behind. This reruns that pair, default init against the shipped fundus checkpoint,
with ``--epochs`` (default 20) instead of 5, everything else as the panel (U-Net over the
encoder, the decoder at its default init, 6 seeds paired by seed). The best epoch is chosen on
DRIVE's validation split (its 20 training images); test is reported at that epoch.

    OMP_NUM_THREADS=1 python research/drive_epochs/drive_epochs.py --epochs 20 --seeds 6

Finished cells are cached in ``cells/``; the 5-epoch rows are the panel's committed cells.
Writes ``drive_epochs.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
from functools import partial
from pathlib import Path

import torch

from hyperinit.bench.quick import PANEL_ARCHS, checkpoint_dir, quick_cell, quick_size
from hyperinit.bench.variants import collect, variant_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PANEL_CELLS = ROOT / "benchmarks" / "results" / "panel"
CACHE = ROOT / "runs" / "downstream_cache"
TASK = "drive"


def cell(arch: str, task: str, init: object, seed: int, *, init_name=None, epochs: int):
    """A panel DRIVE cell with ``epochs`` epochs."""
    return quick_cell(
        task,
        PANEL_ARCHS[arch],
        init,
        seed,
        size=quick_size(task),
        init_name=init_name,
        epochs=epochs,
    )


def inits(seed: int, arch: str, cells: Path) -> dict:
    return {
        "default": ("default", None, cells),
        "trained": (f"hyperinit:{checkpoint_dir('fundus')}", None, cells),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--archs", nargs="+", default=["EfficientNet-B0"], choices=PANEL_ARCHS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    lines = [
        "# DRIVE: the quick protocol's 5 epochs against longer training",
        "",
        f"Command: the module docstring. Test Dice at the best validation epoch; paired "
        f"differences over {args.seeds} seeds, mean ± standard error (seeds ahead).",
    ]
    out = {}
    for epochs in (5, args.epochs):
        where = PANEL_CELLS if epochs == 5 else HERE / "cells"
        rows = collect(
            args.seeds,
            args.archs,
            TASK,
            partial(inits, cells=where),
            CACHE,
            cell=partial(cell, epochs=epochs),
            log=logging.info,
        )
        out[str(epochs)] = rows
        lines += ["", f"## {epochs} epochs", ""]
        lines += variant_table(rows, "default", "trained")
    (HERE / "drive_epochs.md").write_text("\n".join(lines) + "\n")
    (HERE / "drive_epochs.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
