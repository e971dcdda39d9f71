"""Convolution-based modality visualisation and distance (cmv / cmd) and ``modality="auto"``.

After section 3 of "Rethinking medical pre-training": an untrained CNN without activations,
normalisation or dropout maps images to 2-D; the coordinates of a dataset are the means of that
map over ``t`` random subsets of ``n`` images (eq. 1); ``cmd`` is the mean Euclidean distance
between all coordinates of two datasets (eq. 2); the final distance averages ``eps_init * cmd``
over Kaiming, orthogonal and Xavier initialisations (eq. 3).

Choices of ours, where the paper leaves them open or relies on data we do not have:

- the CNN: three 3x3 stride-2 convolutions (3->16->32->64 channels), 4x4 average pooling and a
  linear map to 2-D, on 64x64 RGB images (grey repeated), each image min-max scaled to [0, 1]
  (so tensors normalised any affine way give the same coordinates);
- several random nets per initialisation (``nets_per_init``), averaged, which steadies the
  distance; coordinates are only compared between the same net;
- ``eps_init``: the paper uses ImageNet's intra-dataset cmd; we use 1 / the mean intra-dataset
  cmd of the reference modalities, stored with their coordinates in ``modality_coords.json``,
  package data (``python tools/modality_coords.py`` recomputes both).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hyperinit.data.io import find_images, read_image
from hyperinit.errors import HyperInitError
from hyperinit.modalities import package_json

__all__ = [
    "INITS",
    "choose_modality",
    "cmd",
    "cmv_coordinates",
    "load_images",
    "modality_distance",
    "modality_distances",
    "spread_indices",
    "to_chw",
]

log = logging.getLogger(__name__)

INITS: tuple[str, ...] = ("kaiming", "orthogonal", "xavier")
#: The reference coordinates of each modality and the run that made them (``eps``,
#: ``params``, ``data``, ``coords``), from the package data ``modality_coords.json``.
COORDS: dict[str, Any] = package_json("modality_coords.json")
IMAGE_SIZE = 64
SUBSET_SIZE = 8
N_SUBSETS = 16
NETS_PER_INIT = 4
MAX_IMAGES = 128

Coords = dict[str, torch.Tensor]  # init -> (nets, t, 2)


def _cmv_net(init: str, seed: int) -> nn.Sequential:
    """The linear CNN F of eq. 1, initialised deterministically."""
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(64 * 16, 2),
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net:
            if not isinstance(m, nn.Conv2d | nn.Linear):
                continue
            w = torch.empty_like(m.weight)
            if init == "kaiming":
                fan_in = w[0].numel()
                w.normal_(0, (2.0 / fan_in) ** 0.5, generator=gen)
            elif init == "xavier":
                fan_in, fan_out = w[0].numel(), w.shape[0] * w[0, 0].numel()
                w.normal_(0, (2.0 / (fan_in + fan_out)) ** 0.5, generator=gen)
            elif init == "orthogonal":
                flat = torch.randn(w.shape[0], w[0].numel(), generator=gen)
                q, r = torch.linalg.qr(flat.t() if flat.shape[0] < flat.shape[1] else flat)
                q = q * torch.sign(torch.diagonal(r))
                w.copy_((q.t() if flat.shape[0] < flat.shape[1] else q).reshape(w.shape))
            else:
                raise ValueError(f"unknown init {init!r}; use one of {INITS}")
            m.weight.copy_(w)
            m.bias.zero_()
    return net.eval()


def to_chw(img: Any) -> torch.Tensor:
    """One image (tensor, array or PIL image) as float (3, H, W)."""
    if not isinstance(img, torch.Tensor):
        import numpy as np
        from PIL import Image

        if isinstance(img, Image.Image) and img.mode in ("P", "LA", "RGBA", "CMYK", "YCbCr"):
            img = img.convert("RGB")
        arr = np.asarray(img, dtype=np.float32)
        img = torch.from_numpy(arr.copy())
        img = img.permute(2, 0, 1) if img.ndim == 3 else img[None]
    x = img.float()
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise HyperInitError(
            f"expected an image of shape (C, H, W) or (H, W), got {tuple(x.shape)}"
        )
    if x.shape[0] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
        x = x.permute(2, 0, 1)  # (H, W, C)
    if x.shape[0] == 4:
        x = x[:3]
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    if x.shape[0] != 3:
        raise HyperInitError(f"expected 1, 3 or 4 channels, got {x.shape[0]}")
    return x


def _prepare(x: torch.Tensor, size: int) -> torch.Tensor:
    x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True)[0]
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo).clamp_min(1e-8)


def spread_indices(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n) (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    return [int(i * n / k) for i in range(k)]


def load_images(source: Any, max_images: int = MAX_IMAGES, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Images from a tensor ``(N, C, H, W)``, a folder (searched recursively), a list of files
    or images, or a dataset (items or ``(image, label)`` pairs), as ``(N, 3, size, size)`` in
    [0, 1]. At most ``max_images``, spread evenly over the source (never the whole of a large
    folder)."""
    if isinstance(source, torch.Tensor):
        items: Sequence[Any] = source if source.ndim == 4 else source[None]
    elif isinstance(source, str | Path):
        items = find_images(source)
    elif hasattr(source, "__getitem__") and hasattr(source, "__len__"):
        items = source
    elif isinstance(source, Iterable):
        items = list(source)
    else:
        raise TypeError(f"cannot read images from {type(source).__name__}")
    n = len(items)
    if n == 0:
        raise HyperInitError("the image sample is empty.")
    out = []
    for i in spread_indices(n, max_images):
        item = items[i]
        if isinstance(item, tuple | list) and not isinstance(item, torch.Tensor):
            item = item[0]  # (image, label)
        if isinstance(item, str | Path):
            item = read_image(item)
        out.append(_prepare(to_chw(item), size))
    return torch.stack(out)


