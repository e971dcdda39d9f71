"""MONAI networks at small sizes, 2D and 3D: the sweep's check, the heads kept, the decoder
patterns, and `hyperinit init` with --model-kwargs."""

from __future__ import annotations

import json
import re

import pytest
import torch

import hyperinit
from hyperinit.cli import main
from hyperinit.errors import HyperInitError
from hyperinit.selection import decoder_patterns
from tests.ecosystem import check_model, ct_volumes

pytest.importorskip("monai")

UNET_KW = {"channels": [8, 16, 32], "strides": [2, 2]}
#: name -> (small constructor arguments, head kept by default, 3D input size)
MODELS: dict[str, tuple[dict, set[str], int]] = {
    "DenseNet121": ({"init_features": 8, "growth_rate": 4}, {"class_layers.out"}, 32),
    "ResNet": (
        {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [8, 16, 32, 64]},
        {"fc"},
        16,
    ),
    "SEResNet50": ({"layers": (1, 1, 1, 1), "inplanes": 16, "reduction": 4}, {"last_linear"}, 16),
    "EfficientNetBN": ({"model_name": "efficientnet-b0"}, {"_fc"}, 32),
    # ends in a residual unit, conv(x) + x: its last convolution is the head (selection.py)
    "UNet": ({**UNET_KW, "num_res_units": 1}, {"model.2.1.conv.unit0.conv"}, 16),
    "BasicUNet": ({"features": (8, 8, 16, 32, 64, 8)}, {"final_conv"}, 32),
    "AttentionUnet": (UNET_KW, {"model.2.conv"}, 16),
    "SegResNet": (
        {"init_filters": 8, "blocks_down": (1, 1, 1), "blocks_up": (1, 1)},
        {"conv_final.2.conv"},
        16,
    ),
    "DynUNet": (
        {
            "kernel_size": [3, 3, 3],
            "strides": [1, 2, 2],
            "upsample_kernel_size": [2, 2],
            "filters": [8, 16, 32],
        },
        {"output_block.conv.conv"},
        16,
    ),
    "UNETR": (
        {"feature_size": 8, "hidden_size": 48, "mlp_dim": 96, "num_heads": 4},
        {"out.conv.conv"},
        16,
    ),
    "SwinUNETR": (
        {"feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 2, 4), "window_size": 4},
        {"out.conv.conv"},
        64,
    ),
    "ViT": (
        {
            "patch_size": 8,
            "hidden_size": 48,
            "mlp_dim": 96,
            "num_layers": 2,
            "num_heads": 4,
            "classification": True,
        },
        {"classification_head.0"},
        16,
    ),
}


def _build(name: str, dims: int, size: int) -> torch.nn.Module:
    kwargs = {**MODELS[name][0], "spatial_dims": dims}
    if name in ("UNETR", "ViT"):
        kwargs["img_size"] = size
    torch.manual_seed(0)
    return hyperinit.create_model(
        f"monai:{name}", in_chans=1, num_classes=2, model_kwargs=kwargs
    ).train()


def _size_2d(name: str) -> int:
    return 64 if name == "SwinUNETR" else 32  # Swin merges patches 5 times


@pytest.mark.parametrize("name", list(MODELS))
def test_monai_2d_passes_sweep_check(name, xray_images):
    size = _size_2d(name)
    model = _build(name, 2, size)
    row = check_model(model, xray_images(1, size, 4), "xray")
    heads = {n.rsplit(".", 1)[0] for n, why in row["report"].kept.items() if why == "head"}
    assert heads == MODELS[name][1]
    assert row["report"].coverage >= 0.99


@pytest.mark.parametrize("name", list(MODELS))
def test_monai_3d_passes_sweep_check(name, data_dir):
    size = MODELS[name][2]
    model = _build(name, 3, size)
    x = ct_volumes(data_dir, n=1 if name == "SwinUNETR" else 2, size=size, depth=size)
    row = check_model(model, x, "ct")
    assert any(p.dim() == 5 for p in model.parameters())  # really 3D kernels
    heads = {n.rsplit(".", 1)[0] for n, why in row["report"].kept.items() if why == "head"}
    assert heads == MODELS[name][1]
    assert row["report"].coverage >= 0.99


#: Independently of decoder_patterns' regexes: which top modules are encoder and decoder.
ENCODER_DECODER = {
    "UNet": (
        ("model.0.", "model.1.submodule.0.", "model.1.submodule.1."),
        ("model.1.submodule.2.", "model.2."),
    ),
    "BasicUNet": (("conv_0.", "down_"), ("upcat_",)),
    "AttentionUnet": (
        ("model.0.", "model.1.submodule.0.", "model.1.submodule.1.submodule."),
        ("model.1.attention", "model.1.upconv", "model.1.merge", "model.1.submodule.1.attention",
         "model.1.submodule.1.upconv", "model.1.submodule.1.merge"),
    ),
    "SegResNet": (("convInit.", "down_layers."), ("up_layers.", "up_samples.", "conv_final.")),
    "DynUNet": (("input_block.", "downsamples.", "bottleneck."), ("upsamples.",)),
    "UNETR": (("vit.", "encoder"), ("decoder",)),
    "SwinUNETR": (("swinViT.", "encoder"), ("decoder",)),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ENCODER_DECODER))
