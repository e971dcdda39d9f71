"""Does a data-dependent scale for the layers no norm follows help the MBConv networks?

The layer-by-layer diagnostic (``research/init_diagnostic``) found 18-33 layers per MobileNetV3 /
EfficientNet-B0 whose output no normalisation consumes (squeeze-excitation convolutions,
``conv_head``): the one place a predicted weight's scale reaches the output unchanged. Giving
them back their default init was rejected (``research/no_norm_layers``, under the settings of
then). This keeps each predicted direction and sets the scale from data instead, LSUV-style:
one batch of the task's training images (32, in train mode) goes through the model under its
own default init and again under the prediction (the shipped own-modality checkpoint with its
shipped post-processing), and each such layer's weight is multiplied by the ratio of the two
output RMS, shallow to deep, for three passes (a layer's input depends on the layers before).
The classifier head keeps its default init as always. Quick downstream check (10 % of the
labels, 5 epochs, 64 px), the panel's cells for default init and the checkpoint, 6 seeds
paired by seed; decided on validation (best epoch), test beside it.

    OMP_NUM_THREADS=1 python research/no_norm_scale/no_norm_scale.py --seeds 6

Cells are cached in ``cells/``; writes ``no_norm_scale.{json,md}``.
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
from hyperinit.bench.tasks import get_task, load_task_split
from hyperinit.bench.variants import collect, variant_table
from hyperinit.init_diagnostics import layers_followed_by_norm

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PANEL_CELLS = ROOT / "benchmarks" / "results" / "panel"
CACHE = ROOT / "runs" / "downstream_cache"
ARCHS = ("MobileNetV3-S", "MobileNetV3-L", "EfficientNet-B0")
TASKS = ("chest_xray",)
OWN = {task: modality for modality, task in TASK.items() if modality != "mixed"}
PASSES = 3


def _batch(task: str, n: int = 32) -> torch.Tensor:
    split = load_task_split(get_task(task), "train", 64, 0.1, 0, cache_dir=CACHE)
    x = split.x[:n].float() / 255
    return (x - x.mean()) / x.std().clamp_min(1e-3)


def _output_rms(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, float]:
    modules = dict(model.named_modules())
    out: dict[str, float] = {}

    def record(name: str):
        def hook(_module: nn.Module, _inputs: object, y: torch.Tensor) -> None:
            out.setdefault(name, y.detach().pow(2).mean().sqrt().item())  # first call only

        return hook

    hooks = [modules[n].register_forward_hook(record(n)) for n in names]
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    try:
        with torch.no_grad():
            model.train()(x)
    finally:
        for h in hooks:
            h.remove()
        with torch.no_grad():  # the norms' running statistics as they were
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
    return out


def data_scaled(task: str, seed: int):
    """The own checkpoint, then the no-norm layers' weights scaled to default init's output
    RMS on one batch of ``task``'s training images."""
    folder = checkpoint_dir(OWN[task])

    def init(model: nn.Module) -> None:
        x = _batch(task)
        normed = layers_followed_by_norm(model, x[:2])
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        modules = dict(model.named_modules())
        names = [n for n, has in normed.items() if not has and modules[n] is not head]
        target = _output_rms(model, names, x)  # under the model's own default init
        hyperinit.initialize(model, checkpoint=str(folder), seed=seed)
        for _ in range(PASSES):
            for name in names:  # shallow to deep, each after the ones before are set
                now = _output_rms(model, [name], x)[name]
                with torch.no_grad():
                    modules[name].weight.mul_(target[name] / max(now, 1e-8))

    init.__name__ = f"{OWN[task]}_no_norm_data_scale"
    return init


def inits_for(task: str):
    def named(seed: int, arch: str) -> dict:
        fn = data_scaled(task, seed)
        return {
            "default": ("default", None, PANEL_CELLS),
            "trained": (f"hyperinit:{checkpoint_dir(OWN[task])}", None, PANEL_CELLS),
            "trained, no-norm layers data-scaled": (fn, fn.__name__, HERE / "cells"),
        }

    return named


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=sorted(OWN))
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    lines = [
        "# A data-dependent scale for the layers no norm follows (10 % labels)",
        "",
        f"Command: the module docstring. AUC; paired differences over {args.seeds} seeds, "
        "mean ± standard error (seeds ahead). Validation = best epoch's validation AUC (the "
        "design criterion); test = the test AUC at that epoch.",
    ]
    out = {}
    for task in args.tasks:
        rows = collect(args.seeds, args.archs, task, inits_for(task), CACHE, log=logging.info)
        out[task] = rows
        lines += ["", f"## {task} (checkpoint: {OWN[task]})", ""]
        lines += variant_table(rows, "default", "trained")
    (HERE / "no_norm_scale.md").write_text("\n".join(lines) + "\n")
    (HERE / "no_norm_scale.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
