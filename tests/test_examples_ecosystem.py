"""The MONAI 3D CT and smp fundus examples run at tiny size."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, argv: list[str], monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    return capsys.readouterr().out


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
