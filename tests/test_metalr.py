"""MetaLROptimizer behaviour: rates move the right way, amortisation, state, AMP, NaN, errors."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hyperinit.errors import (
    HyperInitError,
    MetaLRConfigError,
    MetaLRStateError,
    ParamGroupingError,
)
from hyperinit.metalr import MetaLROptimizer, ValidationLoss


class TwoParams(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(3))
        self.b = nn.Parameter(torch.zeros(3))


def constructed_problem(opt_factory, meta_update: str = "additive"):
    """Train pulls a and b towards +1; validation wants a at +1 but b at -1."""
    model = TwoParams()
    opt = MetaLROptimizer(
        opt_factory(model.parameters()),
        model,
        groups={"a": [model.a], "b": [model.b]},
        meta_update=meta_update,
        meta_lr=1e-3 if meta_update == "additive" else 1.0,
        lr_min=1e-4,
        init_lrs=[0.01, 0.01],
    )

    def train() -> torch.Tensor:
        return ((model.a - 1) ** 2).sum() + ((model.b - 1) ** 2).sum()

    def val() -> torch.Tensor:
        return ((model.a - 1) ** 2).sum() + ((model.b + 1) ** 2).sum()

    return model, opt, train, val


@pytest.mark.parametrize(
    "factory",
    [
        lambda p: torch.optim.SGD(p, lr=0.01),
        lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
        lambda p: torch.optim.Adam(p, lr=0.01),
    ],
    ids=["sgd", "momentum", "adam"],
)
@pytest.mark.parametrize("meta_update", ["additive", "relative"])
def test_rate_rises_where_it_helps_and_falls_where_it_hurts(factory, meta_update) -> None:
    _, opt, train, val = constructed_problem(factory, meta_update)
    opt.lr_min = 1e-4
    for _ in range(20):
        opt.step(train, val)
    lrs = opt.lrs
    assert lrs["a"] > 0.015  # raising a's rate lowers the validation loss: it rose
    assert lrs["b"] < 0.005  # raising b's rate raises it: it fell
    if meta_update == "additive":
        assert lrs["b"] == pytest.approx(1e-4)  # to the floor
    hist = opt.lr_history
    assert hist["a"][0] == 0.01
    assert len(hist["a"]) == 21
    assert hist["a"][1] > hist["a"][0]
    assert hist["b"][1] < hist["b"][0]


def test_zero_meta_lr_reproduces_the_base_optimizer() -> None:
    """With meta_lr=0 the wrapper is the base optimizer (eq. 4 rescaling is a no-op)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    twin = copy.deepcopy(model)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    opt = MetaLROptimizer(
        torch.optim.AdamW(model.parameters(), lr=1e-2), model, meta_lr=0.0, head_lr_scale=1.0
    )
    ref = torch.optim.AdamW(twin.parameters(), lr=1e-2)
    for _ in range(5):
        opt.step(lambda: F.cross_entropy(model(x), y), lambda: F.cross_entropy(model(x[:4]), y[:4]))
        ref.zero_grad()
        F.cross_entropy(twin(x), y).backward()
        ref.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q)


def test_param_groups_are_shared_and_split_per_layer() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    decay = [model[0].weight, model[2].weight]
    no_decay = [model[0].bias, model[2].bias]
    base = torch.optim.SGD(
        [{"params": decay, "weight_decay": 1e-2}, {"params": no_decay, "weight_decay": 0.0}],
        lr=0.1,
    )
    opt = MetaLROptimizer(base, model)
    assert opt.param_groups is base.param_groups
    assert opt.group_names == ["0", "2"]
    assert len(opt.param_groups) == 4  # (layer, original group) pairs keep their options
    assert {(g["metalr_group"], g["weight_decay"]) for g in opt.param_groups} == {
        (0, 1e-2),
        (0, 0.0),
        (1, 1e-2),
        (1, 0.0),
    }
    assert opt.lrs == {"0": pytest.approx(0.1), "2": pytest.approx(1.0)}  # head 10x


def test_meta_every_amortises_validation_passes() -> None:
    _, opt, train, val = constructed_problem(lambda p: torch.optim.SGD(p, lr=0.01))
    opt.meta_every = 3
    calls = []

    def counted_val() -> torch.Tensor:
        calls.append(1)
        return val()

    for _ in range(9):
        opt.step(train, counted_val)
    assert len(calls) == 3
    assert opt.meta_steps == 3
    assert opt.lr_history_steps == [0, 1, 4, 7]


