"""Attention mining (Cai et al., MICCAI 2018, section 3.2): class activation maps on an erased
feature map (eq. 7), erasure masks from the connected component around each map's maximum, and
the aggregation of the T maps into the final heatmap (eq. 8).

Shapes: feature maps ``(N, D, h, w)``, CAMs and masks ``(N, C, h, w)``; a mask is 1 where the
feature map is kept and 0 where it is erased.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "aggregate_heatmaps",
    "class_activation_maps",
    "component_at_max",
    "connected_components",
    "mine",
    "normalize_maps",
    "update_masks",
]

try:  # optional: C-speed labelling; the torch fallback below gives the same labels
    from scipy import ndimage as _ndimage
except ImportError:  # pragma: no cover - depends on the environment
    _ndimage = None


def _components_torch(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected labelling by propagating the largest pixel index over each component."""
    m = torch.from_numpy(mask.astype(bool))
    h, w = m.shape
    idx = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, 1, h, w)
    lab = torch.where(m.view(1, 1, h, w), idx, torch.zeros(()))
    while True:
        grown = F.max_pool2d(lab, 3, stride=1, padding=1)
        grown = torch.where(m.view(1, 1, h, w), grown, torch.zeros(()))
        if torch.equal(grown, lab):
            break
        lab = grown
    flat = lab.view(-1).long().numpy()
    uniq = np.unique(flat[flat > 0])
    out = np.zeros(h * w, dtype=np.int32)
    if uniq.size:
        out[flat > 0] = np.searchsorted(uniq, flat[flat > 0]) + 1
    return out.reshape(h, w), int(uniq.size)


def connected_components(mask: np.ndarray | Tensor) -> tuple[np.ndarray, int]:
    """Label the 8-connected components of a 2-D boolean mask.

    Returns ``(labels, count)``: ``labels`` is an int array of the mask's shape, 0 outside the
    mask and 1..count inside (scipy's order when scipy is installed, else by largest index).
    """
    arr = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    arr = arr.astype(bool)
    if arr.ndim != 2:
        raise ValueError(f"connected_components needs a 2-D mask; got shape {arr.shape}")
    if _ndimage is not None:
        labels, count = _ndimage.label(arr, structure=np.ones((3, 3), dtype=bool))
        return labels.astype(np.int32), int(count)
    return _components_torch(arr)


def component_at_max(heatmap: np.ndarray | Tensor, threshold: float = 0.5) -> np.ndarray:
    """Boolean mask of the connected component of ``heatmap >= threshold`` that holds the
    global maximum (ties: the first in row-major order). Empty if the maximum is below it."""
    h = heatmap.detach().cpu().numpy() if isinstance(heatmap, Tensor) else np.asarray(heatmap)
    peak = np.unravel_index(int(np.argmax(h)), h.shape)
    binary = h >= threshold
    if not binary[peak]:
        return np.zeros_like(binary)
    labels, _ = connected_components(binary)
    return labels == labels[peak]


def normalize_maps(maps: Tensor, valid: Tensor | None = None, eps: float = 1e-12) -> Tensor:
    """Min-max normalise each ``(h, w)`` map of ``(N, C, h, w)`` to [0, 1].

    ``valid`` (same shape, 0/1): the minimum and maximum are taken over valid pixels only, and
    invalid (erased) pixels are set to 0. A constant map becomes 0.
    """
    if valid is None:
        lo = maps.flatten(2).min(-1).values[..., None, None]
        span = maps.flatten(2).max(-1).values[..., None, None] - lo
        out = ((maps - lo) / span.clamp_min(eps)).clamp(0, 1)
        return torch.where(span > eps, out, torch.zeros_like(out))
    keep = valid > 0
    big = torch.finfo(maps.dtype).max
    lo = torch.where(keep, maps, torch.full_like(maps, big)).flatten(2).min(-1).values
    hi = torch.where(keep, maps, torch.full_like(maps, -big)).flatten(2).max(-1).values
    span = (hi - lo).clamp_min(eps)[..., None, None]
    out = ((maps - lo[..., None, None]) / span).clamp(0, 1)
    out = torch.where((hi - lo)[..., None, None] > eps, out, torch.zeros_like(out))
    return torch.where(keep, out, torch.zeros_like(out))


def class_activation_maps(features: Tensor, weight: Tensor, masks: Tensor | None = None) -> Tensor:
    """Eq. 7: ``H^c = (X * M^c) w^c`` for every class, ``(N, C, h, w)`` from features
    ``(N, D, h, w)``, branch weights ``(C, D)`` and optional masks ``(N, C, h, w)``.

    Erasing the feature map before the inner product equals erasing the CAM after it.
    """
    cams = torch.einsum("ndhw,cd->nchw", features, weight)
    return cams if masks is None else cams * masks


def update_masks(masks: Tensor, heatmaps: Tensor, threshold: float = 0.5) -> Tensor:
    """``M_t`` from ``M_{t-1}``: zero the connected component of ``heatmaps >= threshold``
    around each map's global maximum (maps already normalised to [0, 1])."""
    out = masks.clone()
    hm = heatmaps.detach().cpu().numpy()
    for n in range(hm.shape[0]):
        for c in range(hm.shape[1]):
            region = component_at_max(hm[n, c], threshold)
            if region.any():
                out[n, c][torch.from_numpy(region).to(out.device)] = 0
    return out


def mine(
    features: Tensor, weight: Tensor, steps: int = 3, threshold: float = 0.5
) -> tuple[list[Tensor], list[Tensor]]:
    """Run ``steps`` mining steps without gradient.

    Returns ``(heatmaps, masks)``: ``heatmaps[t-1]`` is the normalised ``H_t`` (0 where
    erased), ``masks[t]`` is ``M_t`` with ``masks[0]`` all ones; ``len(masks) == steps + 1``.
    """
    with torch.no_grad():
        n, _, h, w = features.shape
        masks = [features.new_ones(n, weight.shape[0], h, w)]
        cams = class_activation_maps(features.float(), weight.float())
        heatmaps: list[Tensor] = []
        for _ in range(steps):
            ht = normalize_maps(cams * masks[-1], masks[-1])
            heatmaps.append(ht)
            masks.append(update_masks(masks[-1], ht, threshold))
    return heatmaps, masks


def aggregate_heatmaps(heatmaps: Sequence[Tensor], masks: Sequence[Tensor]) -> Tensor:
    """Eq. 8: ``H_f = 1/T sum_t [H_t + sum_{t'<t} H_t' * (1 - M_t')]``.

    ``heatmaps``: ``H_1..H_T``; ``masks``: ``M_0..M_T`` or ``M_1..M_T`` (as :func:`mine`
    returns, or without the leading all-ones mask). Erased regions of a later map are filled
    from the earlier maps, so a region erased at step t keeps the value the maps had before.
    """
    t_max = len(heatmaps)
    if t_max == 0:
        raise ValueError("aggregate_heatmaps needs at least one heatmap")
    if len(masks) == t_max + 1:
        masks = masks[1:]
    if len(masks) < t_max:
        raise ValueError(f"{t_max} heatmaps need {t_max} masks M_1..M_T; got {len(masks)}")
    total = torch.zeros_like(heatmaps[0])
    filled = torch.zeros_like(heatmaps[0])  # sum_{t'<t} H_t' * (1 - M_t')
    for t in range(t_max):
        total = total + heatmaps[t] + filled
        filled = filled + heatmaps[t] * (1 - masks[t])
    return total / t_max
