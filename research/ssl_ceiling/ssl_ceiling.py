"""The ceiling of the downstream check: the held-out architectures pretrained themselves.

A hypernetwork trained with a self-supervised objective can at best hand an architecture what
self-supervised pretraining of that very architecture on the same images would give it. This
script measures that ceiling at this machine's budget: each held-out architecture of the
downstream check (``timm:mobilenetv3_small_100``, ``timm:regnetx_002``) is pretrained with C2L
(:class:`hyperinit.C2LPretrainer`, the settings of ``benchmarks/c2l_benchmark.py``,
:mod:`hyperinit.bench.c2l_settings`) on the unlabelled training images of a task for a fixed
number of steps, then fine-tuned exactly as ``tools/downstream_check.py`` does (10 % of the
labels, 5 epochs, 64 px, 12 seeds; default-init and trained-checkpoint cells are shared with it
through ``runs/downstream``).

If even the architecture's own pretraining is not ahead of default init in this protocol, no
initializer distilled from the same self-supervised signal at this budget can be.

Pretraining checkpoints every epoch and resumes (``runs/ssl_ceiling``). Writes
``ssl_ceiling.{json,md,png}`` beside this script.

    python research/ssl_ceiling/ssl_ceiling.py --tasks chest_xray busi --steps 600 --seeds 12
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import statistics
import sys
import time
from pathlib import Path

import timm
import torch

from hyperinit.bench.c2l_settings import BATCH, C2L_SETTINGS, SIZE
from hyperinit.bench.quick import checkpoint_init, quick_cell, run_quick
from hyperinit.bench.stats import SPIKE, loss_spike, paired_gain
from hyperinit.bench.tasks import get_task
from hyperinit.c2l import C2LPretrainer, suggested_queue_size
from hyperinit.c2l.queue import SEED_QUEUE_SHARE
from hyperinit.data import ImageFolder, load_split

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent
CELLS = ROOT / "runs" / "downstream"
DATA_CACHE = ROOT / "runs" / "downstream_cache"
ARCHS = ("timm:mobilenetv3_small_100", "timm:regnetx_002")
#: task -> the modality checkpoint the downstream check uses for it
TASKS = {
    "chest_xray": "xray",
    "ct_covid": "ct",
    "busi": "ultrasound",
    "dermamnist": "dermoscopy",
}
#: C2L_SETTINGS' queue length
DEFAULT_QUEUE = C2L_SETTINGS["queue_size"]


def small_queue(images: int) -> int:
    """A queue holding the C2L seed's share of an epoch's keys (three per image)."""
    return suggested_queue_size(3 * (images // BATCH) * BATCH, 3 * BATCH)


log = logging.getLogger("ssl_ceiling")


def pretrain(
    task_name: str, arch: str, steps: int, root: Path, queue_size: int | None = None
) -> tuple[Path, dict]:
    """C2L-pretrain ``arch`` on the task's unlabelled training images (resumable)."""
    task = get_task(task_name)
    settings = {**C2L_SETTINGS, **({"queue_size": queue_size} if queue_size else {})}
    out = root / task_name / arch.replace(":", "-")
    if queue_size:
        out = out.with_name(f"{out.name}-q{queue_size}")
    info_file = out / "pretrain.json"
    if (out / "backbone" / "model.safetensors").exists() and info_file.exists():
        info = {"queue_size": settings["queue_size"], **json.loads(info_file.read_text())}
        return out / "backbone", {**info, **_curves(out)}
    files = load_split(task_name, "train").files
    per_epoch = len(files) // BATCH
    epochs = math.ceil(steps / per_epoch)
    torch.manual_seed(0)
    model = timm.create_model(arch.split(":", 1)[1], in_chans=task.in_chans, num_classes=0)
    trainer = C2LPretrainer(model, image_size=SIZE, **settings)
    t = time.perf_counter()
    trainer.fit(
        ImageFolder(files, channels=task.in_chans),
        epochs=epochs,
        batch_size=BATCH,
        lr=0.03,
        checkpoint_dir=out / "checkpoints",
        resume=True,
        seed=0,
        device="cpu",
        log_every=20,
    )
    trainer.save_pretrained(out / "backbone")
    info = {
        "task": task_name,
        "arch": arch,
        "images": len(files),
        "epochs": epochs,
        "steps": epochs * per_epoch,
        "batch": BATCH,
        "size": SIZE,
        "queue_size": settings["queue_size"],
        "wall_s_last_session": time.perf_counter() - t,
    }
    info_file.write_text(json.dumps(info, indent=2))
    return out / "backbone", {**info, **_curves(out)}


