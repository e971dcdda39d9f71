"""Benchmark tasks: which dataset, modality, metrics and input channels, and their data as
in-memory uint8 tensors at the benchmark resolution."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from hyperinit.bench.metrics import accuracy, binary_auc, macro_auc, quadratic_kappa
from hyperinit.errors import BenchConfigError

__all__ = ["TASKS", "SplitData", "Task", "classification_metrics", "get_task", "load_task_split"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One benchmark task.

    Attributes:
        name: the task's key in :data:`TASKS`.
        dataset: the :mod:`hyperinit.data` dataset name.
        modality: the hyperinit modality of its images (the "own modality" init).
        kind: ``classification`` or ``segmentation``.
        metrics: reported metrics; ``primary`` is the one tables and goals use.
        in_chans: input channels the models get (1 for grayscale modalities).
        ordinal: classes are ordered grades (then quadratic kappa is reported).
        size: default input size on CPU (px).
        note: a remark for the report.
    """

    name: str
    dataset: str
    modality: str
    kind: str
    metrics: tuple[str, ...]
    primary: str
    in_chans: int
    ordinal: bool = False
    size: int = 64
    note: str = ""


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("chest_xray", "chest_xray", "xray", "classification", ("auc", "acc"), "auc", 1),
        Task("ct_covid", "ct_covid", "ct", "classification", ("auc", "acc"), "auc", 1),
        Task("busi", "busi", "ultrasound", "classification", ("acc", "macro_auc"), "macro_auc", 1),
        Task(
            "dermamnist",
            "dermamnist",
            "dermoscopy",
            "classification",
            ("acc", "macro_auc"),
            "macro_auc",
            3,
            size=32,
            note="DermaMNIST's 7 diagnoses are not ordinal grades, so no quadratic kappa.",
        ),
        Task(
            "drive",
            "drive",
            "fundus",
            "segmentation",
            ("dice",),
            "dice",
            3,
            size=256,
            note="U-Net over the classifier's encoder; Dice inside the field of view.",
        ),
    )
}


def get_task(name: str) -> Task:
    """The task called ``name``."""
    if name not in TASKS:
        raise BenchConfigError(f"unknown task {name!r}; choose from {sorted(TASKS)}.")
    return TASKS[name]


@dataclass
class SplitData:
    """One split in memory: ``x`` uint8 ``(N, C, S, S)``; ``y`` class indices ``(N,)`` or
    uint8 vessel masks ``(N, 1, S, S)``; ``fov`` field-of-view masks for segmentation."""

    x: torch.Tensor
    y: torch.Tensor
    files: list[str]
    classes: list[str]
    fov: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.x)


def _resize_uint8(img: Image.Image, size: int, resample: int = Image.BILINEAR) -> torch.Tensor:
    arr = np.asarray(img.resize((size, size), resample), dtype=np.uint8)
    t = torch.from_numpy(arr.copy())
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1)


def _load_classification(
    task: Task, split: str, size: int, fraction: float, data_seed: int, root: str | None
) -> SplitData:
    from hyperinit.data import load_split

    ds = load_split(task.dataset, split, root=root, fraction=fraction, seed=data_seed)
    ds.channels = task.in_chans
    ds.transform = lambda im: _resize_uint8(im, size)
    x = torch.empty(len(ds), task.in_chans, size, size, dtype=torch.uint8)
    y = torch.empty(len(ds), dtype=torch.long)
    for i in tqdm(range(len(ds)), desc=f"decode {task.name}/{split}", leave=False):
        x[i], y[i] = ds[i]
    return SplitData(x, y, [str(f) for f in ds.files], list(ds.classes))


def _load_drive(task: Task, split: str, size: int, fraction: float, data_seed: int, root):
    from hyperinit.data import drive_split

    def joint(image: Image.Image, vessels: Image.Image, fov: Image.Image):
        return (
            _resize_uint8(image, size),
            _resize_uint8(vessels, size, Image.NEAREST) > 127,
            _resize_uint8(fov, size, Image.NEAREST) > 127,
        )

    ds = drive_split("test" if split == "test" else "train", root=root, joint_transform=joint)
    idx = list(range(len(ds)))
    if fraction < 1:
        rng = np.random.default_rng(data_seed)
        idx = sorted(rng.permutation(len(ds))[: max(1, round(fraction * len(ds)))].tolist())
    items = [ds[i] for i in tqdm(idx, desc=f"decode drive/{split}", leave=False)]
    return SplitData(
        torch.stack([a for a, _, _ in items]),
        torch.stack([b for _, b, _ in items]).to(torch.uint8),
        [str(ds.images[i]) for i in idx],
        ["background", "vessel"],
        torch.stack([c for _, _, c in items]).to(torch.uint8),
    )


def load_task_split(
    task: Task | str,
    split: str,
    size: int,
    fraction: float = 1.0,
    data_seed: int = 0,
    root: str | None = None,
    cache_dir: str | Path | None = None,
) -> SplitData:
    """One split of a task, resized to ``size`` px, as uint8 tensors (cached in ``cache_dir``).

    Uses the fixed, recorded splits of :mod:`hyperinit.data`; ``fraction`` keeps a stratified,
    ``data_seed``-seeded share of the images (DRIVE: of the 20 training images). DRIVE has no
    ``val`` split; ``val`` is its training split, ``test`` its test split.
    """
    task = get_task(task) if isinstance(task, str) else task
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{task.name}_{split}_{size}px_f{fraction:g}_s{data_seed}.pt"
        if path.exists():
            return SplitData(**torch.load(path, weights_only=False))
    load = _load_drive if task.kind == "segmentation" else _load_classification
    data = load(task, split, size, fraction, data_seed, root)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # parallel runs never read half
        torch.save(vars(data), tmp)
        tmp.replace(path)
    return data


def classification_metrics(task: Task, probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """The task's metrics from class probabilities ``(N, K)`` and labels ``(N,)``."""
    out = {"acc": accuracy(probs, labels)}
    if probs.shape[1] == 2:
        out["auc"] = binary_auc(probs[:, 1], labels)
    else:
        out["macro_auc"] = macro_auc(probs, labels)
    if task.ordinal:
        out["kappa"] = quadratic_kappa(probs.argmax(1), labels, probs.shape[1])
    return out
