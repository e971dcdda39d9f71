"""Training state in one safetensors file, written atomically.

Tensors (model, frozen copy, optimizer moments, RNG states) are stored under prefixed names;
everything else (config, epoch, step, history, optimizer hyperparameters) is JSON in the file's
metadata. A kill leaves the previous file whole: the new one is written beside it and renamed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hyperinit.atomic import atomic_path
from hyperinit.errors import LocalizationError

__all__ = ["load_state", "optimizer_from_flat", "optimizer_to_flat",
           "save_state", "unshare"]  # fmt: skip

_META_KEY = "hyperinit_localize"


def unshare(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """CPU, contiguous copies with no two tensors sharing storage (safetensors refuses it)."""
    out: dict[str, Tensor] = {}
    seen: set[int] = set()
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        ptr = v.untyped_storage().data_ptr()
        if ptr in seen and v.numel():
            v = v.clone()
        seen.add(v.untyped_storage().data_ptr())
        out[k] = v
    return out


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """An optimizer's state dict as tensors ``optim.<param>.<key>`` and JSON-able rest."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, Tensor):
                tensors[f"optim.{pid}.{key}"] = val
            else:
                scalars.setdefault(str(pid), {})[key] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(
    opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]
) -> None:
    """Inverse of :func:`optimizer_to_flat`, loaded into ``opt``."""
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = val
    for pid, st in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(st)
    groups = meta["param_groups"]
    for g in groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_state(path: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` and JSON ``meta`` to ``path`` (safetensors), atomically."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(unshare(tensors), str(tmp), metadata={_META_KEY: json.dumps(meta)})


def load_state(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, meta)`` from a file written by :func:`save_state`."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[_META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except Exception as e:
        raise LocalizationError(
            f"{path} is not an AttentionMiner checkpoint ({e}); delete it or pass another "
            "checkpoint_dir."
        ) from e
    return tensors, meta