def _curves(out: Path) -> dict:
    """Per-epoch C2L loss and positive-pair accuracy of the pretraining run in ``out``."""
    epochs = json.loads((out / "checkpoints" / "history.json").read_text())["epochs"]
    return {
        "epoch_loss": [r["loss"] for r in epochs],
        "epoch_accuracy": [r["accuracy"] for r in epochs],
    }


def _queues(task_name: str, small: bool) -> dict[str, int | None]:
    """Init name -> queue length of the C2L runs (None: C2L_SETTINGS')."""
    out: dict[str, int | None] = {"c2l": None}
    q = small_queue(len(load_split(task_name, "train").files))
    if small and 2 * q < DEFAULT_QUEUE:  # where C2LPretrainer warns about DEFAULT_QUEUE
        out["c2l small queue"] = q
    return out


def run(
    tasks: list[str],
    steps: int,
    seeds: int,
    root: Path,
    cells: Path,
    small: bool,
    archs: tuple[str, ...] = ARCHS,
) -> dict:
    rows, pretraining = [], []
    for task_name in tasks:
        task = get_task(task_name)
        for arch in archs:
            inits = {
                "default": "default",
                "trained": checkpoint_init(TASKS[task_name], "trained"),
            }
            for name, q in _queues(task_name, small).items():
                backbone, info = pretrain(task_name, arch, steps, root, q)
                pretraining.append(info)
                inits[name] = f"c2l:{backbone}"
            for seed in range(seeds):
                for name, init in inits.items():
                    init_name = None if name == "trained" else name
                    cell = quick_cell(task_name, arch, init, seed, size=SIZE, init_name=init_name)
                    r = run_quick(cell, cells, DATA_CACHE)
                    rows.append(
                        {
                            "task": task_name,
                            "arch": arch,
                            "init": name,
                            "seed": seed,
                            "score": r["test"][task.primary],
                            "loss_spike": loss_spike(r["curves"]["train_loss"]),
                        }
                    )
                    log.info(
                        "%s %s %s seed %d: %.3f", task_name, arch, name, seed, rows[-1]["score"]
                    )
    return {
        "steps": steps,
        "seeds": seeds,
        "small_queue": small,
        "archs": list(archs),
        "pretraining": pretraining,
        "rows": rows,
    }


def write(result: dict, name: str = "ssl_ceiling") -> None:
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = result["rows"]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    inits = list(dict.fromkeys(r["init"] for r in rows))
    archs = result["archs"]
    n = result["seeds"]
    lines = [
        "# The ceiling: held-out architectures pretrained themselves (C2L) vs default init",
        "",
        "Each architecture C2L-pretrained on the task's unlabelled training images "
        f"({result['steps']} steps or more, whole epochs of {BATCH} images at {SIZE} px, the "
        f"settings of `c2l_benchmark.py`, a queue of {DEFAULT_QUEUE} keys; `c2l small queue`: "
        f"a queue holding the C2L seed's share of an epoch's keys, {SEED_QUEUE_SHARE:.0%}, "
        "run where the default queue is over twice that, as C2LPretrainer warns), "
        "then fine-tuned as in `downstream_check.py` (10 % of the labels, "
        f"5 epochs, {SIZE} px, {n} seeds; test metric). trained = hyperinit's shipped "
        "modality checkpoint. Differences against default init are paired by seed "
        "(± standard error; ahead in k of n seeds); spikes = runs with an epoch's training loss "
        f"over {SPIKE}x the previous epoch's. `{result['command']}`.",
        "",
        "| task | architecture | "
        + " | ".join(inits)
        + " | "
        + " | ".join(f"{i} − default" for i in inits if i != "default")
        + " | spikes |",
        "|---|---|" + "---|" * (2 * len(inits)),
    ]
    for t in tasks:
        for arch in archs:
            sel = [r for r in rows if r["task"] == t and r["arch"] == arch]
            if not sel:
                continue
            cells, diffs, spikes = [], [], []
            for init in inits:
                xs = [r["score"] for r in sel if r["init"] == init]
                if not xs:  # no small queue where the default one is not too long
                    cells.append("–")
                    spikes.append("–")
                    diffs.append("–")
                    continue
                cells.append(f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}")
                spikes.append(f"{sum(r['loss_spike'] for r in sel if r['init'] == init)}")
                if init != "default":
                    m, se, k = paired_gain(rows, t, arch, "default", init)
                    diffs.append(f"{m:+.3f} ± {se:.3f} ({k}/{n})")
            lines.append(
                f"| {t} | {arch.split(':')[1]} | "
                + " | ".join(cells + diffs)
                + f" | {' / '.join(spikes)} |"
            )
    lines += [
        "",
        "Pretraining (C2L loss and positive-pair accuracy, first → best → last epoch):",
        "",
    ]
    for p in result["pretraining"]:
        loss, acc = p["epoch_loss"], p["epoch_accuracy"]
        lines.append(
            f"- {p['task']} {p['arch']} queue {p['queue_size']}: {p['images']} images, "
            f"{p['epochs']} epochs = {p['steps']} steps, {p['wall_s_last_session']:.0f} s "
            f"(1 thread, shared 2-core machine); loss {loss[0]:.2f} → {min(loss):.2f} → "
            f"{loss[-1]:.2f}, accuracy {acc[0]:.3f} → {max(acc):.3f} → {acc[-1]:.3f}"
        )
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    _plot(result, tasks, inits, name)


