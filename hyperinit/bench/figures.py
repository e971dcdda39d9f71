"""The report's figures: label-fraction sweep, convergence curves and Grad-CAM by epoch."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from hyperinit.bench.results import init_order, mean_std
from hyperinit.bench.tasks import TASKS

__all__ = ["plot_cams", "plot_convergence", "plot_sweep"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sweep(results: list[dict], path: Path) -> list[str]:
    """Primary test metric vs label fraction, per task with more than one fraction."""
    by: dict[str, dict[str, dict[float, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for r in results:
        c = r["cell"]
        if c["scheme"] == "all_layers" and c["arch"] == "timm:resnet18":
            by[c["task"]][c["init"]][c["fraction"]].append(r["test"][r["task"]["primary"]])
    tasks = [t for t, d in by.items() if any(len(f) > 1 for f in d.values())]
    if not tasks:
        return []
    plt = _plt()
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for init in init_order(by[task]):
            fr = sorted(by[task][init])
            if len(fr) < 2:
                continue
            stats = [mean_std(by[task][init][f]) for f in fr]
            ax.errorbar(
                [100 * f for f in fr],
                [s[0] for s in stats],
                yerr=[s[1] for s in stats],
                marker="o",
                capsize=3,
                label=init,
            )
        ax.set_xscale("log")
        ax.set_xlabel("training labels used (%)")
        ax.set_ylabel(f"test {TASKS[task].primary}")
        ax.set_title(f"{task}, ResNet-18")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return tasks


def plot_convergence(results: list[dict], path: Path) -> list[str]:
    """Mean ± std validation score per epoch, ResNet-18 at 10 % labels."""
    by: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        c = r["cell"]
        if (c["arch"], c["fraction"], c["scheme"]) == ("timm:resnet18", 0.1, "all_layers"):
            by[c["task"]][c["init"]].append(r)
    tasks = [t for t in TASKS if t in by]
    if not tasks:
        return []
    plt = _plt()
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.2 * len(tasks), 6.5), squeeze=False)
    for k, task in enumerate(tasks):
        primary = TASKS[task].primary
        for init in init_order(by[task]):
            rs = by[task][init]
            n = min(len(r["curves"]["val"]) for r in rs)
            ep = np.arange(1, n + 1)
            val = np.array([[r["curves"]["val"][e][primary] for e in range(n)] for r in rs])
            loss = np.array([r["curves"]["train_loss"][:n] for r in rs])
            for row, arr in ((0, val), (1, loss)):
                ax = axes[row, k]
                (line,) = ax.plot(ep, arr.mean(0), label=f"{init} (n={len(rs)})")
                ax.fill_between(
                    ep,
                    arr.mean(0) - arr.std(0),
                    arr.mean(0) + arr.std(0),
                    alpha=0.15,
                    color=line.get_color(),
                )
        split = by[task][next(iter(by[task]))][0].get("val_split", "val")
        axes[0, k].set_title(f"{task}: {split} {primary}")
        axes[1, k].set_title(f"{task}: training loss")
        axes[1, k].set_xlabel("epoch")
        axes[0, k].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return tasks


def _read_image(file: str, size: int) -> np.ndarray | None:
    from hyperinit.data import read_image
    from hyperinit.errors import UnreadableImageError

    try:
        img = read_image(file, channels=1).resize((size, size))
    except UnreadableImageError:
        return None
    return np.asarray(img, dtype=np.float32) / 255


def plot_cams(
    results: list[dict], fig_dir: Path, stem: str, max_images: int = 2
) -> dict[str, Path]:
    """Grad-CAM during fine-tuning, the seed's Fig. 3: one figure per task, for each of the first
    ``max_images`` test images a row per init (default, then hyperinit), a column per stored
    epoch. ResNet-18, seed 0, 10 % labels. Returns ``{task: figure path}``."""
    by_task: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in results:
        c = r["cell"]
        wanted = (c["seed"], c["arch"], c["fraction"], c["scheme"])
        if (
            r.get("cams")
            and r.get("cam_files")
            and wanted == (0, "timm:resnet18", 0.1, "all_layers")
        ):
            by_task[c["task"]].setdefault(c["init"], r)
    written: dict[str, Path] = {}
    for task in [t for t in TASKS if t in by_task]:
        runs = by_task[task]
        inits = [i for i in init_order(runs) if i == "default" or i.startswith("hyperinit:own")]
        if len(inits) < 2:
            inits = init_order(runs)[:2]
        epochs = sorted({int(e) for i in inits for e in runs[i]["cams"]})
        n_img = min(max_images, *(len(runs[i]["cam_files"]) for i in inits))
        written[task] = fig_dir / f"{stem}_cams_{task}.png"
        _cam_figure(task, [runs[i] for i in inits], inits, epochs, n_img, written[task])
    return written


def _cam_figure(
    task: str, runs: list[dict], inits: list[str], epochs: list[int], n_img: int, path: Path
) -> None:
    plt = _plt()
    rows = [(j, k) for j in range(n_img) for k in range(len(runs))]
    fig, axes = plt.subplots(
        len(rows), len(epochs), figsize=(1.7 * len(epochs) + 1.2, 1.75 * len(rows)), squeeze=False
    )
    for row, (j, k) in enumerate(rows):
        r = runs[k]
        size = r["cam_size"]
        img = _read_image(r["cam_files"][j], size)
        for col, e in enumerate(epochs):
            ax = axes[row, col]
            ax.set_xticks([]), ax.set_yticks([])
            cam = r["cams"].get(str(e))
            if img is not None:
                ax.imshow(img, cmap="gray")
            if cam is not None:
                ax.imshow(
                    np.array(cam[j]),
                    cmap="jet",
                    alpha=0.45,
                    extent=(-0.5, size - 0.5, size - 0.5, -0.5),
                    interpolation="bilinear",
                )
            if row == 0:
                ax.set_title(f"epoch {e}", fontsize=11)
            if col == 0:
                label = "default init" if inits[k] == "default" else inits[k].replace(":", "\n")
                ax.set_ylabel(f"image {j + 1}\n{label}", fontsize=10)
    fig.suptitle(
        f"{task}: Grad-CAM during fine-tuning (ResNet-18, 10 % labels, seed 0)", fontsize=12
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