@torch.no_grad()
def cmv_coordinates(
    images: Any,
    *,
    subset_size: int = SUBSET_SIZE,
    n_subsets: int = N_SUBSETS,
    nets_per_init: int = NETS_PER_INIT,
    max_images: int = MAX_IMAGES,
    seed: int = 0,
) -> Coords:
    """cmv coordinates (eq. 1): ``{init: (nets_per_init, n_subsets, 2)}``."""
    x = images if _is_prepared(images) else load_images(images, max_images=max_images)
    n = x.shape[0]
    k = max(1, min(subset_size, n))
    gen = torch.Generator().manual_seed(seed)
    subsets = torch.stack([torch.randperm(n, generator=gen)[:k] for _ in range(n_subsets)])
    coords = {}
    for j, init in enumerate(INITS):
        per_net = []
        for r in range(nets_per_init):
            feats = _cmv_net(init, seed=1000 * j + r)(x)  # linear: mean of F = F of mean
            per_net.append(feats[subsets].mean(dim=1))
        coords[init] = torch.stack(per_net)
    return coords


def _is_prepared(x: Any) -> bool:
    return (
        isinstance(x, torch.Tensor)
        and x.ndim == 4
        and x.shape[1:] == (3, IMAGE_SIZE, IMAGE_SIZE)
        and bool(x.min() >= 0)
        and bool(x.max() <= 1)
    )


def cmd(a: torch.Tensor, b: torch.Tensor) -> float:
    """Eq. 2: mean Euclidean distance between all coordinates of ``a`` and ``b`` (``(..., t,
    2)``; leading dimensions are separate nets, averaged)."""
    return float(torch.cdist(a.double(), b.double()).mean())


def _as_coords(c: Any) -> Coords:
    return {k: torch.as_tensor(v, dtype=torch.float32) for k, v in c.items()}


def _scales(reference: dict[str, Any]) -> dict[str, float]:
    eps = reference.get("eps") or {}
    return {init: float(eps.get(init, 1.0)) for init in INITS}


def _average_cmd(a: Coords, b: Coords, eps: dict[str, float]) -> float:
    return sum(eps[i] * cmd(a[i], b[i]) for i in INITS) / len(INITS)


def modality_distance(images_a: Any, images_b: Any, **kwargs: Any) -> float:
    """The average cmd (eq. 3) between two image sets: tensors, folders, file lists or datasets.

    0 means the same modality statistics; values are scaled so that the mean distance within
    one of the reference datasets is about 1 (see the module docstring).
    """
    eps = _scales(COORDS)
    return _average_cmd(
        cmv_coordinates(images_a, **kwargs), cmv_coordinates(images_b, **kwargs), eps
    )


def _reference(name: str, reference: dict[str, Any]) -> Coords | None:
    coords = reference.get("coords", {})
    if name in coords:
        return _as_coords(coords[name])
    return None


def modality_distances(sample: Any, **kwargs: Any) -> dict[str, float]:
    """Average cmd from ``sample`` to each registered modality's reference coordinates, closest
    first."""
    from hyperinit.modalities import MODALITIES

    if not COORDS.get("coords"):
        raise HyperInitError(
            "no reference coordinates ship with this build: run "
            "`python tools/modality_coords.py` to compute them."
        )
    params = {k: COORDS["params"][k] for k in ("subset_size", "n_subsets", "nets_per_init")}
    params.update(kwargs)
    mine = cmv_coordinates(sample, **params)
    eps = _scales(COORDS)
    out = {}
    for name in MODALITIES:
        ref = _reference(name, COORDS)
        if ref is not None:
            out[name] = _average_cmd(mine, ref, eps)
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


def choose_modality(sample: Any, **kwargs: Any) -> tuple[str, dict[str, float]]:
    """The modality whose reference coordinates are closest to ``sample``, and all distances."""
    distances = modality_distances(sample, **kwargs)
    best = next(iter(distances))
    log.info(
        "hyperinit: modality='auto' chose %s (%s)",
        best,
        ", ".join(f"{k} {v:.3f}" for k, v in distances.items()),
    )
    return best, distances
