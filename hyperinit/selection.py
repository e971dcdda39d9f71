"""Which parameters `initialize` leaves alone: the prediction head and user exclusions, and
the decoder patterns that give the seed's encoder-only prediction for U-Nets."""

from __future__ import annotations

import re
from collections.abc import Iterable

from torch import nn

from hyperinit.errors import HyperInitError
from hyperinit.graph.archgraph import ArchGraph

__all__ = ["decoder_patterns", "excluded_parameters", "head_parameters"]

#: ``exclude=`` patterns of the decoder (upsampling path) of MONAI's segmentation networks,
#: by class name; module names or regular expressions as :func:`excluded_parameters` takes.
MONAI_DECODERS: dict[str, tuple[str, ...]] = {
    # UNet nests Sequential(down, SkipConnection(Sequential(...)), up): the ups are the ".2"s
    "UNet": (r"model(\.1\.submodule)*\.2\..*",),
    # AttentionUnet nests AttentionLayer(attention, upconv, merge, submodule=Sequential(...))
    "AttentionUnet": (r"model\.1(\.submodule\.1)*\.(attention|upconv|merge)\..*",),
    "BasicUNet": (r"upcat_\d+\..*",),
    "BasicUNetPlusPlus": (r"upcat_\d+_\d+\..*",),
    "SegResNet": ("up_layers", "up_samples", "conv_final"),
    "DynUNet": ("upsamples",),
    "UNETR": (r"decoder\d+\..*",),
    "SwinUNETR": (r"decoder\d+\..*",),
}


def head_parameters(model: nn.Module, graph: ArchGraph) -> set[str]:
    """Parameter names of the model's prediction head.

    timm models say which module is the classifier (``get_classifier()``); for any other model
    the head is the set of conv / linear / attention layers that reach an output through
    parameter-free, single-path ops (activations, pooling, norms, interpolation), e.g.
    ``fc`` in a ResNet, ``classifier.4`` in an FCN, both auxiliary classifiers of GoogLeNet,
    the final 1x1 conv of an smp ``SegmentationHead`` and of MONAI's U-Nets. Where outputs
    merge, MONAI's ``UNet`` with residual units and ``DynUNet`` with deep supervision are
    known by name (see ``_monai_head``).
    """
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        try:
            classifier = get_classifier()
        except Exception:
            classifier = None
        if isinstance(classifier, nn.Module):
            ids = {id(p) for p in classifier.parameters()}
            return {n for n, p in model.named_parameters() if id(p) in ids}
    names: set[str] = set()
    for index in graph.output_layers():
        names.update(graph.nodes[index].params)
    return names or _monai_head(model)


def _is_monai(model: nn.Module, name: str) -> bool:
    classes = type(model).__mro__
    return any(c.__module__.startswith("monai.") and c.__name__ == name for c in classes)


def _monai_head(model: nn.Module) -> set[str]:
    """Heads of MONAI networks whose outputs merge, which the path rule cannot find:
    ``UNet`` with residual units ends in ``conv(x) + x`` (the top residual unit; its last
    convolution maps to the classes), ``DynUNet`` with deep supervision stacks the outputs of
    ``output_block`` and ``deep_supervision_heads``."""
    if _is_monai(model, "DynUNet"):
        return {
            n
            for n, _ in model.named_parameters()
            if n.startswith(("output_block.", "deep_supervision_heads."))
        }
    if not _is_monai(model, "UNet") or not isinstance(getattr(model, "model", None), nn.Sequential):
        return set()
    top = len(model.model) - 1
    convs = [
        (n, m)
        for n, m in model.model[top].named_modules()
        if isinstance(m, nn.modules.conv._ConvNd)
    ]
    if not convs:
        return set()
    name, conv = convs[-1]
    return {f"model.{top}.{name}.{p}" for p, _ in conv.named_parameters()}


def excluded_parameters(names: Iterable[str], patterns: str | Iterable[str] | None) -> set[str]:
    """Names matched by ``patterns``: a parameter name, a module name (its parameters), or a
    regular expression matched in full against the parameter name."""
    if patterns is None:
        return set()
    if isinstance(patterns, str):
        patterns = [patterns]
    pats = list(patterns)
    compiled = []
    for p in pats:
        try:
            compiled.append(re.compile(p))
        except re.error:
            compiled.append(None)
    out = set()
    for name in names:
        for pat, rx in zip(pats, compiled):
            if name == pat or name.startswith(pat + ".") or (rx is not None and rx.fullmatch(name)):
                out.add(name)
                break
    return out


def decoder_patterns(model: nn.Module) -> list[str]:
    """``exclude=`` patterns that keep a segmentation model's decoder at its own init, so that
    :func:`hyperinit.initialize` predicts only the encoder, as the seed paper does for U-Nets.

    Knows segmentation_models_pytorch models (``decoder``), the MONAI U-Nets in
    :data:`MONAI_DECODERS` and any model with a ``decoder`` submodule. By default
    ``initialize`` predicts the decoder too; pass ``exclude=decoder_patterns(model)`` for the
    seed's behaviour. The segmentation head is kept either way unless ``predict_head=True``.
    """
    for name, patterns in MONAI_DECODERS.items():
        if _is_monai(model, name):
            return list(patterns)
    if isinstance(getattr(model, "decoder", None), nn.Module):
        return ["decoder"]
    raise HyperInitError(
        f"hyperinit does not know the decoder of {type(model).__name__}; pass the module names "
        "of its upsampling path yourself, e.g. initialize(model, exclude=['up1', 'up2']) (see "
        "model.named_children())."
    )
