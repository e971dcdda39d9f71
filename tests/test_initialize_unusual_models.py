"""initialize() on models that break cheap tracing: data-dependent control flow, lazy modules,
meta-device models and forwards that take one dict."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn
from torch.nn.utils import parametrizations

import hyperinit
from hyperinit.errors import ExampleInputError, MetaDeviceError, TraceError


class BranchOnData(nn.Module):
    """Takes branch ``a`` when the stem's output has a positive mean, else branch ``b``."""

    def __init__(self, swallow_errors: bool = False) -> None:
        super().__init__()
        self.swallow_errors = swallow_errors
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.a = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(8, 8, 5, padding=2), nn.BatchNorm2d(8), nn.ReLU())
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        try:
            positive = bool(x.mean() > 0)
        except Exception:  # a model that hides errors must not fool the tracer either
            if not self.swallow_errors:
                raise
            positive = False
        x = self.a(x) if positive else self.b(x)
        return self.fc(x.mean((2, 3)))


def _params(module: nn.Module, prefix: str) -> set[str]:
    return {f"{prefix}.{n}" for n, _ in module.named_parameters()}


@pytest.mark.parametrize("swallow_errors", [False, True])
@pytest.mark.parametrize("shift", [+3.0, -3.0])
def test_control_flow_on_data_follows_the_example_inputs_branch(cxr_batch, shift, swallow_errors):
    model = BranchOnData(swallow_errors)
    with torch.no_grad():  # make the stem's output mean follow the sign of the shift
        model.stem.weight.abs_()
    x = cxr_batch + shift
    taken, other = ("a", "b") if shift > 0 else ("b", "a")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    report = hyperinit.initialize(model, example_input=x, seed=0)
    taken_params = _params(getattr(model, taken), taken)
    assert taken_params <= set(report.predicted)
    assert all(report.kept[n] == "unused in forward" for n in _params(getattr(model, other), other))
    assert report.graph["traced_as"] == "real"
    assert "reads tensor values" in report.graph["note"]
    assert "reads tensor values" in str(report)
    for n in taken_params:
        assert not torch.equal(before[n], dict(model.named_parameters())[n])


def test_models_without_data_reads_still_trace_cheaply(cxr_batch):
    model = timm.create_model("resnet18", in_chans=1, num_classes=2)
    report = hyperinit.initialize(model, example_input=cxr_batch, seed=0)
    assert report.graph["traced_as"] == "batch0"
    assert "note" not in report.graph


def _lazy_model() -> nn.Module:
    return nn.Sequential(
        nn.LazyConv2d(8, 3, padding=1),
        nn.LazyBatchNorm2d(),
        nn.ReLU(),
        parametrizations.weight_norm(nn.Conv2d(8, 16, 3, padding=1)),
        nn.ReLU(),
        nn.LazyConv2d(16, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.LazyLinear(2),
    )


def test_lazy_modules_are_materialised_with_the_example_input(cxr_batch):
    model = _lazy_model()
    report = hyperinit.initialize(model, example_input=cxr_batch, seed=0)
    assert not any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters())
    assert model[0].weight.shape == (8, 1, 3, 3)
    assert report.coverage > 0.95
    assert {"0.weight", "5.weight", "3.parametrizations.weight.original1"} <= set(report.predicted)
    bn = model[1]  # materialising ran in eval mode: the statistics are untouched
    assert torch.equal(bn.running_mean, torch.zeros(8))
    assert torch.equal(bn.running_var, torch.ones(8))
    assert int(bn.num_batches_tracked) == 0
    assert model.training
    assert torch.isfinite(model(cxr_batch)).all()


def test_lazy_modules_without_example_input_are_refused_by_name():
    model = _lazy_model()
    with pytest.raises(ExampleInputError, match=r"lazy modules.*0 \(LazyConv2d\).*example_input="):
        hyperinit.initialize(model, seed=0)
    with pytest.raises(TraceError, match="lazy modules"):
        hyperinit.trace(model)


def test_lazy_module_the_input_never_reaches_is_refused():
    class Unreached(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.never = nn.LazyLinear(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    with pytest.raises(TraceError, match=r"never.*not reached"):
        hyperinit.initialize(Unreached(), example_input=torch.randn(1, 1, 8, 8), seed=0)


@pytest.mark.parametrize("device", [None, "cpu"])
def test_meta_device_model_is_allocated_and_matches_a_real_one(device, cxr_batch):
    real = timm.create_model("resnet18", in_chans=1, num_classes=2)
    with torch.device("meta"):
        model = timm.create_model("resnet18", in_chans=1, num_classes=2)
    # no residual damping: on the meta device the model's own zero-init norms are unknown
    undamped = {"orthogonalize": "depthwise"}
    hyperinit.initialize(real, seed=3, postprocess=undamped)
    report = hyperinit.initialize(model, seed=3, device=device, postprocess=undamped)
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    assert report.coverage == 1.0
    real_params = dict(real.named_parameters())
    for name in report.predicted:  # same graph, same seed: the same predictions
        assert torch.equal(dict(model.named_parameters())[name], real_params[name]), name
    real_buffers = dict(real.named_buffers())
    for name, b in model.named_buffers():  # statistics exactly as the constructor makes them
        assert torch.equal(b, real_buffers[name]), name
    head = model.get_classifier()  # kept: the layer's own default init (reset_parameters)
    bound = 1 / head.in_features**0.5
    assert head.weight.abs().max() <= bound
    assert head.weight.std() > bound / 4
    assert torch.isfinite(model(cxr_batch)).all()


class ComputedBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.register_buffer("index", torch.arange(16).flip(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv(x)).flatten(1)[:, self.index]


def test_meta_model_with_buffers_it_cannot_rebuild_is_refused_untouched():
    with torch.device("meta"):
        model = ComputedBuffer()
    with pytest.raises(MetaDeviceError, match=r"buffers \['index'\].*hyperinit.create_model"):
        hyperinit.initialize(model, example_input=torch.randn(2, 1, 8, 8), seed=0)
    assert all(t.is_meta for t in (*model.parameters(), *model.buffers()))


class DictForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU()
        )
        self.head = nn.Linear(8 + 3, 2)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feats = self.body(batch["image"]).mean((2, 3))
        return self.head(torch.cat([feats, batch["clinical"]], 1))


def test_forward_taking_one_dict_gets_it_inside_a_tuple(cxr_batch):
    batch = {"image": cxr_batch, "clinical": torch.randn(len(cxr_batch), 3)}
    model = DictForward()
    report = hyperinit.initialize(model, example_input=(batch,), seed=0)
    assert report.coverage == 1.0
    assert set(report.kept) == {"head.weight", "head.bias"}


def test_dict_passed_as_keywords_explains_the_rule(cxr_batch):
    batch = {"image": cxr_batch, "clinical": torch.randn(len(cxr_batch), 3)}
    model = DictForward()
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    with pytest.raises(TraceError, match=r"keyword arguments.*example_input=\(batch,\)"):
        hyperinit.initialize(model, example_input=batch, seed=0)
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items())
