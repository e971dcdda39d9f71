"""Boxes from heatmaps, and localisation accuracy / average false positives (ChestX-ray14).

A box is ``(class, x, y, w, h, score)`` in input pixels (``x, y``: top-left corner); a true box
is ``(class, x, y, w, h)``. ``class`` is whatever identifies a class to you (index or name), as
long as predictions and truth use the same.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from hyperinit.errors import LocalizationError
from hyperinit.localize.mining import _ndimage, connected_components

__all__ = [
    "DEFAULT_BOX_THRESHOLDS",
    "SEED_IOU_THRESHOLDS",
    "LocalizationScores",
    "heatmap_boxes",
    "iobb",
    "iou",
    "localization_scores",
]

#: intensity thresholds of the final heatmap that the candidate boxes come from
DEFAULT_BOX_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
#: the T(IoU) thresholds of the seed's Table 2
SEED_IOU_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)

Box = tuple[float, float, float, float]


def _inter(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = min(ax + aw, bx + bw) - max(ax, bx)
    ih = min(ay + ah, by + bh) - max(ay, by)
    return max(iw, 0.0) * max(ih, 0.0)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    inter = _inter(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


_box_iou = iou  # localization_scores' ``iou`` argument shadows the name


def iobb(pred: Box, truth: Box) -> float:
    """Intersection over the predicted box's area (ChestX-ray14's IoBB)."""
    area = pred[2] * pred[3]
    return _inter(pred, truth) / area if area > 0 else 0.0


def heatmap_boxes(
    heatmap: np.ndarray | Tensor,
    *,
    per_class: int = 3,
    thresholds: Sequence[float] = DEFAULT_BOX_THRESHOLDS,
    min_area: int = 4,
    duplicate_iou: float = 0.9,
) -> list[tuple[float, float, float, float, float]]:
    """Up to ``per_class`` boxes ``(x, y, w, h, score)`` from one ``(H, W)`` heatmap in [0, 1].

    Section 3.2: candidate boxes are the bounding boxes of the connected components of
    ``heatmap >= t`` for each threshold ``t``; a candidate overlapping an already kept one by
    IoU >= ``duplicate_iou`` is dropped, and the rest are ranked by the mean heatmap intensity
    inside the box (the score). Fewer come back when the thresholds give the same regions.
    Components under ``min_area`` pixels are ignored.
    """
    h = heatmap.detach().cpu().float().numpy() if isinstance(heatmap, Tensor) else heatmap
    h = np.asarray(h, dtype=np.float32)
    if h.ndim != 2:
        raise LocalizationError(f"heatmap_boxes needs one (H, W) heatmap; got shape {h.shape}")
    cands: list[tuple[float, Box]] = []
    for t in thresholds:
        labels, count = connected_components(h >= t)
        if count == 0:
            continue
        for x0, y0, x1, y1, area in _extents(labels, count):
            if area < min_area:
                continue
            score = float(h[y0:y1, x0:x1].mean())
            cands.append((score, (float(x0), float(y0), float(x1 - x0), float(y1 - y0))))
    cands.sort(key=lambda c: -c[0])
    kept: list[tuple[float, Box]] = []
    for score, box in cands:
        if all(iou(box, k[1]) < duplicate_iou for k in kept):
            kept.append((score, box))
        if len(kept) >= per_class:
            break
    return [(*box, score) for score, box in kept]


def _extents(labels: np.ndarray, count: int) -> list[tuple[int, int, int, int, int]]:
    """``(x0, y0, x1, y1, area)`` (end-exclusive) of components 1..count."""
    if _ndimage is not None:
        out = []
        for k, sl in enumerate(_ndimage.find_objects(labels, count), start=1):
            area = int((labels[sl] == k).sum())
            out.append((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop, area))
        return out
    out = []
    for k in range(1, count + 1):
        ys, xs = np.nonzero(labels == k)
        out.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1, ys.size))
    return out


@dataclass
class LocalizationScores:
    """Per class and threshold: accuracy (share of true boxes hit) and average false positives
    (predicted boxes hitting no true box, per image); ``n_boxes`` / ``n_images`` per class."""

    metric: str
    thresholds: tuple[float, ...]
    acc: dict[Hashable, dict[float, float]] = field(default_factory=dict)
    afp: dict[Hashable, dict[float, float]] = field(default_factory=dict)
    n_boxes: dict[Hashable, int] = field(default_factory=dict)
    n_images: dict[Hashable, int] = field(default_factory=dict)

    @property
    def classes(self) -> list[Hashable]:
        return list(self.acc)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "thresholds": list(self.thresholds),
            "acc": {str(c): {str(t): v for t, v in d.items()} for c, d in self.acc.items()},
            "afp": {str(c): {str(t): v for t, v in d.items()} for c, d in self.afp.items()},
            "n_boxes": {str(c): v for c, v in self.n_boxes.items()},
            "n_images": {str(c): v for c, v in self.n_images.items()},
        }

    def to_markdown(self) -> str:
        """One row per threshold, one "Acc-AFP" cell per class, as the seed's Table 2."""
        head = f"| T({self.metric}) | " + " | ".join(str(c) for c in self.classes) + " |"
        rows = [head, "|---" * (len(self.classes) + 1) + "|"]
        for t in self.thresholds:
            cells = [f"{self.acc[c][t]:.2f}-{self.afp[c][t]:.2f}" for c in self.classes]
            rows.append(f"| {t:g} | " + " | ".join(cells) + " |")
        return "\n".join(rows)


