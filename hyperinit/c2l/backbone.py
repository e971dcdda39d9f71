"""The networks C2L trains: a feature backbone, its projection head, and checks on the backbone."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hyperinit.errors import C2LConfigError

__all__ = [
    "HEAD_NAMES",
    "Encoder",
    "TwoViewStudent",
    "feature_width",
    "first_conv_channels",
    "remove_head",
    "strip_head",
]

#: attribute names of classifier heads, replaced by :func:`strip_head` and left at their init
#: by :func:`~hyperinit.c2l.load_backbone`
HEAD_NAMES = ("fc", "classifier", "heads", "head", "last_linear")


def remove_head(model: nn.Module) -> bool:
    """Replace a classifier head in place; whether the model had one.

    timm models: ``reset_classifier(0)``. Others (torchvision, user models): the first of
    ``fc``, ``classifier``, ``heads``, ``head``, ``last_linear`` becomes ``nn.Identity``, so
    the state dict keeps the backbone's key names.
    """
    if hasattr(model, "reset_classifier") and hasattr(model, "get_classifier"):
        model.reset_classifier(0)
        return True
    for name in HEAD_NAMES:
        if isinstance(getattr(model, name, None), nn.Module):
            setattr(model, name, nn.Identity())
            return True
    return False


def strip_head(model: nn.Module) -> nn.Module:
    """Turn a classifier into a feature extractor (in place; returns it), as
    :func:`remove_head`; a model without a known head is refused."""
    if remove_head(model):
        return model
    raise C2LConfigError(
        f"{type(model).__name__} has no head named {', '.join(HEAD_NAMES)}; remove its "
        "classifier by hand so that it returns a (batch, features) tensor."
    )


def first_conv_channels(model: nn.Module) -> int | None:
    """Input channels of the model's first convolution (``None`` without one)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Conv1d | nn.Conv3d):
            return m.in_channels
    return None


def feature_width(backbone: nn.Module, in_chans: int, image_size: int) -> int:
    """Width F of the backbone's (B, F) features, from a dry forward of two zero images."""
    was_training = backbone.training
    try:
        p = next(iter(backbone.parameters()), None)
        dev = p.device if p is not None else torch.device("cpu")
        x = torch.zeros(2, in_chans, image_size, image_size, device=dev)
        with torch.no_grad():
            out = backbone.eval()(x)
    except Exception as e:
        raise C2LConfigError(
            f"dry forward of {type(backbone).__name__} on a (2, {in_chans}, {image_size}, "
            f"{image_size}) input failed: {e}. Set in_chans / image_size to fit the model."
        ) from e
    finally:
        backbone.train(was_training)
    if not isinstance(out, Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise C2LConfigError(
            f"the backbone must return a (batch, features) tensor; {type(backbone).__name__} "
            f"returned {shape}. Use timm.create_model(..., num_classes=0), "
            "hyperinit.c2l.strip_head(model), or add global pooling and flatten."
        )
    return int(out.shape[1])


class Encoder(nn.Module):
    """Backbone followed by the linear projection head (the official 128-d head)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


class TwoViewStudent(nn.Module):
    """Both student forwards in one call, so DDP sees one forward per backward."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, xa: Tensor, xm: Tensor) -> tuple[Tensor, Tensor]:
        return self.encoder(xa), self.encoder(xm)
