"""Every example in examples/ runs at tiny size."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hyperinit.initialize import clear_cache
from hyperinit.modalities import get_modality
from tests.fakehub import FakeHub

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, argv: list[str], monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("script", "argv"),
    [
        ("initialize_timm.py", ["resnet18", "{tmp}/r18.safetensors"]),
        ("initialize_torchvision.py", []),
    ],
)
def test_example_runs(script, argv, tmp_path, monkeypatch, capsys):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert "hyperinit: initialised" in _run(script, argv, monkeypatch, capsys)


def test_run_benchmark_example(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench"
    text = _run("run_benchmark.py", ["busi", str(out), "1", "32", "24", "1"], monkeypatch, capsys)
    assert "busi default        seed 0: test macro_auc" in text
    assert "busi hyperinit:own  seed 0: test macro_auc" in text
    assert len(list((out / "cells").glob("*.json"))) == 2
    assert "## Table 2" in (out / "REPORT.md").read_text()


def test_download_checkpoints_example(tmp_path, monkeypatch, capsys):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    clear_cache()
    with FakeHub() as server:  # serves the xray repo only
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        server.add_folder("hyperinit/hyperinit-xray", "main", get_modality("xray").path)
        cache = str(tmp_path / "cache")
        text = _run(
            "download_checkpoints.py", ["xray", "ct", "--cache-dir", cache], monkeypatch, capsys
        )
    clear_cache()
    assert "xray        verified in" in text
    assert "ct          not downloaded (CheckpointDownloadError)" in text
    assert "xray        loads from cached" in text


def test_c2l_pretrain_example(tmp_path, monkeypatch, capsys):
    if not (EXAMPLES / "c2l_pretrain.py").exists():
        pytest.skip("examples/c2l_pretrain.py not present")
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(folder / f"{i}.png")
    out = _run(
        "c2l_pretrain.py", [str(folder), str(tmp_path / "o"), "1", "32", "1"], monkeypatch, capsys
    )
    assert "C2L loss" in out


def test_metalr_example_runs_on_synthetic_images(tmp_path, monkeypatch, capsys) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    argv = ["--synthetic", "--size", "32", "--max-steps", "3"]
    out = _run("finetune_metalr.py", argv, monkeypatch, capsys)
    assert "10 layer groups" in out
    assert "learned rates" in out
    assert (tmp_path / "metalr_rates.png").stat().st_size > 0


def test_monai_3d_ct_example(data_dir, monkeypatch, capsys):
    pytest.importorskip("monai")
    out = _run("monai_3d_ct.py", ["16", "4", "2"], monkeypatch, capsys)
    assert out.count("initialised UNet for modality 'ct'") == 2
    assert "(13 role 'scale', 2 head)" in out  # PReLU slopes and the final conv
    assert re.search(r"kept +: \d+ tensors \(\d+ excluded", out)  # the encoder-only run
    losses = [float(v) for v in re.findall(r"step \d+: loss ([\d.]+)", out)]
    assert len(losses) == 2 and all(0 < v < 5 for v in losses)


def test_smp_unet_fundus_example(data_dir, monkeypatch, capsys):
    pytest.importorskip("segmentation_models_pytorch")
    out = _run("smp_unet_fundus.py", ["tu-mobilenetv3_small_100", "64", "2"], monkeypatch, capsys)
    assert out.count("initialised Unet for modality 'fundus'") == 2
    assert "(100.0 %)" in out and "excluded, 2 head)" in out
    dice = float(re.search(r"test Dice ([\d.]+)", out).group(1))
    assert 0 <= dice <= 1