def test_decoder_patterns_predict_only_the_encoder(name):
    size = _size_2d(name)
    model = _build(name, 2, size)
    x = torch.randn(2, 1, size, size)
    report = hyperinit.initialize(model, seed=0, example_input=x, exclude=decoder_patterns(model))
    encoder, decoder = ENCODER_DECODER[name]
    for n, _ in model.named_parameters():
        why = report.kept.get(n)
        if n.startswith(decoder):
            assert why in ("excluded", "head"), (n, why)
        elif n.startswith(encoder):
            assert why is None or why in ("role 'scale'", "unused in forward"), (n, why)
        else:
            assert why == "head", (n, why)
    assert "excluded" in report.kept.values()
    # the default predicts the decoder too
    full = hyperinit.initialize(_build(name, 2, size), seed=0, example_input=x)
    assert "excluded" not in full.kept.values()
    assert full.predicted_elements > report.predicted_elements


def test_predict_head_predicts_the_segmentation_head():
    model = _build("BasicUNet", 2, 32)
    before = model.final_conv.weight.detach().clone()
    report = hyperinit.initialize(
        model, seed=0, predict_head=True, example_input=torch.randn(2, 1, 32, 32)
    )
    assert "final_conv.weight" in report.predicted and "head" not in report.kept.values()
    assert not torch.equal(model.final_conv.weight, before)


def test_decoder_patterns_unknown_model_says_what_to_do():
    with pytest.raises(HyperInitError, match="exclude="):
        decoder_patterns(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)))


def test_create_model_maps_channels_and_refuses_unknown_names():
    m = hyperinit.create_model(
        "monai:ResNet", in_chans=1, num_classes=3, model_kwargs=MODELS["ResNet"][0]
    )
    assert m.conv1.in_channels == 1 and m.fc.out_features == 3
    m = hyperinit.create_model(
        "monai:resnet10", in_chans=2, num_classes=4, model_kwargs={"spatial_dims": 2}
    )
    assert m.conv1.in_channels == 2 and m.fc.out_features == 4 and m.conv1.weight.dim() == 4
    m = hyperinit.create_model(
        "monai:SEResNet50", in_chans=1, num_classes=5, model_kwargs={"spatial_dims": 2}
    )
    assert m.layer0.conv1.in_channels == 1 and m.last_linear.out_features == 5
    with pytest.raises(HyperInitError, match="Did you mean BasicUNet"):
        hyperinit.create_model("monai:BasicUnett")
    with pytest.raises(HyperInitError, match="spatial_dims"):
        hyperinit.create_model("monai:UNet", num_classes=2)
    with pytest.raises(HyperInitError, match="model_kwargs must be a dict"):
        hyperinit.create_model("monai:UNet", model_kwargs=[1, 2])  # type: ignore[arg-type]


def test_cli_init_monai_3d_with_model_kwargs(tmp_path, capsys):
    report = tmp_path / "r.json"
    kwargs = {"spatial_dims": 3, "channels": [8, 16, 32], "strides": [2, 2]}
    rc = main(
        ["init", "--model", "monai:UNet", "--model-kwargs", json.dumps(kwargs), "--in-chans",
         "1", "--num-classes", "2", "--modality", "ct", "--input-size", "16", "--seed", "0",
         "--report", str(report), "--out", str(tmp_path / "unet.safetensors")]
    )  # fmt: skip
    assert rc == 0
    assert "initialised UNet for modality 'ct'" in capsys.readouterr().out
    data = json.loads(report.read_text())
    assert data["coverage"] > 0.999  # all but the PReLU slopes
    assert data["kept"]["model.2.conv.weight"] == "head"
    assert (tmp_path / "unet.safetensors").stat().st_size > 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{spatial_dims: 3}", "not valid JSON"),
        ("[3]", "must be a JSON object"),
        ('{"spatial_dims": 3}', "failed: .*channels"),
    ],
)
def test_cli_bad_model_kwargs_exit_2(text, message, capsys):
    rc = main(["init", "--model", "monai:UNet", "--model-kwargs", text])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("hyperinit: error:")
    assert re.search(message, err), err


@pytest.mark.parametrize(
    ("name", "dims"),
    [
        ("DenseNet121", 2),
        ("SegResNet", 3),
        ("SwinUNETR", 2),
        ("ViT", 2),
        ("UNETR", 3),
    ],
)
def test_monai_without_example_input(name, dims):
    size = MODELS[name][2] if dims == 3 else _size_2d(name)
    report = hyperinit.initialize(_build(name, dims, size), "ct", seed=0)
    assert report.coverage > 0.99


@pytest.mark.parametrize(
    ("name", "extra", "heads"),
    [
        ("UNet", {"num_res_units": 2}, {"model.2.1.conv.unit0.conv"}),
        ("UNet", {"num_res_units": 0}, {"model.2.conv"}),
        (
            "DynUNet",
            {"deep_supervision": True, "deep_supr_num": 1},
            {"output_block.conv.conv", "deep_supervision_heads.0.conv.conv"},
        ),
    ],
)
def test_segmentation_heads_where_outputs_merge(name, extra, heads):
    """A residual last unit (conv(x) + x) and stacked deep-supervision outputs hide the head
    from the path rule; selection knows these MONAI heads by name."""
    torch.manual_seed(0)
    kwargs = {**MODELS[name][0], **extra, "spatial_dims": 2}
    model = hyperinit.create_model(f"monai:{name}", in_chans=1, num_classes=2, model_kwargs=kwargs)
    report = hyperinit.initialize(model.train(), seed=0, example_input=torch.randn(2, 1, 32, 32))
    assert {n.rsplit(".", 1)[0] for n, why in report.kept.items() if why == "head"} == heads
