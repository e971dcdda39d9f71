"""A downstream proxy for choosing among hypernetwork snapshots: a linear probe on labels.

The self-supervised score of a training run rises while its downstream value can fall
(``research/long_training``), so snapshots are chosen by a measure that uses labels: the
hypernetwork predicts the weights of held-out architectures (never drawn in training, none of
the panel's models), their frozen pooled features of labelled images are fitted by a ridge
classifier on one half and scored (AUC) on the other, both ways round. Only validation images
are used; test images never are.

    >>> from hyperinit.training.proxy import ridge_probe_auc
    >>> x = torch.randn(64, 5)
    >>> y = (x[:, 0] > 0).long()
    >>> ridge_probe_auc(x, y, seed=0) > 0.9
    True
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hyperinit.archspace import ArchSpec, held_out_specs
from hyperinit.errors import TrainingError
from hyperinit.hypernet.model import HyperInitializer
from hyperinit.training.archs import ArchCache, predicted_network, seed_of
from hyperinit.training.data import normalize, to_channels

__all__ = ["ProbeData", "probe_score", "ridge_probe_auc", "select_snapshot"]

log = logging.getLogger(__name__)

#: the generated held-out architectures (hyperinit.archspace.HELD_OUT_SEEDS), first 8
PROBE_ARCHS = 8


@dataclass
class ProbeData:
    """Labelled images for the probe: ``x`` float in [0, 1] ``(N, C, S, S)``, ``y`` ``(N,)``."""

    x: Tensor
    y: Tensor

    @classmethod
    def from_task(
        cls, task: str, size: int = 48, limit: int = 256, cache_dir: str | Path | None = None
    ) -> ProbeData:
        """The validation split of a benchmark task (``chest_xray``...), at most ``limit``
        images (a stratified, seeded share)."""
        from hyperinit.bench.tasks import get_task, load_task_split

        if get_task(task).kind != "classification":
            raise TrainingError(f"the probe needs a classification task, not {task!r}")
        split = load_task_split(task, "val", size, cache_dir=cache_dir)
        idx = _stratified(split.y, limit, seed=0)
        return cls(split.x[idx].float() / 255, split.y[idx].long())


def _stratified(y: Tensor, limit: int, seed: int) -> Tensor:
    """At most ``limit`` indices, each class in proportion, shuffled with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    keep = min(1.0, limit / len(y))
    parts = []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        parts.append(idx[: max(1, round(keep * len(idx)))])
    out = torch.cat(parts)
    return out[torch.randperm(len(out), generator=g)]


def ridge_probe_auc(feats: Tensor, labels: Tensor, *, seed: int, ridge: float = 1.0) -> float:
    """Two-fold AUC of a ridge classifier (one-vs-rest, on standardised features), the mean of
    both folds; macro AUC over classes for more than two."""
    from hyperinit.bench.metrics import binary_auc, macro_auc

    x, y = feats.double(), labels.long()
    classes = int(y.max()) + 1
    folds = _stratified(y, len(y), seed)
    halves = (folds[: len(folds) // 2], folds[len(folds) // 2 :])
    aucs = []
    for fit, score in (halves, halves[::-1]):
        mean, std = x[fit].mean(0), x[fit].std(0).clamp_min(1e-8)
        a, b = (x[fit] - mean) / std, (x[score] - mean) / std
        target = torch.nn.functional.one_hot(y[fit], classes).double() * 2 - 1
        gram = a.t() @ a
        lam = ridge * gram.diagonal().mean().clamp_min(1e-8)
        w = torch.linalg.solve(gram + lam * torch.eye(len(gram), dtype=gram.dtype), a.t() @ target)
        out = b @ w
        if classes == 2:
            aucs.append(binary_auc(out[:, 1] - out[:, 0], y[score]))
        else:
            aucs.append(macro_auc(torch.softmax(out, 1), y[score]))
    return float(sum(aucs) / len(aucs))


def _pooled_features(net: Any, x: Tensor) -> Tensor:
    """The features the predicted network's neck receives (its pooled last stage)."""
    got: list[Tensor] = []
    handle = net.module.neck.register_forward_pre_hook(lambda _m, args: got.append(args[0]))
    try:
        net(x)
    finally:
        handle.remove()
    return got[0]


@torch.no_grad()
def probe_score(
    hypernet: HyperInitializer,
    data: ProbeData,
    *,
    specs: Sequence[ArchSpec] | None = None,
    image_size: int = 48,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean linear-probe AUC over ``specs`` (default: the first 8 generated held-out
    architectures) of the networks ``hypernet`` predicts, on ``data``; per-architecture too."""
    specs = list(specs) if specs is not None else held_out_specs(False)[:PROBE_ARCHS]
    chans = int(data.x.shape[1])
    cache = ArchCache(128, size=1)
    x = normalize(to_channels(data.x, chans))
    if x.shape[-1] != image_size:
        x = torch.nn.functional.interpolate(x, size=image_size, mode="bilinear", antialias=True)
    x = x.to(hypernet.device)
    per_arch = []
    for i, spec in enumerate(specs):
        arch = cache.get(spec, chans, seed_of(seed, i), image_size)
        net = predicted_network(hypernet, arch, seed + i)
        feats = torch.cat([_pooled_features(net, b) for b in x.split(batch_size)]).cpu()
        per_arch.append(ridge_probe_auc(feats.flatten(1), data.y, seed=seed + i))
    return {"score": sum(per_arch) / len(per_arch), "per_arch": per_arch}


def select_snapshot(
    run_dir: str | Path, data: ProbeData, **probe: Any
) -> tuple[Path, list[dict[str, Any]]]:
    """Score every snapshot of a training run (``run_dir/snapshots/step_*/``, written with
    ``TrainConfig.snapshot_every``) by :func:`probe_score`; returns the best snapshot's folder
    (a checkpoint ``initialize`` loads) and all scores (also in ``snapshots/probe.json``).
    ``probe`` goes to :func:`probe_score` (``specs``, ``image_size``, ``seed``...)."""
    folder = Path(run_dir) / "snapshots"
    snaps = sorted(p for p in folder.glob("step_*") if (p / "config.json").is_file())
    if not snaps:
        raise TrainingError(
            f"no snapshots in {folder}: train with snapshot_every (--snapshot-every N) first"
        )
    rows = []
    for path in snaps:
        hypernet = HyperInitializer.from_pretrained(str(path))
        score = probe_score(hypernet.eval(), data, **probe)
        rows.append({"snapshot": path.name, "step": int(path.name.split("_")[1]), **score})
        log.info("%s: probe AUC %.4f", path.name, score["score"])
    (folder / "probe.json").write_text(json.dumps(rows, indent=1) + "\n")
    best = max(rows, key=lambda r: (r["score"], r["step"]))
    return folder / best["snapshot"], rows
