"""Building models without paying for default init: deferred_init and create_model(modality=)."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

import hyperinit
from hyperinit.deferred import deferred_init
from hyperinit.initialize import initialize_deferred


def _build(source: str, name: str) -> nn.Module:
    if source == "timm":
        return timm.create_model(name, num_classes=3)
    return torchvision.models.get_model(name, weights=None, num_classes=3)


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("timm", "resnet18"),
        ("timm", "efficientnet_b0"),
        ("timm", "vit_tiny_patch16_224"),
        ("timm", "swin_tiny_patch4_window7_224"),
        ("torchvision", "mobilenet_v3_small"),
        ("torchvision", "densenet121"),
    ],
)
def test_replaying_every_deferred_write_is_the_models_own_init(source, name):
    torch.manual_seed(7)
    plain = _build(source, name)
    torch.manual_seed(7)
    with deferred_init() as deferred:
        model = _build(source, name)
    assert deferred.pending  # something was deferred
    deferred.replay()
    assert not deferred.pending
    expected = plain.state_dict()
    for key, value in model.state_dict().items():  # bit for bit, buffers included
        assert torch.equal(value, expected[key]), key


def test_buffers_are_built_at_once_not_deferred():
    with deferred_init():
        model = timm.create_model("swin_tiny_patch4_window7_224", num_classes=2)
    plain = timm.create_model("swin_tiny_patch4_window7_224", num_classes=2)
    expected = dict(plain.named_buffers())
    for key, value in model.named_buffers():  # relative-position indices, masks...
        assert torch.equal(value, expected[key]), key


@pytest.mark.parametrize("spec", ["timm:densenet121", "torchvision:resnet18"])
def test_create_model_with_modality_predicts_like_initialize(spec, cxr_batch):
    model, report = hyperinit.create_model(
        spec, in_chans=1, num_classes=2, modality="ct", seed=5, return_report=True
    )
    reference = hyperinit.create_model(spec, in_chans=1, num_classes=2)
    expected = hyperinit.initialize(reference, modality="ct", seed=5)
    assert report.predicted == expected.predicted
    assert report.coverage == expected.coverage
    mine, theirs = dict(model.named_parameters()), dict(reference.named_parameters())
    for name in report.predicted:
        assert torch.equal(mine[name], theirs[name]), name
    for name, buffer in reference.named_buffers():
        assert torch.equal(dict(model.named_buffers())[name], buffer), name
    for name in report.kept:  # the head got its default init, not empty memory
        p, q = mine[name], theirs[name]
        assert torch.isfinite(p).all()
        if p.dim() > 1:
            assert float(p.std()) == pytest.approx(float(q.std()), rel=0.5)
    assert torch.isfinite(model(cxr_batch)).all()


def test_create_model_is_reproducible_with_the_global_seed():
    torch.manual_seed(0)
    a = hyperinit.create_model("timm:resnet18", num_classes=2, modality="xray")
    torch.manual_seed(0)
    b = hyperinit.create_model("timm:resnet18", num_classes=2, modality="xray")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def test_initialize_arguments_without_modality_are_refused():
    with pytest.raises(TypeError, match="modality="):
        hyperinit.create_model("timm:resnet18", seed=0)


class SignBranch(nn.Module):
    """The branch depends on the data: tracing must not run on empty parameter memory."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(1, 4, 5), nn.BatchNorm2d(4), nn.ReLU())
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x) if bool(x.mean() > 0) else self.b(x)
        return self.fc(x.mean((2, 3)))


def test_deferred_model_with_data_dependent_forward_is_traced_on_its_default_init(cxr_batch):
    x = cxr_batch + 2.0
    with deferred_init() as deferred:
        model = SignBranch()
    report = initialize_deferred(model, "xray", deferred, example_input=x, seed=0)
    assert report.graph["traced_as"] == "real"
    assert {"a.0.weight", "a.1.weight"} <= set(report.predicted)
    assert report.kept["b.0.weight"] == "unused in forward"
    bound = 1 / 25**0.5  # b keeps Conv2d's own init, replayed before the real pass
    assert 0 < model.b[0].weight.abs().max() <= bound
    assert not deferred.pending


def test_seed_from_the_global_rng_does_not_depend_on_a_warm_cache(tmp_path):
    hyperinit.HyperInitializer().save_pretrained(tmp_path / "hn")  # a path never loaded before
    model = timm.create_model("resnet18", num_classes=2)
    torch.manual_seed(0)
    cold = hyperinit.initialize(model, checkpoint=tmp_path / "hn")
    torch.manual_seed(0)
    warm = hyperinit.initialize(model, checkpoint=tmp_path / "hn")
    assert cold.seed == warm.seed


def test_tensor_methods_are_restored_even_when_the_constructor_fails():
    class Failing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)
            raise ValueError("boom")

    def build() -> None:
        with deferred_init():
            Failing()

    before = torch.Tensor.uniform_
    with pytest.raises(ValueError, match="boom"):
        build()
    assert torch.Tensor.uniform_ is before
    t = torch.empty(3).uniform_(1.0, 2.0)  # runs again, not deferred
    assert ((t >= 1) & (t <= 2)).all()


class ViewWrites(nn.Module):
    """Writes a whole parameter, then a view of it, then copies another parameter into it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.empty(4, 4))
        self.b = nn.Parameter(torch.empty(4, 4))
        nn.init.normal_(self.a)
        self.a.data[:, 0] = 5.0
        with torch.no_grad():
            self.a[1:, 1].fill_(-1.0)
            self.b.copy_(self.a)
            self.b *= 2


def test_writes_to_views_and_between_parameters_replay_in_order():
    torch.manual_seed(1)
    plain = ViewWrites()
    torch.manual_seed(1)
    with deferred_init() as deferred:
        model = ViewWrites()
    assert len(deferred.pending) == 2
    deferred.replay()
    assert torch.equal(model.a, plain.a)
    assert torch.equal(model.b, plain.b)
    assert (model.a[:, 0] == 5).all()
