"""Does damping the residual branches of the MBConv networks help them, as it helped RegNetX?

The shipped ``residual_scale=0.25`` multiplies the predicted weight of each norm the
architecture's own init sets to zero (timm's ``zero_init_last``, ResNets and RegNets): with
those branches live at full scale RegNetX's first epoch blew up (``research/residual_scale``).
timm's MobileNetV3 and EfficientNet blocks have no ``zero_init_last``, so their residual
branches (inverted residuals and depthwise-separable blocks with a skip) stay live at the
predicted norm weight (about 1) and get nothing. This damps them too: the own-modality
checkpoint with its shipped post-processing, then the last norm weight of every block with a
skip (``has_skip``: ``bn3`` of an inverted residual, ``bn2`` of a depthwise-separable block)
multiplied by 0.25 (the shipped value) or by 0 (SkipInit, what ``zero_init_last`` does);
on the classification tasks also the control, default init with the same norms at 0.
Quick downstream check (10 % of the labels, 5 epochs, 64 px, DRIVE 128 px) on all five
panel tasks, the panel's cells for default init and the checkpoint, 6 seeds paired by seed;
decided on validation (best epoch), test beside it.

    OMP_NUM_THREADS=1 python research/mbconv_residual_scale/mbconv_residual_scale.py --seeds 6

Cells are cached in ``cells/``; writes ``mbconv_residual_scale.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from torch import nn

import hyperinit
from hyperinit.bench.quick import TASK, checkpoint_dir
from hyperinit.bench.variants import collect, variant_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PANEL_CELLS = ROOT / "benchmarks" / "results" / "panel"
CACHE = ROOT / "runs" / "downstream_cache"
ARCHS = ("MobileNetV3-S", "MobileNetV3-L", "EfficientNet-B0")
TASKS = ("chest_xray", "busi", "ct_covid", "dermamnist", "drive")
OWN = {task: modality for modality, task in TASK.items() if modality != "mixed"}
SCALES = (0.25, 0.0)


def residual_last_norms(model: nn.Module) -> list[nn.Module]:
    """The last norm of each block with a skip connection (timm's MBConv blocks)."""
    out = []
    for block in model.modules():
        if getattr(block, "has_skip", False) is True:
            norms = [m for m in block.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
            if norms:
                out.append(norms[-1])
    return out


def damped(task: str, seed: int, scale: float):
    """The own checkpoint, then each residual branch's last norm weight times ``scale``."""
    folder = checkpoint_dir(OWN[task])

    def init(model: nn.Module) -> None:
        hyperinit.initialize(model, checkpoint=str(folder), seed=seed)
        norms = residual_last_norms(model)
        if not norms:
            raise RuntimeError(f"no residual block found in {type(model).__name__}")
        with torch.no_grad():
            for norm in norms:
                norm.weight.mul_(scale)

    init.__name__ = f"{OWN[task]}_mbconv_residual_scale_{scale:g}"
    return init


def default_skipinit(model: nn.Module) -> None:
    """The control: default init with the same norm weights at 0 (SkipInit)."""
    with torch.no_grad():
        for norm in residual_last_norms(model):
            norm.weight.zero_()


def inits_for(task: str):
    def named(seed: int, arch: str) -> dict:
        out = {
            "default": ("default", None, PANEL_CELLS),
            "trained": (f"hyperinit:{checkpoint_dir(OWN[task])}", None, PANEL_CELLS),
        }
        for scale in SCALES:
            fn = damped(task, seed, scale)
            out[f"trained, residual branches x{scale:g}"] = (fn, fn.__name__, HERE / "cells")
        if task != "drive":
            out["default, residual branches x0"] = (
                default_skipinit,
                "default_mbconv_skipinit",
                HERE / "cells",
            )
        return out

    return named


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    lines = [
        "# Damping the MBConv networks' residual branches (10 % labels)",
        "",
        f"Command: the module docstring. AUC (DRIVE: Dice); paired differences over "
        f"{args.seeds} seeds, mean ± standard error (seeds ahead). Validation = best epoch's "
        "validation score (the design criterion); test = the test score at that epoch.",
    ]
    out = {}
    for task in args.tasks:
        rows = collect(args.seeds, args.archs, task, inits_for(task), CACHE, log=logging.info)
        out[task] = rows
        lines += ["", f"## {task} (checkpoint: {OWN[task]})", ""]
        lines += variant_table(rows, "default", "trained")
    (HERE / "mbconv_residual_scale.md").write_text("\n".join(lines) + "\n")
    (HERE / "mbconv_residual_scale.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
