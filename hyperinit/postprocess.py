"""Post-processing of predicted weights: transforms applied after the hypernetwork, before use.

A checkpoint's ``config.json`` records its post-processing under ``"postprocess"`` (versioned;
absent = none), :func:`hyperinit.initialize` applies it, and ``postprocess=`` overrides it for
one call. Each transform keeps what the hypernetwork predicted and changes one property that the
layer-by-layer diagnostic (``research/init_diagnostic``) found different from default init:

- ``orthogonalize``: each predicted weight becomes its polar factor at the same RMS, the
  nearest matrix with every singular value equal (predicted weights have 0.71-0.83x default
  init's effective rank); ``"depthwise"`` does it for depthwise convolutions only (a
  channels x k*k filter bank each: an SVD that small costs next to nothing);
- ``noise``: Gaussian noise of that many times each weight's RMS, added first (seeded);
- ``norm_weights``: ``"predicted"``, ``"one"`` (the norm scales set to 1) or ``"default"``
  (not predicted: the model keeps its own, e.g. timm's ``zero_init_last`` zeros);
- ``residual_scale``: the predicted weight of the last norm of each residual branch (those a
  timm block's ``zero_init_last()`` zeroes, whatever the model holds now, and any norm that is
  zero after the model's own init) times this factor: between
  those zeros (0, which stall the branches) and the prediction (1, under which RegNetX's first
  epoch blows up), ``research/residual_scale``.

>>> pp = PostProcess(orthogonalize=True)
>>> PostProcess.from_dict(pp.to_dict()) == pp
True
>>> PostProcess().is_identity, pp.key()
(True, '-pp34ffbaad')
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from hyperinit.errors import CheckpointError

__all__ = [
    "POSTPROCESS_VERSION",
    "PostProcess",
    "depthwise_weights",
    "orthogonalize",
    "zero_init_norm_weights",
]

#: Bumped when a transform changes what it computes; a newer one is refused.
POSTPROCESS_VERSION = 1
NORM_WEIGHTS = ("predicted", "one", "default")


@dataclass(frozen=True)
class PostProcess:
    """What :func:`hyperinit.initialize` does to the predicted tensors before writing them.

    Attributes:
        orthogonalize: replace each predicted weight (2+ dims, role ``weight``) by its polar
            factor at the same RMS (:func:`orthogonalize`); ``"depthwise"``: only the weights
            of depthwise convolutions (``groups == in_channels > 1``).
        noise: add seeded Gaussian noise of ``noise`` x RMS to those weights (before
            orthogonalising when both are on).
        norm_weights: ``"predicted"``, ``"one"`` or ``"default"`` (leave them to the model).
        residual_scale: multiply the predicted weights of the residual branches' last norms
            (timm's ``zero_init_last()`` ones, or zero after the model's own init) by this
            (1: unchanged; models without such norms are unaffected).
        version: the post-processing version the options were chosen with.
    """

    orthogonalize: bool | str = False
    noise: float = 0.0
    norm_weights: str = "predicted"
    residual_scale: float = 1.0
    version: int = POSTPROCESS_VERSION

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """What is wrong with the options (``None`` when they are valid)."""
        if not isinstance(self.orthogonalize, bool) and self.orthogonalize != "depthwise":
            return f'orthogonalize must be true, false or "depthwise", got {self.orthogonalize!r}'
        noise = self.noise
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < 10:
            return f"noise must be a number in [0, 10), got {noise!r}"
        scale = self.residual_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 <= scale <= 1:
            return f"residual_scale must be a number in [0, 1], got {scale!r}"
        if self.norm_weights not in NORM_WEIGHTS:
            return f"norm_weights must be one of {NORM_WEIGHTS}, got {self.norm_weights!r}"
        if not isinstance(self.version, int) or self.version < 1:
            return f"version must be a positive integer, got {self.version!r}"
        if self.version > POSTPROCESS_VERSION:
            return (
                f"version {self.version} is newer than this hyperinit understands "
                f"({POSTPROCESS_VERSION}): upgrade hyperinit"
            )
        return None

    @property
    def is_identity(self) -> bool:
        """True when nothing is changed (the predictions are written as they are)."""
        return (
            not self.orthogonalize
            and self.noise == 0
            and self.norm_weights == "predicted"
            and self.residual_scale == 1
        )

    @property
    def kept_roles(self) -> frozenset[str]:
        """Parameter roles left to the model's own init."""
        return frozenset({"norm_weight"}) if self.norm_weights == "default" else frozenset()

    def to_dict(self) -> dict[str, Any]:
        """The options; ``residual_scale`` only when set, so the files and cache keys of
        options without it stay what they were."""
        out = dataclasses.asdict(self)
        if self.residual_scale == 1:
            del out["residual_scale"]
        return out

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any] | PostProcess | None,
        source: str = "postprocess",
        fix: str = "Fix the value in config.json",
    ) -> PostProcess:
        """Options from ``config.json``'s ``"postprocess"`` (``None``: no post-processing).

        Raises:
            CheckpointError: unknown options or a bad value, named, with ``fix``.
        """
        if data is None:
            return cls()
        if isinstance(data, PostProcess):
            return data
        if not isinstance(data, Mapping):
            raise CheckpointError(f"{source} must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(
                f"{source} has unknown options {unknown}; known: {sorted(known)}. {fix} "
                "(or upgrade hyperinit)."
            )
        try:
            return cls(**dict(data))
        except ValueError as e:
            raise CheckpointError(f"{source}: {e}. {fix}.") from None

    def key(self) -> str:
        """A short suffix for cache keys: ``""`` when identity, else ``-pp<8 hex digits>``."""
        if self.is_identity:
            return ""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return "-pp" + hashlib.sha256(blob).hexdigest()[:8]

    def apply(
        self,
        preds: dict[str, torch.Tensor],
        roles: Mapping[str, str],
        *,
        seed: int,
        depthwise: Collection[str] = (),
        zero_init: Collection[str] = (),
    ) -> dict[str, torch.Tensor]:
        """The post-processed predictions (a new dict; ``preds`` is not changed).
        ``depthwise``: the names of depthwise convolution weights (for
        ``orthogonalize="depthwise"``; :func:`depthwise_weights`); ``zero_init``: the norm
        weights the model's own init zeroes (for ``residual_scale``)."""
        if self.is_identity:
            return preds
        gen = torch.Generator().manual_seed(int(seed) ^ 0x5EED)
        out: dict[str, torch.Tensor] = {}
        for name, value in preds.items():
            role = roles.get(name)
            if role == "weight" and value.dim() >= 2:
                if self.orthogonalize is True or (
                    self.orthogonalize == "depthwise" and name in depthwise
                ):
                    value = orthogonalize(value, noise=self.noise, generator=gen)
                elif self.noise > 0:
                    value = value + _noise(value, self.noise, gen)
            elif role == "norm_weight" and self.norm_weights == "one":
                value = torch.ones_like(value)
            if role == "norm_weight" and name in zero_init and self.residual_scale != 1:
                value = value * self.residual_scale
            out[name] = value
        return out


