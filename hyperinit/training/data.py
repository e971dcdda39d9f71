"""Unlabelled images for hypernetwork training, sampled as a pure function of the step.

:class:`ImageBank` decodes each file once to a small uint8 tensor (memory: ``3 * size**2`` bytes
per image, 19 KB at 80 px) and draws batches of random resized crops with a
``torch.Generator``, so batch ``k`` is the same whether the run was interrupted or not.
Unreadable files are skipped with a warning and counted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hyperinit.c2l.augment import default_normalization
from hyperinit.data.io import image_to_tensor, read_image
from hyperinit.errors import DataError, UnreadableImageError

__all__ = ["ImageBank", "normalize", "to_channels"]

log = logging.getLogger(__name__)


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``(B, 3, H, W)`` images in [0, 1] as ``channels`` (1: luminance mean, 3: unchanged)."""
    if channels == x.shape[1]:
        return x
    if channels == 1:
        return x.mean(1, keepdim=True)
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1)
    raise DataError(f"cannot convert {x.shape[1]}-channel images to {channels} channels")


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet mean / std for RGB, their channel mean for grayscale (as hyperinit.c2l)."""
    mean, std = default_normalization(x.shape[1])
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


class ImageBank:
    """Decoded, resized training images with step-reproducible random-resized-crop batches.

    Args:
        files: image paths (e.g. :func:`hyperinit.data.pretraining_files`).
        load_size: each image is resized to ``load_size`` x ``load_size`` once, at load time.
        progress: show a tqdm bar while decoding.
    """

    def __init__(self, files: Sequence[str | Path], load_size: int = 80, progress: bool = True):
        self.load_size = load_size
        self.skipped: list[str] = []
        tensors: list[torch.Tensor] = []
        for f in tqdm(list(files), desc="decoding images", unit="img", disable=not progress):
            try:
                img = read_image(f, channels=3).resize((load_size, load_size), resample=2)
            except UnreadableImageError as e:
                log.warning("skipping unreadable image: %s", e)
                self.skipped.append(str(f))
                continue
            tensors.append((image_to_tensor(img) * 255).round().to(torch.uint8))
        if not tensors:
            raise DataError(
                f"no readable images among {len(files)} files ({len(self.skipped)} unreadable); "
                "pass a folder of png/jpg/tif/bmp/gif (or DICOM with pydicom) images."
            )
        self.images = torch.stack(tensors)
        log.info(
            "image bank: %d images at %d px, %d skipped", len(self), load_size, len(self.skipped)
        )

    def __len__(self) -> int:
        return len(self.images)

    def batch(
        self,
        batch_size: int,
        size: int,
        generator: torch.Generator,
        scale: tuple[float, float] = (0.35, 1.0),
    ) -> torch.Tensor:
        """``(B, 3, size, size)`` float random resized crops in [0, 1] (area fraction in
        ``scale``, aspect ratio in [3/4, 4/3]), drawn from ``generator`` only."""
        idx = torch.randint(len(self), (batch_size,), generator=generator)
        x = self.images[idx].float().div_(255)
        area = torch.empty(batch_size).uniform_(*scale, generator=generator)
        log_ratio = torch.empty(batch_size).uniform_(
            math.log(3 / 4), math.log(4 / 3), generator=generator
        )
        ratio = log_ratio.exp()
        w = (area * ratio).sqrt().clamp(max=1.0)
        h = (area / ratio).sqrt().clamp(max=1.0)
        cx = (torch.rand(batch_size, generator=generator) * 2 - 1) * (1 - w)
        cy = (torch.rand(batch_size, generator=generator) * 2 - 1) * (1 - h)
        theta = torch.zeros(batch_size, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2] = w, cx
        theta[:, 1, 1], theta[:, 1, 2] = h, cy
        grid = F.affine_grid(theta, [batch_size, 3, size, size], align_corners=False)
        return F.grid_sample(
            x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )
