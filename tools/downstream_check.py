"""Quick downstream check of each trained modality checkpoint against default init.

Per modality: fine-tune ResNet-18 and two held-out architectures (never drawn in training,
hyperinit.archspace.HELD_OUT_MODELS) on the modality's task with 10 % of the training labels,
3 seeds, 5 epochs at 64 px (DRIVE segmentation: 128 px), starting from PyTorch's default init,
from the modality's trained checkpoint (hyperinit/checkpoints/<modality>) and, optionally, from
the untrained reference hypernetwork (separates the effect of training from hyperinit's scaling).
Uses hyperinit.bench.run_cell (cached per cell, so re-running resumes). Writes
``tools/results/downstream_<modality>.{json,md,png}`` and the downstream line of the model card.

    python tools/downstream_check.py --modalities xray ct --inits default trained reference
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

import torch

from hyperinit.bench.quick import (
    ARCHS,
    TASK,
    checkpoint_dir,
    checkpoint_init,
    quick_cell,
    quick_size,
    run_quick,
)
from hyperinit.bench.stats import SPIKE, loss_spike
from hyperinit.bench.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "tools" / "results"
CELLS = ROOT / "runs" / "downstream"
DATA_CACHE = ROOT / "runs" / "downstream_cache"


def check(
    modality: str,
    inits: list[str],
    seeds: int,
    epochs: int,
    cells_dir: Path,
    reference_seeds: int | None = None,
) -> dict:
    task = get_task(TASK[modality])
    size = quick_size(task.name)
    rows = []
    for seed in range(seeds):
        for arch in ARCHS:
            for name in inits:
                if name == "reference" and reference_seeds is not None and seed >= reference_seeds:
                    continue
                cell = quick_cell(
                    task.name,
                    arch,
                    checkpoint_init(modality, name),
                    seed,
                    size=size,
                    # trained: the checkpoint folder's label, shared with compare_checkpoints.py
                    init_name=None if name == "trained" else name,
                    epochs=epochs,
                )
                r = run_quick(cell, cells_dir, DATA_CACHE)
                spike = loss_spike(r["curves"]["train_loss"])
                rows.append(
                    {"arch": arch, "init": name, "seed": seed, **r["test"], "loss_spike": spike}
                )
                logging.info("%s %s %s seed %d: %s", modality, arch, name, seed, r["test"])
    primary = task.primary
    summary = {}
    for arch in ARCHS:
        for name in inits:
            vals = [r[primary] for r in rows if r["arch"] == arch and r["init"] == name]
            if vals:
                summary[f"{arch}|{name}"] = {
                    "mean": statistics.mean(vals),
                    "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                    "n": len(vals),
                }
    ahead = {}
    for arch in ARCHS:
        t, d = summary.get(f"{arch}|trained"), summary.get(f"{arch}|default")
        if t and d:
            ahead[arch] = t["mean"] - d["mean"]
    return {
        "modality": modality,
        "task": task.name,
        "metric": primary,
        "size": size,
        "fraction": 0.1,
        "epochs": epochs,
        "seeds": seeds,
        "reference_seeds": reference_seeds,
        "rows": rows,
        "summary": summary,
        "trained_minus_default": ahead,
    }


def write(result: dict, out: Path = RESULTS) -> None:
    m = result["modality"]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"downstream_{m}.json").write_text(json.dumps(result, indent=2) + "\n")
    metric = result["metric"]
    inits = sorted(
        {r["init"] for r in result["rows"]}, key=["default", "reference", "trained"].index
    )
    lines = [
        f"# Downstream check: {m} checkpoint on {result['task']}",
        "",
        f"10 % of the training labels, {result['seeds']} seeds, {result['epochs']} epochs, "
        f"{result['size']} px, test {metric} (epoch with the best validation {metric}); "
        f"`python tools/downstream_check.py --modalities {m} --seeds {result['seeds']} "
        f"--inits {' '.join(inits)}"
        + (f" --reference-seeds {rs}" if (rs := result.get("reference_seeds")) else "")
        + "`. ResNet-18 plus two "
        "held-out architectures (never drawn in training). trained = hyperinit/checkpoints/"
        f"{m}; reference = the untrained reference hypernetwork; default = PyTorch's init.",
        "",
        "| architecture | " + " | ".join(inits) + " | trained - default |",
        "|---|" + "---|" * (len(inits) + 1),
    ]
    for arch in ARCHS:
        cells = []
        for name in inits:
            s = result["summary"].get(f"{arch}|{name}")
            cells.append(f"{s['mean']:.3f} ± {s['sd']:.3f} (n={s['n']})" if s else "-")
        diff = result["trained_minus_default"].get(arch)
        lines.append(
            f"| {arch} | " + " | ".join(cells) + f" | {diff:+.3f} |"
            if diff is not None
            else f"| {arch} | " + " | ".join(cells) + " | - |"
        )
    lines += [
        "",
        f"Runs with a loss spike (an epoch's training loss over {SPIKE}x the previous "
        "epoch's): "
        + "; ".join(
            f"{arch.split(':')[1]} "
            + ", ".join(
                f"{name} {sum(r['loss_spike'] for r in sel)}/{len(sel)}"
                for name in inits
                if (sel := [r for r in result["rows"] if r["arch"] == arch and r["init"] == name])
            )
            for arch in ARCHS
        )
        + ".",
    ]
    (out / f"downstream_{m}.md").write_text("\n".join(lines) + "\n")
    _update_card(result)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    width = 0.8 / len(inits)
    for i, name in enumerate(inits):
        for j, arch in enumerate(ARCHS):
            vals = [r[metric] for r in result["rows"] if r["arch"] == arch and r["init"] == name]
            if not vals:
                continue
            x = j + (i - (len(inits) - 1) / 2) * width
            ax.bar(x, statistics.mean(vals), width, color=f"C{i}", label=name if j == 0 else None)
            ax.scatter([x] * len(vals), vals, color="k", s=8, zorder=3)
    ax.set_xticks(range(len(ARCHS)), [a.split(":")[1] for a in ARCHS])
    ax.set_ylabel(f"test {metric}")
    lo = min(r[metric] for r in result["rows"])
    ax.set_ylim(max(0.0, lo - 0.1), None)
    ax.set_title(f"{m} checkpoint on {result['task']} (10 % labels)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"downstream_{m}.png", dpi=110)
    plt.close(fig)


def _update_card(result: dict) -> None:
    """Put the downstream numbers in the checkpoint's model card (README.md is not pinned)."""
    card = checkpoint_dir(result["modality"]) / "README.md"
    if not card.exists():
        return
    parts = []
    for arch in ARCHS:
        t = result["summary"].get(f"{arch}|trained")
        d = result["summary"].get(f"{arch}|default")
        if t and d:
            parts.append(f"{arch.split(':')[1]} {t['mean']:.3f} vs {d['mean']:.3f}")
    line = (
        f"- **Downstream** ({result['task']}, 10 % labels, {result['epochs']} epochs, "
        f"{result['size']} px, test {result['metric']}, mean of {result['seeds']} seeds, this "
        f"checkpoint vs PyTorch default init): " + "; ".join(parts) + ". Details: "
        f"`tools/results/downstream_{result['modality']}.md` in the hyperinit repository.\n"
    )
    lines = card.read_text().splitlines(keepends=True)
    lines = [line if x.startswith("- **Downstream**") else x for x in lines]
    card.write_text("".join(lines))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--modalities", nargs="*", default=list(TASK))
    p.add_argument("--inits", nargs="*", default=["default", "trained"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument(
        "--reference-seeds", type=int, default=None, help="fewer seeds for the reference init"
    )
    p.add_argument("--cells", type=Path, default=CELLS, help="cell cache (default runs/downstream)")
    p.add_argument(
        "--out", type=Path, default=RESULTS, help="results folder (default tools/results)"
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for m in args.modalities:
        if not (checkpoint_dir(m) / "model.safetensors").exists():
            logging.warning("no trained checkpoint for %s yet; skipped", m)
            continue
        result = check(m, args.inits, args.seeds, args.epochs, args.cells, args.reference_seeds)
        write(result, args.out)


if __name__ == "__main__":
    main()