def depthwise_weights(model: torch.nn.Module) -> set[str]:
    """Names of the weights of ``model``'s depthwise convolutions (``groups == in_channels >
    1``), for ``orthogonalize="depthwise"``."""
    return {
        f"{name}.weight" if name else "weight"
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.modules.conv._ConvNd) and 1 < m.groups == m.in_channels
    }


def zero_init_norm_weights(model: torch.nn.Module, names: Collection[str]) -> set[str]:
    """Of the parameter ``names``, the norm weights that are all zero now, i.e. after the
    model's own init (timm's ``zero_init_last``: the last norm of each residual branch)."""
    norms = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)
    found = set()
    for prefix, m in model.named_modules():
        name = f"{prefix}.weight" if prefix else "weight"
        weight = getattr(m, "weight", None)
        is_norm = isinstance(m, norms) and isinstance(weight, torch.Tensor)
        if is_norm and name in names and not bool(weight.detach().any()):
            found.add(name)
    return found


class _RecordZeroing(TorchFunctionMode):
    """Records the tensors ``nn.init.zeros_`` / ``Tensor.zero_`` are called on, without zeroing."""

    def __init__(self) -> None:
        super().__init__()
        self.zeroed: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.nn.init.zeros_, torch.Tensor.zero_):
            self.zeroed.append(args[0])
            return args[0]
        return func(*args, **(kwargs or {}))


