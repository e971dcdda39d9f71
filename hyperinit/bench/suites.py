"""The benchmark suites (``quick``, ``default``, ``full``, ``gpu``) as ordered lists of cells,
most important first, with a compute estimate.

- ``quick``: every task once at tiny size (32 px, 64 images, 1 epoch): checks the pipeline
  in a few minutes on 2 CPU cores. Its numbers mean nothing.
- ``default``: about 2 hours with two workers on 2 CPU cores (cell time summed over
  cells: about 4 h by :func:`estimate_seconds`); 64 px (DermaMNIST 32, DRIVE 128), ResNet-18
  plus MobileNetV3 and EfficientNet-B0, 10 % labels, 3 seeds, 10 epochs; the chest X-ray
  label-fraction sweep; convergence curves and CAMs; fine-tuning schemes including MetaLR on
  BUSI. Cells are ordered so that a partial run has the headline comparison first (10 %
  labels, ResNet-18, default vs own modality vs mixed).
- ``full``: ``default`` plus the larger architectures (ResNet-50, RegNetY-1.6GF,
  DenseNet-121), 20 epochs with CAMs at 1, 3, 5, 10, 20 and every task's fraction sweep.
- ``gpu``: ``full`` at 224 px (DRIVE 512 px), meant for one GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hyperinit.bench.cell import Cell
from hyperinit.bench.tasks import TASKS
from hyperinit.errors import BenchConfigError

__all__ = ["ARCHS", "SUITES", "estimate_seconds", "get_suite", "run_suite"]

log = logging.getLogger(__name__)

SEEDS = (0, 1, 2)
CLASSIFICATION = ("chest_xray", "ct_covid", "busi", "dermamnist")
#: name -> (timm spec, cost relative to ResNet-18 per image; measured/estimated on CPU)
ARCHS: dict[str, tuple[str, float]] = {
    "resnet18": ("timm:resnet18", 1.0),
    "mobilenetv3": ("timm:mobilenetv3_large_100", 0.5),
    "efficientnet_b0": ("timm:efficientnet_b0", 0.8),
    "resnet50": ("timm:resnet50", 2.9),
    "regnety_016": ("timm:regnety_016", 2.6),
    "densenet121": ("timm:densenet121", 3.5),
}
SMALL_ARCHS = ("mobilenetv3", "efficientnet_b0")
LARGE_ARCHS = ("resnet50", "regnety_016", "densenet121")
FRACTIONS = (0.01, 0.05, 0.1, 0.25, 1.0)
SCHEME_LIST = ("last_layer_only", "all_layers", "layerwise", "bidirectional", "metalr")
#: ResNet-18 training images/s at 64 px for one worker with 1 thread (measured: 97-120).
CPU_IMAGES_PER_S_64PX = 97.0


def _epochs(task: str, base: int) -> int:
    return base * 2 if task == "drive" else base


def _size(task: str, scale: float) -> int:
    return int(TASKS[task].size * scale) if task != "drive" else int(128 * scale)


def _cells(
    scale: float,
    epochs: int,
    cam_epochs: tuple[int, ...],
    large: bool,
    all_sweeps: bool,
    c2l: str | None,
) -> list[Cell]:
    r18 = ARCHS["resnet18"][0]
    inits = ["default", "hyperinit:own", "hyperinit:mixed"]
    tasks = (*CLASSIFICATION, "drive")
    cells: list[Cell] = []

    def add(task: str, **kw) -> None:
        kw.setdefault("arch", r18)
        kw.setdefault("epochs", _epochs(task, epochs))
        kw.setdefault("size", _size(task, scale))
        kw.setdefault("batch_size", 8 if task == "drive" else 32)
        cell = Cell(task, **kw)
        if cell.key() not in {c.key() for c in cells}:
            cells.append(cell)

    # 1. headline: 10 % labels, ResNet-18, default vs own modality vs mixed; CAMs on seed 0
    for task in tasks:
        for seed in SEEDS:
            for init in inits:
                cams = cam_epochs if seed == 0 and task in CLASSIFICATION else ()
                add(task, init=init, seed=seed, fraction=0.1, cam_epochs=cams, tags=("core",))
    # 2. the label-fraction sweep on chest X-ray (every task in the full suite)
    for task in tasks if all_sweeps else ("chest_xray",):
        for fraction in FRACTIONS:
            for seed in SEEDS:
                for init in ("default", "hyperinit:own"):
                    cams = cam_epochs if seed == 0 and fraction == 0.1 else ()
                    add(
                        task,
                        init=init,
                        seed=seed,
                        fraction=fraction,
                        cam_epochs=cams,
                        tags=("core",) if fraction == 0.1 else ("sweep",),
                    )
    # 3. modality="auto" and C2L at 10 %
    for task in tasks:
        for seed in SEEDS:
            add(task, init="hyperinit:auto", seed=seed, fraction=0.1, tags=("auto",))
            if c2l:
                add(task, init=f"c2l:{c2l}", seed=seed, fraction=0.1, tags=("c2l",))
    # 4. DRIVE: hyper-initialise the whole U-Net too; and all 20 training images
    for seed in SEEDS:
        add("drive", init="hyperinit-all:own", seed=seed, fraction=0.1, tags=("unet",))
        for init in ("default", "hyperinit:own", "hyperinit-all:own"):
            add("drive", init=init, seed=seed, fraction=1.0, tags=("unet",))
    # 5. fine-tuning schemes (MetaLR paper, Table 2) from the hyper-initialised model
    for task in ("busi",) if not all_sweeps else ("busi", "chest_xray"):
        for scheme in SCHEME_LIST:
            for seed in SEEDS:
                for init in ("default", "hyperinit:own"):
                    add(task, init=init, seed=seed, fraction=0.1, scheme=scheme, tags=("schemes",))
    # 6. more architectures (Table 2 of the hyper-initializer paper)
    archs = SMALL_ARCHS + (LARGE_ARCHS if large else ())
    for arch in archs:
        for task in tasks:
            for seed in SEEDS:
                for init in ("default", "hyperinit:own"):
                    add(
                        task,
                        arch=ARCHS[arch][0],
                        init=init,
                        seed=seed,
                        fraction=0.1,
                        tags=("archs",),
                    )
    return cells


def _quick(c2l: str | None = None) -> list[Cell]:
    cells = []
    for task in (*CLASSIFICATION, "drive"):
        for init in ("default", "hyperinit:own"):
            cells.append(
                Cell(
                    task,
                    "timm:resnet18",
                    init,
                    fraction=0.1,
                    epochs=1,
                    size=64 if task == "drive" else 32,
                    batch_size=8 if task == "drive" else 16,
                    max_train=64,
                    max_eval=64,
                    min_steps_per_epoch=2,
                    cam_epochs=(1,) if task == "chest_xray" else (),
                    tags=("quick",),
                )
            )
    if c2l:
        cells.append(
            Cell(
                "chest_xray",
                "timm:resnet18",
                f"c2l:{c2l}",
                epochs=1,
                size=32,
                max_train=64,
                max_eval=64,
                min_steps_per_epoch=2,
                tags=("quick",),
            )
        )
    return cells


SUITES: dict[str, Callable[..., list[Cell]]] = {
    "quick": _quick,
    "default": lambda c2l=None: _cells(1.0, 10, (1, 3, 5, 10), False, False, c2l),
    "full": lambda c2l=None: _cells(1.0, 20, (1, 3, 5, 10, 20), True, True, c2l),
    "gpu": lambda c2l=None: _cells(3.5, 20, (1, 3, 5, 10, 20), True, True, c2l),
}


def get_suite(name: str, c2l: str | None = None) -> list[Cell]:
    """The cells of suite ``name`` (C2L cells only when a checkpoint ``c2l`` is given)."""
    if name not in SUITES:
        raise BenchConfigError(f"unknown suite {name!r}; choose from {sorted(SUITES)}.")
    return SUITES[name](c2l)


_TRAIN_SIZES = {"chest_xray": 4709, "ct_covid": 522, "busi": 546, "dermamnist": 7007, "drive": 20}
_EVAL_SIZES = {"chest_xray": 1146, "ct_covid": 225, "busi": 236, "dermamnist": 3008, "drive": 20}


def estimate_seconds(cell: Cell, images_per_s: float = CPU_IMAGES_PER_S_64PX) -> float:
    """Rough training + evaluation time of a cell for one worker with 1 CPU thread
    (evaluation counted at 1/3 of a training image), from ResNet-18's measured 97 img/s at
    64 px. Two workers (``--shard 0/2``, ``1/2``) on 2 cores halve a suite's wall time."""
    n = _TRAIN_SIZES[cell.task] * cell.fraction
    if cell.max_train:
        n = min(n, cell.max_train)
    n = max(n, cell.min_steps_per_epoch * cell.batch_size)
    n_eval = _EVAL_SIZES[cell.task] if cell.max_eval is None else 2 * cell.max_eval
    cost = next((c for s, c in ARCHS.values() if s == cell.arch_label), 1.0)
    if cell.task == "drive":
        cost *= 1.5  # the decoder
    if cell.scheme == "metalr":
        cost *= 2.0
    px = (cell.input_size / 64) ** 2
    images = cell.epochs * (n + n_eval / 3)
    return images * px * cost / images_per_s


