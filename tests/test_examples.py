"""Each example runs at tiny size."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("script", "argv"),
    [
        ("initialize_timm.py", ["resnet18", "{tmp}/r18.safetensors"]),
        ("initialize_torchvision.py", []),
    ],
)
def test_example_runs(script, argv, tmp_path, monkeypatch, capsys):
    argv = [a.format(tmp=tmp_path) for a in argv]
    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    assert "hyperinit: initialised" in capsys.readouterr().out
