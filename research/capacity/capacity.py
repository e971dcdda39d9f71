"""Does a larger hypernetwork (or a larger decoder) help at equal CPU time?

Each shipped hypernetwork is 0.86 MB (d_model 64, K = 2 rounds, decoder_hidden 32). This trains
larger ones with the shipped objective (``rotation+c2l``) for the same wall time on one CPU core
as the control (the shipped xray checkpoint's 451 s budget, 500 scheduled steps, seed 0, from
the untrained network of its size with the shipped prediction settings):

- ``base``: d_model 64, decoder_hidden 32, the shipped size. Its trained result is the
  ``rotation+c2l`` control of ``research/distillation`` (same start, budget and seed), read from
  that folder's checkpoint and cells; its start is the shipped reference.
- ``wide``: d_model 128, decoder_hidden 64 (3.2 MB, the largest size whose seven embedded
  checkpoints still fit the wheel's 30 MB budget);
- ``decoder``: d_model 64, decoder_hidden 96 (a larger decoder core only).

Each trained network is compared with its own untrained start (what training adds at that
size), the base network trained for the same time (what the size adds) and default init, on
the panel's protocol (chest X-ray, 10 % of the labels, 5 epochs, 64 px, six architectures;
cells keyed as ``benchmarks/panel.py``'s), paired by seed. The choice is made on the
validation score (best epoch); test is reported beside it.

    OMP_NUM_THREADS=1 python research/capacity/capacity.py --train wide
    OMP_NUM_THREADS=1 python research/capacity/capacity.py --train decoder
    OMP_NUM_THREADS=1 python research/capacity/capacity.py --seeds 6 [--only wide]

Training resumes after a kill (``runs/capacity/<name>``) and exports to ``checkpoints/<name>/``
beside this file (committed, with the untrained start ``checkpoints/<name>_start/``). Finished
cells are cached in ``cells/``. Writes ``capacity.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
from pathlib import Path

import torch

from hyperinit.bench.quick import checkpoint_dir
from hyperinit.bench.stats import mean_se
from hyperinit.bench.variants import collect, variant_table
from hyperinit.hypernet.config import HyperInitConfig
from hyperinit.hypernet.model import HyperInitializer
from hyperinit.training import HyperTrainer, TrainConfig

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PANEL_CELLS = ROOT / "benchmarks" / "results" / "panel"
CONTROL = ROOT / "research" / "distillation"  # its rotation+c2l run is the base size
CACHE = ROOT / "runs" / "downstream_cache"
TASK = "chest_xray"
#: the shipped xray checkpoint's training wall time (its config.json), for equal CPU time
WALL_S = 451.2
ARCHS = ("ResNet-18", "RegNetX-200MF", "MobileNetV3-S", "MobileNetV3-L", "EfficientNet-B0")
ARCHS += ("DeiT-Tiny",)
#: name -> the config fields that differ from the shipped reference
SIZES = {"wide": {"d_model": 128, "decoder_hidden": 64}, "decoder": {"decoder_hidden": 96}}


def start(name: str) -> Path:
    """The untrained network of size ``name`` (seed 0, the shipped prediction settings)."""
    out = HERE / "checkpoints" / f"{name}_start"
    if (out / "config.json").is_file():
        return out
    reference = HyperInitConfig.load(checkpoint_dir("reference") / "config.json")
    cfg = dataclasses.replace(reference, **SIZES[name])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        hypernet = HyperInitializer(cfg).eval()
    hypernet.save_pretrained(out, model_card=hypernet.model_card())
    return out


def train(name: str) -> Path:
    """Train (or resume) size ``name`` for the control's wall time; returns its folder."""
    out = HERE / "checkpoints" / name
    if (out / "config.json").is_file():
        return out
    config = TrainConfig(
        modality="xray",
        objective="rotation+c2l",
        steps=500,
        time_limit_s=WALL_S,
        seed=0,
        init=str(start(name)),
        out=str(ROOT / "runs" / "capacity" / name),
    )
    trainer = HyperTrainer(config)
    hypernet = trainer.fit()
    hypernet.config.training = {**trainer.training_summary(), "finished": False}
    hypernet.config.modality = "xray"
    hypernet.save_pretrained(out, model_card=hypernet.model_card())
    logging.info("%s: %d steps in %.0f s -> %s", name, trainer.step, trainer.elapsed, out)
    return out


def inits(only: list[str] | None):
    """Name -> (init, no name, cells folder) of every init compared."""

    def named(seed: int = 0, arch: str = "") -> dict[str, tuple[str, None, Path]]:
        out = {
            "default": ("default", None, PANEL_CELLS),
            "base untrained (reference)": (
                f"hyperinit:{checkpoint_dir('reference')}",
                None,
                PANEL_CELLS,
            ),
            "base trained": (
                f"hyperinit:{CONTROL / 'checkpoints' / 'rotation_c2l'}",
                None,
                CONTROL / "cells",
            ),
        }
        for name in SIZES:
            if only and name not in only:
                continue
            for suffix, label in (("_start", "untrained"), ("", "trained")):
                folder = HERE / "checkpoints" / f"{name}{suffix}"
                if (folder / "config.json").is_file():
                    out[f"{name} {label}"] = (f"hyperinit:{folder}", None, HERE / "cells")
        return out

    return named


