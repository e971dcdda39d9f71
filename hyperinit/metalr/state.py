"""A MetaLROptimizer's state dict: the base optimizer's state plus the learned rates, their
history and the step counters, and restoring it into an optimizer built the same way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hyperinit.errors import MetaLRStateError
from hyperinit.metalr.partition import layer_params
from hyperinit.metalr.rates import write_rates

if TYPE_CHECKING:
    from hyperinit.metalr.optimizer import MetaLROptimizer

__all__ = ["load_metalr_state", "metalr_state"]


def metalr_state(opt: MetaLROptimizer) -> dict[str, Any]:
    """``{"base": base optimizer state, "metalr": rates, history and counters}``."""
    return {
        "base": opt.base_optimizer.state_dict(),
        "metalr": {
            "group_names": list(opt.group_names),
            "lrs": list(opt._lrs),
            "history_steps": list(opt._history_steps),
            "history_lrs": [list(r) for r in opt._history_lrs],
            "step": opt._step_count,
            "meta_steps": opt.meta_steps,
            "skipped_meta_steps": opt.skipped_meta_steps,
            "last_hypergrad": opt.last_hypergrad,
        },
    }


def load_metalr_state(opt: MetaLROptimizer, state_dict: dict[str, Any]) -> None:
    """Restore :func:`metalr_state` into ``opt`` (same model and groups, or MetaLRStateError)."""
    if not isinstance(state_dict, Mapping) or not {"base", "metalr"} <= set(state_dict):
        raise MetaLRStateError(
            "not a MetaLROptimizer state dict (needs 'base' and 'metalr'); to load a bare "
            "optimizer's state use opt.base_optimizer.load_state_dict before wrapping."
        )
    meta = state_dict["metalr"]
    if list(meta.get("group_names", [])) != opt.group_names:
        raise MetaLRStateError(
            f"the state dict's groups {meta.get('group_names')} differ from this "
            f"optimizer's {opt.group_names}; build it with the same model and groups."
        )
    try:
        opt.base_optimizer.load_state_dict(state_dict["base"])
    except (ValueError, KeyError) as err:
        raise MetaLRStateError(f"base optimizer state does not fit: {err}") from err
    opt.param_groups = opt.base_optimizer.param_groups
    opt.state = opt.base_optimizer.state
    opt._layer_params = layer_params(opt.param_groups, len(opt.group_names))
    opt._lrs = [float(v) for v in meta["lrs"]]
    opt._history_steps = [int(s) for s in meta["history_steps"]]
    opt._history_lrs = [[float(v) for v in r] for r in meta["history_lrs"]]
    opt._step_count = int(meta["step"])
    opt.meta_steps = int(meta["meta_steps"])
    opt.skipped_meta_steps = int(meta.get("skipped_meta_steps", 0))
    opt.last_hypergrad = meta.get("last_hypergrad")
    write_rates(opt.param_groups, opt._lrs)
