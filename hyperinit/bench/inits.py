"""Initialisations compared by the benchmark, from their names.

- ``default``: the framework's own initialisation (what the constructor drew).
- ``hyperinit:<modality>`` (``xray``, ``ct``, ``ultrasound``, ``dermoscopy``, ``fundus``,
  ``mixed``, ``auto``) or ``hyperinit:<checkpoint dir>``: :func:`hyperinit.initialize`; the
  classifier head keeps its default init; a U-Net gets its encoder predicted only (as the
  hyper-initializer paper does). ``hyperinit-all:<...>``: the whole U-Net, decoder included.
- ``c2l:<path>``: a C2L-pretrained backbone loaded from ``path`` (head and decoder default).
- a callable ``init(model) -> None`` that changes the model in place.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hyperinit.errors import BenchConfigError

__all__ = ["InitFn", "apply_init", "hypernet_version", "init_label"]

log = logging.getLogger(__name__)

InitFn = Callable[[nn.Module], Any]


def init_label(init: str | InitFn, name: str | None = None) -> str:
    """A short name of an init for tables and cache keys (``c2l:/a/b.pt`` -> ``c2l``)."""
    if name:
        return name
    if callable(init):
        label = getattr(init, "__name__", "")
        if not label or label == "<lambda>":
            raise BenchConfigError("give a callable init a name (init_name=...)")
        return label
    kind, _, arg = init.partition(":")
    if kind == "c2l":
        return "c2l"
    if kind.startswith("hyperinit") and arg and Path(arg).exists():
        return f"{kind}:{Path(arg).name}"
    return init


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, mtime: float) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:8]


def _config_suffix(config_path: Path) -> str:
    """What a checkpoint's config changes in its predictions without changing its weights file:
    ``-cap<x>`` for a structured-share cap, ``-<noise>`` / ``-<spectrum>`` /
    ``-centre_<rows>`` for non-default prediction settings, ``-pp<hash>`` for post-processing
    (:meth:`hyperinit.postprocess.PostProcess.key`); else ``""``."""
    import json

    from hyperinit.postprocess import PostProcess

    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return ""
    cap, noise = config.get("max_structured_share"), config.get("noise", "kron")
    spectrum, centre = config.get("spectrum", "predicted"), config.get("centre_rows", "all")
    post = PostProcess.from_dict(config.get("postprocess"), source=f"{config_path}: postprocess")
    return (
        ("" if cap is None else f"-cap{cap:g}")
        + ("" if noise == "kron" else f"-{noise}")
        + ("" if spectrum == "predicted" else f"-{spectrum}")
        + ("" if centre == "all" else f"-centre_{centre}")
        + post.key()
    )


def hypernet_version(init: str | InitFn, modality: str) -> str | None:
    """Which hypernetwork a ``hyperinit:`` init uses, for cache keys: the sha256 prefix of a
    trained registry checkpoint or of a checkpoint directory's ``model.safetensors``, plus
    ``-cap<x>`` / ``-gaussian`` when its config caps the structured share or changes the noise.

    ``None`` for other inits and for the untrained reference, so that results made before any
    trained checkpoint existed keep their keys and a trained checkpoint gets new cells.
    """
    if callable(init) or not init.startswith(("hyperinit:", "hyperinit-all:")):
        return None
    arg = init.partition(":")[2]
    arg = modality if arg == "own" else arg
    weights = Path(arg) / "model.safetensors"
    if weights.is_file():
        return _file_digest(str(weights), weights.stat().st_mtime) + _config_suffix(
            Path(arg) / "config.json"
        )
    from hyperinit.modalities import MODALITIES, get_modality

    names = MODALITIES if arg == "auto" else (arg,)
    shas = []
    for n in names:
        info = get_modality(n)
        if info.trained:
            sha = info.sha256.get("model.safetensors", "")[:8]
            shas.append(sha + _config_suffix(info.path / "config.json"))
    return "-".join(shas) if shas else None


def _encoder_only(model: nn.Module) -> list[str] | None:
    from hyperinit.bench.unet import UNet

    return ["decoder", "head"] if isinstance(model, UNet) else None


def _load_c2l(model: nn.Module, path: str) -> None:
    from hyperinit.bench.unet import UNet

    target = model.encoder if isinstance(model, UNet) else model
    try:
        from hyperinit.c2l import load_backbone  # type: ignore[attr-defined]
    except ImportError as e:
        raise BenchConfigError(
            "c2l:<path> needs hyperinit.c2l.load_backbone, which this install lacks."
        ) from e
    load_backbone(target, path, strict=not isinstance(model, UNet))


def apply_init(
    model: nn.Module,
    init: str | InitFn,
    *,
    modality: str,
    seed: int,
    example: torch.Tensor,
    sample: torch.Tensor | None = None,
) -> dict:
    """Apply ``init`` to ``model`` in place; returns what to record (seconds, modality...).

    Args:
        modality: the task's own modality (used by ``hyperinit:own``).
        example: an input batch for tracing; ``sample`` images for ``hyperinit:auto``.
    """
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    if callable(init):
        init(model)
    elif init == "default":
        pass
    elif init.startswith(("hyperinit:", "hyperinit-all:")):
        from hyperinit.initialize import initialize

        kind, _, arg = init.partition(":")
        arg = modality if arg == "own" else arg
        kwargs: dict[str, Any] = {"seed": seed, "example_input": example}
        if Path(arg).is_dir():
            kwargs["checkpoint"] = arg
        else:
            kwargs["modality"] = arg
        if arg == "auto":
            kwargs["sample"] = sample if sample is not None else example
        if kind == "hyperinit":
            kwargs["exclude"] = _encoder_only(model)
        else:
            kwargs["predict_head"] = True
        report = initialize(model, **kwargs)
        info = {
            "modality": report.modality,
            "checkpoint": report.checkpoint,
            "modality_distances": report.modality_distances,
            "predicted_elements": report.predicted_elements,
            "total_elements": report.total_elements,
            "timings": report.timings,
        }
    elif init.startswith("c2l:"):
        _load_c2l(model, init.partition(":")[2])
    else:
        raise BenchConfigError(
            f"unknown init {init!r}: use default, hyperinit:<modality|own|auto|dir>, "
            "hyperinit-all:<...>, c2l:<path> or a callable"
        )
    info["init_seconds"] = time.perf_counter() - t0
    return info
