"""The last two stages of any backbone, for CAMs and multi-scale aggregation.

timm models are read through ``forward_features`` and their ``feature_info``; torchvision and
other models through forward hooks on the modules whose outputs end the last two resolutions
(found by one dry forward). Either way the classifier head is removed, in place.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hyperinit.c2l.backbone import remove_head
from hyperinit.errors import LocalizationError

__all__ = ["StageFeatures"]

logger = logging.getLogger(__name__)


def _without_head(model: nn.Module) -> nn.Module:
    """``model`` with its classifier head removed in place, if it has one."""
    remove_head(model)
    return model


def _keep_output(module: nn.Module, _inputs: tuple, out: object) -> None:
    module._localize_out = out  # type: ignore[assignment]


def _timm_stages(model: nn.Module) -> tuple[str, ...] | None:
    info = getattr(model, "feature_info", None)
    if not info or not hasattr(model, "forward_features"):
        return None
    names = [d["module"] for d in info if isinstance(d, dict) and "module" in d]
    return tuple(names) if len(names) >= 2 else None


class StageFeatures(nn.Module):
    """``forward(x) -> (shallow, deep)``: the penultimate stage's output and the last spatial
    feature map of ``backbone``, both ``(N, D, h, w)``.

    Args:
        backbone: a timm or torchvision model, or any module with a spatial feature map. Its
            classifier head is removed in place.
        in_chans, image_size: the dry forward's input, to find the stages and check the model.
        stages: ``(shallow, deep)`` module names to read instead of the automatic choice.

    Raises:
        LocalizationError: the dry forward fails (wrong ``in_chans``?) or no module gives a
            spatial (N, D, h, w) map with h, w > 1.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        in_chans: int,
        image_size: int = 256,
        stages: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise LocalizationError(
                f"backbone must be an nn.Module or a 'timm:NAME' spec; got {type(backbone)}"
            )
        self.body = _without_head(backbone)
        self.in_chans = in_chans
        timm_names = _timm_stages(backbone)
        self._use_forward_features = stages is None and timm_names is not None
        if stages is not None:
            if len(stages) != 2:
                raise LocalizationError(f"stages must name two modules; got {stages!r}")
            self.shallow_name, self.deep_name = str(stages[0]), str(stages[1])
        elif timm_names is not None:
            self.shallow_name, self.deep_name = timm_names[-2], ""
        else:
            self.shallow_name, self.deep_name = self._find_stages(in_chans, image_size)
        self._attach()
        shallow, deep = self._dry(in_chans, image_size)
        if deep.dim() != 4 or min(deep.shape[-2:]) < 2:
            raise LocalizationError(
                f"{type(backbone).__name__} gives no spatial feature map: its last map has shape "
                f"{tuple(deep.shape)} on a {image_size}-px input. AttentionMiner needs a "
                "(N, D, h, w) map with h, w > 1: use a convolutional backbone, a larger "
                "image_size, or name the stages with stages=(shallow, deep)."
            )
        self.shallow_channels = int(shallow.shape[1])
        self.deep_channels = int(deep.shape[1])
        self.shallow_size = tuple(shallow.shape[-2:])
        self.deep_size = tuple(deep.shape[-2:])
        logger.debug(
            "stages: %s %s, %s %s",
            self.shallow_name, tuple(shallow.shape), self.deep_name or "forward_features",
            tuple(deep.shape),
        )  # fmt: skip

    def _find_stages(self, in_chans: int, image_size: int) -> tuple[str, str]:
        """The modules (depth <= 2) whose outputs end the last two spatial resolutions."""
        order: list[tuple[str, tuple[int, ...]]] = []
        hooks = []
        for name, mod in self.body.named_modules():
            if not name or name.count(".") > 1:
                continue

            def hook(_m: nn.Module, _i: tuple, out: object, name: str = name) -> None:
                if isinstance(out, Tensor) and out.dim() == 4 and min(out.shape[-2:]) > 1:
                    order.append((name, tuple(out.shape)))

            hooks.append(mod.register_forward_hook(hook))
        try:
            self._run_dry(in_chans, image_size)
        finally:
            for h in hooks:
                h.remove()
        if not order:
            raise LocalizationError(
                f"{type(self.body).__name__} gives no spatial feature map (no module returns "
                f"a (N, D, h, w) tensor with h, w > 1 on a {image_size}-px input). Use a "
                "convolutional backbone or a larger image_size."
            )
        deep_name, deep_shape = order[-1]
        earlier = [(n, s) for n, s in order if s[-2:] != deep_shape[-2:]]
        if not earlier:
            return deep_name, deep_name  # one resolution only: both stages are the same map
        return earlier[-1][0], deep_name

    def _run_dry(self, in_chans: int, image_size: int) -> Tensor:
        was = self.body.training
        try:
            p = next(iter(self.body.parameters()), None)
            dev = p.device if p is not None else torch.device("cpu")
            x = torch.zeros(2, in_chans, image_size, image_size, device=dev)
            with torch.no_grad():
                return self._body_forward(self.body.eval(), x)
        except LocalizationError:
            raise
        except Exception as e:
            raise LocalizationError(
                f"dry forward of {type(self.body).__name__} on a (2, {in_chans}, {image_size}, "
                f"{image_size}) input failed: {e}. Set in_chans (and image_size) to what the "
                "model takes."
            ) from e
        finally:
            self.body.train(was)

    def _body_forward(self, body: nn.Module, x: Tensor) -> Tensor:
        if self._use_forward_features:
            return body.forward_features(x)  # type: ignore[operator]
        return body(x)

    def _attach(self) -> None:
        modules = dict(self.body.named_modules())
        for name in {self.shallow_name, self.deep_name} - {""}:
            if name not in modules:
                raise LocalizationError(f"the backbone has no module named {name!r}")
            if not getattr(modules[name], "_localize_hooked", False):
                modules[name].register_forward_hook(_keep_output)
                modules[name]._localize_hooked = True  # type: ignore[assignment]

    def _take(self, name: str) -> Tensor | None:
        mod = self.body.get_submodule(name)
        out = getattr(mod, "_localize_out", None)
        mod._localize_out = None  # type: ignore[assignment]  # no graph kept, deepcopy works
        return out

    def _dry(self, in_chans: int, image_size: int) -> tuple[Tensor, Tensor]:
        out = self._run_dry(in_chans, image_size)
        shallow = self._take(self.shallow_name)
        deep = self._take(self.deep_name) if self.deep_name else out
        if not isinstance(shallow, Tensor) or not isinstance(deep, Tensor):
            raise LocalizationError("the stage modules gave no tensor output")
        if shallow.dim() != 4:
            raise LocalizationError(
                f"stage {self.shallow_name!r} returns shape {tuple(shallow.shape)}, not a "
                "(N, D, h, w) map; name the stages with stages=(shallow, deep)."
            )
        return shallow, deep

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self._body_forward(self.body, x)
        shallow = self._take(self.shallow_name)
        deep = self._take(self.deep_name) if self.deep_name else out
        assert shallow is not None and deep is not None
        return shallow, deep
