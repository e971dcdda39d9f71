"""Create timm and torchvision models from ``source:name`` specs, with any input channels."""

from __future__ import annotations

from torch import nn

from hyperinit.errors import HyperInitError

__all__ = ["create_model", "set_input_channels"]


def set_input_channels(model: nn.Module, in_chans: int) -> nn.Module:
    """Replace the first convolution by one taking ``in_chans`` channels (default init).

    For models without an ``in_chans`` option, e.g. torchvision's, so that grayscale (1) or
    multi-channel inputs work. Returns the model (changed in place).
    """
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels == in_chans:
                    return model
                if child.groups != 1:
                    raise HyperInitError(
                        f"the first convolution of {type(model).__name__} is grouped; cannot "
                        "change its input channels. Adapt the model by hand."
                    )
                new = nn.Conv2d(
                    in_chans,
                    child.out_channels,
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    child.dilation,
                    1,
                    child.bias is not None,
                    child.padding_mode,
                    device=child.weight.device,
                    dtype=child.weight.dtype,
                )
                setattr(parent, name, new)
                return model
    raise HyperInitError(f"{type(model).__name__} has no Conv2d whose input channels to set")


def create_model(spec: str, *, in_chans: int = 3, num_classes: int | None = None) -> nn.Module:
    """Build ``timm:NAME`` or ``torchvision:NAME`` (a bare name means timm), randomly
    initialised (no pretrained download), with ``in_chans`` input channels."""
    source, _, name = spec.partition(":") if ":" in spec else ("timm", "", spec)
    source = source.lower()
    if source == "timm":
        import timm

        kwargs = {"in_chans": in_chans}
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
        try:
            return timm.create_model(name, pretrained=False, **kwargs)
        except RuntimeError as e:
            if "Unknown model" not in str(e):
                raise
            raise HyperInitError(
                f"timm has no model {name!r}; list them with timm.list_models('*{name[:6]}*')."
            ) from e
    if source in ("torchvision", "tv"):
        import torchvision

        available = torchvision.models.list_models()
        if name not in available:
            raise HyperInitError(
                f"torchvision has no model {name!r}; see torchvision.models.list_models()."
            )
        kwargs = {"weights": None}
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
        if name in ("googlenet", "inception_v3"):
            kwargs["init_weights"] = False
        if name in torchvision.models.list_models(module=torchvision.models.segmentation):
            kwargs["weights_backbone"] = None
        model = torchvision.models.get_model(name, **kwargs)
        return set_input_channels(model, in_chans) if in_chans != 3 else model
    raise HyperInitError(
        f"unknown model source {source!r} in {spec!r}: use timm:NAME or torchvision:NAME"
    )
