"""The MetaLR example runs end to end at tiny size."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "finetune_metalr.py"


def test_example_runs_on_synthetic_images(tmp_path, monkeypatch, capsys) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "argv", [str(EXAMPLE), "--synthetic", "--size", "32", "--max-steps", "3"]
    )
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "10 layer groups" in out
    assert "learned rates" in out
    assert (tmp_path / "metalr_rates.png").stat().st_size > 0