def test_validation_dataloader_is_cycled() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    val = DataLoader(
        TensorDataset(torch.randn(10, 3), torch.randint(0, 2, (10,))), batch_size=4, shuffle=True
    )
    opt = MetaLROptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), model, val_data=val, loss_fn=F.cross_entropy
    )
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    for _ in range(7):  # 3 batches per pass: 7 meta steps need 3 passes
        loss = opt.step(lambda: F.cross_entropy(model(x), y))
    assert isinstance(loss, torch.Tensor)
    assert not loss.requires_grad
    assert opt._val_source.passes == 3
    assert opt.meta_steps == 7


def test_empty_validation_loader_gives_a_clear_error() -> None:
    model = nn.Linear(3, 2)
    src = ValidationLoss([], F.cross_entropy, model)
    with pytest.raises(MetaLRConfigError, match="no batches"):
        src()


def test_drop_in_use_after_backward() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = MetaLROptimizer(torch.optim.SGD(model.parameters(), lr=0.1), model)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    before = model.weight.detach().clone()
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    assert opt.step(val_closure=lambda: F.cross_entropy(model(x), y)) is None
    assert not torch.equal(before, model.weight)
    assert opt.meta_steps == 1


def test_batchnorm_statistics_do_not_see_validation_batches() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(2, 3, 6, 6))
    opt = MetaLROptimizer(torch.optim.SGD(model.parameters(), lr=0.1), model)
    x, y = torch.randn(8, 3, 6, 6), torch.randint(0, 2, (8,))
    xv = torch.randn(8, 3, 6, 6) * 10 + 5
    twin = copy.deepcopy(model)
    opt.step(lambda: F.cross_entropy(model(x), y), lambda: F.cross_entropy(model(xv), y))
    twin(x)  # the running statistics see the training batch only
    torch.testing.assert_close(model[1].running_mean, twin[1].running_mean)
    torch.testing.assert_close(model[1].running_var, twin[1].running_var)


def make_trained(seed: int = 0, steps: int = 3):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = MetaLROptimizer(
        torch.optim.Adam(model.parameters(), lr=1e-2), model, meta_lr=1e-4, meta_every=2
    )
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    xv, yv = torch.randn(16, 4), torch.randint(0, 2, (16,))

    def run(m, o, n):
        for _ in range(n):
            o.step(lambda: F.cross_entropy(m(x), y), lambda: F.cross_entropy(m(xv), yv))

    run(model, opt, steps)
    return model, opt, run


def test_state_dict_round_trip_continues_identically() -> None:
    model, opt, run = make_trained(steps=5)
    state = copy.deepcopy(opt.state_dict())
    model2 = copy.deepcopy(model)
    opt2 = MetaLROptimizer(
        torch.optim.Adam(model2.parameters(), lr=5.0), model2, meta_lr=1e-4, meta_every=2
    )
    opt2.load_state_dict(state)
    assert opt2.lrs == opt.lrs
    assert opt2.lr_history == opt.lr_history
    assert opt2.lr_history_steps == opt.lr_history_steps
    assert opt2.meta_steps == opt.meta_steps
    assert opt2.param_groups is opt2.base_optimizer.param_groups
    run(model, opt, 4)
    run(model2, opt2, 4)
    for p, q in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(p, q)
    assert opt2.lrs == pytest.approx(opt.lrs)
    torch.save(opt.state_dict(), _buf := __import__("io").BytesIO())  # serialisable
    assert _buf.tell() > 0


def test_bad_state_dicts_are_rejected() -> None:
    _, opt, _ = make_trained()
    with pytest.raises(MetaLRStateError, match="not a MetaLROptimizer state dict"):
        opt.load_state_dict(opt.base_optimizer.state_dict())
    other = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 2))
    opt3 = MetaLROptimizer(torch.optim.Adam(other.parameters()), other)
    with pytest.raises(MetaLRStateError, match="groups"):
        opt3.load_state_dict(opt.state_dict())


