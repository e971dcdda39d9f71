"""The architecture panel: each family's own-modality checkpoint against default init.

Seven architectures (ResNet-18, ResNet-50, RegNetX-200MF, MobileNetV3-Small and -Large,
EfficientNet-B0, DeiT-Tiny at 64 px) on the five tasks (chest X-ray, COVID-CT, BUSI,
DermaMNIST, DRIVE with a U-Net over the backbone), the quick downstream protocol (10 % of the
labels, 5 epochs, 64 px, DRIVE 128 px; ``hyperinit.bench.quick``), paired by seed. Inits:

- ``default``: the architecture's own init (timm zero-initialises the last norm of each
  residual block: ``zero_init_last``);
- ``default, no zero-init``: for the ResNets and RegNetX, the same init with those norm weights
  at 1 (what ``zero_init_last=False`` builds), the fair baseline;
- ``trained``: the task's own-modality checkpoint as shipped (its config's post-processing);
- ``reference``: the untrained reference hypernetwork, through the same post-processing.

``--seeds`` seeds for every pair, then up to ``--max-seeds`` where trained − default is within
two standard errors of zero. Finished cells are cached as JSON beside the report
(``benchmarks/results/panel/cells/``, committed, so a clean clone rewrites the report from them
with ``--report-only`` and a rerun only trains what is missing; ``--shard k/n`` splits the cells
between processes).

    OMP_NUM_THREADS=1 python benchmarks/panel.py --out benchmarks/results/panel

Writes ``panel.{json,md,png}``: per pair the means and paired differences (mean ± standard
error, seeds ahead), and the acceptance scoreboard of the one-initializer goal.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from torch import nn

from hyperinit.bench.quick import (
    PANEL_ARCHS,
    TASK,
    checkpoint_dir,
    panel_cell,
    run_quick,
)
from hyperinit.bench.stats import paired_by_seed
from hyperinit.bench.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]


ARCHS = PANEL_ARCHS
#: architectures whose default init zero-initialises the last norm of each residual block
ZERO_INIT_LAST = ("ResNet-18", "ResNet-50", "RegNetX-200MF")
#: task -> the modality of its own checkpoint
TASKS = {task: modality for modality, task in TASK.items() if modality != "mixed"}
INITS = ("default", "default, no zero-init", "trained", "reference")


def default_without_zero_init(model: nn.Module) -> None:
    """Default init with the zero-initialised norm weights at 1 (``zero_init_last=False``):
    every norm whose weight is all zero after the model's own init."""
    with torch.no_grad():
        for m in model.modules():
            w = getattr(m, "weight", None)
            norm = isinstance(m, nn.modules.batchnorm._NormBase) and w is not None
            if norm and not bool(w.any()):
                w.fill_(1.0)


def pairs(archs: list[str], tasks: list[str]) -> list[tuple[str, str]]:
    """The (arch, task) pairs; DeiT-Tiny has no U-Net encoder for DRIVE."""
    return [
        (a, t)
        for t in tasks
        for a in archs
        if not (get_task(t).kind == "segmentation" and callable(ARCHS[a]))
    ]


def cell(arch: str, task: str, init: str, seed: int):
    modality = TASKS[task]
    init_spec: object = {
        "default": "default",
        "default, no zero-init": default_without_zero_init,
        "trained": f"hyperinit:{checkpoint_dir(modality)}",
        "reference": f"hyperinit:{checkpoint_dir('reference')}",
    }[init]
    name = "default-nozil" if init == "default, no zero-init" else None
    return panel_cell(arch, task, init_spec, seed, init_name=name)


def inits_for(arch: str) -> tuple[str, ...]:
    return INITS if arch in ZERO_INIT_LAST else tuple(i for i in INITS if "zero-init" not in i)


def scores(r: dict) -> tuple[float, float]:
    """(best validation score, test score at that epoch) of a finished cell."""
    primary = r["task"]["primary"]
    return max(v[primary] for v in r["curves"]["val"]), r["test"][primary]


def collect(
    archs: list[str],
    tasks: list[str],
    seeds: int,
    max_seeds: int,
    cells: Path,
    cache: Path,
    shard: tuple[int, int],
    run: bool,
) -> dict:
    """Run (or, with ``run=False``, read back) the cells; adds seeds where undecided."""
    results: dict = {}
    k, n = shard
    todo = [(a, t, s) for a, t in pairs(archs, tasks) for s in range(seeds)]
    for rnd in ("first", "more"):
        for i, (a, t, s) in enumerate(todo):
            for init in inits_for(a):
                c = cell(a, t, init, s)
                path = cells / "cells" / f"{c.key()}.json"
                if path.is_file():
                    r = json.loads(path.read_text())
                elif run and i % n == k:
                    r = run_quick(c, cells, cache)
                else:
                    continue
                results.setdefault(f"{a}|{t}", {}).setdefault(init, {})[s] = scores(r)
        if rnd == "more":
            break
        undecided = [
            (a, t)
            for a, t in pairs(archs, tasks)
            if (d := _paired(results.get(f"{a}|{t}", {}), "trained", "default", "test"))
            and abs(d[0]) < 2 * d[1]
        ]
        todo = [(a, t, s) for a, t in undecided for s in range(seeds, max_seeds)]
        logging.info("%d pairs within 2 SE: up to seed %d for them", len(undecided), max_seeds)
    return results


def _paired(by: dict, a: str, b: str, split: str) -> tuple[float, float, int, int] | None:
    """Mean and standard error of a − b over the seeds both have, seeds, seeds a ahead."""
    return paired_by_seed(by, a, b, 0 if split == "val" else 1)


