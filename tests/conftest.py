"""Shared fixtures: data location, small real images, hypothesis settings."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "hyperinit",
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("hyperinit")

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("HYPERINIT_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _quiet_untrained_warning(caplog):
    caplog.set_level(logging.ERROR, logger="hyperinit.modalities")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real data not found at {DATA} (set HYPERINIT_DATA)")
    return DATA


@pytest.fixture(scope="session")
def xray_images(data_dir: Path):
    """``make(channels, size, n)``: n real chest X-rays (half normal, half pneumonia), grayscale
    repeated over the channels, resized, standardised to mean 0 and std 1."""
    from hyperinit.data import find_images, image_to_tensor, read_image

    root = data_dir / "chest_xray_kermany" / "train"

    def make(channels: int = 1, size: int = 64, n: int = 8) -> torch.Tensor:
        files = find_images(root / "NORMAL")[: n // 2]
        files += find_images(root / "PNEUMONIA")[: n - n // 2]
        imgs = [image_to_tensor(read_image(f, 1).resize((size, size))) for f in files]
        x = torch.stack(imgs).repeat(1, channels, 1, 1)
        return (x - x.mean()) / x.std()

    return make


@pytest.fixture(scope="session")
def cxr_batch(xray_images) -> torch.Tensor:
    """Eight real chest X-rays (4 normal, 4 pneumonia), grayscale, 64 px, standardised."""
    return xray_images(1, 64, 8)


@pytest.fixture(scope="module")
def one_thread():
    """Small ops on a shared CPU: one torch thread avoids OpenMP spinning (module scope)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def xray_train_files(data_dir: Path, per_class: int) -> list[Path]:
    """The first ``per_class`` normal and pneumonia chest X-rays of the training split."""
    root = data_dir / "chest_xray_kermany" / "train"
    return (
        sorted((root / "NORMAL").glob("*.jpeg"))[:per_class]
        + sorted((root / "PNEUMONIA").glob("*.jpeg"))[:per_class]
    )
