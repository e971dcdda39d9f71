"""Which layers does exact orthogonalisation fix that the shipped stand-in does not?

On MobileNetV3-L (chest X-ray, validation AUC against default init) orthogonalising every
predicted weight gets −0.031 ± 0.017, the shipped stand-in (``spectrum="flat"``,
``noise="orthogonal"``, depthwise kernels uncentred) only −0.099 ± 0.027
(``research/orthogonalize``). The stand-in's spectra are already nearly flat (median effective
rank 0.98 of full), so this asks where the difference lives: the shipped xray checkpoint as it is,
then with the exact polar factor (``hyperinit.postprocess.orthogonalize``, same RMS) applied to
every predicted weight, to the layers no normalisation follows (squeeze-excitation convolutions,
``conv_head``: the only layers whose scale and spectrum reach the output unnormalised), or to the
depthwise convolutions only. Panel protocol (``hyperinit.bench.quick.panel_cell``: 10 % of the
labels, 5 epochs, 64 px), paired by seed, decided on validation (best epoch), test beside it;
default and shipped cells are read from ``benchmarks/results/panel/cells/``.

    OMP_NUM_THREADS=1 python research/orthogonalize_layers/orthogonalize_layers.py --seeds 6 \
        --archs MobileNetV3-L MobileNetV3-S EfficientNet-B0

Cells are cached in ``cells/`` (resumable); writes ``orthogonalize_layers.{json,md}`` beside this.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from torch import nn

import hyperinit
from hyperinit.bench.quick import checkpoint_dir
from hyperinit.bench.variants import collect, variant_table
from hyperinit.init_diagnostics import layers_followed_by_norm
from hyperinit.postprocess import depthwise_weights, orthogonalize

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PANEL_CELLS = ROOT / "benchmarks" / "results" / "panel"  # its cells/ holds the cells
CACHE = ROOT / "runs" / "downstream_cache"
TASK = "chest_xray"
INITS = (
    "default",
    "shipped",
    "shipped, all orthogonalised",
    "shipped, no-norm layers orthogonalised",
    "shipped, depthwise orthogonalised",
)
#: the variants each architecture got (the others: all of them)
VARIANTS = {"MobileNetV3-S": INITS[4:], "EfficientNet-B0": INITS[4:]}


def orthogonalised(seed: int, which: str):
    """The shipped xray checkpoint, then the exact polar factor on the ``which`` layers."""

    def init(model: nn.Module) -> None:
        chans = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
        report = hyperinit.initialize(model, "xray", seed=seed)
        modules = dict(model.named_modules())
        if which == "no-norm":
            normed = layers_followed_by_norm(model, torch.zeros(2, chans, 64, 64))
            chosen = {name for name, has in normed.items() if not has}
        elif which == "depthwise":
            chosen = {name.removesuffix(".weight") for name in depthwise_weights(model)}
        else:
            chosen = set(modules)
        params = dict(model.named_parameters())
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name in report.predicted:
                p = params[name]
                if p.dim() > 1 and name.rsplit(".", 1)[0] in chosen:
                    p.copy_(orthogonalize(p, generator=gen))

    init.__name__ = f"xray_orth_{which}"
    return init


def inits(seed: int, arch: str) -> dict:
    cells = HERE / "cells"
    every = {
        INITS[0]: ("default", None, PANEL_CELLS),
        INITS[1]: (f"hyperinit:{checkpoint_dir('xray')}", None, PANEL_CELLS),
        INITS[2]: (orthogonalised(seed, "all"), "xray-orth-all", cells),
        INITS[3]: (orthogonalised(seed, "no-norm"), "xray-orth-nonorm", cells),
        INITS[4]: (orthogonalised(seed, "depthwise"), "xray-orth-dw", cells),
    }
    return {k: v for k, v in every.items() if k in INITS[:2] or k in VARIANTS.get(arch, INITS)}


def write(rows: dict, seeds: int) -> None:
    lines = [
        "# Exact orthogonalisation by layer group, on top of the shipped settings",
        "",
        "Command: the module docstring. Chest X-ray, 10 % of the labels, AUC; paired "
        f"differences over {seeds} seeds, mean ± standard error (seeds ahead). Validation = "
        "best epoch's validation AUC (the design criterion); test = the test AUC at that epoch.",
        "",
        *variant_table(rows, "default", "shipped"),
    ]
    (HERE / "orthogonalize_layers.md").write_text("\n".join(lines) + "\n")
    (HERE / "orthogonalize_layers.json").write_text(json.dumps(rows, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--archs", nargs="+", default=["MobileNetV3-L"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    write(collect(args.seeds, args.archs, TASK, inits, CACHE, log=logging.info), args.seeds)


if __name__ == "__main__":
    main()