def _plot(result: dict, tasks: list[str], inits: list[str], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, archs = result["rows"], result["archs"]
    fig, axes = plt.subplots(1, len(tasks) + 1, figsize=(4.2 * (len(tasks) + 1), 3.6))
    for ax, t in zip(axes, tasks):
        for j, arch in enumerate(archs):
            for k, init in enumerate(inits):
                xs = [
                    r["score"] for r in rows if (r["task"], r["arch"], r["init"]) == (t, arch, init)
                ]
                if not xs:
                    continue
                x = j * (len(inits) + 1) + k
                ax.scatter([x] * len(xs), xs, s=8, color=f"C{k}", alpha=0.5)
                ax.errorbar(
                    x,
                    statistics.mean(xs),
                    yerr=statistics.stdev(xs),
                    fmt="o",
                    color=f"C{k}",
                    label=init if j == 0 else None,
                    capsize=3,
                )
        ax.set_xticks(
            [j * (len(inits) + 1) + (len(inits) - 1) / 2 for j in range(len(archs))],
            [a.split(":")[1] for a in archs],
            fontsize=8,
        )
        ax.set_title(t, fontsize=9)
        ax.set_ylabel("test score")
    axes[0].legend(fontsize=7)
    ax = axes[-1]
    for p in result["pretraining"]:
        acc = p["epoch_accuracy"]
        ax.plot(
            [(i + 1) / len(acc) for i in range(len(acc))],
            acc,
            label=f"{p['task']} {p['arch'].split(':')[1]} q{p['queue_size']}",
        )
    ax.set_xlabel("fraction of pretraining")
    ax.set_ylabel("C2L positive-pair accuracy")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["chest_xray", "busi"], choices=list(TASKS))
    p.add_argument("--steps", type=int, default=600, help="C2L pretraining steps (at least)")
    p.add_argument("--seeds", type=int, default=12)
    p.add_argument(
        "--small-queue",
        action="store_true",
        help="also pretrain with a queue holding the seed's share of an epoch's keys",
    )
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    p.add_argument("--root", type=Path, default=ROOT / "runs" / "ssl_ceiling")
    p.add_argument("--name", default="ssl_ceiling", help="results file stem")
    p.add_argument("--cells", type=Path, default=CELLS, help="cell cache (default runs/downstream)")
    p.add_argument("--pretrain-only", action="store_true", help="(parallel workers)")
    p.add_argument("--no-write", action="store_true", help="run cells only (parallel workers)")
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.pretrain_only:
        for t in args.tasks:
            for arch in args.archs:
                for q in _queues(t, args.small_queue).values():
                    pretrain(t, arch, args.steps, args.root, q)
        return
    result = run(
        args.tasks,
        args.steps,
        args.seeds,
        args.root,
        args.cells,
        args.small_queue,
        tuple(args.archs),
    )
    result["command"] = shlex.join(["python", "research/ssl_ceiling/ssl_ceiling.py", *sys.argv[1:]])
    if not args.no_write:
        write(result, args.name)


if __name__ == "__main__":
    main()
