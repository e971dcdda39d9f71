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
def cxr_batch(data_dir: Path) -> torch.Tensor:
    """Eight real chest X-rays (4 normal, 4 pneumonia), grayscale, 64 px, standardised."""
    from PIL import Image

    files = sorted((data_dir / "chest_xray_kermany" / "train" / "NORMAL").glob("*.jpeg"))[:4]
    files += sorted((data_dir / "chest_xray_kermany" / "train" / "PNEUMONIA").glob("*.jpeg"))[:4]
    imgs = []
    for f in files:
        img = Image.open(f).convert("L").resize((64, 64))
        imgs.append(torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(1, 64, 64))
    x = torch.stack(imgs).float() / 255.0
    return (x - x.mean()) / x.std()
