"""The op vocabulary: how a torch function call becomes a graph node type.

Every call recorded during tracing is classified into one of three kinds:

* **transparent** calls (views, reshapes, dtype casts, dropout, ``contiguous``...) pass their
  input through without a node, because they change neither values nor information flow in a
  way the hypernetwork needs to see;
* **vocabulary** ops become a node of a named type from :data:`OP_TYPES`, refined by the
  parameters they consume (a 3x3 depthwise convolution is ``dwconv3x3``);
* everything else becomes a node of type ``generic``: never dropped silently.

The vocabulary is versioned (:data:`VOCAB_VERSION`); checkpoints store the list of op names they
were trained with and are remapped by name on load.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "ACTIVATIONS",
    "OP_TYPES",
    "TRANSPARENT",
    "VOCAB_VERSION",
    "classify_call",
    "func_name",
    "op_family",
]

VOCAB_VERSION = 1

_ACTIVATION_TYPES = (
    "relu",
    "relu6",
    "leaky_relu",
    "prelu",
    "gelu",
    "silu",
    "mish",
    "sigmoid",
    "hardsigmoid",
    "hardswish",
    "tanh",
    "elu",
    "softplus",
)

#: Node types, in embedding-table order. Append only (checkpoints remap by name anyway).
OP_TYPES: tuple[str, ...] = (
    "input",
    "output",
    "generic",
    # convolutions
    "conv1x1",
    "conv3x3",
    "conv5x5",
    "conv7x7",
    "conv_kxk",
    "dwconv3x3",
    "dwconv5x5",
    "dwconv7x7",
    "dwconv_kxk",
    "group_conv",
    "conv_transpose",
    "conv1d",
    "conv3d",
    # dense / attention
    "linear",
    "matmul",
    "attention",
    "softmax",
    "embedding",
    "pos_embed",
    "token",
    "layer_scale",
    # normalisation
    "batch_norm",
    "layer_norm",
    "group_norm",
    "instance_norm",
    "rms_norm",
    # activations
    *_ACTIVATION_TYPES,
    # pooling and resampling
    "max_pool",
    "avg_pool",
    "global_avg_pool",
    "global_max_pool",
    "adaptive_pool",
    "interpolate",
    "pad",
    # elementwise and structural
    "add",
    "sub",
    "mul",
    "div",
    "concat",
    "mean",
    "sum",
    "norm",
)

OP_INDEX: Mapping[str, int] = {name: i for i, name in enumerate(OP_TYPES)}

ACTIVATIONS = frozenset(_ACTIVATION_TYPES)

#: Calls that pass data through unchanged in the graph's eyes (no node is made).
TRANSPARENT = frozenset(
    {
        "view",
        "view_as",
        "reshape",
        "reshape_as",
        "flatten",
        "unflatten",
        "permute",
        "transpose",
        "t",
        "contiguous",
        "squeeze",
        "unsqueeze",
        "expand",
        "expand_as",
        "repeat",
        "tile",
        "__getitem__",
        "narrow",
        "select",
        "split",
        "split_with_sizes",
        "chunk",
        "unbind",
        "tensor_split",
        "movedim",
        "moveaxis",
        "swapaxes",
        "swapdims",
        "to",
        "type",
        "type_as",
        "float",
        "double",
        "half",
        "bfloat16",
        "cpu",
        "cuda",
        "clone",
        "detach",
        "requires_grad_",
        "dropout",
        "dropout1d",
        "dropout2d",
        "dropout3d",
        "alpha_dropout",
        "feature_alpha_dropout",
        "identity",
        "__get__",
        "roll",
        "flip",
        "channel_shuffle",
        "pixel_shuffle",
        "pixel_unshuffle",
        "as_strided",
        "masked_fill",
        "__setitem__",
        "fill_",
        "zero_",
        "new_zeros",
        "new_ones",
        "new_empty",
        "new_full",
        "zeros_like",
        "ones_like",
        "empty_like",
        "full_like",
    }
)

_ALIASES: Mapping[str, str] = {
    "relu": "relu",
    "threshold": "relu",
    "relu6": "relu6",
    "hardtanh": "relu6",
    "leaky_relu": "leaky_relu",
    "rrelu": "leaky_relu",
    "prelu": "prelu",
    "gelu": "gelu",
    "silu": "silu",
    "swish": "silu",
    "mish": "mish",
    "sigmoid": "sigmoid",
    "hardsigmoid": "hardsigmoid",
    "hard_sigmoid": "hardsigmoid",
    "hardswish": "hardswish",
    "hard_swish": "hardswish",
    "tanh": "tanh",
    "elu": "elu",
    "selu": "elu",
    "celu": "elu",
    "softplus": "softplus",
    "softmax": "softmax",
    "log_softmax": "softmax",
    "_softmax": "softmax",
    "batch_norm": "batch_norm",
    "layer_norm": "layer_norm",
    "group_norm": "group_norm",
    "instance_norm": "instance_norm",
    "rms_norm": "rms_norm",
    "linear": "linear",
    "addmm": "linear",
    "bilinear": "linear",
    "matmul": "matmul",
    "bmm": "matmul",
    "mm": "matmul",
    "baddbmm": "matmul",
    "einsum": "matmul",
    "__matmul__": "matmul",
    "scaled_dot_product_attention": "attention",
    "multi_head_attention_forward": "attention",
    "embedding": "embedding",
    "max_pool1d": "max_pool",
    "max_pool2d": "max_pool",
    "max_pool3d": "max_pool",
    "max_pool1d_with_indices": "max_pool",
    "max_pool2d_with_indices": "max_pool",
    "max_pool3d_with_indices": "max_pool",
    "_max_pool2d": "max_pool",
    "avg_pool1d": "avg_pool",
    "avg_pool2d": "avg_pool",
    "avg_pool3d": "avg_pool",
    "lp_pool2d": "avg_pool",
    "adaptive_avg_pool1d": "adaptive_pool",
    "adaptive_avg_pool2d": "adaptive_pool",
    "adaptive_avg_pool3d": "adaptive_pool",
    "adaptive_max_pool1d": "adaptive_pool",
    "adaptive_max_pool2d": "adaptive_pool",
    "adaptive_max_pool3d": "adaptive_pool",
    "adaptive_max_pool2d_with_indices": "adaptive_pool",
    "interpolate": "interpolate",
    "upsample": "interpolate",
    "upsample_bilinear": "interpolate",
    "upsample_nearest": "interpolate",
    "grid_sample": "interpolate",
    "pad": "pad",
    "add": "add",
    "__add__": "add",
    "__radd__": "add",
    "__iadd__": "add",
    "sub": "sub",
    "rsub": "sub",
    "__sub__": "sub",
    "__rsub__": "sub",
    "__isub__": "sub",
    "neg": "sub",
    "__neg__": "sub",
    "mul": "mul",
    "__mul__": "mul",
    "__rmul__": "mul",
    "__imul__": "mul",
    "addcmul": "mul",
    "div": "div",
    "true_divide": "div",
    "__truediv__": "div",
    "__rtruediv__": "div",
    "__itruediv__": "div",
    "cat": "concat",
    "concat": "concat",
    "concatenate": "concat",
    "stack": "concat",
    "hstack": "concat",
    "vstack": "concat",
    "mean": "mean",
    "sum": "sum",
    "norm": "norm",
    "normalize": "norm",
}

_CONV = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}

#: Families group node types for the rules that decide how parameters are predicted.
_FAMILY: Mapping[str, str] = {
    **{t: "conv" for t in OP_TYPES if "conv" in t},
    "linear": "linear",
    "attention": "attention",
    "embedding": "embedding",
    "batch_norm": "norm",
    "layer_norm": "norm",
    "group_norm": "norm",
    "instance_norm": "norm",
    "rms_norm": "norm",
    "pos_embed": "add",
    "token": "concat",
    "add": "add",
    "concat": "concat",
    "layer_scale": "mul",
    "mul": "mul",
    "div": "mul",
}


def op_family(op_type: str) -> str:
    """The family of a node type: conv, linear, attention, embedding, norm, add, concat, mul, ..."""
    if op_type in ACTIVATIONS:
        return "activation"
    return _FAMILY.get(op_type, op_type)


def func_name(func: Any) -> str:
    """The canonical name of a torch function, method or operator (``F.relu_`` -> ``relu``)."""
    name = getattr(func, "__name__", None) or type(func).__name__
    if name.startswith("__") and name.endswith("__"):
        return name
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]
    return name.lstrip("_") if name.startswith("_") and name.lstrip("_") in _ALIASES else name


def _conv_type(name: str, weight_shape: Sequence[int] | None, groups: int) -> str:
    if "transpose" in name:
        return "conv_transpose"
    if name == "conv1d":
        return "conv1d"
    if name == "conv3d":
        return "conv3d"
    if weight_shape is None or len(weight_shape) != 4:
        return "conv_kxk"
    _, in_per_group, kh, kw = weight_shape
    k = kh if kh == kw else 0
    if groups > 1 and in_per_group == 1:
        return f"dwconv{k}x{k}" if k in (3, 5, 7) else "dwconv_kxk"
    if groups > 1:
        return "group_conv"
    return f"conv{k}x{k}" if k in (1, 3, 5, 7) else "conv_kxk"


def classify_call(
    name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    weight_shape: Sequence[int] | None,
    has_params: bool,
) -> str | None:
    """Node type for a call, or ``None`` if the call is transparent.

    ``weight_shape`` is the shape of the largest parameter the call consumes (if any).
    """
    if name in TRANSPARENT:
        return None
    if name in _CONV:
        groups = kwargs.get("groups", args[6] if len(args) > 6 else 1)
        return _conv_type(name, weight_shape, int(groups) if isinstance(groups, int) else 1)
    if name in ("adaptive_avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool3d"):
        size = kwargs.get("output_size", args[1] if len(args) > 1 else None)
        if size == 1 or (isinstance(size, (tuple, list)) and all(s == 1 for s in size)):
            return "global_avg_pool"
    if name.startswith("adaptive_max_pool"):
        size = kwargs.get("output_size", args[1] if len(args) > 1 else None)
        if size == 1 or (isinstance(size, (tuple, list)) and all(s == 1 for s in size)):
            return "global_max_pool"
    op = _ALIASES.get(name)
    if op is None:
        return "generic"
    if has_params:  # additive / concatenated / multiplicative learned tensors
        if op == "add":
            return "pos_embed"
        if op == "concat":
            return "token"
        if op == "mul":
            return "layer_scale"
    return op
