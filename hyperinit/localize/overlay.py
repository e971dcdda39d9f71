"""Heatmap overlays as PNG: the image, a heatmap, predicted (green) and true (red) boxes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from hyperinit.errors import LocalizationError

__all__ = ["draw_overlay", "save_overlay"]


def _to_numpy(a: np.ndarray | Tensor) -> np.ndarray:
    return a.detach().cpu().float().numpy() if isinstance(a, Tensor) else np.asarray(a, float)


def _gray(image: np.ndarray | Tensor) -> np.ndarray:
    img = _to_numpy(image)
    if img.ndim == 3:
        img = img.mean(0) if img.shape[0] in (1, 3) else img.mean(-1)
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / max(hi - lo, 1e-12)


def draw_overlay(
    ax: object,
    image: np.ndarray | Tensor,
    heatmap: np.ndarray | Tensor | None = None,
    pred_boxes: Sequence[Sequence[float]] = (),
    true_boxes: Sequence[Sequence[float]] = (),
    title: str | None = None,
    alpha: float = 0.4,
) -> None:
    """Draw on a matplotlib axis. Boxes are ``(x, y, w, h, ...)`` in image pixels (a leading
    class entry, as :meth:`AttentionMiner.boxes` gives, is skipped)."""
    from matplotlib.patches import Rectangle

    ax.imshow(_gray(image), cmap="gray", vmin=0, vmax=1)  # type: ignore[attr-defined]
    if heatmap is not None:
        ax.imshow(_to_numpy(heatmap), cmap="jet", alpha=alpha, vmin=0, vmax=1)  # type: ignore[attr-defined]
    for boxes, colour in ((true_boxes, "red"), (pred_boxes, "lime")):
        for b in boxes:
            vals = [v for v in b if not isinstance(v, str)]
            if len(b) in (5, 6) and not isinstance(b[0], float):
                vals = list(b[1:5])
            x, y, w, h = (float(v) for v in vals[:4])
            ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=colour, linewidth=1.5))  # type: ignore[attr-defined]
    if title:
        ax.set_title(title, fontsize=8)  # type: ignore[attr-defined]
    ax.axis("off")  # type: ignore[attr-defined]


def save_overlay(
    path: str | Path,
    image: np.ndarray | Tensor,
    heatmap: np.ndarray | Tensor | None = None,
    pred_boxes: Sequence[Sequence[float]] = (),
    true_boxes: Sequence[Sequence[float]] = (),
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Write one overlay PNG (needs matplotlib: ``pip install hyperinit[plots]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise LocalizationError("overlays need matplotlib: pip install hyperinit[plots]") from e
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = _gray(image).shape
    side = max(4.0, max(size) / dpi)  # inches: small inputs are drawn larger
    fig, ax = plt.subplots(
        figsize=(side * size[1] / max(size), side * size[0] / max(size)), dpi=dpi
    )
    try:
        draw_overlay(ax, image, heatmap, pred_boxes, true_boxes, title)
        fig.savefig(out, bbox_inches="tight", pad_inches=0.02)
    finally:
        plt.close(fig)
    return out
