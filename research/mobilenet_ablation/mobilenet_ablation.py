"""Why is the predicted init behind default init on MobileNetV3? An ablation.

Fine-tunes the held-out ``timm:mobilenetv3_small_100`` (10 % of the labels, 5 epochs, 64 px, as
``tools/downstream_check.py``) on chest X-ray (xray checkpoint) and BUSI (ultrasound
checkpoint) from default init, from the shipped checkpoint, and from variants that remove one
part of what hyperinit changes at a time:

- ``cap 0.01``: the same checkpoint with ``max_structured_share = 0.01`` (almost no learned
  low-rank structure; the weights are hyperinit's seeded noise at hyperinit's scale);
- ``+ gaussian noise``: ``noise = "gaussian"``, i.i.d. noise instead of the Kronecker-product
  noise hyperinit draws for speed;
- ``+ default scale``: every predicted weight tensor rescaled to the standard deviation the
  model's own init gave it (timm draws MobileNetV3 with fan-out scaling; hyperinit uses
  gain / sqrt(fan-in));
- ``+ default norms and biases``: normalisation parameters and biases left at their default.

Counts runs with a loss spike (``hyperinit.bench.stats.SPIKE``). Cells are cached
(``runs/downstream``). Writes ``mobilenet_ablation.{json,md,png}`` beside this
script.

    python research/mobilenet_ablation/mobilenet_ablation.py --seeds 12
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import hyperinit
from hyperinit.bench import Cell, run_cell
from hyperinit.bench.quick import capped_checkpoint, checkpoint_dir
from hyperinit.bench.stats import SPIKE, loss_spike
from hyperinit.bench.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent
#: the capped copies, shared with research/structured_cap
WORK = ROOT / "runs" / "structured_cap"
CELLS = ROOT / "runs" / "downstream"
DATA_CACHE = ROOT / "runs" / "downstream_cache"

ARCH = "timm:mobilenetv3_small_100"
TASKS = {"chest_xray": "xray", "busi": "ultrasound"}
NORMS_AND_BIASES = [r".*bn\d?\..*", r".*\.bias"]


def _variant(
    checkpoint: Path,
    seed: int,
    in_chans: int,
    size: int,
    default_scale: bool,
    default_norms: bool,
    name: str,
) -> Callable[[nn.Module], None]:
    """An init callable: the checkpoint's prediction, then optionally the model's own scale per
    tensor and its own norm parameters and biases."""

    def init(model: nn.Module) -> None:
        before = {n: p.detach().std().item() for n, p in model.named_parameters() if p.dim() > 1}
        hyperinit.initialize(
            model,
            checkpoint=checkpoint,
            seed=seed,
            example_input=torch.zeros(2, in_chans, size, size),
            exclude=NORMS_AND_BIASES if default_norms else None,
        )
        if default_scale:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n in before and before[n] > 0:
                        p.mul_(before[n] / p.std().clamp_min(1e-12))

    init.__name__ = name
    return init


VARIANTS = (
    "default",
    "trained",
    "trained + gaussian noise",
    "trained + default scale",
    "cap 0.01",
    "cap 0.01 + gaussian noise",
    "cap 0.01 + default scale",
    "cap 0.01 + default scale + default norms and biases",
    "cap 0.01 + gaussian noise + default scale + default norms and biases",
)


def _init(variant: str, modality: str, seed: int, in_chans: int, size: int):
    if variant == "default":
        return "default"
    cap = 0.01 if variant.startswith("cap 0.01") else None
    noise = "gaussian" if "gaussian noise" in variant else "kron"
    ckpt = (
        checkpoint_dir(modality)
        if cap is None and noise == "kron"
        else capped_checkpoint(modality, cap, WORK, noise)
    )
    if "default" not in variant:
        return f"hyperinit:{ckpt}"
    label = variant.replace(" + ", "+").replace(" ", "_")
    return _variant(
        ckpt,
        seed,
        in_chans,
        size,
        default_scale="default scale" in variant,
        default_norms="default norms" in variant,
        name=f"ablation-{modality}-{label}",
    )


def run(seeds: int, cells: Path, tasks: list[str], first_seed: int = 0) -> dict:
    rows = []
    for task_name in tasks:
        modality = TASKS[task_name]
        task = get_task(task_name)
        for seed in range(first_seed, seeds):
            for variant in VARIANTS:
                init = _init(variant, modality, seed, task.in_chans, 64)
                cell = Cell(
                    task=task_name,
                    arch=ARCH,
                    init=init,
                    init_name=getattr(init, "__name__", None),
                    fraction=0.1,
                    seed=seed,
                    epochs=5,
                    size=64,
                )
                r = run_cell(cell, cells, cache_dir=DATA_CACHE, progress=False)
                rows.append(
                    {
                        "task": task_name,
                        "variant": variant,
                        "seed": seed,
                        "score": r["test"][task.primary],
                        "loss_spike": loss_spike(r["curves"]["train_loss"]),
                    }
                )
                logging.info("%s %s seed %d: %.3f", task_name, variant, seed, rows[-1]["score"])
    return {"arch": ARCH, "seeds": seeds, "tasks": TASKS, "rows": rows}


def write(result: dict) -> None:
    (RESULTS / "mobilenet_ablation.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# MobileNetV3-S: what part of the predicted init costs accuracy",
        "",
        f"`{ARCH}`, 10 % of the labels, 5 epochs, 64 px, {result['seeds']} seeds, test metric "
        "(chest X-ray AUC with the xray checkpoint, BUSI macro AUC with the ultrasound "
        f"checkpoint); spikes = runs with an epoch's training loss over {SPIKE}x the previous "
        "epoch's. `python research/mobilenet_ablation/mobilenet_ablation.py --seeds "
        f"{result['seeds']}`.",
        "",
        "| variant | "
        + " | ".join(f"{t} mean ± sd (min)" for t in TASKS)
        + " | "
        + " | ".join(f"{t} spikes" for t in TASKS)
        + " |",
        "|---|" + "---|" * (2 * len(TASKS)),
    ]
    for variant in VARIANTS:
        cells, spikes = [], []
        for t in TASKS:
            sel = [r for r in result["rows"] if r["task"] == t and r["variant"] == variant]
            xs = [r["score"] for r in sel]
            cells.append(f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f} ({min(xs):.3f})")
            spikes.append(f"{sum(r['loss_spike'] for r in sel)}/{len(sel)}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " | " + " | ".join(spikes) + " |")
    (RESULTS / "mobilenet_ablation.md").write_text("\n".join(lines) + "\n")
    _plot(result)


def _plot(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS), figsize=(6.5 * len(TASKS), 4.2), sharey=True)
    for ax, t in zip(axes, TASKS):
        data = [
            [r["score"] for r in result["rows"] if r["task"] == t and r["variant"] == v]
            for v in VARIANTS
        ]
        ax.boxplot(data, orientation="horizontal", showmeans=True)
        for i, xs in enumerate(data):
            ax.scatter(xs, [i + 1] * len(xs), s=8, color="k", zorder=3)
        ax.set_yticks(range(1, len(VARIANTS) + 1), list(VARIANTS), fontsize=7)
        ax.set_title(f"{t} ({TASKS[t]} checkpoint)", fontsize=9)
        ax.set_xlabel("test score")
    fig.tight_layout()
    fig.savefig(RESULTS / "mobilenet_ablation.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=12)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--first-seed", type=int, default=0, help="(parallel workers) skip seeds")
    p.add_argument("--cells", type=Path, default=CELLS, help="cell cache (default runs/downstream)")
    p.add_argument("--no-write", action="store_true", help="run cells only (parallel workers)")
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = run(args.seeds, args.cells, args.tasks, args.first_seed)
    if not args.no_write and args.first_seed == 0 and args.tasks == list(TASKS):
        write(result)


if __name__ == "__main__":
    main()
