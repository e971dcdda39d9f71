"""hyperinit.initialize: in-place, atomic, deterministic prediction of initial weights."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from hypothesis import given
from torch import nn

import hyperinit
from hyperinit.diagnostics import activation_stats, band_violations
from hyperinit.errors import (
    CheckpointError,
    ExampleInputError,
    NoParametersError,
    TraceError,
    UnknownModalityError,
)
from hyperinit.modalities import get_modality, resolve_modality
from tests.archs import RandomNet, architectures


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(model: nn.Module, snap: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, snap[k]) for k, v in model.state_dict().items())


def test_grayscale_resnet18_report_and_head_kept():
    model = timm.create_model("resnet18", in_chans=1, num_classes=2)
    before = _snapshot(model)
    report = hyperinit.initialize(model, modality="xray", seed=0)
    assert report.coverage == pytest.approx(1.0)
    assert report.kept == {"fc.weight": "head", "fc.bias": "head"}
    assert torch.equal(model.fc.weight, before["fc.weight"])
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert len(changed) == len(report.predicted) == 60
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert report.seed == 0 and report.modality == "xray"
    assert f"embedded:{get_modality('xray').embedded}" in report.checkpoint
    assert set(report.timings) == {"trace", "predict", "assign", "total"}
    text = str(report)
    assert "100.0 %" in text and "2 head" in text
    # buffers untouched, parameters stay the same objects (optimisers keep working)
    assert torch.equal(model.bn1.running_mean, before["bn1.running_mean"])


def test_deterministic_for_seed_and_global_rng():
    def run(**kw):
        m = timm.create_model("resnet18", num_classes=2)
        hyperinit.initialize(m, **kw)
        return _snapshot(m)

    a, b, c = run(seed=7), run(seed=7), run(seed=8)
    body = [k for k in a if not k.startswith("fc.")]
    assert all(torch.equal(a[k], b[k]) for k in body)
    assert not all(torch.equal(a[k], c[k]) for k in body if k.endswith("conv1.weight"))
    torch.manual_seed(123)
    d = run()
    torch.manual_seed(123)
    e = run()
    assert all(torch.equal(d[k], e[k]) for k in d)


def test_exclude_and_predict_head():
    m = torchvision.models.resnet18(num_classes=3)
    before = _snapshot(m)
    report = hyperinit.initialize(m, exclude=["layer4", r"layer3\.0\..*bn.*"], seed=0)
    assert report.kept["layer4.0.conv1.weight"] == "excluded"
    assert report.kept["layer3.0.bn1.weight"] == "excluded"
    assert "layer3.0.conv1.weight" in report.predicted
    assert torch.equal(m.layer4[1].conv2.weight, before["layer4.1.conv2.weight"])
    report = hyperinit.initialize(m, predict_head=True, seed=0)
    assert "fc.weight" in report.predicted and not report.kept
    assert report.coverage == pytest.approx(1.0)


def test_optimizer_created_before_keeps_working():
    m = timm.create_model("resnet18", num_classes=2)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    hyperinit.initialize(m, seed=0)
    w = m.conv1.weight.detach().clone()
    m(torch.randn(4, 3, 32, 32)).sum().backward()
    opt.step()
    assert not torch.equal(m.conv1.weight, w)


def test_eval_mode_auxiliary_heads_are_predicted():
    m = torchvision.models.googlenet(init_weights=False, num_classes=2).eval()
    report = hyperinit.initialize(m, seed=0, example_input=torch.randn(2, 3, 96, 96))
    assert report.coverage > 0.99
    assert not m.training and not m.aux1.training
    assert "aux1.fc1.weight" in report.predicted


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtype_and_memory_format_preserved(dtype):
    m = timm.create_model("resnet18", num_classes=2).to(dtype=dtype)
    m = m.to(memory_format=torch.channels_last)
    hyperinit.initialize(m, seed=0, example_input=torch.randn(2, 3, 32, 32, dtype=dtype))
    assert m.conv1.weight.dtype == dtype
    assert m.conv1.weight.is_contiguous(memory_format=torch.channels_last)


CHECK_MODELS = [
    ("torchvision", "resnet50", 64),
    ("torchvision", "vgg11", 64),
    ("torchvision", "mobilenet_v3_small", 64),
    ("torchvision", "swin_t", 64),
    ("timm", "vit_tiny_patch16_224", 224),
    ("timm", "convnext_atto", 64),
    ("timm", "regnety_016", 64),
    # the squeeze-excite reduce conv sat at 0.046x (zero-row-sum structure cancelled the
    # pooled common mode) until the flat spectrum of 2026-12-02
    ("timm", "efficientnet_b0", 64),
    ("timm", "densenet121", 64),
    ("timm", "coat_lite_tiny", 224),
]


@pytest.mark.parametrize(("source", "name", "size"), CHECK_MODELS)
def test_activations_stay_in_band(source, name, size, xray_images):
    """Each parameterised layer's output std within [0.05, 20] x the input's on real chest
    X-rays (train mode, batch statistics); see diagnostics.band_violations for the two
    structural exemptions."""
    torch.manual_seed(0)
    m = hyperinit.create_model(f"{source}:{name}", num_classes=2).train()
    x = xray_images(3, size, 4)
    default = activation_stats(m, x)
    report = hyperinit.initialize(m, seed=0, example_input=x)
    head = {n.rsplit(".", 1)[0] for n, why in report.kept.items() if why == "head"}
    ours = activation_stats(m, x, skip=head)
    assert report.coverage >= 0.95
    assert not band_violations(ours, default)
    inside = sum(0.05 <= s.output <= 20 for s in ours.values())
    assert inside >= 0.9 * len(ours)


def test_band_check_catches_an_exploding_init():
    torch.manual_seed(0)
    m = torchvision.models.vgg11(num_classes=2).train()
    x = torch.randn(4, 3, 64, 64)
    hyperinit.initialize(m, seed=0, example_input=x)
    assert not band_violations(activation_stats(m, x))
    with torch.no_grad():
        for p in m.features.parameters():
            p.mul_(2.0)  # 2x too large weights: activations grow 2x per layer
    bad = band_violations(activation_stats(m, x))
    # caught: the convs that push the signal out are flagged (a conv whose input is already
    # out of band and whose own gain is < 4 is not blamed, by design)
    assert len(bad) >= 2 and all(name.startswith("features.") for name in bad)
    assert all("output std" in why for why in bad.values())


def test_real_xray_batch_forward_is_finite(cxr_batch):
    m = timm.create_model("resnet18", in_chans=1, num_classes=2)
    hyperinit.initialize(m, seed=0, example_input=cxr_batch)
    out = m(cxr_batch)
    assert torch.isfinite(out).all() and out.shape == (8, 2)


# -- bad inputs: a clear hyperinit error, and the model exactly as it was -------------------


def test_model_without_parameters():
    m = nn.Sequential(nn.ReLU(), nn.Flatten())
    with pytest.raises(NoParametersError, match="no parameters"):
        hyperinit.initialize(m)


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        raise ValueError("this forward always fails")


def test_forward_that_fails():
    m = Broken()
    snap = _snapshot(m)
    with pytest.raises(TraceError, match="this forward always fails"):
        hyperinit.initialize(m)
    assert _same(m, snap)


def test_wrong_number_of_channels():
    m = timm.create_model("resnet18", in_chans=1, num_classes=2)
    snap = _snapshot(m)
    with pytest.raises(ExampleInputError, match=r"3 channels .* expects 1"):
        hyperinit.initialize(m, example_input=torch.randn(2, 3, 32, 32))
    assert _same(m, snap)


def test_checkpoint_of_wrong_format(tmp_path):
    bad = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(2)}, bad)
    m = timm.create_model("resnet18", num_classes=2)
    snap = _snapshot(m)
    with pytest.raises(CheckpointError, match="never loaded"):
        hyperinit.initialize(m, checkpoint=bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        hyperinit.initialize(m, checkpoint=tmp_path / "nope")
    assert _same(m, snap)


def test_unknown_modality_suggests():
    m = timm.create_model("resnet18", num_classes=2)
    with pytest.raises(UnknownModalityError, match="Did you mean 'ultrasound'"):
        hyperinit.initialize(m, modality="ultrasonnd")
    assert resolve_modality("CXR") == "xray"


def test_failure_while_writing_rolls_back(monkeypatch):
    m = timm.create_model("resnet18", num_classes=2)
    snap = _snapshot(m)
    calls = {"n": 0}
    original = nn.Parameter.data.__set__

    def flaky(self, value):
        calls["n"] += 1
        if calls["n"] == 30:
            raise RuntimeError("simulated failure half-way")
        original(self, value)

    monkeypatch.setattr(nn.Parameter, "data", property(nn.Parameter.data.__get__, flaky))
    with pytest.raises(RuntimeError, match="half-way"):
        hyperinit.initialize(m, seed=0)
    monkeypatch.undo()
    assert calls["n"] > 30  # rolled back after the failure
    assert _same(m, snap)


def test_non_finite_prediction_is_refused(monkeypatch):
    m = timm.create_model("resnet18", num_classes=2)
    snap = _snapshot(m)
    hn = hyperinit.HyperInitializer().eval()
    with torch.no_grad():
        hn.core_fc.bias.fill_(float("nan"))
    with pytest.raises(hyperinit.HyperInitError, match="non-finite"):
        hyperinit.initialize(m, checkpoint=hn, seed=0)
    assert _same(m, snap)


def test_report_names_the_checkpoints_modality_not_the_default():
    from hyperinit.bench.quick import checkpoint_dir

    m = timm.create_model("resnet18", num_classes=2)
    report = hyperinit.initialize(m, checkpoint=checkpoint_dir("fundus"), seed=0)
    assert report.modality == "fundus" and "fundus" in report.checkpoint
    untrained = hyperinit.initialize(m, checkpoint=hyperinit.HyperInitializer().eval(), seed=0)
    assert untrained.modality == "none"


@given(architectures)
def test_property_random_architectures_initialize(specs):
    torch.manual_seed(0)
    m = RandomNet(specs)
    x = torch.randn(2, 3, 16, 16)
    r1 = hyperinit.initialize(m, seed=3, example_input=x)
    s1 = _snapshot(m)
    names = {n for n, _ in m.named_parameters()}
    assert set(r1.predicted) | set(r1.kept) == names
    assert all(torch.isfinite(v).all() for v in s1.values())
    hyperinit.initialize(m, seed=3, example_input=x)
    assert _same(m, s1)
    assert torch.isfinite(m(x)).all()


class UNet(nn.Module):
    """A U-Net with a timm encoder (features_only: a list of maps), transposed convolutions and
    skip concatenations."""

    def __init__(self, in_chans: int = 1, classes: int = 1):
        super().__init__()
        self.encoder = timm.create_model("resnet18", features_only=True, in_chans=in_chans)
        chans = self.encoder.feature_info.channels()  # [64, 64, 128, 256, 512]
        self.ups = nn.ModuleList()
        self.convs = nn.ModuleList()
        c = chans[-1]
        for skip in reversed(chans[:-1]):
            self.ups.append(nn.ConvTranspose2d(c, skip, 2, stride=2))
            self.convs.append(
                nn.Sequential(
                    nn.Conv2d(2 * skip, skip, 3, padding=1), nn.BatchNorm2d(skip), nn.ReLU()
                )
            )
            c = skip
        self.out = nn.Conv2d(c, classes, 1)

    def forward(self, x):
        feats = self.encoder(x)
        y = feats[-1]
        for up, conv, skip in zip(self.ups, self.convs, reversed(feats[:-1])):
            y = up(y)
            if y.shape[-2:] != skip.shape[-2:]:
                y = nn.functional.interpolate(y, size=skip.shape[-2:])
            y = conv(torch.cat([y, skip], dim=1))
        return nn.functional.interpolate(self.out(y), size=x.shape[-2:], mode="bilinear")


def test_unet_encoder_only_as_in_the_seed(xray_images):
    model = UNet().train()
    x = xray_images(1, 64, 4)
    g = hyperinit.trace(model, x)
    assert g.unbound == []
    assert g.op_counts()["conv_transpose"] == 4
    report = hyperinit.initialize(model, "xray", exclude=["ups", "convs"], seed=0, example_input=x)
    assert report.kept["out.weight"] == "head"
    assert report.kept["ups.0.weight"] == "excluded"
    assert all(n in report.predicted for n, _ in model.encoder.named_parameters(prefix="encoder"))
    out = model(x)
    assert out.shape == (4, 1, 64, 64)
    assert torch.isfinite(out).all()
    # predicting the decoder too also keeps the signal in band
    full = UNet().train()
    hyperinit.initialize(full, "xray", seed=0, example_input=x)
    assert not band_violations(activation_stats(full, x, skip={"out"}))


def test_nfnet_gains_and_weight_norm_scales_keep_their_init():
    m = timm.create_model("nf_resnet26", num_classes=2)
    gains = {n: p.detach().clone() for n, p in m.named_parameters() if n.endswith(".gain")}
    report = hyperinit.initialize(m, seed=0, example_input=torch.randn(2, 3, 64, 64))
    assert gains
    assert all(report.kept[n] in ("role 'scale'", "head") for n in gains)
    assert all(torch.equal(dict(m.named_parameters())[n], v) for n, v in gains.items())
    conv = torch.nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 8, 3))
    report = hyperinit.initialize(
        nn.Sequential(conv, nn.ReLU()),
        seed=0,
        example_input=torch.randn(2, 3, 8, 8),
        predict_head=True,
    )
    assert report.kept["0.parametrizations.weight.original0"] == "role 'scale'"
    assert "0.parametrizations.weight.original1" in report.predicted
