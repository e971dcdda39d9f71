"""segmentation_models_pytorch models over smp and timm (``tu-``) encoders at 64 px on real
fundus photographs: the sweep's check, the heads kept, the decoder, the command line."""

from __future__ import annotations

import json

import pytest
import torch

import hyperinit
from hyperinit.cli import main
from hyperinit.errors import HyperInitError
from hyperinit.selection import decoder_patterns
from tests.ecosystem import check_model, fundus_images

pytest.importorskip("segmentation_models_pytorch")

#: Small decoders (the encoders are the smp / timm defaults).
DECODER = {
    "Unet": {"decoder_channels": (32, 16, 16, 8, 8)},
    "UnetPlusPlus": {"decoder_channels": (32, 16, 16, 8, 8)},
    "FPN": {"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32},
    "DeepLabV3Plus": {"decoder_channels": 32},
    "Segformer": {"decoder_segmentation_channels": 32},
}
CASES = [
    ("Unet", "resnet18"),
    ("Unet", "tu-mobilenetv3_small_100"),
    ("Unet", "efficientnet-b0"),
    ("UnetPlusPlus", "tu-resnet10t"),
    ("FPN", "tu-mobilenetv3_small_100"),
    ("FPN", "resnet18"),
    ("DeepLabV3Plus", "tu-resnet10t"),
    ("DeepLabV3Plus", "efficientnet-b0"),
    ("Segformer", "mit_b0"),
    ("Segformer", "tu-mobilenetv3_small_100"),
]
#: smp's EfficientNet encoder keeps EfficientNet's final 1x1 conv and norm, which it never runs
#: (about 10 % of a small model's elements, so those models cover >= 85 %, the rest >= 99.9 %)
UNUSED = {
    "efficientnet-b0": {"encoder._conv_head.weight", "encoder._bn1.weight", "encoder._bn1.bias"}
}


def _build(arch: str, encoder: str, **extra: object) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = {**DECODER[arch], **extra}
    return hyperinit.create_model(
        f"smp:{arch}:{encoder}", in_chans=3, num_classes=2, model_kwargs=kwargs
    ).train()


@pytest.fixture(scope="module")
def fundus(data_dir) -> torch.Tensor:
    return fundus_images(data_dir, n=2, size=64)


@pytest.mark.parametrize(("arch", "encoder"), CASES)
def test_smp_passes_sweep_check(arch, encoder, fundus):
    model = _build(arch, encoder)
    report = check_model(model, fundus, "fundus")["report"]
    # default: the segmentation head (the final conv to classes) keeps smp's init, the
    # encoder and the decoder are predicted
    heads = {n for n, why in report.kept.items() if why == "head"}
    assert heads == {"segmentation_head.0.weight", "segmentation_head.0.bias"}
    unused = {n for n, why in report.kept.items() if why == "unused in forward"}
    assert unused == UNUSED.get(encoder, set())
    assert report.coverage >= (0.85 if unused else 0.999)
    assert any(n.startswith("decoder.") for n in report.predicted)


@pytest.mark.parametrize(("arch", "encoder"), [("Unet", "tu-resnet10t"), ("FPN", "resnet18")])
def test_decoder_patterns_keep_the_decoder(arch, encoder):
    model = _build(arch, encoder)
    assert decoder_patterns(model) == ["decoder"]
    decoder = {n: p.detach().clone() for n, p in model.decoder.named_parameters(prefix="decoder")}
    report = hyperinit.initialize(
        model, "fundus", seed=0, example_input=torch.randn(2, 3, 64, 64), exclude=["decoder"]
    )
    assert {n for n, why in report.kept.items() if why == "excluded"} == set(decoder)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in decoder.items())
    encoder_names = [n for n in params if n.startswith("encoder.")]
    assert encoder_names and all(n in report.predicted for n in encoder_names)


def test_aux_classification_head_is_kept_too():
    model = _build("Unet", "tu-resnet10t", aux_params={"classes": 3})
    report = hyperinit.initialize(model, seed=0, example_input=torch.randn(2, 3, 64, 64))
    heads = {n.rsplit(".", 1)[0] for n, why in report.kept.items() if why == "head"}
    assert heads == {"segmentation_head.0", "classification_head.3"}


def test_create_model_smp_errors_say_what_to_do():
    with pytest.raises(HyperInitError, match="smp:ARCH:ENCODER"):
        hyperinit.create_model("smp:Unet")
    with pytest.raises(HyperInitError, match="get_encoder_names"):
        hyperinit.create_model("smp:Unet:resnet19")
    with pytest.raises(HyperInitError, match="Wrong architecture"):
        hyperinit.create_model("smp:Unett:resnet18")
    with pytest.raises(HyperInitError, match="timm has no model 'nonet'"):
        hyperinit.create_model("smp:Unet:tu-nonet")
    with pytest.raises(HyperInitError, match="divisible"):  # GroupNorm(32, 16)
        hyperinit.create_model(
            "smp:FPN:resnet18", model_kwargs={"decoder_segmentation_channels": 16}
        )
    model = hyperinit.create_model("smp:Unet:resnet18", in_chans=1)
    assert model.encoder.conv1.in_channels == 1 and model.segmentation_head[0].out_channels == 1


def test_cli_init_smp(tmp_path, capsys):
    report = tmp_path / "r.json"
    rc = main(
        ["init", "--model", "smp:Unet:tu-mobilenetv3_small_100", "--model-kwargs",
         json.dumps({"decoder_channels": [32, 16, 16, 8, 8]}), "--in-chans", "1",
         "--num-classes", "2", "--modality", "fundus", "--input-size", "64", "--seed", "0",
         "--report", str(report)]
    )  # fmt: skip
    assert rc == 0
    assert "initialised Unet for modality 'fundus'" in capsys.readouterr().out
    data = json.loads(report.read_text())
    assert data["coverage"] == pytest.approx(1.0)
    head = {"segmentation_head.0.weight": "head", "segmentation_head.0.bias": "head"}
    assert data["kept"] == head
    rc = main(["init", "--model", "smp:Unet:resnet19"])
    assert rc == 2 and "get_encoder_names" in capsys.readouterr().err
