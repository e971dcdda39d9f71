"""The MetaLR hypergradient is exact: it matches a central finite difference in float64."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn

from hyperinit.metalr import MetaLROptimizer

DATA = Path(
    os.environ.get("HYPERINIT_DATA", Path(__file__).resolve().parents[1] / "../shared/data")
)

OPTIMIZERS: dict[str, Callable] = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05),
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-2),
    "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-3),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5),  # generic path
}


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 3),
    )


def finite_difference(
    model: nn.Module,
    opt_state: dict,
    make_opt: Callable,
    train: Callable[[nn.Module], torch.Tensor],
    val: Callable[[nn.Module], torch.Tensor],
    group: int,
    eps: float = 1e-6,
) -> float:
    """d L_val(theta after one base step) / d lr_group, by re-running the base step."""
    values = []
    for sign in (1.0, -1.0):
        m = copy.deepcopy(model)
        opt = MetaLROptimizer(make_opt(m.parameters()), m)
        opt.load_state_dict(copy.deepcopy(opt_state))  # state tensors must not be shared
        for g in opt.param_groups:
            if g["metalr_group"] == group:
                g["lr"] = g["lr"] + sign * eps
        opt.zero_grad()
        train(m).backward()
        opt.base_optimizer.step()
        with torch.no_grad():
            values.append(val(m).item())
    return (values[0] - values[1]) / (2 * eps)


def check_hypergrad(model, make_opt, train, val, groups_to_check=None, warmup=3) -> None:
    opt = MetaLROptimizer(make_opt(model.parameters()), model, meta_lr=1e-3)
    for _ in range(warmup):  # non-trivial momentum / Adam moments and learned rates
        opt.step(lambda: train(model), lambda: val(model))
    before, state = copy.deepcopy(model), copy.deepcopy(opt.state_dict())
    opt.step(lambda: train(model), lambda: val(model))
    hyper = opt.last_hypergrad
    for j in groups_to_check or range(len(hyper)):
        fd = finite_difference(before, state, make_opt, train, val, j)
        assert abs(hyper[j] - fd) <= 1e-3 * abs(fd) + 1e-12, (opt.group_names[j], hyper[j], fd)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_hypergradient_matches_finite_difference(name: str) -> None:
    torch.manual_seed(0)
    model = small_cnn().double()
    x, y = torch.randn(8, 3, 6, 6, dtype=torch.float64), torch.randint(0, 3, (8,))
    xv, yv = torch.randn(8, 3, 6, 6, dtype=torch.float64), torch.randint(0, 3, (8,))
    check_hypergrad(
        model,
        OPTIMIZERS[name],
        lambda m: F.cross_entropy(m(x), y),
        lambda m: F.cross_entropy(m(xv), yv),
    )


def real_images(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    root = DATA / "ultrasound_busi"
    if not root.is_dir():
        pytest.skip(f"no data at {root} (set HYPERINIT_DATA)")
    xs, ys = [], []
    for label, cls in enumerate(["benign", "malignant", "normal"]):
        for p in sorted((root / cls).glob("*.png"))[: n // 3 + 1]:
            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB").resize((size, size)), dtype=np.float64)
            xs.append(torch.from_numpy(arr).permute(2, 0, 1) / 255.0 - 0.5)
            ys.append(label)
    return torch.stack(xs)[:n], torch.tensor(ys)[:n]


@pytest.mark.parametrize("name", ["adam", pytest.param("sgd_momentum", marks=pytest.mark.slow)])
def test_hypergradient_resnet18_real_ultrasound(name: str) -> None:
    """ResNet-18 (BatchNorm in train mode) on real BUSI images, float64."""
    torch.manual_seed(0)
    x, y = real_images(8, 16)
    model = torchvision.models.resnet18(num_classes=3).double()
    perm = torch.randperm(8)
    xt, yt, xv, yv = x[perm[:4]], y[perm[:4]], x[perm[4:]], y[perm[4:]]
    check_hypergrad(
        model,
        OPTIMIZERS[name],
        lambda m: F.cross_entropy(m(xt), yt),
        lambda m: F.cross_entropy(m(xv), yv),
        groups_to_check=[0, 9],  # stem and head
        warmup=1,
    )