def zero_init_last_norms(model: torch.nn.Module, names: Collection[str]) -> set[str]:
    """Of the parameter ``names``, the norm weights that the blocks' own ``zero_init_last()``
    (timm's residual blocks) zeroes: found by calling it with zeroing recorded, not done, so
    the model is unchanged and its current values (an earlier init, the meta device) do not
    matter."""
    ids = {id(p): n for n, p in model.named_parameters()}
    norms = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)
    norm_weights = {
        f"{prefix}.weight" if prefix else "weight"
        for prefix, m in model.named_modules()
        if isinstance(m, norms) and isinstance(getattr(m, "weight", None), torch.Tensor)
    }
    record = _RecordZeroing()
    with record, torch.no_grad():
        for m in model.modules():
            zero_init_last = getattr(m, "zero_init_last", None)
            if callable(zero_init_last):
                try:
                    zero_init_last()
                except TypeError:  # not timm's no-argument method: not ours to call
                    continue
    zeroed = {ids[id(t)] for t in record.zeroed if id(t) in ids}
    return zeroed & norm_weights & set(names)


def _noise(weight: torch.Tensor, scale: float, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian noise of ``scale`` x ``weight``'s RMS, drawn on the CPU (float64 for float64)."""
    dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    w = weight.detach().to("cpu", dtype)
    draw = torch.randn(w.shape, generator=generator, dtype=dtype)
    return (scale * w.pow(2).mean().sqrt() * draw).to(device=weight.device, dtype=weight.dtype)


def orthogonalize(
    weight: torch.Tensor, *, noise: float = 0.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The polar factor of ``weight`` (flattened to ``out x rest``), rescaled to its RMS.

    The polar factor ``U V^T`` of ``W = U S V^T`` is the (semi-)orthogonal matrix nearest to
    ``W`` in Frobenius norm, so it keeps the predicted directions and sets every singular
    value equal. ``noise`` adds Gaussian noise of ``noise`` times the weight's RMS first (the
    symmetry-breaking step of Knyazev's fine-tuning recipe for GHN-predicted weights).

    Args:
        weight: a weight of at least two dimensions (``out, in, *kernel``).
        noise: relative standard deviation of the noise added before orthogonalising.
        generator: draws the noise (reproducible with a seeded generator).

    Returns:
        A new tensor of ``weight``'s shape, dtype and RMS.

    >>> w = torch.randn(64, 16, 3, 3)
    >>> torch.allclose(orthogonalize(w).pow(2).mean(), w.pow(2).mean())
    True
    """
    if weight.dim() < 2:
        raise ValueError(
            f"orthogonalize needs a weight of 2+ dimensions, got {tuple(weight.shape)}"
        )
    mat = weight.detach().reshape(weight.shape[0], -1).double()
    if noise > 0:
        mat = mat + _noise(mat, noise, generator)
    rms = weight.detach().double().pow(2).mean().sqrt()
    u, _, vh = torch.linalg.svd(mat, full_matrices=False)
    q = u @ vh
    q = q * (rms / q.pow(2).mean().sqrt().clamp_min(1e-30))
    return q.reshape(weight.shape).to(weight.dtype)