def run_suite(
    cells: list[Cell],
    results_dir: str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
    tags: tuple[str, ...] = (),
    inits: tuple[str, ...] = (),
    max_cells: int | None = None,
    **run_kwargs: Any,
) -> list[dict]:
    """Run the cells not yet finished (those of shard ``i`` of ``n``, with one of ``tags`` and
    one of the init labels ``inits`` if given), in order; return the selection's results.

    A failing cell is logged and skipped, so one broken architecture does not stop a suite.
    """
    from tqdm.auto import tqdm

    from hyperinit.bench.cell import cell_path
    from hyperinit.bench.runner import run_cell

    i, n = shard
    chosen = [
        c
        for k, c in enumerate(cells)
        if k % n == i
        and (not tags or set(c.tags) & set(tags))
        and (not inits or c.init_label in inits)
    ]
    if max_cells is not None:
        chosen = chosen[:max_cells]
    todo = [c for c in chosen if not cell_path(c, results_dir).exists()]
    log.info("%d cells, %d finished, %d to run", len(chosen), len(chosen) - len(todo), len(todo))
    if i == 0 and any(c.tags and c.tags[0] != "quick" for c in chosen):
        from hyperinit.bench.inittime import measure_init_time

        for arch in sorted({c.arch_label for c in chosen if isinstance(c.arch, str)}):
            try:
                measure_init_time(arch, results_dir)
            except Exception as e:  # a timing failure must not stop the suite
                log.error("init time of %s: %s: %s", arch, type(e).__name__, e)
    results = []
    for cell in tqdm(chosen, desc="cells", unit="cell"):
        try:
            results.append(run_cell(cell, results_dir, **run_kwargs))
        except Exception as e:  # keep going; the cell stays unfinished and is retried next time
            log.error("cell %s failed: %s: %s", cell.key(), type(e).__name__, e)
    return results