def size_rows() -> list[str]:
    """Each size's parameters, file size and training run."""
    lines = ["| size | d_model | decoder_hidden | parameters | MB | steps in budget | wall s |"]
    lines.append("|---|---|---|---|---|---|---|")
    folders = {"base": CONTROL / "checkpoints" / "rotation_c2l"}
    folders |= {name: HERE / "checkpoints" / name for name in SIZES}
    for name, folder in folders.items():
        if not (folder / "config.json").is_file():
            continue
        hypernet = HyperInitializer.from_pretrained(str(folder))
        cfg, t = hypernet.config, hypernet.config.training
        n = sum(p.numel() for p in hypernet.parameters())
        mb = (folder / "model.safetensors").stat().st_size / 1e6
        lines.append(
            f"| {name} | {cfg.d_model} | {cfg.decoder_hidden} | {n:,} | {mb:.2f} "
            f"| {t['steps']} | {t['wall_time_s']} |"
        )
    return lines


def pooled(rows: dict, a: str, b: str, split: str) -> str:
    """``a - b`` averaged over the architectures: the mean of the per-architecture paired
    means, with the standard error of that mean (the per-architecture errors combined)."""
    stats = [
        mean_se([u - v for u, v in zip(by[a][split], by[b][split])])
        for by in rows.values()
        if a in by and b in by
    ]
    if not stats:
        return "—"
    mean = sum(m for m, _ in stats) / len(stats)
    se = math.sqrt(sum(e * e for _, e in stats)) / len(stats)
    return f"{mean:+.3f} ± {se:.3f}"


def pooled_rows(rows: dict) -> list[str]:
    lines = ["| comparison | val | test |", "|---|---|---|"]
    for name in SIZES:
        for other in ("base trained", f"{name} untrained", "default"):
            a = f"{name} trained"
            lines.append(
                f"| {a} − {other} | {pooled(rows, a, other, 'val')} "
                f"| {pooled(rows, a, other, 'test')} |"
            )
    for a, b in (("base trained", "base untrained (reference)"), ("base trained", "default")):
        lines.append(f"| {a} − {b} | {pooled(rows, a, b, 'val')} | {pooled(rows, a, b, 'test')} |")
    return lines


def plot(rows: dict, path: Path) -> None:
    """Per architecture, validation AUC of each trained size minus the base size trained for the
    same time (mean ± standard error over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = list(rows)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for i, name in enumerate(SIZES):
        stats = [
            mean_se(
                [u - v for u, v in zip(by[f"{name} trained"]["val"], by["base trained"]["val"])]
            )
            for by in rows.values()
        ]
        x = [j + (i - 0.5) * 0.3 for j in range(len(archs))]
        ax.errorbar(
            x,
            [m for m, _ in stats],
            yerr=[2 * e for _, e in stats],
            fmt="o",
            capsize=3,
            label=f"{name}: " + ", ".join(f"{k} {v}" for k, v in SIZES[name].items()),
        )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(archs)), archs, rotation=20)
    ax.set_ylabel("val AUC − base trained (± 2 SE)")
    ax.set_title("Larger hypernetworks at equal CPU time (chest X-ray, 6 seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(rows: dict, seeds: int) -> None:
    lines = [
        "# Hypernetwork capacity at equal CPU time (chest X-ray, 10 % labels)",
        "",
        "Commands: the module docstring. AUC; paired differences over "
        f"{seeds} seeds, mean ± standard error (seeds ahead). Validation = best epoch's "
        "validation AUC (the design criterion); test = the test AUC at that epoch.",
        "",
        "## Sizes and training (one CPU core, same wall-time budget, rotation+c2l)",
        "",
        *size_rows(),
        "",
        "## Over the six architectures (mean of the per-architecture paired differences)",
        "",
        *pooled_rows(rows),
        "",
        "## Against default init and the base size trained for the same time",
        "",
        *variant_table(rows, "default", "base trained"),
    ]
    for name in SIZES:
        keep = (f"{name} untrained", f"{name} trained", "base untrained (reference)")
        own = {arch: {k: v for k, v in by.items() if k in keep} for arch, by in rows.items()}
        if rows and f"{name} trained" in next(iter(rows.values())):
            lines += ["", f"## {name}: trained against its own untrained start", ""]
            lines += variant_table(own, f"{name} untrained", "base untrained (reference)")
    lines += ["", "![validation differences](capacity.png)"]
    (HERE / "capacity.md").write_text("\n".join(lines) + "\n")
    plot(rows, HERE / "capacity.png")
    (HERE / "capacity.json").write_text(json.dumps(rows, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", choices=tuple(SIZES), help="train this size, then stop")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--only", nargs="*", choices=tuple(SIZES), help="run these sizes only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.train:
        train(args.train)
        return
    rows = collect(args.seeds, ARCHS, TASK, inits(args.only), CACHE, log=logging.info)
    if not args.only:
        write(rows, args.seeds)


if __name__ == "__main__":
    main()
