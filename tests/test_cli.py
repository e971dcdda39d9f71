"""The ``hyperinit`` command line."""

from __future__ import annotations

import json
import shutil
import subprocess

import timm
from safetensors.torch import load_model

from hyperinit.cli import main


def test_init_writes_loadable_safetensors(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    report = tmp_path / "r.json"
    rc = main(
        [
            "init",
            "--model",
            "timm:resnet18",
            "--in-chans",
            "1",
            "--num-classes",
            "2",
            "--modality",
            "xray",
            "--seed",
            "4",
            "--out",
            str(out),
            "--report",
            str(report),
            "--input-size",
            "64",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "initialised ResNet for modality 'xray'" in text and "100.0 %" in text
    model = timm.create_model("resnet18", in_chans=1, num_classes=2)
    missing, unexpected = load_model(model, str(out))
    assert not missing and not unexpected
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    data = json.loads(report.read_text())
    assert data["seed"] == 4 and data["coverage"] == 1.0


def test_init_torchvision_grayscale(tmp_path, capsys):
    rc = main(
        [
            "init",
            "--model",
            "torchvision:densenet121",
            "--in-chans",
            "1",
            "--num-classes",
            "3",
            "--input-size",
            "64",
            "--seed",
            "0",
        ]
    )
    assert rc == 0
    assert "DenseNet" in capsys.readouterr().out


def test_errors_are_reported_with_exit_code_2(capsys):
    assert main(["init", "--model", "timm:resnet18", "--modality", "xrya"]) == 2
    assert "Did you mean 'xray'" in capsys.readouterr().err
    assert main(["init", "--model", "timm:no_such_net"]) == 2
    assert "timm has no model" in capsys.readouterr().err
    assert main(["init", "--model", "torchvision:resnet18", "--checkpoint", "/nope"]) == 2


def test_console_script_entry_point():
    script = shutil.which("hyperinit")
    assert script, "the hyperinit console script is not installed (pip install -e .)"
    res = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert "init" in res.stdout
    assert "download" in res.stdout
