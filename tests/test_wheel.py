"""The built, non-editable wheel: within 30 MB, ships the embedded checkpoint, and
``initialize()`` works from it offline with an empty Hub cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

from tests.conftest import REPO

SCRIPT = """
import logging, sys, torch, hyperinit
from torch import nn
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
assert hyperinit.__file__.startswith(sys.argv[1]), hyperinit.__file__
model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(4, 2))
report = hyperinit.initialize(model, modality="cxr", seed=0)
print("SOURCE", report.checkpoint)
sample = torch.rand(4, 1, 32, 32)
print("AUTO", hyperinit.initialize(model, modality="auto", sample=sample).modality)
print("ROWS", [(r.name, r.source) for r in hyperinit.list_checkpoints()])
"""


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", *args], check=True, capture_output=True, timeout=300
    )


def test_installed_wheel_initializes_offline(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "hyperinit", src / "hyperinit", ignore=shutil.ignore_patterns("__pycache__")
    )
    dist = tmp_path / "dist"
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src))
    (wheel,) = dist.glob("hyperinit-*.whl")
    assert wheel.stat().st_size < 30 * 2**20
    names = zipfile.ZipFile(wheel).namelist()
    for f in ("config.json", "model.safetensors", "README.md"):
        assert f"hyperinit/checkpoints/reference/{f}" in names
    assert "hyperinit/modality_coords.json" in names
    assert not [n for n in names if n.endswith((".pt", ".pth", ".pkl", ".bin"))]
    target = tmp_path / "site"
    _pip("install", "--no-deps", "-q", "--target", str(target), str(wheel))
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        PYTHONPATH=str(target),
        HF_HUB_OFFLINE="1",
        HF_HUB_CACHE=str(tmp_path / "empty-cache"),
        HF_ENDPOINT="http://127.0.0.1:9",
    )
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(target)],
        cwd=run_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    from hyperinit.modalities import get_modality

    assert f"SOURCE embedded:{get_modality('cxr').embedded}" in out.stdout
    assert "embedded in the package" in out.stdout + out.stderr
    assert "AUTO " in out.stdout
    assert "('xray', 'embedded')" in out.stdout
