"""Do MBConv networks fine-tune better if the layers with no norm after them keep default init?

The layer-by-layer diagnostic (research/init_diagnostic) found 18-33 layers per MobileNetV3 /
EfficientNet-B0 whose output no normalisation consumes (squeeze-excitation convolutions,
``conv_head``, the classifier side): the one place a predicted weight's scale reaches the
output. This keeps the shipped xray checkpoint's prediction everywhere else and gives those
layers back the model's own default init, compared with default init and the plain
checkpoint on the quick downstream check (chest X-ray, 10 % of the labels, 5 epochs, 64 px),
paired by seed. Decided on the validation score (best epoch); test reported beside it.

    OMP_NUM_THREADS=1 python research/no_norm_layers/no_norm_layers.py --seeds 6

Cells are cached in ``cells/`` (resumable); writes ``no_norm_layers.{json,md}`` beside this file.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
from pathlib import Path

import torch
from torch import nn

import hyperinit
from hyperinit.bench.quick import checkpoint_copy, quick_cell, run_quick
from hyperinit.bench.stats import paired_text
from hyperinit.init_diagnostics import layers_followed_by_norm

HERE = Path(__file__).resolve().parent
TASK = "chest_xray"


@functools.cache
def xray_v0() -> Path:
    """The shipped xray checkpoint with the prediction settings it had when this ran
    (``hyperinit.bench.quick.SETTINGS_V0``): same weights, same cell keys."""
    return checkpoint_copy("xray", HERE / "cache")


ARCHS = {"MobileNetV3-S": "timm:mobilenetv3_small_100", "EfficientNet-B0": "timm:efficientnet_b0"}
INITS = ("default", "xray", "xray, default where no norm follows")


def default_where_no_norm(seed: int):
    """The shipped xray checkpoint, except layers no norm follows keep their default init."""

    def xray_default_no_norm(model: nn.Module) -> None:
        normed = layers_followed_by_norm(model, torch.zeros(2, 1, 64, 64))
        keep = [name for name, has_norm in normed.items() if not has_norm]
        hyperinit.initialize(model, checkpoint=xray_v0(), seed=seed, exclude=keep)

    return xray_default_no_norm


def run(seeds: int) -> dict:
    cells, cache = HERE / "cells", HERE / "cache"
    rows: dict[str, dict[str, dict[str, list[float]]]] = {}
    for seed in range(seeds):
        for label, arch in ARCHS.items():
            inits = {
                INITS[0]: ("default", None),
                INITS[1]: (f"hyperinit:{xray_v0()}", None),
                INITS[2]: (default_where_no_norm(seed), "xray-default-no-norm"),
            }
            for name, (init, init_name) in inits.items():
                r = run_quick(quick_cell(TASK, arch, init, seed, init_name=init_name), cells, cache)
                primary = r["task"]["primary"]
                out = rows.setdefault(label, {}).setdefault(name, {"val": [], "test": []})
                out["val"].append(max(v[primary] for v in r["curves"]["val"]))
                out["test"].append(r["test"][primary])
            logging.info("seed %d %s done", seed, label)
    return rows


def write(rows: dict, seeds: int) -> None:
    lines = [
        "# Default init where no norm follows (chest X-ray, 10 % labels, quick check)",
        "",
        f"Command: `OMP_NUM_THREADS=1 python research/no_norm_layers/no_norm_layers.py --seeds "
        f"{seeds}`. AUC; paired differences over {seeds} seeds, mean ± standard error (seeds "
        "ahead). Validation = best epoch's validation AUC (the design criterion); test = the "
        "test AUC at that epoch.",
        "",
        "| arch | split | default | xray | xray, default where no norm follows "
        "| xray − default | variant − default | variant − xray |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arch, by in rows.items():
        for split in ("val", "test"):
            d, x, v = (by[k][split] for k in INITS)
            avg = [f"{sum(s) / len(s):.3f}" for s in (d, x, v)]
            lines.append(
                f"| {arch} | {split} | {' | '.join(avg)} | {paired_text(x, d)} | "
                f"{paired_text(v, d)} | {paired_text(v, x)} |"
            )
    (HERE / "no_norm_layers.md").write_text("\n".join(lines) + "\n")
    (HERE / "no_norm_layers.json").write_text(json.dumps(rows, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    write(run(args.seeds), args.seeds)


if __name__ == "__main__":
    main()
