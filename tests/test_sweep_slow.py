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


#: Known failures with the shipped (trained) xray checkpoint. VGG has no norms: its predicted
#: convolutions each grow the signal about 1.25x on real images (the untrained reference keeps
#: it near 1), which compounds to ~23x by the classifier, just over the band's 20x.
KNOWN = {
    name: "known: the trained xray checkpoint grows the signal ~1.25x per conv in VGG (no norms); "
    "~23x the input at classifier.0/3, over the 20x band"
    for name in ("vgg16", "vgg19")
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN[n])) if n in KNOWN else n
        for n in torchvision.models.list_models(module=torchvision.models)
    ],
)
def test_torchvision_model_passes_sweep_check(name, data_dir):
    row = _sweep_module().check("torchvision", name)
    assert row["ok"], row.get("reason")