def test_amp_bfloat16_autocast_with_grad_scaler() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 3))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    opt = MetaLROptimizer(
        torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9),
        model,
        meta_lr=1e-3,
        grad_scaler=scaler,
    )
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))
    xv, yv = torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))

    def loss(xx, yy):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(xx)
        assert out.dtype == torch.bfloat16
        return F.cross_entropy(out.float(), yy)

    first = loss(x, y).item()
    start = dict(opt.lrs)
    for _ in range(10):
        opt.step(lambda: loss(x, y), lambda: loss(xv, yv))
    assert opt.meta_steps == 10
    assert opt.skipped_meta_steps == 0
    assert loss(x, y).item() < first
    assert all(torch.isfinite(torch.tensor(v)) for v in opt.last_hypergrad)
    assert opt.lrs != start
    # the hypergradient is unscaled: same value with and without the scaler, from equal states
    m1, m2 = copy.deepcopy(model), copy.deepcopy(model)
    hs = []
    for m, sc in ((m1, torch.amp.GradScaler("cpu", init_scale=2.0**12)), (m2, None)):
        o = MetaLROptimizer(torch.optim.SGD(m.parameters(), lr=1e-2), m, grad_scaler=sc)
        o.step(lambda m=m: F.cross_entropy(m(x), y), lambda m=m: F.cross_entropy(m(xv), yv))
        hs.append(o.last_hypergrad)
    assert hs[0] == pytest.approx(hs[1], rel=1e-4)


def test_grad_scaler_skips_inf_gradients_and_keeps_training() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    opt = MetaLROptimizer(torch.optim.SGD(model.parameters(), lr=0.1), model, grad_scaler=scaler)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    w = model.weight.detach().clone()
    hook = model.weight.register_hook(lambda g: g * float("inf"))  # finite loss, inf gradient
    with pytest.warns(RuntimeWarning, match="NaN or inf"):
        opt.step(lambda: F.cross_entropy(model(x), y), lambda: F.cross_entropy(model(x), y))
    hook.remove()
    assert torch.equal(w, model.weight)
    assert opt.meta_steps == 0
    assert scaler.get_scale() < 2.0**8
    opt.step(lambda: F.cross_entropy(model(x), y), lambda: F.cross_entropy(model(x), y))
    assert opt.meta_steps == 1
    assert not torch.equal(w, model.weight)


def test_nan_losses_skip_the_update_warn_once_and_training_goes_on() -> None:
    _, opt, train, val = constructed_problem(lambda p: torch.optim.SGD(p, lr=0.01))
    opt.step(train, val)
    lrs = dict(opt.lrs)
    a = opt.base_optimizer.param_groups[0]["params"][0]
    before = a.detach().clone()
    with pytest.warns(RuntimeWarning, match="validation loss is NaN or inf"):
        opt.step(train, lambda: val() * float("nan"))
    assert opt.lrs == lrs  # meta update skipped
    assert not torch.equal(a, before)  # but the base step was taken
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: no second warning
        opt.step(train, lambda: val() + float("inf"))
        before = a.detach().clone()
        opt.step(lambda: train() * float("nan"), val)  # NaN training loss: whole step skipped
    assert torch.equal(a, before)
    assert opt.skipped_meta_steps == 3
    opt.step(train, val)
    assert opt.meta_steps == 2
    assert opt.lrs != lrs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lr0=st.floats(1e-4, 1.0),
    meta_lr=st.floats(0.0, 10.0),
    lr_max=st.one_of(st.none(), st.floats(1.0, 5.0)),
    target=st.floats(-3.0, 3.0),
    meta_update=st.sampled_from(["additive", "relative"]),
)
def test_rates_stay_within_bounds(lr0, meta_lr, lr_max, target, meta_update) -> None:
    model = TwoParams()
    opt = MetaLROptimizer(
        torch.optim.SGD(model.parameters(), lr=lr0),
        model,
        groups={"a": [model.a], "b": [model.b]},
        meta_lr=meta_lr,
        lr_min=1e-5,
        lr_max=lr_max,
        head_lr_scale=1.0,
        meta_update=meta_update,
    )
    for _ in range(4):
        opt.step(
            lambda: ((model.a - 1) ** 2).sum() + (model.b**2).sum(),
            lambda: ((model.a - target) ** 2).sum() + ((model.b + target) ** 2).sum(),
        )
    for rates in opt.lr_history.values():
        assert all(1e-5 <= r <= (lr_max or float("inf")) for r in rates)
    assert [g["lr"] for g in opt.param_groups] == list(opt.lrs.values())


