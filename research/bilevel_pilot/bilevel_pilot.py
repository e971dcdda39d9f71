"""Does bi-level training (with a learned weight scale) make a checkpoint fine-tune better?

Continues the shipped ultrasound checkpoint with ``TrainConfig.inner_steps = 1`` and
``scale_range = 4`` under a few schedules (``tools/train_modalities.py --init-dir``), then
compares each candidate with the shipped checkpoint downstream, paired by seed
(``hyperinit.bench.quick.compare_checkpoints``: ResNet-18, RegNetX, MobileNetV3-S on BUSI, 10 %
of the labels, 5 epochs). Ultrasound is the modality whose checkpoint misses the
self-supervised acceptance point and trails default init on both held-out architectures.
Finished trainings and cells are reused, so re-running resumes. Writes
``bilevel_ultrasound.{json,md,png}`` beside this script (the per-candidate comparisons are in
``compare_ultrasound_bilevel_<name>.md``; the training results in ``bilevel/``).

    python research/bilevel_pilot/bilevel_pilot.py --seeds 12
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

import torch

import hyperinit
from hyperinit.bench.quick import (
    ARCHS,
    checkpoint_dir,
    compare_checkpoints,
    shown_path,
    write_comparison,
)

MODALITY = "ultrasound"
ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent
TOOLS = ROOT / "tools"
SHIPPED = checkpoint_dir(MODALITY)
RUNS = ROOT / "runs" / "bilevel"
CELLS = ROOT / "runs" / "downstream"
DATA_CACHE = ROOT / "runs" / "downstream_cache"
#: name -> (steps, AdamW lr, warmup, time limit s, inner SGD rate)
VARIANTS = {
    "lr0.03": (200, 5e-4, 10, 480, 0.03),
    "lr0.1": (200, 5e-4, 10, 480, 0.1),
    "long01": (600, 1e-3, 20, 900, 0.1),
    "long03": (600, 1e-3, 20, 900, 0.3),
}


def train(name: str) -> Path:
    """Train candidate ``name`` (resumes; skipped when its export exists)."""
    steps, lr, warmup, limit, inner_lr = VARIANTS[name]
    run = RUNS / name
    export = run / "export" / MODALITY
    if not (export / "model.safetensors").is_file():
        cmd = [
            sys.executable,
            str(TOOLS / "train_modalities.py"),
            "--init-dir",
            str(SHIPPED.parent),
            "--steps",
            str(steps),
            "--lr",
            str(lr),
            "--warmup",
            str(warmup),
            "--time-limit",
            str(limit),
            "--inner-steps",
            "1",
            "--inner-lr",
            str(inner_lr),
            "--scale-range",
            "4",
            "--runs",
            str(run / "runs"),
            "--export-dir",
            str(run / "export"),
            "--results",
            str(RESULTS / "bilevel" / name),
            "--only",
            MODALITY,
        ]
        subprocess.run(cmd, check=True)
    return export


def _scales(export: Path) -> dict[str, dict[str, float]]:
    """Median and range of the learned weight-scale multipliers on the downstream archs."""
    hn = hyperinit.HyperInitializer.from_pretrained(export)
    out = {}
    for arch in ARCHS:
        model = hyperinit.models.create_model(arch, in_chans=1, num_classes=3)
        s = sorted(hn.weight_scales(hyperinit.trace(model)).values())
        out[arch] = {"min": s[0], "median": s[len(s) // 2], "max": s[-1]}
    return out


def run(seeds: int) -> dict:
    rows = []
    for name, (steps, lr, _, _, inner_lr) in VARIANTS.items():
        export = train(name)
        trained = json.loads((RESULTS / "bilevel" / name / f"train_{MODALITY}.json").read_text())
        ssl = trained["self_supervised_held_out"]
        cmp = compare_checkpoints(MODALITY, SHIPPED, export, seeds, CELLS, DATA_CACHE)
        write_comparison(cmp, f"bilevel_{name}", RESULTS)
        rows.append(
            {
                "name": name,
                "steps": trained["training"]["steps"],
                "planned_steps": steps,
                "lr": lr,
                "inner_lr": inner_lr,
                "wall_s": trained["training"]["wall_time_s"],
                "ssl": {k: ssl["mean"][k] for k in ssl["mean"]},
                "ssl_ahead": ssl["trained_ahead"],
                "architectures": ssl["architectures"],
                "paired": cmp["paired"],
                "per_arch": {r["arch"]: r for r in cmp["rows"]},
                "scales": _scales(export),
            }
        )
    shipped = json.loads((TOOLS / "results" / f"train_{MODALITY}.json").read_text())
    ssl = shipped["self_supervised_held_out"]
    return {
        "modality": MODALITY,
        "seeds": seeds,
        "shipped": shown_path(SHIPPED),
        "shipped_ssl": ssl["mean"],
        "rows": rows,
    }


def write(result: dict) -> None:
    (RESULTS / "bilevel_ultrasound.json").write_text(json.dumps(result, indent=2) + "\n")
    n = result["seeds"]
    lines = [
        "# Bi-level training of the ultrasound checkpoint",
        "",
        "Each candidate continues the shipped checkpoint with one differentiable inner SGD "
        "step (rate `inner lr`) and a learned weight scale (`scale_range` 4). SSL: the "
        "self-supervised score of 10 predicted held-out architectures with no training "
        f"(untrained reference {result['shipped_ssl']['reference_score']:.3f}; shipped "
        f"{result['shipped_ssl']['trained_score']:.3f}). Downstream: BUSI, 10 % of the labels, 5 "
        f"epochs, {n} seeds paired with the shipped checkpoint (candidate - shipped, ± standard "
        "error over the 3 architectures x seeds); validation = mean best validation macro AUC "
        "(shipped -> candidate); scale = median learned multiplier. "
        f"`python research/bilevel_pilot/bilevel_pilot.py --seeds {n}`.",
        "",
        "| candidate | steps | inner lr | SSL (ahead) | test, paired | validation R18 / RegNetX "
        "/ MNv3 | MNv3 spikes | scale R18 / RegNetX / MNv3 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        p = r["paired"]
        val = " / ".join(
            f"{r['per_arch'][a]['val']['A']:.3f} -> {r['per_arch'][a]['val']['B']:.3f}"
            for a in ARCHS
        )
        mnv3 = r["per_arch"][ARCHS[2]]["loss_spikes"]
        scale = " / ".join(f"{r['scales'][a]['median']:.2f}" for a in ARCHS)
        lines.append(
            f"| {r['name']} | {r['steps']} | {r['inner_lr']} | {r['ssl']['trained_score']:.3f} "
            f"({r['ssl_ahead']}/{r['architectures']}) | {p['mean_b_minus_a']:+.3f} ± "
            f"{p['se']:.3f} | {val} | {mnv3['B']}/{n} (shipped {mnv3['A']}/{n}) | {scale} |"
        )
    (RESULTS / "bilevel_ultrasound.md").write_text("\n".join(lines) + "\n")
    _plot(result)


def _plot(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for r in result["rows"]:
        x = r["ssl"]["trained_score"] - r["ssl"]["reference_score"]
        p = r["paired"]
        ax.errorbar(x, p["mean_b_minus_a"], yerr=p["se"], fmt="o", capsize=3)
        ax.annotate(
            r["name"],
            (x, p["mean_b_minus_a"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.axhline(0, color="k", lw=0.8)
    ax.axvline(0, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("self-supervised score minus untrained reference (held-out archs)")
    ax.set_ylabel("downstream test, candidate - shipped")
    ax.set_title("Bi-level ultrasound candidates", fontsize=10)
    fig.tight_layout()
    fig.savefig(RESULTS / "bilevel_ultrasound.png", dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=12)
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    write(run(args.seeds))


if __name__ == "__main__":
    main()
