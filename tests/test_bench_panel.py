"""benchmarks/panel.py: the fair baseline, the pairs and the acceptance scoreboard."""

from __future__ import annotations

import json

import timm
import torch

from tests.scripts import load_script


def _panel():
    return load_script("benchmarks/panel.py")


panel = _panel()


def test_fair_baseline_is_zero_init_last_false():
    for name in ("resnet18", "regnetx_002"):
        torch.manual_seed(0)
        model = timm.create_model(name, num_classes=2)
        torch.manual_seed(0)
        fair = timm.create_model(name, num_classes=2, zero_init_last=False)
        zeros = [n for n, p in model.named_parameters() if not bool(p.any())]
        assert zeros  # timm zero-initialises the last norm of each block
        panel.default_without_zero_init(model)
        fair_params = dict(fair.named_parameters())
        assert all(torch.equal(p, fair_params[n]) for n, p in model.named_parameters())


def test_pairs_and_inits():
    pairs = panel.pairs(list(panel.ARCHS), list(panel.TASKS))
    assert len(pairs) == 7 * 5 - 1 and ("DeiT-Tiny", "drive") not in pairs
    assert panel.TASKS == {
        "chest_xray": "xray",
        "ct_covid": "ct",
        "busi": "ultrasound",
        "dermamnist": "dermoscopy",
        "drive": "fundus",
    }
    assert "default, no zero-init" in panel.inits_for("ResNet-50")
    assert "default, no zero-init" not in panel.inits_for("EfficientNet-B0")
    c = panel.cell("MobileNetV3-S", "busi", "trained", 3)
    assert c.init.endswith("checkpoints/ultrasound")
    assert (c.seed, c.fraction, c.epochs) == (3, 0.1, 5)
    assert panel.cell("ResNet-18", "drive", "default", 0).size == 128


def _by(diffs_test: list[float], base: float = 0.8) -> dict:
    return {s: (base + d, base + d) for s, d in enumerate(diffs_test)}


def test_scoreboard_by_hand(tmp_path):
    base = {s: (0.8, 0.8) for s in range(4)}
    results = {
        # ahead by far more than 2 SE; ahead of the reference and of the fair baseline
        "ResNet-18|busi": {
            "default": base,
            "default, no zero-init": _by([0.0, 0.01, 0.0, 0.01]),
            "trained": _by([0.10, 0.11, 0.09, 0.10]),
            "reference": _by([0.05, 0.05, 0.05, 0.05]),
        },
        # behind by more than 2 SE, and behind the reference
        "EfficientNet-B0|busi": {
            "default": base,
            "trained": _by([-0.10, -0.11, -0.09, -0.10]),
            "reference": base,
        },
        # within noise
        "EfficientNet-B0|drive": {
            "default": base,
            "trained": _by([0.05, -0.05, 0.04, -0.03]),
            "reference": _by([0.0, 0.0, 0.0, 0.0]),
        },
    }
    board = panel.scoreboard(results)
    assert board["ahead_2se"] == ["ResNet-18|busi"]
    assert board["behind_2se"] == ["EfficientNet-B0|busi"]
    assert board["archs_never_ahead"] == ["EfficientNet-B0"]
    assert board["trained_over_reference"] == "2/3"
    assert board["resnets_ahead_of_fair_baseline"] == {"ResNet-18": "1/1"}
    panel.write(results, tmp_path, "cmd")
    saved = json.loads((tmp_path / "panel.json").read_text())
    assert saved["scoreboard"] == board and saved["command"] == "cmd"
    md = (tmp_path / "panel.md").read_text()
    assert "| ResNet-18 | busi | 0.800 | 0.900 | +0.100 ± 0.004 (4/4) |" in md
    assert (tmp_path / "panel.png").stat().st_size > 1000
