"""`trace(model, example_input)`: run one forward pass and record it as an :class:`ArchGraph`.

The forward pass is run in the cheapest way that works, leaving the model untouched:

1. on the real device with a **batch of zero** examples: every kernel runs its shape logic but no
   arithmetic (ResNet-50 traces in a few milliseconds);
2. if the model rejects empty batches (``x.view(0, -1)``...), on the **meta** device;
3. if that fails too, or if a cheap pass read activation values into Python (``bool(x.mean() >
   0)``, ``.item()``, ``.tolist()``, ``x[mask]``...: data-dependent control flow or shapes, whose
   answer on an empty or meta tensor is not the example input's), a real forward pass on the
   example input. The graph's ``traced_as`` says which pass was used and ``meta["trace_note"]``
   why a cheaper one was not.

Parameters and buffers are restored to the same objects and buffer values afterwards, so
batch-norm running statistics are never updated, and the global random state is restored too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import is_lazy
from torch.utils._pytree import tree_flatten, tree_map

from hyperinit.errors import ExampleInputError, TraceError
from hyperinit.graph.archgraph import ArchGraph
from hyperinit.graph.recorder import DataDependentTrace, Node, Recorder, module_context

__all__ = ["default_example_input", "trace"]

log = logging.getLogger(__name__)

_DEFAULT_SIZE = {1: (1024,), 2: (224, 224), 3: (64, 64, 64)}


def _first_conv(model: nn.Module) -> nn.modules.conv._ConvNd | None:
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return m
    return None


def default_example_input(model: nn.Module, batch_size: int = 2) -> torch.Tensor:
    """The example input used when none is given.

    Rule: channels from ``model.in_chans`` (timm) or the first convolution's ``in_channels``;
    spatial size from ``model.patch_embed.img_size`` (timm ViTs), the patch grid of MONAI's
    ViT and UNETR (their position embeddings fix the size), ``model.image_size``
    (torchvision ViTs), timm's ``pretrained_cfg["input_size"]``, else 224 px (1024 samples for
    1-D, 64^3 voxels for 3-D convolutions); if tracing fails at 224 px, :func:`trace` retries
    once at 299 px (Inception-v3 and relatives). A model with neither convolutions nor a timm
    ``pretrained_cfg`` gets a ``(batch, in_features)`` input for its first ``nn.Linear``. The
    tensor is a fixed standard normal sample (the global RNG is not used) on the model's device
    and dtype.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    cfg = getattr(model, "pretrained_cfg", None) or {}
    cfg_size = cfg.get("input_size") if isinstance(cfg, dict) else None
    conv = _first_conv(model)
    if conv is None and not (cfg_size and len(cfg_size) >= 2):
        linear = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
        if linear is None:
            raise ExampleInputError(
                f"cannot infer an example input for {type(model).__name__}: it has no "
                "convolution or linear layer to read the input shape from. Pass "
                "example_input=torch.randn(...) with the shape its forward() expects."
            )
        return _sample((batch_size, linear.in_features), device, dtype)
    spatial_dims = conv.weight.dim() - 2 if conv is not None else len(cfg_size) - 1
    in_chans = getattr(model, "in_chans", None)
    if isinstance(in_chans, int):
        channels = in_chans
    else:
        channels = conv.in_channels if conv is not None else int(cfg_size[0])
    size: tuple[int, ...] | None = None
    patch_embed = getattr(model, "patch_embed", None)
    img_size = getattr(patch_embed, "img_size", None)
    if img_size is not None:
        size = tuple(img_size) if isinstance(img_size, (tuple, list)) else (img_size,) * 2
    elif (grid := _patch_grid_size(model, spatial_dims)) is not None:
        size = grid
    elif isinstance(getattr(model, "image_size", None), int):
        size = (model.image_size,) * spatial_dims  # type: ignore[union-attr]
    elif cfg_size is not None and len(cfg_size) == spatial_dims + 1:
        size = tuple(cfg_size[1:])
    if size is None or len(size) != spatial_dims:
        size = _DEFAULT_SIZE.get(spatial_dims, (224,) * spatial_dims)
    return _sample((batch_size, channels, *size), device, dtype)


def _patch_grid_size(model: nn.Module, spatial_dims: int) -> tuple[int, ...] | None:
    """The input size a patch-embedding transformer with fixed position embeddings needs:
    MONAI's UNETR (``feat_size x patch_size``) and ViT-like networks whose
    ``PatchEmbeddingBlock`` has ``n_patches`` and a convolutional ``patch_embeddings``."""
    feat, patch = getattr(model, "feat_size", None), getattr(model, "patch_size", None)
    if (
        isinstance(feat, tuple)
        and isinstance(patch, tuple)
        and len(feat) == len(patch) == spatial_dims
    ):
        return tuple(int(f) * int(p) for f, p in zip(feat, patch))
    for m in model.modules():
        n, conv = getattr(m, "n_patches", None), getattr(m, "patch_embeddings", None)
        if n is not None and isinstance(conv, nn.modules.conv._ConvNd):
            n = int(n)  # MONAI computes it with numpy
            kernel = tuple(conv.kernel_size)
            side = round(n ** (1 / len(kernel)))
            if side ** len(kernel) == n and len(kernel) == spatial_dims:
                return tuple(side * k for k in kernel)
            return None
    return None


