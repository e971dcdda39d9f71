"""The architecture space: seeded, every family builds, runs and traces, held-out set kept out."""

from __future__ import annotations

import pytest
import torch

from hyperinit.archspace import (
    FAMILIES,
    HELD_OUT_MODELS,
    HELD_OUT_SEEDS,
    ArchSpaceError,
    ArchSpec,
    build,
    held_out_specs,
    sample_spec,
    training_spec,
)
from hyperinit.graph.trace import trace
from hyperinit.hypernet.roles import assign_roles


def _first_seed(family: str) -> int:
    return next(s for s in range(1000) if training_spec(s).family == family)


def test_sampling_is_a_function_of_the_seed():
    assert [sample_spec(s) for s in range(20)] == [sample_spec(s) for s in range(20)]
    keys = {sample_spec(s).key for s in range(200)}
    assert len(keys) > 180  # distinct architectures
    assert {sample_spec(s).family for s in range(200)} == set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_every_family_builds_runs_and_traces(family, in_chans):
    spec = training_spec(_first_seed(family))
    torch.manual_seed(0)
    model = build(spec, in_chans=in_chans, feature_dim=32)
    x = torch.randn(3, in_chans, 40, 40)
    out = model(x)
    assert out.shape == (3, 32) and torch.isfinite(out).all()
    graph = trace(model, x[:2])
    assert not graph.unbound
    roles = {r.role for r in assign_roles(graph)}
    assert "weight" in roles
    # a feature extractor: changing the input changes the features
    assert not torch.allclose(model(x), model(x.flip(3)))


def test_choices_vary_within_a_family():
    specs = [training_spec(s) for s in range(400)]
    resnets = [s for s in specs if s.family == "resnet"]
    assert {s.config["block"] for s in resnets} == {"basic", "bottleneck"}
    generated = [s for s in specs if s.family not in ("vit", "real")]
    for key in ("act", "norm", "kernel", "stem"):
        assert len({s.config[key] for s in generated}) > 2, key
    assert len({len(s.config["widths"]) for s in generated}) >= 2
    real = {s.config["model"] for s in specs if s.family == "real"}
    assert any(m.startswith("timm:") for m in real) and any(
        m.startswith("torchvision:") for m in real
    )


def test_held_out_set_is_never_trained_on():
    held = {s.key for s in held_out_specs()}
    assert len(held) == len(HELD_OUT_SEEDS) + len(HELD_OUT_MODELS)
    assert not {training_spec(s).key for s in range(3000)} & held
    for seed in HELD_OUT_SEEDS[:3]:  # asking for a held-out seed gives another architecture
        assert training_spec(seed).key != sample_spec(seed).key
    real = [training_spec(s) for s in range(3000) if training_spec(s).family == "real"]
    # ResNet-18's exact configuration is held out
    assert not [
        s
        for s in real
        if s.config.get("model") == "torchvision:resnet"
        and s.config["block"] == "basic"
        and s.config["layers"] == [2, 2, 2, 2]
    ]


@pytest.mark.parametrize("name", HELD_OUT_MODELS)
def test_held_out_models_build(name):
    model = build(name, in_chans=1, feature_dim=16)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 16)


def test_bad_spec_raises():
    with pytest.raises(ArchSpaceError, match="unknown architecture family"):
        build(
            ArchSpec(
                "transformerxl",
                {
                    "widths": [8],
                    "depths": [1],
                    "stem": "conv3",
                    "stem_width": 8,
                    "norm": "batch",
                    "act": "relu",
                },
            )
        )
    with pytest.raises(ArchSpaceError, match="cannot build"):
        build(ArchSpec("vgg", {}))
