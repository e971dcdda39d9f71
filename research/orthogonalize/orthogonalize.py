"""Does restoring the diversity of the predicted weights help fine-tuning?

The layer-by-layer diagnostic (research/init_diagnostic) found the predicted weights' effective
rank 0.71-0.83x default init's on every architecture of the panel. GHN's authors restore that
diversity before fine-tuning by orthogonalising the predicted weights, after a little noise.
This keeps the xray checkpoint as it shipped until 2026-12-02 (``SETTINGS_V0``) and compares,
on the quick downstream check (chest X-ray, 10 % of the labels, 5 epochs, 64 px, SGD 0.01),
paired by seed, decided on the validation score (best epoch), test reported beside it:

- orthogonalised: every predicted weight replaced by its polar factor at the same RMS
  (``hyperinit.postprocess.orthogonalize``), with or without noise of 0.2x the RMS first;
- cheap stand-ins that need no SVD of a full weight: ``noise="orthogonal"`` (the full-rank part
  a Kronecker product of semi-orthogonal factors), ``spectrum="flat"`` (the structured part
  replaced by its polar factor from its factors, its share at most r / min(rows, cols)) and
  ``centre_rows`` (whether depthwise kernels, or all rows, sum to zero).

Run (cells cached in ``cells/``, resumable; MobileNetV3-S got every variant, the other
architectures the orthogonalisations and the chosen stand-in):

    OMP_NUM_THREADS=1 python research/orthogonalize/orthogonalize.py --seeds 6 \
        --archs MobileNetV3-S --no-write
    OMP_NUM_THREADS=1 python research/orthogonalize/orthogonalize.py --seeds 6 \
        --archs EfficientNet-B0 DeiT-Tiny ResNet-18 --no-write --variants \
        "xray, orthogonalised" "xray, noise 0.2 + orthogonalised" \
        "xray, flat + orthogonal noise + depthwise uncentred"
    OMP_NUM_THREADS=1 python research/orthogonalize/orthogonalize.py --seeds 6 \
        --archs MobileNetV3-L --no-write --variants "xray, orthogonalised"
    OMP_NUM_THREADS=1 python research/orthogonalize/orthogonalize.py --report-only

The last writes ``orthogonalize.{json,md}`` beside this file from the cached cells. The default
and xray cells of MobileNetV3-S, EfficientNet-B0 and DeiT-Tiny are those of
research/norm_matching (same protocol and key).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
from pathlib import Path

import torch
from torch import nn

import hyperinit
from hyperinit.bench import cell_path
from hyperinit.bench.quick import checkpoint_copy, deit_tiny_64, quick_cell, run_quick
from hyperinit.bench.variants import variant_table
from hyperinit.initialize import load_hypernetwork
from hyperinit.postprocess import orthogonalize

HERE = Path(__file__).resolve().parent
TASK = "chest_xray"


@functools.cache
def xray_v0() -> Path:
    """The shipped xray checkpoint with the prediction settings it had when this ran
    (``hyperinit.bench.quick.SETTINGS_V0``): same weights, same cell keys."""
    return checkpoint_copy("xray", HERE / "cache")


ARCHS: dict[str, object] = {
    "MobileNetV3-S": "timm:mobilenetv3_small_100",
    "EfficientNet-B0": "timm:efficientnet_b0",
    "DeiT-Tiny": deit_tiny_64,
    "ResNet-18": "timm:resnet18",
    "MobileNetV3-L": "timm:mobilenetv3_large_100",
}
NOISE = 0.2
INITS = (
    "default",
    "xray",
    "xray, orthogonalised",
    f"xray, noise {NOISE} + orthogonalised",
    "xray, orthogonal noise",
    "xray, flat spectrum + orthogonal noise",
    "xray, depthwise uncentred",
    "xray, flat + orthogonal noise + depthwise uncentred",
    "xray, flat + orthogonal noise + uncentred",
)


def orthogonalised(seed: int, noise: float):
    """The shipped xray checkpoint, every predicted weight (dim > 1) orthogonalised."""

    def xray_orth(model: nn.Module) -> None:
        report = hyperinit.initialize(model, checkpoint=xray_v0(), seed=seed)
        params = dict(model.named_parameters())
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name in report.predicted:
                p = params[name]
                if p.dim() > 1:
                    p.copy_(orthogonalize(p, noise=noise, generator=gen))

    return xray_orth


def configured(seed: int, **config):
    """The shipped xray checkpoint with prediction settings changed: ``noise="orthogonal"``
    (the full-rank part a Kronecker product of two semi-orthogonal factors instead of two
    Gaussian ones), ``spectrum="flat"`` (structured share at most ``r / min(rows, cols)``)."""

    def xray_configured(model: nn.Module) -> None:
        hypernet = copy.deepcopy(load_hypernetwork(checkpoint=xray_v0())[0])
        for key, value in config.items():
            if not hasattr(hypernet.config, key):
                raise AttributeError(f"HyperInitConfig has no setting {key!r}")
            setattr(hypernet.config, key, value)
        hyperinit.initialize(model, checkpoint=hypernet, seed=seed)

    return xray_configured


def run(seeds: int, archs: list[str], variants: list[str], cached_only: bool = False) -> dict:
    cells, cache = HERE / "cells", HERE / "cache"
    rows: dict[str, dict[str, dict[str, list[float]]]] = {}
    for seed in range(seeds):
        for label in archs:
            arch = ARCHS[label]
            inits = {
                INITS[0]: ("default", None),
                INITS[1]: (f"hyperinit:{xray_v0()}", None),
                INITS[2]: (orthogonalised(seed, 0.0), "xray-orth"),
                INITS[3]: (orthogonalised(seed, NOISE), f"xray-noise{NOISE}-orth"),
                INITS[4]: (configured(seed, noise="orthogonal"), "xray-orthnoise"),
                INITS[5]: (
                    configured(seed, noise="orthogonal", spectrum="flat"),
                    "xray-flat-orthnoise",
                ),
                INITS[6]: (configured(seed, centre_rows="except_depthwise"), "xray-dwfree"),
                INITS[7]: (
                    configured(
                        seed, noise="orthogonal", spectrum="flat", centre_rows="except_depthwise"
                    ),
                    "xray-flat-orthnoise-dwfree",
                ),
                INITS[8]: (
                    configured(seed, noise="orthogonal", spectrum="flat", centre_rows="none"),
                    "xray-flat-orthnoise-nocentre",
                ),
            }
            for name in INITS[:2] + tuple(v for v in INITS[2:] if v in variants):
                init, init_name = inits[name]
                cell = quick_cell(TASK, arch, init, seed, init_name=init_name)
                if callable(arch):
                    cell.arch_name = "deit_tiny_64"
                if cached_only and not cell_path(cell, cells).is_file():
                    continue
                r = run_quick(cell, cells, cache)
                primary = r["task"]["primary"]
                out = rows.setdefault(label, {}).setdefault(name, {"val": [], "test": []})
                out["val"].append(max(v[primary] for v in r["curves"]["val"]))
                out["test"].append(r["test"][primary])
            logging.info("seed %d %s done", seed, label)
    return rows


def write(rows: dict, seeds: int) -> None:
    lines = [
        "# Restoring the diversity of predicted weights (chest X-ray, 10 % labels, quick check)",
        "",
        "Commands: the module docstring (each architecture ran the variants listed below; "
        "`python research/orthogonalize/orthogonalize.py --report-only` rewrites this from the "
        f"cached cells). AUC; paired differences over {seeds} seeds, mean ± standard error (seeds "
        "ahead). Validation = best epoch's validation AUC (the design criterion); test = the "
        "test AUC at that epoch. orthogonalised = each predicted weight's polar factor at its "
        f"RMS; noise {NOISE} = Gaussian noise of {NOISE}x the RMS added first; orthogonal noise "
        "= the full-rank part a Kronecker product of semi-orthogonal factors; flat spectrum = "
        "the structured share at most r / min(rows, cols).",
        "",
        *variant_table(rows, INITS[0], INITS[1]),
    ]
    (HERE / "orthogonalize.md").write_text("\n".join(lines) + "\n")
    (HERE / "orthogonalize.json").write_text(json.dumps(rows, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(INITS[2:]),
        help="which of the inits besides default and xray to run (all by default)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="write from the cached cells, run nothing"
    )
    parser.add_argument("--no-write", action="store_true", help="run cells only (parallel runs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    rows = run(args.seeds, args.archs, args.variants, args.report_only)
    if not args.no_write:
        write(rows, args.seeds)


if __name__ == "__main__":
    main()
