"""Pilot: which self-supervised objective gives the hypernetwork useful predictions?

Trains the hypernetwork on chest X-ray training images with each objective for the same number
of steps, then compares them where it matters (DESIGN.md: rotation is nearly trivial on
radiographs): fine-tuning held-out architectures on chest_xray with 10 % of the labels, against
PyTorch's default init and the untrained reference hypernetwork, plus the self-supervised score
of predicted held-out networks. Resumable (training state and finished cells are kept).

    python benchmarks/train_pilot.py --steps 500 --out benchmarks/results/train_pilot
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import torch

from hyperinit.bench.runner import Cell, run_cell
from hyperinit.hypernet.reference import make_reference
from hyperinit.training import TrainConfig, train

OBJECTIVES = ("rotation", "c2l", "rotation+c2l")
ARCHS = ("timm:resnet18", "timm:regnetx_002")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/train_pilot")
    p.add_argument("--runs", default="runs/pilot", help="training state (not committed)")
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out, runs = Path(args.out), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    ref = runs / "reference"
    if not ref.exists():
        make_reference().save_pretrained(ref)
    inits = {"default": "default", "reference": f"hyperinit:{ref}"}
    training = {}
    for obj in OBJECTIVES:
        run = runs / obj.replace("+", "_")
        t0 = time.perf_counter()
        cfg = TrainConfig(
            modality="xray",
            objective=obj,
            steps=args.steps,
            out=str(run),
            image_size=48,
            meta_batch=2,
            batch_size=32,
            checkpoint_every=50,
            max_params=1_500_000,
        )
        if not (run / "hypernet" / "model.safetensors").exists():
            train(cfg)
        cfg_json = json.loads((run / "hypernet" / "config.json").read_text())
        training[obj] = {**cfg_json["training"], "this_call_s": time.perf_counter() - t0}
        inits[obj] = f"hyperinit:{run / 'hypernet'}"
    rows = []
    for seed in range(args.seeds):
        for arch in ARCHS:
            for name, init in inits.items():
                cell = Cell(
                    task="chest_xray",
                    arch=arch,
                    init=init,
                    init_name=name,
                    fraction=0.1,
                    seed=seed,
                    epochs=args.epochs,
                    size=64,
                )
                r = run_cell(cell, out / "cells", cache_dir=runs / "cache", progress=False)
                rows.append({"arch": arch, "init": name, "seed": seed, **r["test"]})
                logging.info("%s %s seed %d: %s", arch, name, seed, r["test"])
    summary: dict[str, dict[str, float]] = {}
    for arch in ARCHS:
        for name in inits:
            aucs = [r["auc"] for r in rows if r["arch"] == arch and r["init"] == name]
            if not aucs:
                continue
            summary[f"{arch} / {name}"] = {
                "auc_mean": statistics.mean(aucs),
                "auc_sd": statistics.stdev(aucs) if len(aucs) > 1 else 0.0,
            }
    (out / "pilot.json").write_text(
        json.dumps({"training": training, "cells": rows, "summary": summary}, indent=2) + "\n"
    )
    for k, v in summary.items():
        print(f"{k:<45} AUC {v['auc_mean']:.3f} +- {v['auc_sd']:.3f}")


if __name__ == "__main__":
    main()