def scoreboard(results: dict) -> dict:
    """The one-initializer goal's acceptance points, on the test scores."""
    out: dict = {"pairs": len(results)}
    diffs = {p: _paired(by, "trained", "default", "test") for p, by in results.items()}
    diffs = {p: d for p, d in diffs.items() if d}
    out["behind_2se"] = sorted(p for p, d in diffs.items() if d[0] < -2 * d[1])
    out["ahead_2se"] = sorted(p for p, d in diffs.items() if d[0] > 2 * d[1])
    archs = sorted({p.split("|")[0] for p in diffs})
    out["archs_never_ahead"] = [
        a for a in archs if not any(p.startswith(a + "|") for p in out["ahead_2se"])
    ]
    ref = {p: _paired(by, "trained", "reference", "test") for p, by in results.items()}
    ref = {p: d for p, d in ref.items() if d}
    out["trained_over_reference"] = f"{sum(d[0] > 0 for d in ref.values())}/{len(ref)}"
    fair = {p: _paired(by, "trained", "default, no zero-init", "test") for p, by in results.items()}
    per_arch: dict[str, list[int]] = {}
    for p, d in fair.items():
        if d:
            per_arch.setdefault(p.split("|")[0], []).append(int(d[0] > 2 * d[1]))
    out["resnets_ahead_of_fair_baseline"] = {a: f"{sum(v)}/{len(v)}" for a, v in per_arch.items()}
    return out


def _fmt(d: tuple[float, float, int, int] | None) -> str:
    return "—" if d is None else f"{d[0]:+.3f} ± {d[1]:.3f} ({d[3]}/{d[2]})"


def write(results: dict, out: Path, command: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    board = scoreboard(results)
    lines = [
        "# Architecture panel: own-modality checkpoint vs default init",
        "",
        f"Command: `{command}`. Quick downstream protocol (10 % labels, 5 epochs, 64 px, DRIVE "
        "128 px), paired by seed; test score (AUC, DRIVE Dice) at the best validation epoch, "
        "differences as mean ± standard error (seeds ahead / seeds).",
        "",
        "| arch | task | default | trained | trained − default | trained − reference "
        "| trained − default (no zero-init) | val: trained − default |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p, by in results.items():
        arch, task = p.split("|")
        avg = {k: sum(v[1] for v in by[k].values()) / len(by[k]) for k in by if by[k]}
        lines.append(
            f"| {arch} | {task} | {avg.get('default', float('nan')):.3f} | "
            f"{avg.get('trained', float('nan')):.3f} | "
            f"{_fmt(_paired(by, 'trained', 'default', 'test'))} | "
            f"{_fmt(_paired(by, 'trained', 'reference', 'test'))} | "
            f"{_fmt(_paired(by, 'trained', 'default, no zero-init', 'test'))} | "
            f"{_fmt(_paired(by, 'trained', 'default', 'val'))} |"
        )
    lines += ["", "## Scoreboard (test)", "", "```", json.dumps(board, indent=1), "```"]
    (out / "panel.md").write_text("\n".join(lines) + "\n")
    serial = {
        p: {k: {str(s): v for s, v in d.items()} for k, d in by.items()}
        for p, by in results.items()
    }
    (out / "panel.json").write_text(
        json.dumps({"command": command, "scoreboard": board, "results": serial}, indent=1) + "\n"
    )
    _plot(results, out / "panel.png")


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = list(dict.fromkeys(p.split("|")[0] for p in results))
    tasks = list(dict.fromkeys(p.split("|")[1] for p in results))
    grid = torch.full((len(archs), len(tasks)), float("nan"))
    fig, ax = plt.subplots(figsize=(1.6 * len(tasks) + 2, 0.6 * len(archs) + 1.5))
    for p, by in results.items():
        d = _paired(by, "trained", "default", "test")
        if d:
            i, j = archs.index(p.split("|")[0]), tasks.index(p.split("|")[1])
            grid[i, j] = d[0]
            ax.text(j, i, f"{d[0]:+.3f}\n±{d[1]:.3f}", ha="center", va="center", fontsize=8)
    lim = float(grid.nan_to_num(0).abs().max().clamp_min(0.01))
    im = ax.imshow(grid.numpy(), cmap="RdBu", vmin=-lim, vmax=lim)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_yticks(range(len(archs)), archs)
    ax.set_title("trained checkpoint − default init (test, paired by seed)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--max-seeds", type=int, default=12)
    parser.add_argument(
        "--cells",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "panel",
        help="where finished cells are cached (<cells>/cells/*.json, committed with the report)",
    )
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "downstream_cache")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "panel")
    parser.add_argument("--shard", default="0/1", help="k/n: run every n-th cell from the k-th")
    parser.add_argument("--report-only", action="store_true", help="write from cached cells")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    k, _, n = args.shard.partition("/")
    results = collect(
        args.archs,
        args.tasks,
        args.seeds,
        args.max_seeds,
        args.cells,
        args.cache,
        (int(k), int(n)),
        run=not args.report_only,
    )
    command = "OMP_NUM_THREADS=1 python benchmarks/panel.py"
    if args.archs != list(ARCHS):
        command += " --archs " + " ".join(args.archs)
    if args.tasks != list(TASKS):
        command += " --tasks " + " ".join(args.tasks)
    if (args.seeds, args.max_seeds) != (6, 12):
        command += f" --seeds {args.seeds} --max-seeds {args.max_seeds}"
    write(results, args.out, command)


if __name__ == "__main__":
    main()
