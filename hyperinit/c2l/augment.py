"""The seed's augmentations (section 4): random crop, 10-degree rotation, grayscale,
horizontal flip and cutout, for grayscale or RGB images."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchvision.transforms import v2

from hyperinit.errors import C2LConfigError

__all__ = ["Cutout", "TwoViews", "default_augment", "default_normalization"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_normalization(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet mean / std for RGB (as the official code); their channel means for grayscale."""
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (sum(IMAGENET_MEAN) / 3,) * channels, (sum(IMAGENET_STD) / 3,) * channels


class Cutout(nn.Module):
    """Set ``n_holes`` squares of side ``length`` px (centres uniform, clipped at the border) to
    ``value`` in a (..., C, H, W) tensor (DeVries & Taylor 2017). Uses the global torch RNG, so
    DataLoader workers get their own streams."""

    def __init__(self, n_holes: int = 3, length: int = 32, value: float = 0.0) -> None:
        super().__init__()
        if n_holes < 0 or length < 1:
            raise C2LConfigError(
                f"cutout needs n_holes >= 0 and length >= 1; got {n_holes}, {length}"
            )
        self.n_holes, self.length, self.value = n_holes, length, value

    def forward(self, img: Tensor) -> Tensor:
        h, w = img.shape[-2:]
        out = img.clone()
        for _ in range(self.n_holes):
            cy = int(torch.randint(0, h, ()))
            cx = int(torch.randint(0, w, ()))
            y0, y1 = max(0, cy - self.length // 2), min(h, cy + (self.length + 1) // 2)
            x0, x1 = max(0, cx - self.length // 2), min(w, cx + (self.length + 1) // 2)
            out[..., y0:y1, x0:x1] = self.value
        return out

    def extra_repr(self) -> str:
        return f"n_holes={self.n_holes}, length={self.length}"


def default_augment(
    image_size: int = 224,
    channels: int = 1,
    *,
    crop_scale: tuple[float, float] = (0.2, 1.0),
    rotation: float = 10.0,
    grayscale_p: float = 0.2,
    cutout_holes: int = 3,
    cutout_length: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> v2.Compose:
    """The seed's augmentation for PIL images or (C, H, W) tensors -> normalised float tensors.

    Random resized crop to ``image_size`` (scale ``crop_scale``), rotation within
    ``+-rotation`` degrees, random grayscale (RGB only), horizontal flip, ``ToDtype`` float in
    [0, 1], normalisation (``mean``/``std``, default :func:`default_normalization`), then cutout
    with ``cutout_holes`` squares of ``cutout_length`` px (default 32 px at 224 px, scaled).
    """
    if channels not in (1, 3):
        raise C2LConfigError(f"channels must be 1 or 3; got {channels}")
    if mean is None or std is None:
        mean, std = default_normalization(channels)
    length = cutout_length or max(1, round(32 * image_size / 224))
    steps: list[Any] = [
        v2.ToImage(),
        v2.RandomResizedCrop(image_size, scale=crop_scale, antialias=True),
        v2.RandomRotation(rotation),
    ]
    if channels == 3 and grayscale_p > 0:
        steps.append(v2.RandomGrayscale(p=grayscale_p))
    steps += [
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
        Cutout(cutout_holes, length),
    ]
    return v2.Compose(steps)


class TwoViews(Dataset):
    """Wrap a dataset of images into one of ``(augment(x), augment(x))`` pairs.

    Items of ``dataset`` may be images (PIL or tensors) or tuples whose first element is the
    image (labels are dropped).
    """

    def __init__(self, dataset: Dataset, augment: Callable[[Any], Tensor]) -> None:
        self.dataset = dataset
        self.augment = augment

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        item = self.dataset[index]
        if isinstance(item, tuple | list):
            item = item[0]
        return self.augment(item), self.augment(item)
