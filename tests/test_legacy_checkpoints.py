"""Checkpoints written by an older hyperinit (tests/data/legacy, see make_legacy.py) still load
and give the same tensors."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

import hyperinit
from hyperinit.c2l import load_backbone
from tests.data.legacy.make_legacy import probe_images, tiny_backbone, tiny_target

LEGACY = Path(__file__).resolve().parent / "data" / "legacy"


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_legacy_hypernetwork_loads_with_identical_tensors_and_predictions():
    hn = hyperinit.HyperInitializer.from_pretrained(LEGACY / "hypernet")
    assert not hn.training and hn.config.d_model == 16 and hn.config.code_rank == 4
    saved = load_file(str(LEGACY / "hypernet" / "model.safetensors"))
    state = hn.state_dict()
    assert state.keys() == saved.keys()
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    expected = load_file(str(LEGACY / "hypernet_predictions.safetensors"))
    with torch.no_grad():
        preds = hn.predict_params(hyperinit.trace(tiny_target()), seed=3)
    assert preds.keys() == expected.keys()
    # the same computation; its last bits depend on the CPU's kernels (AVX2 / AVX-512)
    assert all(_same(preds[k], expected[k]) for k in expected)


def test_legacy_hypernetwork_loads_through_initialize():
    model = tiny_target()
    report = hyperinit.initialize(model, checkpoint=LEGACY / "hypernet", seed=3)
    expected = load_file(str(LEGACY / "hypernet_predictions.safetensors"))
    params = dict(model.named_parameters())
    body = [k for k in expected if not k.startswith("6.")]  # the head keeps its own init
    assert report is not None and len(body) == 5
    assert all(_same(params[k].detach(), expected[k]) for k in body)


def test_legacy_c2l_backbone_loads_with_identical_features():
    model = tiny_backbone()
    assert load_backbone(model, LEGACY / "c2l") == []
    saved = load_file(str(LEGACY / "c2l" / "model.safetensors"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    expected = load_file(str(LEGACY / "c2l_features.safetensors"))["features"]
    with torch.no_grad():
        assert torch.equal(model.eval()(probe_images()), expected)
    # the file itself, and into a 3-channel model (stem adapted): same features on gray input
    rgb = tiny_backbone()
    rgb[0] = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert load_backbone(rgb, LEGACY / "c2l" / "model.safetensors") == []
    with torch.no_grad():
        out = rgb.eval()(probe_images().expand(-1, 3, -1, -1))
    assert torch.allclose(out, expected, atol=1e-5)