def test_bad_inputs_raise_clear_hyperinit_errors() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    sgd = lambda: torch.optim.SGD(model.parameters(), lr=0.1)  # noqa: E731
    cases = [
        (lambda: MetaLROptimizer(model, model), MetaLRConfigError, "torch.optim.Optimizer"),
        (lambda: MetaLROptimizer(sgd(), model, meta_every=0), MetaLRConfigError, "meta_every"),
        (lambda: MetaLROptimizer(sgd(), model, lr_min=0), MetaLRConfigError, "lr_min"),
        (lambda: MetaLROptimizer(sgd(), model, meta_lr=-1), MetaLRConfigError, "meta_lr"),
        (lambda: MetaLROptimizer(sgd(), model, lr_max=1e-9), MetaLRConfigError, "lr_max"),
        (lambda: MetaLROptimizer(sgd(), model, init_lrs=[0.1]), MetaLRConfigError, "2 groups"),
        (lambda: MetaLROptimizer(sgd(), model, init_lrs={"x": 1}), MetaLRConfigError, "unknown"),
        (lambda: MetaLROptimizer(sgd(), model, init_lrs=1e-9), MetaLRConfigError, "lr_min"),
        (lambda: MetaLROptimizer(sgd(), model, groups="layers"), ParamGroupingError, "unknown"),
        (lambda: MetaLROptimizer(sgd(), model, meta_update="x"), MetaLRConfigError, "relative"),
        (lambda: MetaLROptimizer(sgd(), None, groups="module"), ParamGroupingError, "model"),
        (
            lambda: MetaLROptimizer(sgd(), model, groups={"first": model[0]}),
            ParamGroupingError,
            "in no layer group",
        ),
        (
            lambda: MetaLROptimizer(sgd(), model, groups={"a": model, "b": model[0]}),
            ParamGroupingError,
            "both group",
        ),
        (lambda: MetaLROptimizer(sgd(), model, val_data=[]), MetaLRConfigError, "loss_fn"),
    ]
    for make, err, match in cases:
        with pytest.raises(err, match=match):
            make()
        assert issubclass(err, HyperInitError)
    opt = MetaLROptimizer(sgd(), model)
    x = torch.randn(2, 3)
    with pytest.raises(MetaLRConfigError, match="validation data"):
        opt.step(lambda: model(x).sum())
    with pytest.raises(MetaLRConfigError, match="scalar tensor"):
        opt.step(lambda: 1.0, lambda: model(x).sum())


def test_no_model_uses_the_base_optimizer_groups() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    base = torch.optim.SGD(
        [{"params": model[0].parameters()}, {"params": model[1].parameters(), "lr": 0.5}], lr=0.1
    )
    opt = MetaLROptimizer(base)
    assert opt.lrs == {"group0": 0.1, "group1": 0.5}  # as given, no head scaling


def test_plot_helpers_draw_fig3b(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from hyperinit.metalr import plot_lr_by_depth, plot_lr_over_time

    _, opt, train, val = constructed_problem(lambda p: torch.optim.SGD(p, lr=0.01))
    for _ in range(5):
        opt.step(train, val)
    ax = opt.plot_lr_history(snapshots=3, label="toy")
    assert len(ax.lines) == 3
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert list(ax.lines[-1].get_ydata()) == list(opt.lrs.values())
    ax2 = plot_lr_over_time(opt.lr_history)
    assert len(ax2.lines) == 2
    ax.figure.savefig(tmp_path / "fig.png")
    with pytest.raises(MetaLRConfigError):
        plot_lr_by_depth(42)


def test_deepcopy_and_add_param_group() -> None:
    _, opt, train, val = constructed_problem(lambda p: torch.optim.SGD(p, lr=0.01))
    opt.step(train, val)
    twin = copy.deepcopy(opt)
    assert twin.lrs == opt.lrs
    assert twin.param_groups is twin.base_optimizer.param_groups
    assert "MetaLROptimizer(SGD" in repr(twin)
    with pytest.raises(MetaLRConfigError, match="cannot add parameter groups"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(1))]})