def _sample(shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A standard normal sample from a private generator: the global RNG is not touched."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    return x.to(device=device, dtype=dtype)


def _to_meta(x: Any) -> Any:
    return torch.empty_like(x, device="meta") if isinstance(x, torch.Tensor) else x


def _empty_batch(x: Any) -> Any:
    return x[:0] if isinstance(x, torch.Tensor) and x.dim() > 0 else x


def split_input(example_input: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The rule for example inputs: a dict is keyword arguments, a tuple or list positional
    arguments, anything else the one positional argument. A forward that takes one dict gets it
    as ``example_input=(batch,)``."""
    if isinstance(example_input, dict):
        return (), dict(example_input)
    if isinstance(example_input, (tuple, list)):
        return tuple(example_input), {}
    return (example_input,), {}


@contextmanager
def _preserved_state(model: nn.Module, to_meta: bool) -> Iterator[dict[int, torch.Tensor]]:
    """Run a forward pass without leaving a trace on the model.

    Every module's own parameters and buffers (shared modules visited once) are restored to the
    very same objects afterwards, and buffer values (batch-norm statistics) are copied back. With
    ``to_meta`` the module holds meta copies during the pass. Yields ``{id(tensor the forward
    will see): id(original parameter)}``. (``torch.func.functional_call`` is not used: it fails
    to restore parameters of modules registered under two names.)
    """
    slots: list[tuple[dict[str, Any], str, Any]] = []
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    seen: dict[int, torch.Tensor] = {}
    alias: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for table in (module._parameters, module._buffers):
            for name, tensor in table.items():
                if tensor is None:
                    continue
                slots.append((table, name, tensor))
                if to_meta:
                    if id(tensor) not in seen:
                        seen[id(tensor)] = _to_meta(tensor)
                    alias[id(seen[id(tensor)])] = tensor
                elif table is module._buffers and id(tensor) not in seen:
                    seen[id(tensor)] = tensor
                    saved.append((tensor, tensor.clone()))
    try:
        if to_meta:
            for table, name, tensor in slots:
                table[name] = seen[id(tensor)]
        yield {k: v for k, v in alias.items()}
    finally:
        for table, name, tensor in slots:
            table[name] = tensor
        with torch.no_grad():
            for tensor, copy in saved:
                tensor.copy_(copy)


def _run(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    to_meta: bool,
    strict_data: bool = False,
) -> tuple[Recorder, list[int]]:
    params = dict(model.named_parameters())
    shapes = {k: tuple(v.shape) for k, v in params.items()}
    by_id = {id(v): k for k, v in params.items()}
    with _preserved_state(model, to_meta) as alias:
        names = {k: by_id[id(v)] for k, v in alias.items() if id(v) in by_id} if to_meta else by_id
        rec = Recorder(names, shapes, strict_data=strict_data)
        for i, leaf in enumerate(tree_flatten((args, kwargs))[0]):
            if isinstance(leaf, torch.Tensor) and leaf.is_floating_point():
                rec.add_input(leaf, "input" if i == 0 else f"input{i}")
        with torch.no_grad(), module_context(model, rec.module_stack), rec:
            out = model(*args, **kwargs)
        if rec.data_read is not None:  # the model caught our exception and went on
            raise DataDependentTrace(rec.data_read)
        return rec, rec.output_producers(out)


def _attempts(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[tuple[str, Callable[[], tuple[Recorder, list[int]]]]]:
    def batch0() -> tuple[Recorder, list[int]]:
        a, kw = tree_map(_empty_batch, (args, kwargs))
        return _run(model, a, kw, to_meta=False, strict_data=True)

    def meta() -> tuple[Recorder, list[int]]:
        a, kw = tree_map(_to_meta, (args, kwargs))
        return _run(model, a, kw, to_meta=True, strict_data=True)

    def real() -> tuple[Recorder, list[int]]:
        return _run(model, args, kwargs, to_meta=False)

    return [("batch0", batch0), ("meta", meta), ("real", real)]


def _diagnose(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], error: BaseException
) -> str:
    if kwargs and not args and isinstance(error, TypeError):
        return (
            f"a dict example_input is passed as keyword arguments, model(**example_input), and "
            f"the forward pass rejected that: {error}. If forward() takes one dict, pass it "
            "inside a tuple: example_input=(batch,) (a tuple is positional arguments, a dict "
            "keyword arguments)."
        )
    conv = _first_conv(model)
    x = args[0] if args else None
    if conv is not None and isinstance(x, torch.Tensor):
        if x.dim() != conv.weight.dim():
            return (
                f"the example input has shape {tuple(x.shape)} ({x.dim()} dims) but the model's "
                f"first convolution expects {conv.weight.dim()}-dim input (batch, channels, "
                "spatial...). Pass example_input with that layout."
            )
        if x.shape[1] != conv.in_channels:
            return (
                f"the example input has {x.shape[1]} channels but the model's first convolution "
                f"expects {conv.in_channels}. Pass an example_input of shape "
                f"(B, {conv.in_channels}, ...), or build the model for {x.shape[1]}-channel "
                f"input (timm: in_chans={x.shape[1]})."
            )
    return (
        f"the forward pass failed on the example input: {type(error).__name__}: {error}. "
        "Check that model(example_input) runs, and pass example_input= with the shape and type "
        "the model expects."
    )


def trace(
    model: nn.Module,
    example_input: Any = None,
    *,
    s_max: int | None = None,
) -> ArchGraph:
    """Trace ``model`` into an :class:`ArchGraph` by recording one forward pass.

    Args:
        model: any ``nn.Module`` whose ``forward`` runs on ``example_input``; left unchanged.
        example_input: a tensor, a tuple of positional tensors or a dict of keyword tensors.
            Defaults to :func:`default_example_input`.
        s_max: longest shortest path used for the GNN's shortest-path messages (default 50).

    Raises:
        TraceError: the forward pass failed on the example input, or the model has lazy
            modules that were never run.
        ExampleInputError: the example input does not fit the model (channels, dims).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"trace() expects an nn.Module, got {type(model).__name__}")
    if any(is_lazy(p) for p in model.parameters()):
        lazy = [n or "<root>" for n, m in model.named_modules() if isinstance(m, LazyModuleMixin)]
        raise TraceError(
            f"cannot trace {type(model).__name__}: lazy modules {lazy[:5]} have no shapes yet. "
            "Run model(example_input) once to materialise them (hyperinit.initialize does that "
            "for you when given example_input=)."
        )
    if example_input is not None:
        return _trace(model, example_input, s_max)
    first = default_example_input(model)
    try:
        return _trace(model, first, s_max)
    except TraceError:
        if first.dim() != 4 or max(first.shape[2:]) >= _RETRY_SIZE:
            raise
    # models such as Inception-v3 need a larger input than the 224 px default
    return _trace(model, first.new_empty(*first.shape[:2], _RETRY_SIZE, _RETRY_SIZE), s_max)


_RETRY_SIZE = 299


def _trace(model: nn.Module, example_input: Any, s_max: int | None) -> ArchGraph:
    args, kwargs = split_input(example_input)
    device = next((p.device for p in model.parameters()), None)
    if device is not None:
        args, kwargs = tree_map(
            lambda x: x.to(device) if isinstance(x, torch.Tensor) else x, (args, kwargs)
        )
    errors: list[tuple[str, BaseException]] = []
    devices = [device] if device is not None and device.type == "cuda" else []
    result = None
    mode = ""
    note = ""
    for mode, attempt in _attempts(model, args, kwargs):
        if note and mode != "real":
            continue  # a data read makes every cheap pass untrustworthy
        try:
            with torch.random.fork_rng(devices=devices):
                result = attempt()
            break
        except DataDependentTrace as e:
            note = f"the forward pass reads tensor values ({e}), so it ran on the example input"
            log.info("%s: %s", type(model).__name__, note)
        except Exception as e:  # try the next, more expensive way
            log.debug("tracing %s as %s failed: %s", type(model).__name__, mode, e)
            errors.append((mode, e))
    if result is None:
        err = errors[-1][1]
        message = _diagnose(model, args, kwargs, err)
        cls = ExampleInputError if "example input has" in message else TraceError
        raise cls(f"cannot trace {type(model).__name__}: {message}") from err
    rec, producers = result
    if rec.errors:
        log.warning(
            "%s: %d calls could not be recorded (the graph may miss edges): %s",
            type(model).__name__,
            len(rec.errors),
            "; ".join(rec.errors[:3]),
        )
    out = Node(len(rec.nodes), "output", "output", "", producers)
    nodes = [*rec.nodes, out]
    shapes = {k: tuple(v.shape) for k, v in model.named_parameters()}
    unbound = [k for k in shapes if k not in rec.owner]
    first = args[0] if args and isinstance(args[0], torch.Tensor) else None
    graph = ArchGraph(
        nodes=nodes,
        param_shapes=shapes,
        param_owner=dict(rec.owner),
        unbound=unbound,
        input_shapes=[tuple(first.shape)] if first is not None else [],
        traced_as=mode,
        model_name=type(model).__name__,
        meta={"trace_note": note} if note else {},
        **({"s_max": s_max} if s_max is not None else {}),
    )
    if unbound:
        log.debug(
            "%s: %d parameters not consumed by the traced forward pass: %s",
            graph.model_name,
            len(unbound),
            unbound[:10],
        )
    return graph
