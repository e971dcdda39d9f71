"""Finding and decoding medical image files: 8- and 16-bit, grayscale or colour, DICOM.

Every image comes back as a PIL image in mode ``"L"`` (grayscale) or ``"RGB"``, so the usual
torchvision transforms apply. Deeper images (16-bit PNG/TIFF, 32-bit integer or float TIFF,
DICOM) are scaled to 8 bits per image from their own minimum and maximum; DICOM applies the
file's rescale slope/intercept first and inverts ``MONOCHROME1``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hyperinit.errors import DataError, UnreadableImageError

__all__ = [
    "DICOM_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "find_images",
    "image_to_tensor",
    "read_image",
]

log = logging.getLogger(__name__)

#: Extensions read with Pillow.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp"}
)
#: Extensions read with pydicom (``pip install hyperinit[dicom]``).
DICOM_EXTENSIONS: frozenset[str] = frozenset({".dcm", ".dicom"})

_DEEP_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}


def _is_image(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in IMAGE_EXTENSIONS or suffix in DICOM_EXTENSIONS


def find_images(root: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under ``root`` (png, jpg, tif, gif, bmp, dcm), sorted, hidden files skipped.

    Raises:
        DataError: ``root`` does not exist or holds no image files.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"{root} does not exist: pass a folder of images.")
    if root.is_file():
        if not _is_image(root):
            raise DataError(f"{root} is not an image file ({_extension_list()}).")
        return [root]
    pattern = root.rglob("*") if recursive else root.glob("*")
    files = sorted(
        p
        for p in pattern
        if _is_image(p)
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise DataError(
            f"no image files ({_extension_list()}) under {root}"
            + ("" if recursive else " (not searched recursively)")
            + "."
        )
    return files


def _extension_list() -> str:
    return ", ".join(sorted(IMAGE_EXTENSIONS | DICOM_EXTENSIONS))


def _to_8bit(arr: np.ndarray) -> Image.Image:
    """Min-max scale an array (H, W) or (H, W, 3) to an 8-bit PIL image."""
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        raise ValueError("the image holds no finite values")
    lo, hi = arr[finite].min(), arr[finite].max()
    scaled = np.where(finite, (arr - lo) / max(hi - lo, 1e-12), 0.0)
    out = np.round(scaled * 255).astype(np.uint8)
    return Image.fromarray(out, mode="RGB" if out.ndim == 3 else "L")


def _read_dicom(path: Path) -> Image.Image:
    try:
        import pydicom
    except ImportError as e:
        raise UnreadableImageError(
            f"{path} is a DICOM file, and reading DICOM needs pydicom: "
            "`pip install hyperinit[dicom]` (or `pip install pydicom`)."
        ) from e
    ds = pydicom.dcmread(str(path))
    arr = ds.pixel_array.astype(np.float64)
    if arr.ndim == 3 and arr.shape[-1] not in (3, 4):  # multi-frame: the middle frame
        arr = arr[arr.shape[0] // 2]
    arr = arr * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        arr = arr.max() - arr
    return _to_8bit(arr[..., :3] if arr.ndim == 3 else arr)


def _normalise_mode(img: Image.Image) -> Image.Image:
    if img.mode in ("L", "RGB"):
        return img
    if img.mode in _DEEP_MODES:
        return _to_8bit(np.asarray(img))
    if img.mode in ("LA", "1"):
        return img.convert("L")
    return img.convert("RGB")  # P, RGBA, CMYK, YCbCr, ...


def read_image(path: str | Path, channels: int | None = None) -> Image.Image:
    """Decode one image file as a PIL image in mode ``"L"`` or ``"RGB"``.

    Args:
        path: an image or DICOM file.
        channels: 1 for grayscale, 3 for RGB, None to keep the file's own (L or RGB).

    Raises:
        UnreadableImageError: the file is missing, corrupt, truncated or not an image.
    """
    path = Path(path)
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1, 3 or None, got {channels!r}")
    try:
        if path.suffix.lower() in DICOM_EXTENSIONS:
            img = _read_dicom(path)
        else:
            with Image.open(path) as im:
                im.load()  # decode now: truncated files fail here, not in a transform
                img = _normalise_mode(im)
    except UnreadableImageError:
        raise
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, ... on bad files
        raise UnreadableImageError(f"cannot read {path}: {e}") from e
    if channels == 1 and img.mode != "L":
        img = img.convert("L")
    elif channels == 3 and img.mode != "RGB":
        img = img.convert("RGB")
    return img


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """A PIL image in mode L or RGB as a float tensor (C, H, W) in [0, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    x = torch.from_numpy(arr.copy())
    x = x.permute(2, 0, 1) if x.ndim == 3 else x[None]
    return x.float().div_(255)
