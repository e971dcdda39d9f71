"""Pilot: which self-supervised objective gives the hypernetwork useful predictions?

docs/design.md: rotation prediction is nearly trivial on chest X-rays, so objectives are compared on
downstream use, not on their own loss. Trains xray hypernetworks with each objective under the
settings of ``tools/train_modalities.py`` (the shipped checkpoints use ``rotation+c2l``), then
fine-tunes the cells of ``tools/downstream_check.py`` (chest_xray, 10 % labels, ResNet-18 and two
held-out architectures, 3 seeds, 5 epochs, 64 px) from each. Cells are shared with
downstream_check (same cache folder), so default-init and rotation+c2l cells run once.

    python research/train_pilot/train_pilot.py --objectives rotation c2l
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

import torch

from hyperinit.bench import Cell, run_cell
from hyperinit.bench.quick import ARCHS, checkpoint_dir, checkpoint_init
from hyperinit.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent
CELLS = ROOT / "runs" / "downstream"
DATA_CACHE = ROOT / "runs" / "downstream_cache"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--objectives", nargs="*", default=["rotation", "c2l"])
    p.add_argument("--steps", type=int, default=350)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "pilot")
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    inits = {"default": "default", "rotation+c2l": checkpoint_init("xray", "trained")}
    training = {}
    for obj in args.objectives:
        run = args.runs / obj.replace("+", "_")
        cfg = TrainConfig(
            modality="xray",
            objective=obj,
            steps=args.steps,
            image_size=48,
            meta_batch=2,
            batch_size=32,
            max_params=1_500_000,
            lr=2e-3,
            structured_fraction=0.5,
            checkpoint_every=50,
            out=str(run),
            seed=0,
        )
        if not (run / "hypernet" / "model.safetensors").exists():
            train(cfg)
        training[obj] = json.loads((run / "hypernet" / "config.json").read_text())["training"]
        inits[obj] = f"hyperinit:{run / 'hypernet'}"
    shipped = json.loads((checkpoint_dir("xray") / "config.json").read_text())
    training["rotation+c2l"] = shipped["training"]
    rows = []
    for seed in range(args.seeds):
        for arch in ARCHS:
            for name, init in inits.items():
                label = "trained:xray" if name == "rotation+c2l" else name
                cell = Cell(
                    task="chest_xray",
                    arch=arch,
                    init=init,
                    init_name=label,
                    fraction=0.1,
                    seed=seed,
                    epochs=5,
                    size=64,
                )
                r = run_cell(
                    cell,
                    CELLS,
                    cache_dir=DATA_CACHE,
                    progress=False,
                )
                rows.append({"arch": arch, "objective": name, "seed": seed, **r["test"]})
                logging.info("%s %s seed %d: %s", arch, name, seed, r["test"])
    summary = {}
    for arch in ARCHS:
        for name in inits:
            aucs = [r["auc"] for r in rows if r["arch"] == arch and r["objective"] == name]
            summary[f"{arch}|{name}"] = {
                "mean": statistics.mean(aucs),
                "sd": statistics.stdev(aucs),
                "n": len(aucs),
            }
    (RESULTS / "train_pilot.json").write_text(
        json.dumps({"training": training, "rows": rows, "summary": summary}, indent=2) + "\n"
    )
    names = list(inits)
    lines = [
        "# Pilot: objectives compared downstream (chest_xray, 10 % labels, 5 epochs, 64 px)",
        "",
        f"Test AUC, mean ± sd over {args.seeds} seeds; "
        "`python research/train_pilot/train_pilot.py`. "
        "xray hypernetworks trained with the same settings (48 px, 2 architectures x 32 images "
        "per step, 350-step cosine schedule, 450 s time limit): "
        + "; ".join(
            f"{k}: {v['steps']} steps in {v['wall_time_s']:.0f} s" for k, v in training.items()
        )
        + ". rotation+c2l is the shipped xray checkpoint.",
        "",
        "| architecture | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for arch in ARCHS:
        cells = [
            f"{summary[f'{arch}|{n}']['mean']:.3f} ± {summary[f'{arch}|{n}']['sd']:.3f}"
            for n in names
        ]
        lines.append(f"| {arch} | " + " | ".join(cells) + " |")
    (RESULTS / "train_pilot.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
