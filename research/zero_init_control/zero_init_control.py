"""How much of the trained checkpoints' lead on ResNet-18 and RegNetX is the zero-init it undoes?

timm builds ResNet-18 and RegNetX with the last norm of every residual block at zero weight
(``zero_init_last``: each block starts as the identity). hyperinit predicts every norm weight
near 1, so part of its lead over default init could come from that alone, which any user can
get with ``timm.create_model(..., zero_init_last=False)``. A 2 x 2 design, paired by seed:
default init; default init with those norm weights at 1 (``no-zero-init``); each task's trained
checkpoint; and that checkpoint with those norm weights put back to 0 (``zero-init kept``).
Fine-tuning as ``tools/downstream_check.py`` (10 % of the labels, 5 epochs, 64 px; DRIVE 128 px).
MobileNetV3 has no zero-initialised norm, so its control would equal default init and it is
left out. Cells are cached (``runs/downstream``, shared with ``tools/downstream_check.py``). Writes
``zero_init_control.{json,md,png}`` beside this script:

    python research/zero_init_control/zero_init_control.py --seeds 12 --no-write &
    python research/zero_init_control/zero_init_control.py --seeds 12 --no-write --reverse &
    wait; python research/zero_init_control/zero_init_control.py --seeds 12
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

from hyperinit.bench import Cell, run_cell
from hyperinit.bench.inits import apply_init, hypernet_version
from hyperinit.bench.quick import TASK, checkpoint_init
from hyperinit.bench.stats import loss_spike, paired_gain
from hyperinit.bench.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent
CELLS = ROOT / "runs" / "downstream"
DATA_CACHE = ROOT / "runs" / "downstream_cache"

ARCHS = ("timm:resnet18", "timm:regnetx_002")
#: task -> the modality checkpoints fine-tuned on it (xray and mixed share chest X-ray)
TASKS: dict[str, tuple[str, ...]] = {}
for _m, _t in TASK.items():
    TASKS.setdefault(_t, ())
    TASKS[_t] += (_m,)
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _zeroed_norm_weights(model: nn.Module) -> list[torch.Tensor]:
    """The norm weights the constructor set to zero (timm's ``zero_init_last``)."""
    return [
        m.weight
        for m in model.modules()
        if isinstance(m, NORMS) and m.weight is not None and not m.weight.any()
    ]


def no_zero_init(model: nn.Module) -> None:
    """Default init, but every norm weight the constructor set to zero is set to 1."""
    with torch.no_grad():
        for w in _zeroed_norm_weights(model):
            w.fill_(1.0)


def keep_zero_init(
    checkpoint: str, modality: str, seed: int, example: torch.Tensor, name: str
) -> Callable[[nn.Module], None]:
    """An init callable: ``checkpoint``'s prediction as the benchmark applies it, then the norm
    weights the constructor set to zero back at zero (the 4th cell of the 2 x 2 design)."""

    def init(model: nn.Module) -> None:
        zeros = _zeroed_norm_weights(model)
        apply_init(model, checkpoint, modality=modality, seed=seed, example=example)
        with torch.no_grad():
            for w in zeros:
                w.zero_()

    init.__name__ = name
    return init


def _inits(task: str, seed: int = 0) -> dict[str, object]:
    t = get_task(task)
    size = 128 if t.kind == "segmentation" else 64
    example = torch.zeros(2, t.in_chans, size, size)
    inits: dict[str, object] = {"default": "default", "no-zero-init": no_zero_init}
    for m in TASKS[task]:
        ckpt = checkpoint_init(m, "trained")
        inits[f"trained {m}"] = ckpt
        sha = hypernet_version(ckpt, m)
        name = f"zero-init-kept-{m}-{sha}"
        inits[f"trained {m}, zero-init kept"] = keep_zero_init(
            ckpt, t.modality, seed, example, name
        )
    return inits


def run(
    seeds: int, cells: Path, shard: tuple[int, int] = (0, 1), reverse: bool = False
) -> list[dict]:
    rows = []
    jobs = [(t, s, a) for t in TASKS for s in range(seeds) for a in ARCHS]
    jobs = [j for i, j in enumerate(jobs) if i % shard[1] == shard[0]]
    for task_name, seed, arch in reversed(jobs) if reverse else jobs:
        task = get_task(task_name)
        size = 128 if task.kind == "segmentation" else 64
        for name, init in _inits(task_name, seed).items():
            cell = Cell(
                task=task_name,
                arch=arch,
                init=init,
                init_name=init.__name__ if callable(init) else None,
                fraction=0.1,
                seed=seed,
                epochs=5,
                size=size,
            )
            r = run_cell(cell, cells, cache_dir=DATA_CACHE, progress=False)
            rows.append(
                {
                    "task": task_name,
                    "metric": task.primary,
                    "arch": arch,
                    "init": name,
                    "seed": seed,
                    "score": r["test"][task.primary],
                    "loss_spike": loss_spike(r["curves"]["train_loss"]),
                }
            )
            logging.info("%s %s %s seed %d: %.3f", task_name, arch, name, seed, rows[-1]["score"])
    return rows


def summarise(rows: list[dict], seeds: int) -> dict:
    out = []
    for task in TASKS:
        for arch in ARCHS:
            sel = [r for r in rows if (r["task"], r["arch"]) == (task, arch)]
            means = {
                n: statistics.mean(r["score"] for r in sel if r["init"] == n) for n in _inits(task)
            }
            entry = {"task": task, "arch": arch, "means": means, "paired": {}}
            entry["paired"]["no-zero-init - default"] = paired_gain(
                rows, task, arch, "default", "no-zero-init"
            )
            for m in TASKS[task]:
                for base in ("default", "no-zero-init"):
                    entry["paired"][f"trained {m} - {base}"] = paired_gain(
                        rows, task, arch, base, f"trained {m}"
                    )
                kept = f"trained {m}, zero-init kept"
                entry["paired"][f"{kept} - default"] = paired_gain(
                    rows, task, arch, "default", kept
                )
            entry["spikes"] = {
                n: sum(r["loss_spike"] for r in sel if r["init"] == n) for n in means
            }
            out.append(entry)
    return {"seeds": seeds, "archs": ARCHS, "tasks": TASKS, "rows": rows, "summary": out}


def _fmt(p: tuple[float, float, int], seeds: int) -> str:
    return f"{p[0]:+.3f} ± {p[1]:.3f} ({p[2]}/{seeds})"


def write(result: dict) -> None:
    (RESULTS / "zero_init_control.json").write_text(json.dumps(result, indent=2) + "\n")
    n = result["seeds"]
    lines = [
        "# Control: default init without zero-initialised residual norms",
        "",
        "timm's ResNet-18 and RegNetX start every residual block's last norm weight at 0; "
        "`no-zero-init` is default init with those weights at 1 (what "
        "`timm.create_model(..., zero_init_last=False)` gives). 10 % of the labels, 5 epochs, "
        f"64 px (DRIVE 128 px), test metric, {n} seeds paired by seed: mean difference ± its "
        "standard error (runs where the first is ahead). "
        f"`python research/zero_init_control/zero_init_control.py --seeds {n}`.",
        "",
        "| task | architecture | default | no-zero-init | trained | trained, zero-init kept | "
        "no-zero-init - default | trained - default | trained - no-zero-init | trained, "
        "zero-init kept - default |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in result["summary"]:
        for m in result["tasks"][e["task"]]:
            means = e["means"]
            p = e["paired"]
            lines.append(
                f"| {e['task']} | {e['arch']} | {means['default']:.3f} | "
                f"{means['no-zero-init']:.3f} | {means[f'trained {m}']:.3f} ({m}) | "
                f"{means[f'trained {m}, zero-init kept']:.3f} | "
                f"{_fmt(p['no-zero-init - default'], n)} | "
                f"{_fmt(p[f'trained {m} - default'], n)} | "
                f"{_fmt(p[f'trained {m} - no-zero-init'], n)} | "
                f"{_fmt(p[f'trained {m}, zero-init kept - default'], n)} |"
            )
    (RESULTS / "zero_init_control.md").write_text("\n".join(lines) + "\n")
    _plot(result)


def _plot(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[float, float, int]]] = {
        "no-zero-init - default": [],
        "trained - default": [],
        "trained - no-zero-init": [],
        "trained, zero-init kept - default": [],
    }
    labels = []
    for e in result["summary"]:
        for m in result["tasks"][e["task"]]:
            labels.append(f"{e['task']}\n{e['arch'].split(':')[1]} ({m})")
            for key, values in series.items():
                values.append(e["paired"][key.replace("trained", f"trained {m}")])
    fig, ax = plt.subplots(figsize=(7.5, 0.7 * len(labels) + 1.2))
    width = 0.8 / len(series)
    for k, (key, values) in enumerate(series.items()):
        ax.barh(
            [i + (k - (len(series) - 1) / 2) * width for i in range(len(labels))],
            [p[0] for p in values],
            width,
            xerr=[p[1] for p in values],
            label=key,
        )
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"paired test difference ({result['seeds']} seeds, ± standard error)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "zero_init_control.png", dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=12)
    p.add_argument("--shard", default="0/1", help="I/N: run every N-th job from the I-th")
    p.add_argument("--cells", type=Path, default=CELLS, help="cell cache (default runs/downstream)")
    p.add_argument("--no-write", action="store_true", help="run cells only (parallel workers)")
    p.add_argument("--reverse", action="store_true", help="last job first (a second worker)")
    args = p.parse_args()
    i, n = (int(x) for x in args.shard.split("/"))
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows = run(args.seeds, args.cells, (i, n), args.reverse)
    if not args.no_write and n == 1:
        write(summarise(rows, args.seeds))


if __name__ == "__main__":
    main()
