"""MetaLR's learning rates: checked settings, the initial rate of each layer group, clipping to
``[lr_min, lr_max]`` and writing the rates into the optimizer's parameter groups."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from hyperinit.errors import MetaLRConfigError

__all__ = ["GROUP_KEY", "as_float", "check_rate", "clip_rate", "initial_rates", "write_rates"]

#: The parameter-group option naming a group's layer group (its index in depth order).
GROUP_KEY = "metalr_group"


def check_rate(name: str, value: Any, allow_none: bool = False) -> float | None:
    """``value`` as a finite float >= 0 (or None if allowed); MetaLRConfigError otherwise."""
    if value is None and allow_none:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise MetaLRConfigError(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(value) or value < 0:
        raise MetaLRConfigError(f"{name} must be finite and >= 0, got {value}.")
    return value


def as_float(lr: Any) -> float:
    """A parameter group's ``lr`` (a float or a tensor) as a float."""
    return float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)


def clip_rate(lr: float, lr_min: float, lr_max: float | None) -> float:
    """``lr`` clipped to ``[lr_min, lr_max]`` (no ceiling when ``lr_max`` is None)."""
    lr = max(lr, lr_min)
    return min(lr, lr_max) if lr_max is not None else lr


def initial_rates(
    param_groups: list[dict[str, Any]],
    group_names: list[str],
    init_lrs: Any,
    *,
    head_lr_scale: float,
    scale_head: bool,
    lr_min: float,
    lr_max: float | None,
) -> list[float]:
    """The starting rate of each layer group from ``init_lrs`` (see ``MetaLROptimizer``)."""
    n = len(group_names)
    base = [0.0] * n
    for g in reversed(param_groups):  # the first base group of a layer wins
        base[g[GROUP_KEY]] = as_float(g["lr"])
    head = head_lr_scale if scale_head and n > 1 else 1.0
    if init_lrs is None:
        lrs = [*base[:-1], base[-1] * head]
    elif isinstance(init_lrs, (int, float)) and not isinstance(init_lrs, bool):
        lrs = [*[float(init_lrs)] * (n - 1), float(init_lrs) * head]
    elif isinstance(init_lrs, Mapping):
        unknown = set(init_lrs) - set(group_names)
        if unknown:
            raise MetaLRConfigError(
                f"init_lrs names unknown groups {sorted(unknown)}; groups are {group_names}."
            )
        lrs = [*base[:-1], base[-1] * head]
        lrs = [float(init_lrs.get(name, lr)) for name, lr in zip(group_names, lrs)]
    elif isinstance(init_lrs, Sequence) and not isinstance(init_lrs, str):
        if len(init_lrs) != n:
            raise MetaLRConfigError(
                f"init_lrs has {len(init_lrs)} rates for {n} groups {group_names}."
            )
        lrs = [float(v) for v in init_lrs]
    else:
        raise MetaLRConfigError(
            f"init_lrs must be None, a number, a sequence or a mapping, not {init_lrs!r}."
        )
    for name, lr in zip(group_names, lrs):
        if not math.isfinite(lr) or lr < lr_min:
            raise MetaLRConfigError(
                f"initial rate {lr} of group {name!r} is below lr_min={lr_min} or not "
                "finite; raise it or lower lr_min."
            )
    return [clip_rate(lr, lr_min, lr_max) for lr in lrs]


def write_rates(param_groups: list[dict[str, Any]], lrs: list[float]) -> None:
    """Set each parameter group's ``lr`` to its layer group's rate (tensor lrs in place)."""
    for g in param_groups:
        lr = lrs[g[GROUP_KEY]]
        if isinstance(g["lr"], torch.Tensor):
            g["lr"].fill_(lr)
        else:
            g["lr"] = lr
