"""Bring lazy and meta-device models to real tensors, for :func:`hyperinit.initialize`.

* **Lazy modules** (``nn.LazyLinear``, ``nn.LazyConv2d``...) learn their shapes from the first
  forward pass. :func:`materialize_lazy` runs that pass on the example input, as torch intends,
  in eval mode and without gradients, so batch-norm statistics and the random state stay as they
  were.
* **Meta-device models** (built under ``torch.device("meta")`` or accelerate's
  ``init_empty_weights``) have shapes but no values. :func:`plan_meta` checks, before anything
  is changed, that every tensor which will not be predicted can be rebuilt exactly as the
  model's own constructor builds it: a parameter by its module's ``reset_parameters()`` (torch's
  default init for that layer), a batch-norm buffer by ``reset_running_stats()``. Anything else
  (e.g. a relative-position index computed in a constructor) is refused with
  :class:`~hyperinit.errors.MetaDeviceError`. :func:`allocate_meta` then allocates the tensors
  on a real device and rebuilds them; the predictions are written afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.parameter import is_lazy
from torch.utils._pytree import tree_map

from hyperinit.errors import ExampleInputError, MetaDeviceError, TraceError

__all__ = [
    "MetaPlan",
    "allocate_meta",
    "has_lazy",
    "is_on_meta",
    "materialize_lazy",
    "plan_meta",
]

log = logging.getLogger(__name__)

_HOW_TO_BUILD = (
    "Build the model on a real device instead: hyperinit.create_model(spec, modality=...) "
    "skips the cost of default init without the meta device, or build it as usual and call "
    "initialize() on it."
)


def has_lazy(model: nn.Module) -> bool:
    """Whether any parameter or buffer of ``model`` is still uninitialised (a lazy module)."""
    return any(is_lazy(t) for t in _tensors(model))


def _tensors(model: nn.Module) -> Iterable[torch.Tensor]:
    for module in model.modules():
        for table in (module._parameters, module._buffers):
            yield from (t for t in table.values() if t is not None)


def _lazy_modules(model: nn.Module) -> list[str]:
    return [
        f"{name or '<root>'} ({type(m).__name__})"
        for name, m in model.named_modules()
        if any(
            t is not None and is_lazy(t) for t in (*m._parameters.values(), *m._buffers.values())
        )
    ]


def materialize_lazy(model: nn.Module, example_input: Any) -> list[str]:
    """Run one forward pass on ``example_input`` so that lazy modules take their shapes.

    Eval mode first (no batch-norm update, no dropout); if a lazy module only runs in training
    mode, a second pass in train mode with the buffers restored afterwards. Returns the
    materialised modules. Raises :class:`ExampleInputError` without an example input and
    :class:`TraceError` if the pass fails or leaves a module uninitialised.
    """
    lazy = _lazy_modules(model)
    if not lazy:
        return []
    if example_input is None:
        raise ExampleInputError(
            f"{type(model).__name__} has lazy modules whose shapes are not known yet: "
            f"{lazy[:5]}. Pass example_input= (a batch of the shape your data has); "
            "initialize() runs it once to materialise them, as torch intends."
        )
    from hyperinit.graph.trace import split_input

    args, kwargs = split_input(example_input)
    device = next((t.device for t in _tensors(model) if not is_lazy(t)), None)
    if device is not None:
        args, kwargs = tree_map(
            lambda x: x.to(device) if isinstance(x, torch.Tensor) else x, (args, kwargs)
        )
    flags = [(m, m.training) for m in model.modules()]
    saved = [(b, b.clone()) for b in model.buffers() if not is_lazy(b)]
    try:
        for train in (False, True):
            model.train(train)
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                model(*args, **kwargs)
            if not has_lazy(model):
                break
    except Exception as e:
        raise TraceError(
            f"cannot materialise the lazy modules of {type(model).__name__} ({lazy[:5]}): the "
            f"forward pass on the example input failed: {type(e).__name__}: {e}. Check that "
            "model(example_input) runs."
        ) from e
    finally:
        for m, flag in flags:
            m.training = flag
        with torch.no_grad():
            for b, copy in saved:
                if b.shape == copy.shape:
                    b.copy_(copy)
    left = _lazy_modules(model)
    if left:
        raise TraceError(
            f"{type(model).__name__}: lazy modules {left[:5]} were not reached by the forward "
            "pass on the example input, in eval or train mode, so their shapes are unknown. "
            "Materialise them yourself (run the inputs that reach them) before initialize()."
        )
    log.info("materialised %d lazy modules of %s", len(lazy), type(model).__name__)
    return lazy


def is_on_meta(model: nn.Module) -> bool:
    """Whether any parameter or buffer of ``model`` lives on the meta device."""
    return any(t.is_meta for t in _tensors(model))


@dataclass
class MetaPlan:
    """What :func:`allocate_meta` will rebuild: modules to ``reset_parameters()`` (owners of
    parameters that are not predicted) and norm layers to ``reset_running_stats()``."""

    reset_parameters: list[nn.Module] = field(default_factory=list)
    reset_running_stats: list[nn.Module] = field(default_factory=list)


def plan_meta(model: nn.Module, predicted: set[str]) -> MetaPlan:
    """Check that a meta-device model can be rebuilt exactly, before anything is changed.

    ``predicted`` are the parameter names the hypernetwork will write. Raises
    :class:`MetaDeviceError` naming the tensors that cannot be rebuilt.
    """
    plan = MetaPlan()
    no_reset: list[str] = []
    lost: list[str] = []
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        own = [
            n for n, p in module._parameters.items() if p is not None and p.is_meta
        ]  # direct parameters only
        if any(f"{dot}{n}" not in predicted for n in own):
            if callable(getattr(module, "reset_parameters", None)):
                plan.reset_parameters.append(module)
            else:
                no_reset += [f"{dot}{n}" for n in own if f"{dot}{n}" not in predicted]
        buffers = [n for n, b in module._buffers.items() if b is not None and b.is_meta]
        if buffers:
            if isinstance(module, _NormBase) and module.track_running_stats:
                plan.reset_running_stats.append(module)
            else:
                lost += [f"{dot}{n}" for n in buffers]
    if lost:
        raise MetaDeviceError(
            f"{type(model).__name__} was built on the meta device, which lost the values of "
            f"buffers {lost[:5]}{' ...' if len(lost) > 5 else ''}: their constructor computed "
            f"them and hyperinit cannot rebuild them exactly. {_HOW_TO_BUILD}"
        )
    if no_reset:
        raise MetaDeviceError(
            f"{type(model).__name__} was built on the meta device and parameters "
            f"{no_reset[:5]}{' ...' if len(no_reset) > 5 else ''} are not predicted (head, "
            "excluded or not a predicted role) and their module has no reset_parameters() to "
            f"give them their default init. Pass predict_head=True if they are the head. "
            f"{_HOW_TO_BUILD}"
        )
    return plan


def allocate_meta(model: nn.Module, plan: MetaPlan, device: torch.device) -> None:
    """Give every meta tensor of ``model`` real storage on ``device`` and rebuild what ``plan``
    lists; tied parameters stay tied. The predictions are written afterwards."""
    fresh: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for table in (module._parameters, module._buffers):
            for name, t in table.items():
                if t is None or not t.is_meta:
                    continue
                if id(t) not in fresh:
                    empty = torch.empty_like(t, device=device)
                    if isinstance(t, nn.Parameter):
                        empty = nn.Parameter(empty, requires_grad=t.requires_grad)
                    fresh[id(t)] = empty
                table[name] = fresh[id(t)]
    with torch.no_grad():
        for module in plan.reset_parameters:
            module.reset_parameters()
        for module in plan.reset_running_stats:
            module.reset_running_stats()
