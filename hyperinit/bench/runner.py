"""Running one benchmark cell: (task, architecture, init, label fraction, seed) -> metrics and
curves (the cell itself: :mod:`hyperinit.bench.cell`, its data: :mod:`hyperinit.bench.celldata`).

A finished cell is saved as JSON under ``<results>/cells/`` and never rerun; an unfinished one
saves a checkpoint after every epoch under ``<cache>/`` and resumes from it.

>>> from hyperinit.bench import Cell, run_cell
>>> result = run_cell(Cell("chest_xray", "timm:resnet18", "hyperinit:xray", fraction=0.1),
...                   results_dir="runs/bench")
>>> result["test"]["auc"], result["curves"]["val"]
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from hyperinit.bench.cam import grad_cam, pick_cam_layer
from hyperinit.bench.cell import Cell, ModelFactory, cell_path
from hyperinit.bench.celldata import CellData, ValView, cam_inputs, load_splits
from hyperinit.bench.inits import apply_init
from hyperinit.bench.metrics import dice
from hyperinit.bench.tasks import SplitData, Task, classification_metrics, get_task

__all__ = ["build_model", "run_cell"]

log = logging.getLogger(__name__)

RESULT_VERSION = 1


def build_model(arch: str | ModelFactory, task: Task, num_classes: int) -> nn.Module:
    """The model of a cell: a classifier, or for segmentation a U-Net over ``arch``."""
    if callable(arch):
        n = len(inspect.signature(arch).parameters)
        return arch(task.in_chans, num_classes) if n >= 2 else arch()
    if task.kind == "segmentation":
        from hyperinit.bench.unet import UNet

        return UNet(arch, in_chans=task.in_chans, num_classes=1)
    from hyperinit.models import create_model

    return create_model(arch, in_chans=task.in_chans, num_classes=num_classes)


def _trainable(model: nn.Module, scheme: str) -> list[nn.Parameter]:
    if scheme in ("all_layers", "metalr"):
        return [p for p in model.parameters() if p.requires_grad]
    from hyperinit.metalr import layer_groups, schemes

    if scheme == "last_layer_only":
        return schemes.last_layer_only(model)
    depth = len(layer_groups(model))
    if scheme == "layerwise":  # freeze the lowest ~40 % of the layers
        return schemes.layerwise(model, max(1, round(0.4 * depth)))
    m, n = 2, max(2, round(0.5 * depth))  # bidirectional: freeze the middle, train both ends
    return schemes.bidirectional(model, m, n)


@torch.no_grad()
def _predict(model: nn.Module, data: CellData, split: SplitData, bs: int = 128) -> torch.Tensor:
    model.eval()
    out = [model(data.prep(split.x[i : i + bs])).float().cpu() for i in range(0, len(split), bs)]
    model.train()
    return torch.cat(out)


def _evaluate(model: nn.Module, data: CellData, split: SplitData, task: Task) -> dict:
    logits = _predict(model, data, split)
    if task.kind == "segmentation":
        pred = logits > 0
        return {"dice": dice(pred, split.y.bool(), split.fov)}
    return classification_metrics(task, logits.softmax(1), split.y)


def _loss(logits: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
    if task.kind == "segmentation":
        y = y.float()
        p = logits.sigmoid()
        soft_dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
        return F.binary_cross_entropy_with_logits(logits, y) + soft_dice
    return F.cross_entropy(logits, y)


def run_cell(
    cell: Cell,
    results_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    data_root: str | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict:
    """Train and evaluate one cell, or return its saved result if it has finished before.

    Args:
        results_dir: finished cells are written to ``results_dir/cells/<key>.json``.
        cache_dir: decoded data and per-epoch resume checkpoints (default
            ``results_dir/cache``).
        data_root: the data folder (default: :func:`hyperinit.data.data_root`).
        device: where to train.

    Returns:
        ``{"cell": config, "test": metrics, "curves": {"train_loss", "val"}, "cams", ...}``;
        classification test metrics are those of the epoch with the best validation
        primary metric (``test_final``: the last epoch); segmentation uses the last epoch.
    """
    out = cell_path(cell, results_dir)
    if out.exists():
        return json.loads(out.read_text())
    cache = Path(cache_dir) if cache_dir is not None else Path(results_dir) / "cache"
    resume_path = cache / "resume" / f"{cell.key()}.pt"
    task = get_task(cell.task)
    device = torch.device(device)
    splits = load_splits(cell, task, data_root, cache / "data")
    data = CellData(splits, device)
    n_classes = 1 if task.kind == "segmentation" else len(splits["train"].classes)

    torch.manual_seed(cell.seed)
    t0 = time.perf_counter()
    model = build_model(cell.arch, task, n_classes).to(device)
    build_s = time.perf_counter() - t0
    example = data.prep(splits["train"].x[:2])
    info = apply_init(
        model,
        cell.init,
        modality=task.modality,
        seed=cell.seed,
        example=example,
        sample=splits["train"].x[:32].float() / 255,
    )
    model.train()
    params = _trainable(model, cell.scheme)
    base = torch.optim.SGD(params, lr=cell.lr, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(cell.seed)
    steps_per_epoch = max(
        len(splits["train"]) // min(cell.batch_size, len(splits["train"])),
        cell.min_steps_per_epoch,
    )
    total = cell.epochs * steps_per_epoch
    opt: Any = base
    sched = None
    val_iter: Iterator | None = None
    if cell.scheme == "metalr":
        from hyperinit.metalr import MetaLROptimizer

        opt = MetaLROptimizer(base, model, meta_lr=1e-4, lr_max=0.1, init_lrs=cell.lr)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(base, T_max=total)

    cam_layer = None
    cam_x = cam_y = None
    cam_files: list[str] = []
    if cell.cam_epochs and task.kind == "classification":
        cam_layer = pick_cam_layer(model, example)
        cx, cam_y, cam_files = cam_inputs(splits["test"], cell.cam_images)
        cam_x = data.prep(cx)

    state: dict[str, Any] = {
        "epoch": 0,
        "train_loss": [],
        "val": [],
        "epoch_seconds": [],
        "cams": {},
        "best": None,
        "best_score": -math.inf,
        "best_epoch": 0,
    }
    if resume_path.exists():
        ck = torch.load(resume_path, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        if sched is not None:
            sched.load_state_dict(ck["sched"])
        gen.set_state(ck["gen"])
        state = ck["state"]
        log.info("resuming %s after epoch %d", cell.key(), state["epoch"])

    val_gen = torch.Generator().manual_seed(cell.seed + 1000)

    def val_batches() -> Iterator:  # cycles through the validation split
        view = ValView(data)
        while True:
            yield from view.batches(cell.batch_size, val_gen, 1)

    bar = tqdm(
        total=total,
        initial=state["epoch"] * steps_per_epoch,
        desc=f"{cell.task} {cell.arch_label} {cell.init_label} s{cell.seed}",
        disable=not progress,
        leave=False,
    )
    for epoch in range(state["epoch"] + 1, cell.epochs + 1):
        te = time.perf_counter()
        losses = []
        for xb, yb in data.batches(cell.batch_size, gen, cell.min_steps_per_epoch):
            if cell.scheme == "metalr":
                if val_iter is None:
                    val_iter = val_batches()
                xv, yv = next(val_iter)
                loss = opt.step(
                    lambda xb=xb, yb=yb: _loss(model(xb), yb, task),
                    lambda xv=xv, yv=yv: _loss(model(xv), yv, task),
                )
            else:
                opt.zero_grad(set_to_none=True)
                loss = _loss(model(xb), yb, task)
                loss.backward()
                opt.step()
                sched.step()
            losses.append(float(loss.detach()))
            bar.update()
        state["train_loss"].append(float(np.mean(losses)))
        metrics = _evaluate(model, data, splits["val"], task)
        state["val"].append(metrics)
        score = metrics[task.primary]
        if task.kind == "classification" and not score <= state["best_score"]:  # nan-safe
            state["best_score"], state["best_epoch"] = score, epoch
            state["best"] = copy.deepcopy(model.state_dict())
        if epoch in cell.cam_epochs and cam_layer is not None:
            state["cams"][str(epoch)] = grad_cam(model, cam_layer, cam_x, cam_y).cpu().tolist()
        state["epoch_seconds"].append(time.perf_counter() - te)
        state["epoch"] = epoch
        bar.set_postfix(loss=f"{state['train_loss'][-1]:.3f}", val=f"{score:.3f}")
        resume_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "sched": None if sched is None else sched.state_dict(),
                "gen": gen.get_state(),
                "state": state,
            },
            resume_path,
        )
    bar.close()
    test_final = _evaluate(model, data, splits["test"], task)
    test = test_final
    if task.kind == "classification" and state["best"] is not None:
        model.load_state_dict(state["best"])
        test = _evaluate(model, data, splits["test"], task)
    result = {
        "version": RESULT_VERSION,
        "cell": cell.config(),
        "key": cell.key(),
        "task": {"name": task.name, "primary": task.primary, "modality": task.modality},
        "test": test,
        "test_final": test_final,
        "best_epoch": state["best_epoch"] or cell.epochs,
        "curves": {"train_loss": state["train_loss"], "val": state["val"]},
        "val_split": "test" if task.kind == "segmentation" else "val",
        "cams": state["cams"],
        "cam_layer": cam_layer,
        "cam_files": cam_files,
        "cam_size": cell.input_size,
        "n_train": len(splits["train"]),
        "n_val": len(splits["val"]),
        "n_test": len(splits["test"]),
        "steps_per_epoch": steps_per_epoch,
        "build_seconds": build_s,
        "train_seconds": float(sum(state["epoch_seconds"])),
        "params": sum(p.numel() for p in model.parameters()),
        "init_info": info,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "host": platform.node(),
        "torch": torch.__version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if cell.scheme == "metalr":
        result["final_lrs"] = opt.lrs
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=float) + "\n")
    tmp.replace(out)
    resume_path.unlink(missing_ok=True)
    return result