def _as_pairs(boxes: Any, truth: Any) -> list[tuple[Sequence, Sequence]]:
    if isinstance(truth, Mapping):
        if not isinstance(boxes, Mapping):
            raise LocalizationError("truth is keyed by image; pass boxes keyed the same way")
        return [(boxes.get(k, ()), v) for k, v in truth.items()]
    if len(boxes) != len(truth):
        raise LocalizationError(
            f"{len(boxes)} images of predicted boxes but {len(truth)} of true boxes; pass one "
            "list per image, in the same order (or dicts keyed by image id)."
        )
    return list(zip(boxes, truth))


def localization_scores(
    boxes: Sequence[Sequence[tuple]] | Mapping[Any, Sequence[tuple]],
    truth: Sequence[Sequence[tuple]] | Mapping[Any, Sequence[tuple]],
    iou: Sequence[float] = SEED_IOU_THRESHOLDS,
    *,
    metric: str = "iou",
    classes: Sequence[Hashable] | None = None,
) -> LocalizationScores:
    """Localisation accuracy and average false positives per class and threshold.

    For class ``c``, over the images holding at least one true box of ``c`` (Wang et al.,
    CVPR 2017, as the seed evaluates): **Acc** is the share of true ``c`` boxes that some
    predicted ``c`` box of the same image overlaps by at least T; **AFP** is the number of
    predicted ``c`` boxes on those images that overlap no true ``c`` box by T, divided by the
    number of those images. Every predicted box passed in counts (the seed additionally stops
    adding ranked boxes once its AFP reaches Wang et al.'s; pass fewer boxes per class to trade
    accuracy for false positives).

    Args:
        boxes: per image, predicted ``(class, x, y, w, h, score)`` (score is not used).
        truth: per image, true ``(class, x, y, w, h)``; a list aligned with ``boxes`` or a dict
            keyed by image id (then ``boxes`` is a dict too).
        iou: the thresholds T.
        metric: ``"iou"`` or ``"iobb"`` (intersection over the predicted box's area).
        classes: which classes to score, in this order; default: those in ``truth``.
    """
    if metric not in ("iou", "iobb"):
        raise LocalizationError(f"metric must be 'iou' or 'iobb'; got {metric!r}")
    thresholds = tuple(float(t) for t in iou)
    overlap = _box_iou if metric == "iou" else iobb
    pairs = _as_pairs(boxes, truth)
    found: list[Hashable] = []
    for _, tr in pairs:
        for b in tr:
            if b[0] not in found:
                found.append(b[0])
    wanted = list(classes) if classes is not None else found
    out = LocalizationScores(metric=metric, thresholds=thresholds)
    for c in wanted:
        hits = dict.fromkeys(thresholds, 0)
        fps = dict.fromkeys(thresholds, 0)
        n_boxes = n_images = 0
        for pred, tr in pairs:
            true_c = [tuple(map(float, b[1:5])) for b in tr if b[0] == c]
            if not true_c:
                continue
            n_images += 1
            n_boxes += len(true_c)
            pred_c = [tuple(map(float, b[1:5])) for b in pred if b[0] == c]
            ov = np.array([[overlap(p, t) for t in true_c] for p in pred_c]).reshape(
                len(pred_c), len(true_c)
            )
            for t in thresholds:
                hit = ov >= t - 1e-12
                hits[t] += int(hit.any(axis=0).sum())
                fps[t] += int((~hit.any(axis=1)).sum())
        out.n_boxes[c], out.n_images[c] = n_boxes, n_images
        out.acc[c] = {t: hits[t] / n_boxes if n_boxes else float("nan") for t in thresholds}
        out.afp[c] = {t: fps[t] / n_images if n_images else float("nan") for t in thresholds}
    return out
