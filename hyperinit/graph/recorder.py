"""Record the data flow of one forward pass as a list of op nodes.

A :class:`~torch.overrides.TorchFunctionMode` sees every torch function, tensor method and
operator the model calls, with the real (or meta) tensors, so Python control flow, reused layers,
``torch.no_grad()`` and any input size just work. Each tensor seen is given a provenance: the
nodes that produced it (an activation), the parameters it was computed from only (a
parameter-derived tensor such as a reshaped, standardised or interpolated weight), or none (a
constant). A call with activation inputs becomes a node; the parameters it consumes are bound to
it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import (
    register_module_forward_hook,
    register_module_forward_pre_hook,
)
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from hyperinit.graph.ops import TRANSPARENT, classify_call, func_name

__all__ = ["DataDependentTrace", "Node", "Recorder", "module_context"]

_PARAM_NODE_OPS = frozenset(
    {"linear", "conv1d", "conv2d", "conv3d", "embedding", "multi_head_attention_forward"}
)


#: Calls that read an activation's values into Python (control flow) or give it a shape that
#: depends on its values. On an empty batch or the meta device their answer is not the one the
#: example input would give, so a cheap trace that meets one is not to be trusted.
_DATA_READS = frozenset(
    {
        torch.Tensor.__bool__,
        torch.Tensor.__int__,
        torch.Tensor.__float__,
        torch.Tensor.__index__,
        torch.Tensor.item,
        torch.Tensor.tolist,
        torch.Tensor.numpy,
        torch.Tensor.nonzero,
        torch.Tensor.unique,
        torch.Tensor.masked_select,
        torch.nonzero,
        torch.argwhere,
        torch.unique,
        torch.unique_consecutive,
        torch.masked_select,
    }
)


class DataDependentTrace(Exception):
    """Raised inside a cheap (empty-batch or meta) trace that read activation values."""


@dataclass
class Node:
    """One op of the traced graph."""

    index: int
    op: str
    func: str
    module: str
    inputs: list[int] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    shared_params: list[str] = field(default_factory=list)
    param_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """A readable name: module path and op type."""
        return f"{self.module}:{self.op}" if self.module else self.op


class Recorder(TorchFunctionMode):
    """Torch function mode that turns the calls of a forward pass into :class:`Node` objects."""

    def __init__(
        self,
        param_names: dict[int, str],
        param_shapes: dict[str, tuple[int, ...]],
        *,
        strict_data: bool = False,
    ):
        super().__init__()
        self._strict_data = strict_data
        #: why this pass cannot be trusted: the first read of activation values (strict mode)
        self.data_read: str | None = None
        self._param_names = param_names
        self._param_shapes = param_shapes
        self._act: dict[int, tuple[int, ...]] = {}  # id(tensor) -> producer node indices
        self._derived: dict[int, tuple[str, ...]] = {}  # id(tensor) -> parameter names
        self._alive: list[torch.Tensor] = []  # keeps ids unique during the trace
        self.nodes: list[Node] = []
        self.owner: dict[str, int] = {}
        self.module_stack: list[str] = []
        self.errors: list[str] = []  # calls that could not be recorded

    # -- provenance ---------------------------------------------------------------------------
    def add_input(self, tensor: torch.Tensor, label: str = "input") -> None:
        """Register a model input as an ``input`` node."""
        node = self._new_node("input", label, "", [], tensor)
        self._act[id(tensor)] = (node.index,)
        self._alive.append(tensor)

    def output_producers(self, out: Any) -> list[int]:
        """Producer nodes of the tensors in a (nested) forward output."""
        producers: list[int] = []
        for leaf in tree_flatten(out)[0]:
            if isinstance(leaf, torch.Tensor):
                for p in self._act.get(id(leaf), ()):
                    if p not in producers:
                        producers.append(p)
        return producers

    def _provenance(self, leaves: list[Any]) -> tuple[list[int], list[str]]:
        acts: list[int] = []
        params: list[str] = []
        for leaf in leaves:
            if not isinstance(leaf, torch.Tensor):
                continue
            key = id(leaf)
            name = self._param_names.get(key)
            if name is not None:
                if name not in params:
                    params.append(name)
                continue
            for p in self._derived.get(key, ()):
                if p not in params:
                    params.append(p)
            for a in self._act.get(key, ()):
                if a not in acts:
                    acts.append(a)
        return acts, params

    def _new_node(self, op: str, func: str, module: str, inputs: list[int], out: Any) -> Node:
        out_shape: tuple[int, ...] = ()
        if isinstance(out, torch.Tensor):
            out_shape = tuple(out.shape)
        node = Node(len(self.nodes), op, func, module, inputs, out_shape=out_shape)
        self.nodes.append(node)
        return node

    def _bind(self, node: Node, params: list[str]) -> None:
        for name in params:
            if name in self.owner:
                node.shared_params.append(name)
            else:
                self.owner[name] = node.index
                node.params.append(name)
        shapes = [self._param_shapes[p] for p in params]
        if shapes:
            node.param_shape = max(shapes, key=lambda s: (len(s) > 1, _numel(s)))

    # -- the mode -------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if self._strict_data and self._reads_activation(func, args):
            module = self.module_stack[-1] if self.module_stack else ""
            where = f"module '{module}'" if module else "the model's own forward"
            self.data_read = f"{func_name(func)} on an activation in {where}"
            raise DataDependentTrace(self.data_read)
        out = func(*args, **kwargs)
        try:
            self._record(func, args, kwargs, out)
        except Exception as e:  # recording must never break the user's forward pass
            self.errors.append(f"{func_name(func)}: {type(e).__name__}: {e}")
        return out

    def _reads_activation(self, func: Any, args: tuple) -> bool:
        """Whether ``func`` reads the values of an input-dependent tensor (see ``_DATA_READS``),
        including boolean-mask indexing ``x[mask]`` whose result shape depends on the mask."""
        if not args or not isinstance(args[0], torch.Tensor):
            return False
        if func in _DATA_READS:
            return id(args[0]) in self._act
        if func is torch.Tensor.__getitem__ and len(args) > 1:
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            return any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool and id(i) in self._act
                for i in index
            )
        return False

    def _record(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            outs = [out]
        elif out is None:  # in-place write such as __setitem__
            outs = [args[0]] if args and isinstance(args[0], torch.Tensor) else []
        elif isinstance(out, (tuple, list)):
            outs = []
            _tensor_leaves(out, outs)
        else:
            return  # .size(), .dim(), .shape, dtype and friends: nothing flows on
        if not outs:
            return
        leaves: list[torch.Tensor] = []
        _tensor_leaves(args, leaves)
        if kwargs:
            _tensor_leaves(kwargs, leaves)
        acts, params = self._provenance(leaves)
        if not acts and not params:
            return  # a constant
        name = _cached_name(func)
        if not acts and name not in _PARAM_NODE_OPS:
            self._mark(outs, derived=tuple(params))  # a weight reshaped, standardised, ...
            return
        if name in TRANSPARENT:
            first = args[0] if args else None
            if isinstance(first, torch.Tensor) and (
                id(first) in self._derived or id(first) in self._param_names
            ):
                self._mark(outs, derived=tuple(params))  # e.g. param.expand_as(x)
                return
            if not params:
                self._mark(outs, act=tuple(acts))
                return
            # parameters mixed into activations by a view-like call: keep it as a node
        weight_shape = None
        if params:
            shapes = [self._param_shapes[p] for p in params]
            weight_shape = max(shapes, key=lambda s: (len(s) > 1, _numel(s)))
        op = classify_call(name, args, kwargs, weight_shape, bool(params)) or "generic"
        node = self._call_node(op, name, acts, params, outs[0])
        if op.startswith(("conv", "dwconv", "group_conv")):
            stride = kwargs.get("stride", args[3] if len(args) > 3 else 1)
            groups = kwargs.get("groups", args[6] if len(args) > 6 else 1)
            node.attrs.update(stride=stride, groups=groups, transposed="transpose" in name)
        self._mark(outs, act=(node.index,))

    def _call_node(
        self, op: str, name: str, acts: list[int], params: list[str], out: torch.Tensor
    ) -> Node:
        module = self.module_stack[-1] if self.module_stack else ""
        node = self._new_node(op, name, module, acts, out)
        self._bind(node, params)
        return node

    def _mark(
        self,
        outs: list[torch.Tensor],
        *,
        act: tuple[int, ...] | None = None,
        derived: tuple[str, ...] | None = None,
    ) -> None:
        for t in outs:
            key = id(t)
            self._alive.append(t)
            if act is not None:
                self._act[key] = act
                self._derived.pop(key, None)
            else:
                self._derived[key] = derived or ()
                self._act.pop(key, None)


_NAMES: dict[Any, str] = {}


def _cached_name(func: Any) -> str:
    try:
        return _NAMES[func]
    except KeyError:
        name = _NAMES[func] = func_name(func)
        return name
    except TypeError:  # unhashable callable
        return func_name(func)


def _tensor_leaves(obj: Any, out: list[torch.Tensor]) -> None:
    """Append the tensors in ``obj`` (nested tuples, lists and dicts) to ``out``: the arguments
    and results of torch calls, for which this is ~10x cheaper than a generic pytree flatten."""
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            if isinstance(item, torch.Tensor):
                out.append(item)
            elif isinstance(item, (tuple, list, dict)):
                _tensor_leaves(item, out)
    elif isinstance(obj, dict):
        for item in obj.values():
            _tensor_leaves(item, out)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


@contextmanager
def module_context(model: nn.Module, stack: list[str]) -> Iterator[None]:
    """Keep ``stack[-1]`` equal to the qualified name of the module currently running.

    Two global module hooks for the duration of the pass (one per module would cost more than
    the trace itself on a network of a thousand modules); a module that is not part of
    ``model`` keeps the name of the module that called it.
    """
    names = {id(m): name for name, m in model.named_modules(remove_duplicate=False)}

    def pre(module: nn.Module, _args: Any) -> None:
        name = names.get(id(module))
        stack.append(name if name is not None else (stack[-1] if stack else ""))

    def post(_m: nn.Module, _args: Any, _out: Any) -> None:
        if stack:
            stack.pop()

    handles = [
        register_module_forward_pre_hook(pre),
        register_module_forward_hook(post, always_call=True),
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
