"""Create timm, torchvision, MONAI and segmentation_models_pytorch models from ``source:name``
specs, randomly initialised, with any input channels."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from hyperinit.errors import HyperInitError
from hyperinit.init_report import InitReport

__all__ = ["create_model", "monai_model_names", "set_input_channels"]

#: Sources ``create_model`` understands, as written in a spec.
SOURCES = ("timm", "torchvision", "monai", "smp")


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


def _import(module: str, extra: str = "ecosystem") -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        raise HyperInitError(
            f"{module.split('.')[0]} is not installed; pip install 'hyperinit[{extra}]' (or the "
            f"package itself) to build {module.split('.')[0]} models."
        ) from e


def _build_timm(
    name: str, in_chans: int, num_classes: int | None, kwargs: dict[str, Any]
) -> nn.Module:
    import timm

    kwargs = {"in_chans": in_chans, **kwargs}
    if num_classes is not None:
        kwargs.setdefault("num_classes", num_classes)
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except RuntimeError as e:
        if "Unknown model" not in str(e):
            raise
        raise HyperInitError(
            f"timm has no model {name!r}; list them with timm.list_models('*{name[:6]}*')."
        ) from e


def _build_torchvision(
    name: str, in_chans: int, num_classes: int | None, kwargs: dict[str, Any]
) -> nn.Module:
    import torchvision

    if name not in torchvision.models.list_models():
        raise HyperInitError(
            f"torchvision has no model {name!r}; see torchvision.models.list_models()."
        )
    kwargs = {"weights": None, **kwargs}
    if num_classes is not None:
        kwargs.setdefault("num_classes", num_classes)
    if name in ("googlenet", "inception_v3"):
        kwargs.setdefault("init_weights", False)
    if name in torchvision.models.list_models(module=torchvision.models.segmentation):
        kwargs.setdefault("weights_backbone", None)
    model = torchvision.models.get_model(name, **kwargs)
    return set_input_channels(model, in_chans) if in_chans != 3 else model


def monai_model_names() -> list[str]:
    """The networks of ``monai.networks.nets`` (``nn.Module`` classes under their own names,
    not MONAI's spelling aliases such as ``Unet``), sorted."""
    nets = _import("monai.networks.nets")
    return sorted(
        n
        for n in dir(nets)
        if not n.startswith("_")
        and inspect.isclass(getattr(nets, n))
        and issubclass(getattr(nets, n), nn.Module)
        and getattr(nets, n).__name__ == n
    )


def _accepted_arguments(builder: Callable[..., Any], nets: Any) -> set[str]:
    """Keyword names a MONAI class or factory accepts, following ``**kwargs`` into base
    classes (``SEResNet50`` -> ``SENet``) and into the class a factory returns (``resnet18``
    -> ``ResNet``)."""

    def inits(cls: type) -> list[Any]:
        return [c.__init__ for c in cls.__mro__ if c.__init__ is not object.__init__]

    names: set[str] = set()
    if inspect.isclass(builder):
        chain = inits(builder)
    else:
        chain = [builder]
        ret = inspect.signature(builder).return_annotation
        target = getattr(nets, ret, None) if isinstance(ret, str) else ret
        if inspect.isclass(target):
            chain += inits(target)
    for fn in chain:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            break
        names.update(p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names - {"self"}


def _build_monai(
    name: str, in_chans: int, num_classes: int | None, kwargs: dict[str, Any]
) -> nn.Module:
    nets = _import("monai.networks.nets")
    builder = getattr(nets, name, None) if not name.startswith("_") else None
    if builder is None or not callable(builder):
        valid = monai_model_names()
        lower = {v.lower(): v for v in valid}
        close = [lower[c] for c in difflib.get_close_matches(name.lower(), lower, n=3, cutoff=0.6)]
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise HyperInitError(
            f"monai.networks.nets has no network {name!r}.{hint} Valid names: {', '.join(valid)}."
        )
    accepted = _accepted_arguments(builder, nets)
    kwargs = dict(kwargs)
    for key in ("in_channels", "n_input_channels"):
        if key in accepted:
            kwargs.setdefault(key, in_chans)
            break
    if num_classes is not None:
        for key in ("out_channels", "num_classes"):
            if key in accepted:
                kwargs.setdefault(key, num_classes)
                break
    if "pretrained" in accepted:
        kwargs.setdefault("pretrained", False)  # EfficientNetBN downloads by default
    try:
        return builder(**kwargs)
    except (TypeError, ValueError, AssertionError) as e:
        raise HyperInitError(
            f"monai.networks.nets.{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) "
            f"failed: {e}. Pass its arguments with model_kwargs= (hyperinit init "
            "--model-kwargs '{\"spatial_dims\": 2, ...}'); see the MONAI documentation of "
            f"{name}."
        ) from e


def _build_smp(
    spec: str, in_chans: int, num_classes: int | None, kwargs: dict[str, Any]
) -> nn.Module:
    smp = _import("segmentation_models_pytorch")
    arch, sep, encoder = spec.partition(":")
    if not sep or not arch or not encoder:
        raise HyperInitError(
            f"smp models are written smp:ARCH:ENCODER (e.g. smp:Unet:resnet18 or "
            f"smp:FPN:tu-mobilenetv3_small_100), got smp:{spec}."
        )
    kwargs = {
        "encoder_name": encoder,
        "encoder_weights": None,
        "in_channels": in_chans,
        "classes": num_classes if num_classes is not None else 1,
        **kwargs,
    }
    try:
        return smp.create_model(arch, **kwargs)
    except KeyError as e:
        raise HyperInitError(
            f"segmentation_models_pytorch cannot build {arch!r} with encoder {encoder!r}: "
            f"{e.args[0] if e.args else e}. Encoders: "
            "segmentation_models_pytorch.encoders.get_encoder_names(), or tu-NAME for any timm "
            "model."
        ) from e
    except RuntimeError as e:
        if "Unknown model" not in str(e):
            raise
        raise HyperInitError(
            f"timm has no model {encoder[3:]!r} for the smp encoder {encoder!r}; list them with "
            f"timm.list_models('*{encoder[3:9]}*')."
        ) from e
    except (TypeError, ValueError) as e:
        raise HyperInitError(
            f"segmentation_models_pytorch.create_model({arch!r}, "
            f"{', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: {e}. Fix the "
            "arguments passed with model_kwargs= (--model-kwargs); see the smp documentation of "
            f"{arch}."
        ) from e


_BUILDERS: dict[str, Callable[[str, int, int | None, dict[str, Any]], nn.Module]] = {
    "timm": _build_timm,
    "torchvision": _build_torchvision,
    "tv": _build_torchvision,
    "monai": _build_monai,
    "smp": _build_smp,
}


def create_model(
    spec: str,
    *,
    in_chans: int = 3,
    num_classes: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
    modality: str | None = None,
    return_report: bool = False,
    **init_kwargs: Any,
) -> nn.Module | tuple[nn.Module, InitReport]:
    """Build a model (no pretrained download) from a spec, with default init or, given
    ``modality``, with hyperinit's predicted init.

    Specs: ``timm:NAME`` (a bare name means timm), ``torchvision:NAME``, ``monai:NAME`` (any
    network of ``monai.networks.nets``) and ``smp:ARCH:ENCODER`` (segmentation_models_pytorch,
    e.g. ``smp:Unet:resnet18``, ``smp:FPN:tu-mobilenetv3_small_100``). ``in_chans`` and
    ``num_classes`` map to each library's names (MONAI: ``in_channels`` / ``n_input_channels``
    and ``out_channels`` / ``num_classes``; smp: ``in_channels`` and ``classes``); an smp model
    without ``num_classes`` gets one output class. ``model_kwargs`` go to the constructor and
    win over those, e.g. ``{"spatial_dims": 3, "channels": [8, 16, 32], "strides": [2, 2]}``
    for ``monai:UNet``. MONAI and smp need ``pip install 'hyperinit[ecosystem]'``.

    With ``modality`` (e.g. ``"ct"``), the model is built without paying for its default init
    (see :func:`hyperinit.deferred.deferred_init`) and :func:`hyperinit.initialize` predicts
    its weights; only the parameters that are not predicted (the head, ...) get their default
    init. ``init_kwargs`` (``seed``, ``predict_head``, ``exclude``, ``example_input``,
    ``checkpoint``, ``device``) go to :func:`~hyperinit.initialize`. With ``return_report``
    the :class:`~hyperinit.InitReport` is returned too: ``model, report = create_model(...)``.
    """
    source, _, name = spec.partition(":") if ":" in spec else ("timm", "", spec)
    builder = _BUILDERS.get(source.lower())
    if builder is None:
        raise HyperInitError(
            f"unknown model source {source!r} in {spec!r}: use timm:NAME, torchvision:NAME, "
            "monai:NAME or smp:ARCH:ENCODER"
        )
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise HyperInitError(
            f"model_kwargs must be a dict of constructor arguments, got "
            f"{type(model_kwargs).__name__}"
        )
    kwargs = dict(model_kwargs or {})
    if modality is None:
        if init_kwargs or return_report:
            raise TypeError(
                f"create_model() got initialize() arguments {sorted(init_kwargs)} or "
                "return_report without modality=; pass modality= to initialise with hyperinit"
            )
        return builder(name, in_chans, num_classes, kwargs)
    from hyperinit.deferred import deferred_init
    from hyperinit.initialize import initialize_deferred

    with deferred_init() as deferred:
        model = builder(name, in_chans, num_classes, kwargs)
    report = initialize_deferred(model, modality, deferred, **init_kwargs)
    return (model, report) if return_report else model
