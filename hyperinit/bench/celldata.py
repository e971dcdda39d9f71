"""A cell's data: its splits loaded (capped for tiny runs) and served as normalised float batches,
with the test images its Grad-CAMs are drawn on."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import torch

from hyperinit.bench.cell import Cell
from hyperinit.bench.tasks import SplitData, Task, load_task_split

__all__ = ["CellData", "ValView", "cam_inputs", "load_splits"]


class CellData:
    """The cell's splits as normalised float batches."""

    def __init__(self, splits: dict[str, SplitData], device: torch.device) -> None:
        self.splits, self.device = splits, device
        x = splits["train"].x.float() / 255
        self.mean, self.std = x.mean().item(), max(x.std().item(), 1e-3)

    def prep(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() / 255 - self.mean) / self.std).to(self.device)

    def batches(
        self, bs: int, gen: torch.Generator, min_steps: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        tr = self.splits["train"]
        n = len(tr)
        bs = min(bs, n)
        steps = max(n // bs, min_steps)
        reps = math.ceil(steps * bs / n)
        order = torch.cat([torch.randperm(n, generator=gen) for _ in range(reps)])
        for i in range(steps):
            idx = order[i * bs : (i + 1) * bs]
            x, y = tr.x[idx], tr.y[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            if y.ndim == 4:
                y = torch.where(flip[:, None, None, None], y.flip(-1), y)
            yield self.prep(x), y.to(self.device)


class ValView(CellData):
    """The validation split seen as a training split (MetaLR's meta batches, no flips used)."""

    def __init__(self, data: CellData) -> None:
        self.splits = {"train": data.splits["val"]}
        self.device, self.mean, self.std = data.device, data.mean, data.std


def _cap(split: SplitData, n: int | None) -> SplitData:
    if n is None or len(split) <= n:
        return split
    idx = torch.linspace(0, len(split) - 1, n).round().long()  # spread over classes
    return SplitData(
        split.x[idx],
        split.y[idx],
        [split.files[i] for i in idx.tolist()],
        split.classes,
        None if split.fov is None else split.fov[idx],
    )


def load_splits(cell: Cell, task: Task, data_root: str | None, cache: Path | None) -> dict:
    size = cell.input_size
    kw = {"size": size, "root": data_root, "cache_dir": cache}
    train = load_task_split(task, "train", fraction=cell.fraction, data_seed=cell.data_seed, **kw)
    test = load_task_split(task, "test", **kw)
    val = test if task.kind == "segmentation" else load_task_split(task, "val", **kw)
    return {
        "train": _cap(train, cell.max_train),
        "val": _cap(val, cell.max_eval),
        "test": _cap(test, cell.max_eval),
    }


def cam_inputs(split: SplitData, k: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The first ``k`` test images of the non-first classes (the findings), else any."""
    idx = [i for i in range(len(split)) if int(split.y[i]) != 0][:k] or list(range(k))
    idx = idx[: min(k, len(split))]
    return split.x[idx], split.y[idx], [split.files[i] for i in idx]
