"""Compare two initialisations of one architecture layer by layer: :func:`compare_inits`.

For every convolution and linear layer: the weight's RMS, whether a normalisation follows it
(then the forward pass ignores the weight's scale, but the step size relative to the weight
does not), the relative gradient ``||grad|| / ||weight||`` at step 0 (the effective step size of
SGD per unit learning rate), the effective rank and the share of near-duplicate filters, and the
output's standard deviation at step 0 in train mode and in eval mode (a validation pass before
the first epoch runs on fresh running statistics). For every normalisation layer: the mean of
its weight and bias. Used to find out where a predicted init differs from the architecture's
own default init, and whether that difference can hurt fine-tuning.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from hyperinit.diagnostics import activation_stats
from hyperinit.graph import trace
from hyperinit.graph.ops import op_family

__all__ = [
    "LayerComparison",
    "LayerStats",
    "NormComparison",
    "compare_inits",
    "duplicate_share",
    "effective_rank",
    "layer_stats",
    "layers_followed_by_norm",
]

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclass
class LayerStats:
    """One initialisation of one conv / linear layer."""

    rms: float
    relative_grad: float
    effective_rank: float
    duplicate_share: float
    out_std_train: float
    out_std_eval: float


@dataclass
class LayerComparison:
    """One conv / linear layer under two initialisations ``a`` and ``b``."""

    name: str
    shape: tuple[int, ...]
    norm_after: bool
    depth: float
    a: LayerStats
    b: LayerStats

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class NormComparison:
    """Weight and bias means of one normalisation layer under ``a`` and ``b``."""

    name: str
    weight_mean: tuple[float, float]
    bias_mean: tuple[float, float]
    zero_weight_share: tuple[float, float] = field(default=(0.0, 0.0))


def effective_rank(w: torch.Tensor) -> float:
    """``exp`` of the entropy of the normalised singular values (Roy & Vetterli 2007)."""
    s = torch.linalg.svdvals(w.double())
    p = s / s.sum().clamp_min(1e-12)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def duplicate_share(w: torch.Tensor, threshold: float = 0.9, max_rows: int = 512) -> float:
    """Share of filter pairs whose cosine similarity exceeds ``threshold`` in absolute value."""
    rows = w[:max_rows].double()
    if rows.shape[0] < 2:
        return 0.0
    unit = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = (unit @ unit.t()).abs()
    n = rows.shape[0]
    off = cos[~torch.eye(n, dtype=torch.bool)]
    return float((off > threshold).double().mean())


def layers_followed_by_norm(model: nn.Module, example_input: Any) -> dict[str, bool]:
    """``{conv / linear module name: whether a normalisation consumes its output}``."""
    graph = trace(model, example_input)
    consumers: dict[int, list[int]] = {}
    for node in graph.nodes:
        for i in node.inputs:
            consumers.setdefault(i, []).append(node.index)

    def feeds_norm(index: int) -> bool:  # views and reshapes make no node of their own
        return any(op_family(graph.nodes[c].op) == "norm" for c in consumers.get(index, []))

    out: dict[str, bool] = {}
    for node in graph.nodes:
        if op_family(node.op) not in ("conv", "linear"):
            continue
        for p in node.params:
            module = p.rsplit(".", 1)[0]
            if p.endswith("weight") and module not in out:
                out[module] = feeds_norm(node.index)
    return out


def layer_stats(
    model: nn.Module,
    batch: torch.Tensor,
    loss_fn: Callable[[Any], torch.Tensor],
) -> dict[str, LayerStats]:
    """:class:`LayerStats` of every conv / linear layer of ``model`` on one batch.

    ``loss_fn(output)`` gives the loss whose gradient at step 0 is measured (train mode). The
    model's parameters and buffers are unchanged afterwards; its mode is restored.
    """
    was_training = model.training
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        model.train()
        model.zero_grad(set_to_none=True)
        loss_fn(model(batch)).backward()
        grads = {
            n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None
        }
        model.zero_grad(set_to_none=True)
        model.load_state_dict(saved)  # the batch-norm statistics of that pass
        train = activation_stats(model.train(), batch)
        model.load_state_dict(saved)
        evals = activation_stats(model.eval(), batch)
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
    out: dict[str, LayerStats] = {}
    for name, module in model.named_modules():
        w = getattr(module, "weight", None)
        if not isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) or w is None:
            continue
        flat = w.detach().flatten(1)
        g = grads.get(f"{name}.weight")
        rms = float(flat.pow(2).mean().sqrt())
        out[name] = LayerStats(
            rms=rms,
            relative_grad=float(g.norm() / flat.norm().clamp_min(1e-12)) if g is not None else 0.0,
            effective_rank=effective_rank(flat),
            duplicate_share=duplicate_share(flat),
            out_std_train=train[name].output if name in train else math.nan,
            out_std_eval=evals[name].output if name in evals else math.nan,
        )
    return out


def compare_inits(
    model_a: nn.Module,
    model_b: nn.Module,
    batch: torch.Tensor,
    loss_fn: Callable[[Any], torch.Tensor],
) -> tuple[list[LayerComparison], list[NormComparison]]:
    """Compare two initialisations of the same architecture on one batch.

    Returns the conv / linear layers in execution order (with their relative depth and whether
    a normalisation follows them) and the normalisation layers.
    """
    names_a = [n for n, _ in model_a.named_parameters()]
    if names_a != [n for n, _ in model_b.named_parameters()]:
        raise ValueError("compare_inits() needs two models of the same architecture")
    norm_after = layers_followed_by_norm(model_a, batch)
    a = layer_stats(model_a, batch, loss_fn)
    b = layer_stats(model_b, batch, loss_fn)
    order = [n for n in norm_after if n in a]
    order += [n for n in a if n not in norm_after]
    modules_a = dict(model_a.named_modules())
    layers = [
        LayerComparison(
            name=n,
            shape=tuple(modules_a[n].weight.shape),
            norm_after=norm_after.get(n, False),
            depth=i / max(len(order) - 1, 1),
            a=a[n],
            b=b[n],
        )
        for i, n in enumerate(order)
    ]
    modules_b = dict(model_b.named_modules())
    with torch.no_grad():
        norms = _norm_comparisons(model_a, modules_b)
    return layers, norms


def _norm_comparisons(model_a: nn.Module, modules_b: dict[str, nn.Module]) -> list[NormComparison]:
    norms = []
    for name, m in model_a.named_modules():
        if isinstance(m, _NORMS) and getattr(m, "weight", None) is not None:
            mb = modules_b[name]
            norms.append(
                NormComparison(
                    name=name,
                    weight_mean=(float(m.weight.mean()), float(mb.weight.mean())),
                    bias_mean=(float(m.bias.mean()), float(mb.bias.mean())),
                    zero_weight_share=(
                        float((m.weight == 0).double().mean()),
                        float((mb.weight == 0).double().mean()),
                    ),
                )
            )
    return norms
