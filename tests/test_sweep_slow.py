"""Slow: every torchvision classification model through the sweep's acceptance check.

Run with ``pytest -m slow tests/test_sweep_slow.py`` (about 15 minutes on 2 cores); the full
sweep including 341 timm models is ``python benchmarks/model_sweep.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torchvision

SWEEP = Path(__file__).resolve().parent.parent / "benchmarks" / "model_sweep.py"


def _sweep_module():
    spec = importlib.util.spec_from_file_location("model_sweep", SWEEP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("name", torchvision.models.list_models(module=torchvision.models))
def test_torchvision_model_passes_sweep_check(name, data_dir):
    row = _sweep_module().check("torchvision", name)
    assert row["ok"], row.get("reason")
