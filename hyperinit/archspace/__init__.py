"""Seeded random architectures to train and evaluate the hypernetwork on (seed section 2).

Every architecture is a :class:`Backbone`: an ``nn.Module`` taking ``(B, in_chans, H, W)`` images
and returning ``(B, feature_dim)`` features for a task head. Families follow the seed's design
space: VGG-like, ResNet (basic / bottleneck blocks), MobileNet (depthwise, inverted residual),
RegNet-like (grouped bottlenecks), DenseNet-like (concatenation), ConvNeXt-like and a small ViT,
each with random depth, width, kernel, stride, stem, norm and activation; plus real timm and
torchvision models built at random widths and depths.

``sample_spec(seed)`` is a pure function of the seed. :data:`HELD_OUT_SEEDS` and
:data:`HELD_OUT_MODELS` are never returned by :func:`training_spec` and are used for evaluation.

Modules: :mod:`.spec` (families, held-out set, :class:`ArchSpec`), :mod:`.blocks` (layers and
:class:`Backbone`), :mod:`.builders` (:func:`build`), :mod:`.sampling` (:func:`sample_spec`).
"""

from __future__ import annotations

from hyperinit.archspace.blocks import Backbone
from hyperinit.archspace.builders import build
from hyperinit.archspace.sampling import held_out_specs, sample_spec, training_spec
from hyperinit.archspace.spec import FAMILIES, HELD_OUT_MODELS, HELD_OUT_SEEDS, ArchSpec
from hyperinit.errors import ArchSpaceError

__all__ = [
    "FAMILIES",
    "HELD_OUT_MODELS",
    "HELD_OUT_SEEDS",
    "ArchSpaceError",
    "ArchSpec",
    "Backbone",
    "build",
    "held_out_specs",
    "sample_spec",
    "training_spec",
]
