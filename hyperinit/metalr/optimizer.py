"""MetaLROptimizer: learn one learning rate per layer online from validation batches (MetaLR).

One meta step (Algorithm 1 of the MetaLR paper, with the exact hypergradient):

1. the base optimizer takes its real step with the current rates ``alpha``; its parameter change
   is ``delta_j = alpha_j * u_j`` for layer group ``j`` (``u`` is the base optimizer's own update
   direction: Adam's when wrapping Adam, with momentum, nesterov and weight decay included);
2. one forward/backward on a validation batch at the stepped parameters ``theta'`` gives
   ``dL_val(theta + alpha_j u_j)/d alpha_j = <grad_j L_val(theta'), u_j>`` (eq. 3, no
   second-order terms);
3. ``alpha_j <- clip(alpha_j - meta_lr * hypergrad_j, lr_min, lr_max)`` (eq. 3; or, with
   ``meta_update="relative"``, a step on ``log alpha_j``:
   ``alpha_j <- alpha_j * exp(-meta_lr * alpha_j * hypergrad_j)``, where
   ``alpha_j * hypergrad_j = <grad_j L_val(theta'), delta_j>`` is the first-order change of the
   validation loss caused by layer j's step, a quantity free of the optimizer's scale);
4. the step is rescaled to the new rate, ``theta <- theta + alpha_j' u_j`` (eq. 4), without
   running the base optimizer again, so its state (momentum, Adam moments) advances once.

``u`` is measured as the actual parameter change divided by the rate, so any optimizer whose step
is proportional to its ``lr`` (every ``torch.optim`` optimizer) is handled exactly by the same
code; for an optimizer whose step is not proportional to ``lr`` it is a secant approximation.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from hyperinit.errors import MetaLRConfigError, MetaLRStateError, ParamGroupingError
from hyperinit.metalr.grouping import GroupSpec, LayerGroup, layer_groups
from hyperinit.metalr.validation import ValidationLoss

__all__ = ["MetaLROptimizer"]

logger = logging.getLogger(__name__)

Closure = Callable[[], torch.Tensor]
_GROUP_KEY = "metalr_group"


def _check_rate(name: str, value: Any, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise MetaLRConfigError(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(value) or value < 0:
        raise MetaLRConfigError(f"{name} must be finite and >= 0, got {value}.")
    return value


def _as_float(lr: Any) -> float:
    return float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)


class MetaLROptimizer(Optimizer):
    """Wrap an optimizer and learn one learning rate per layer group online (MetaLR).

    The wrapper shares ``param_groups`` with the base optimizer, which it re-partitions once so
    that each layer group has its own parameter group(s) (options such as weight decay are kept
    per original group). The learned rate of group ``j`` is written to the ``lr`` of its groups.

    Args:
        base_optimizer: any ``torch.optim.Optimizer`` (SGD, Adam, AdamW, ...), built on the
            parameters to train.
        model: the network; needed for ``groups="auto"``/``"module"``, validation DataLoaders and
            to keep BatchNorm statistics untouched by validation batches. Without a model each
            parameter group of ``base_optimizer`` is one layer group.
        groups: ``"auto"`` (stem, blocks, head in depth order; ResNet-18 gives 10 groups),
            ``"module"`` (one group per module owning parameters) or a mapping
            ``{name: module | regex on parameter names | parameters}`` in depth order.
        meta_lr: step size ``eta`` of eq. 3 for the rates. The hypergradient scales with the
            size of the base optimizer's step direction: about 1e-4 to 1e-3 suits SGD on a
            ResNet; Adam's unit-size directions want a much smaller value (1e-7 to 1e-6).
        lr_min: floor of every rate (the paper's 1e-6); must be > 0.
        lr_max: optional ceiling of every rate.
        init_lrs: initial rates. ``None``: the base optimizer's lr, times ``head_lr_scale`` for
            the last (head) group. A float: that rate for the backbone, times ``head_lr_scale``
            for the head. A sequence (one per group) or a mapping ``{group name: rate}``: as
            given (unnamed groups take the default).
        meta_every: do a meta step every ``meta_every`` steps; the others are bare base steps.
        head_lr_scale: factor of the head's initial rate over the backbone's (the paper's 10).
        meta_update: ``"additive"`` (eq. 3 of the paper, the default) or ``"relative"`` (a
            gradient step on ``log alpha``: each rate changes by a factor
            ``exp(-meta_lr * <grad_j L_val, delta_j>)``, the same for any base optimizer, and
            noisy layers cannot jump to the floor in one step; ``meta_lr`` around 1 to 10).
        val_data: optional validation DataLoader used when ``step`` gets no ``val_closure``;
            cycled, and reshuffled each pass if the loader shuffles.
        loss_fn: loss for ``val_data``: ``loss_fn(model(inputs), targets)``.
        grad_scaler: optional ``torch.amp.GradScaler``; the wrapper then scales both backward
            passes, unscales, skips steps with inf/NaN gradients and calls ``update()`` itself.

    Example::

        opt = MetaLROptimizer(torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9), model)
        for x, y in train_loader:
            xv, yv = next(val_batches)
            opt.step(lambda: loss_fn(model(x), y), lambda: loss_fn(model(xv), yv))
    """

    def __init__(
        self,
        base_optimizer: Optimizer,
        model: nn.Module | None = None,
        *,
        groups: GroupSpec = "auto",
        meta_lr: float = 1e-4,
        lr_min: float = 1e-6,
        lr_max: float | None = None,
        init_lrs: float | Sequence[float] | Mapping[str, float] | None = None,
        meta_every: int = 1,
        head_lr_scale: float = 10.0,
        meta_update: str = "additive",
        val_data: Iterable | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        grad_scaler: Any | None = None,
    ) -> None:
        # NOTE: Optimizer.__init__ is not called on purpose: the state lives in the base optimizer.
        self._optimizer_step_pre_hooks: dict[int, Callable] = OrderedDict()
        self._optimizer_step_post_hooks: dict[int, Callable] = OrderedDict()
        self._optimizer_state_dict_pre_hooks: dict[int, Callable] = OrderedDict()
        self._optimizer_state_dict_post_hooks: dict[int, Callable] = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: dict[int, Callable] = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: dict[int, Callable] = OrderedDict()
        if not isinstance(base_optimizer, Optimizer):
            raise MetaLRConfigError(
                f"base_optimizer must be a torch.optim.Optimizer, not {type(base_optimizer)}."
            )
        if isinstance(base_optimizer, MetaLROptimizer):
            raise MetaLRConfigError("base_optimizer is already a MetaLROptimizer.")
        if model is not None and not isinstance(model, nn.Module):
            raise MetaLRConfigError(f"model must be an nn.Module, not {type(model).__name__}.")
        if any("lr" not in g for g in base_optimizer.param_groups):
            raise MetaLRConfigError("base_optimizer has parameter groups without an 'lr'.")
        self.meta_lr = _check_rate("meta_lr", meta_lr)
        self.lr_min = _check_rate("lr_min", lr_min)
        if self.lr_min <= 0:
            raise MetaLRConfigError("lr_min must be > 0 (the paper uses 1e-6).")
        self.lr_max = _check_rate("lr_max", lr_max, allow_none=True)
        if self.lr_max is not None and self.lr_max < self.lr_min:
            raise MetaLRConfigError(f"lr_max ({self.lr_max}) is below lr_min ({self.lr_min}).")
        if isinstance(meta_every, bool) or not isinstance(meta_every, int) or meta_every < 1:
            raise MetaLRConfigError(f"meta_every must be an int >= 1, got {meta_every!r}.")
        self.meta_every = meta_every
        self.head_lr_scale = _check_rate("head_lr_scale", head_lr_scale)
        if meta_update not in ("additive", "relative"):
            raise MetaLRConfigError(
                f'meta_update must be "additive" (eq. 3) or "relative", got {meta_update!r}.'
            )
        self.meta_update = meta_update

        self.base_optimizer = base_optimizer
        self.model = model
        self.defaults = base_optimizer.defaults
        self.grad_scaler = grad_scaler
        self._val_source: Closure | None = None
        if val_data is not None:
            if loss_fn is None or model is None:
                raise MetaLRConfigError("val_data needs both loss_fn= and model=.")
            self._val_source = ValidationLoss(val_data, loss_fn, model)

        layers, from_model = self._layer_groups(groups)
        self.group_names: list[str] = [g.name for g in layers]
        self._regroup(layers)
        self.param_groups = base_optimizer.param_groups
        self.state = base_optimizer.state
        self._lrs = self._initial_lrs(init_lrs, scale_head=from_model)
        self._write_lrs()

        self._step_count = 0
        self.meta_steps = 0
        self.skipped_meta_steps = 0
        self.last_hypergrad: list[float] | None = None
        self._history_steps: list[int] = [0]
        self._history_lrs: list[list[float]] = [list(self._lrs)]
        self._warned_nonfinite = False
        self._buffer: list[torch.Tensor] | None = None  # parameter snapshot, reused

    # ----------------------------------------------------------------- construction helpers
    def _layer_groups(self, groups: GroupSpec) -> tuple[list[LayerGroup], bool]:
        base_params = [p for g in self.base_optimizer.param_groups for p in g["params"]]
        in_opt = {id(p) for p in base_params}
        if self.model is None and isinstance(groups, str) and groups == "auto":
            return [
                LayerGroup(f"group{i}", list(g["params"]))
                for i, g in enumerate(self.base_optimizer.param_groups)
                if g["params"]
            ], False
        layers = layer_groups(self.model, groups)
        is_mapping = not isinstance(groups, str)
        kept = []
        for g in layers:
            idx = [i for i, p in enumerate(g.params) if id(p) in in_opt]
            if is_mapping and len(idx) != len(g.params):
                raise ParamGroupingError(
                    f"group {g.name!r} has parameters that base_optimizer does not optimise; "
                    "build the base optimizer on all of them or leave them out of the group."
                )
            if idx:
                names = [g.param_names[i] for i in idx] if g.param_names else []
                kept.append(LayerGroup(g.name, [g.params[i] for i in idx], names))
        covered = {id(p) for g in kept for p in g.params}
        missing = [p for p in base_params if id(p) not in covered]
        if missing:
            raise ParamGroupingError(
                f"{len(missing)} parameter(s) of base_optimizer are in no layer group (shapes "
                f"{[tuple(p.shape) for p in missing[:3]]}...); pass the model they belong to, "
                "or add them to the groups mapping."
            )
        return kept, True

    def _regroup(self, layers: list[LayerGroup]) -> None:
        """Split the base optimizer's groups so that each belongs to exactly one layer group."""
        base = self.base_optimizer
        owner = {id(p): gi for gi, g in enumerate(base.param_groups) for p in g["params"]}
        new_groups: list[dict[str, Any]] = []
        for j, layer in enumerate(layers):
            by_base: dict[int, list[nn.Parameter]] = {}
            for p in layer.params:
                by_base.setdefault(owner[id(p)], []).append(p)
            for gi in sorted(by_base):
                skip = ("params", "param_names")
                options = {k: v for k, v in base.param_groups[gi].items() if k not in skip}
                options["params"] = by_base[gi]
                options[_GROUP_KEY] = j
                new_groups.append(options)
        base.param_groups[:] = new_groups  # in place: whoever holds the list sees the new groups
        self._layer_params: list[list[nn.Parameter]] = [[] for _ in layers]
        for g in new_groups:
            self._layer_params[g[_GROUP_KEY]].extend(g["params"])

    def _initial_lrs(self, init_lrs: Any, scale_head: bool) -> list[float]:
        n = len(self.group_names)
        base = [0.0] * n
        for g in reversed(self.param_groups):  # the first base group of a layer wins
            base[g[_GROUP_KEY]] = _as_float(g["lr"])
        head = self.head_lr_scale if scale_head and n > 1 else 1.0
        if init_lrs is None:
            lrs = [*base[:-1], base[-1] * head]
        elif isinstance(init_lrs, (int, float)) and not isinstance(init_lrs, bool):
            lrs = [*[float(init_lrs)] * (n - 1), float(init_lrs) * head]
        elif isinstance(init_lrs, Mapping):
            unknown = set(init_lrs) - set(self.group_names)
            if unknown:
                raise MetaLRConfigError(
                    f"init_lrs names unknown groups {sorted(unknown)}; groups are "
                    f"{self.group_names}."
                )
            lrs = [*base[:-1], base[-1] * head]
            lrs = [float(init_lrs.get(name, lr)) for name, lr in zip(self.group_names, lrs)]
        elif isinstance(init_lrs, Sequence) and not isinstance(init_lrs, str):
            if len(init_lrs) != n:
                raise MetaLRConfigError(
                    f"init_lrs has {len(init_lrs)} rates for {n} groups {self.group_names}."
                )
            lrs = [float(v) for v in init_lrs]
        else:
            raise MetaLRConfigError(
                f"init_lrs must be None, a number, a sequence or a mapping, not {init_lrs!r}."
            )
        for name, lr in zip(self.group_names, lrs):
            if not math.isfinite(lr) or lr < self.lr_min:
                raise MetaLRConfigError(
                    f"initial rate {lr} of group {name!r} is below lr_min={self.lr_min} or not "
                    "finite; raise it or lower lr_min."
                )
        return [self._clip(lr) for lr in lrs]

    # ----------------------------------------------------------------------- properties
    @property
    def lrs(self) -> dict[str, float]:
        """The current learned rate of each group, in depth order."""
        return dict(zip(self.group_names, self._lrs))

    @property
    def lr_history(self) -> dict[str, list[float]]:
        """Rate of each group after every meta step (the first entry is the initial rate)."""
        return {
            name: [row[j] for row in self._history_lrs] for j, name in enumerate(self.group_names)
        }

    @property
    def lr_history_steps(self) -> list[int]:
        """The optimizer step at which each entry of :attr:`lr_history` was recorded."""
        return list(self._history_steps)

    def plot_lr_history(self, **kwargs: Any) -> Any:
        """Draw the learned rates against depth (the paper's Fig. 3b); see ``plot_lr_by_depth``."""
        from hyperinit.metalr.plot import plot_lr_by_depth

        return plot_lr_by_depth(self, **kwargs)

    # ---------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Base optimizer state plus the learned rates, their history and the step counters."""
        return {
            "base": self.base_optimizer.state_dict(),
            "metalr": {
                "group_names": list(self.group_names),
                "lrs": list(self._lrs),
                "history_steps": list(self._history_steps),
                "history_lrs": [list(r) for r in self._history_lrs],
                "step": self._step_count,
                "meta_steps": self.meta_steps,
                "skipped_meta_steps": self.skipped_meta_steps,
                "last_hypergrad": self.last_hypergrad,
            },
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a MetaLROptimizer built the same way."""
        if not isinstance(state_dict, Mapping) or not {"base", "metalr"} <= set(state_dict):
            raise MetaLRStateError(
                "not a MetaLROptimizer state dict (needs 'base' and 'metalr'); to load a bare "
                "optimizer's state use opt.base_optimizer.load_state_dict before wrapping."
            )
        meta = state_dict["metalr"]
        if list(meta.get("group_names", [])) != self.group_names:
            raise MetaLRStateError(
                f"the state dict's groups {meta.get('group_names')} differ from this "
                f"optimizer's {self.group_names}; build it with the same model and groups."
            )
        try:
            self.base_optimizer.load_state_dict(state_dict["base"])
        except (ValueError, KeyError) as err:
            raise MetaLRStateError(f"base optimizer state does not fit: {err}") from err
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self._layer_params = [[] for _ in self.group_names]
        for g in self.param_groups:
            self._layer_params[g[_GROUP_KEY]].extend(g["params"])
        self._lrs = [float(v) for v in meta["lrs"]]
        self._history_steps = [int(s) for s in meta["history_steps"]]
        self._history_lrs = [[float(v) for v in r] for r in meta["history_lrs"]]
        self._step_count = int(meta["step"])
        self.meta_steps = int(meta["meta_steps"])
        self.skipped_meta_steps = int(meta.get("skipped_meta_steps", 0))
        self.last_hypergrad = meta.get("last_hypergrad")
        self._write_lrs()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        raise MetaLRConfigError(
            "MetaLROptimizer cannot add parameter groups after construction; build the base "
            "optimizer on all parameters (frozen ones included) and wrap it afterwards."
        )

    def __getstate__(self) -> dict[str, Any]:  # Optimizer's keeps only defaults/state/groups
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        rates = ", ".join(f"{n}={lr:.3g}" for n, lr in self.lrs.items())
        return (
            f"MetaLROptimizer({type(self.base_optimizer).__name__}, meta_lr={self.meta_lr}, "
            f"meta_every={self.meta_every}, lrs: {rates})"
        )

    # ----------------------------------------------------------------------------- step
    def _clip(self, lr: float) -> float:
        lr = max(lr, self.lr_min)
        return min(lr, self.lr_max) if self.lr_max is not None else lr

    def _write_lrs(self) -> None:
        for g in self.param_groups:
            lr = self._lrs[g[_GROUP_KEY]]
            if isinstance(g["lr"], torch.Tensor):
                g["lr"].fill_(lr)
            else:
                g["lr"] = lr

    def _warn_nonfinite(self, what: str) -> None:
        self.skipped_meta_steps += 1
        if not self._warned_nonfinite:
            self._warned_nonfinite = True
            warnings.warn(
                f"MetaLROptimizer: {what} is NaN or inf; skipping that update and going on "
                "(warned once; see `skipped_meta_steps`).",
                RuntimeWarning,
                stacklevel=3,
            )
        logger.debug("non-finite %s at step %d", what, self._step_count)

    def _scaler(self) -> Any | None:
        s = self.grad_scaler
        return s if s is not None and s.is_enabled() else None

    def _backward(self, loss: torch.Tensor) -> None:
        scaler = self._scaler()
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def _base_step(self) -> bool:
        """Run the base optimizer; False if the grad scaler skipped the step (inf/NaN grads)."""
        scaler = self._scaler()
        if scaler is None:
            self.base_optimizer.step()
            return True
        scaler.unscale_(self.base_optimizer)
        found = sum(v.item() for v in scaler._found_inf_per_device(self.base_optimizer).values())
        scaler.step(self.base_optimizer)
        scaler.update()
        return not found

    @staticmethod
    def _check_loss(loss: Any, which: str) -> torch.Tensor:
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise MetaLRConfigError(
                f"{which} must return the loss as a scalar tensor with its graph, got "
                f"{type(loss).__name__}."
            )
        return loss

    def step(  # type: ignore[override]
        self, closure: Closure | None = None, val_closure: Closure | None = None
    ) -> torch.Tensor | None:
        """One training step, with a meta step every ``meta_every`` calls.

        Args:
            closure: returns the training loss of the current batch (with its graph); the
                optimizer zeroes the gradients and runs backward. ``None``: the gradients are
                already in ``.grad`` (drop-in use after ``loss.backward()``).
            val_closure: returns the validation loss of a validation batch at the current
                parameters. Defaults to the ``val_data`` given at construction.

        Returns:
            The training loss (detached), or ``None`` without a closure.
        """
        for hook in self._optimizer_step_pre_hooks.values():
            hook(self, (), {})
        do_meta = self._step_count % self.meta_every == 0
        self._step_count += 1
        loss = None
        if closure is not None:
            self.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss = self._check_loss(closure(), "closure")
            if not bool(torch.isfinite(loss.detach())):
                self._warn_nonfinite("the training loss")
                self.zero_grad(set_to_none=True)
                return loss.detach()
            self._backward(loss)
            loss = loss.detach()
        val_closure = val_closure if val_closure is not None else self._val_source
        if not do_meta:
            self._base_step()
        else:
            if val_closure is None:
                raise MetaLRConfigError(
                    "a meta step needs validation data: pass step(closure, val_closure) or "
                    "build the optimizer with val_data= and loss_fn=."
                )
            self._meta_step(val_closure)
        for hook in self._optimizer_step_post_hooks.values():
            hook(self, (), {})
        return loss

    def _snapshot(self, params: list[nn.Parameter]) -> list[torch.Tensor]:
        """Copy the parameters into a buffer kept between meta steps (no re-allocation)."""
        buf = self._buffer
        if (
            buf is None
            or len(buf) != len(params)
            or any(
                b.shape != p.shape or b.dtype != p.dtype or b.device != p.device
                for b, p in zip(buf, params)
            )
        ):
            buf = [torch.empty_like(p, memory_format=torch.preserve_format) for p in params]
            self._buffer = buf
        torch._foreach_copy_(buf, [p.detach() for p in params])
        return buf

    def _meta_step(self, val_closure: Closure) -> None:
        groups = self._layer_params
        params = [p for ps in groups for p in ps]
        with torch.no_grad():
            neg_delta = self._snapshot(params)  # theta, becomes theta - theta'
        if not self._base_step():
            self._warn_nonfinite("a gradient (grad scaler)")
            return
        with torch.no_grad():
            torch._foreach_sub_(neg_delta, [p.detach() for p in params])

        buffers = None
        if self.model is not None and self.model.training:  # keep BN statistics off val data
            buffers = [(b, b.detach().clone()) for b in self.model.buffers()]
        try:
            with torch.enable_grad():
                vloss = self._check_loss(val_closure(), "val_closure")
                if not bool(torch.isfinite(vloss.detach())):
                    self._warn_nonfinite("the validation loss")
                    return
                scaler = self._scaler()
                target = scaler.scale(vloss) if scaler is not None else vloss
                trainable = [i for i, p in enumerate(params) if p.requires_grad]
                grads = torch.autograd.grad(
                    target, [params[i] for i in trainable], allow_unused=True
                )
        finally:
            if buffers is not None:
                with torch.no_grad():
                    for b, saved in buffers:
                        b.copy_(saved)

        owner = [j for j, ps in enumerate(groups) for _ in ps]
        dots = torch.zeros(len(groups), dtype=torch.float64, device=params[0].device)
        for i, g in zip(trainable, grads):
            if g is not None:
                d = torch.dot(g.reshape(-1), neg_delta[i].reshape(-1).to(g.dtype))
                dots[owner[i]] += d.to(dots.device, torch.float64)
        inv_scale = 1.0 / float(scaler.get_scale()) if scaler is not None else 1.0
        # hypergrad_j = <grad_j L_val(theta'), delta_j> / alpha_j, and delta = -neg_delta
        hyper = [-d * inv_scale / lr for d, lr in zip(dots.tolist(), self._lrs)]
        if not all(math.isfinite(h) for h in hyper):
            self._warn_nonfinite("the hypergradient")
            return
        if self.meta_update == "relative":  # exp argument clipped: at most x/÷ e^5 a step
            new = [
                self._clip(lr * math.exp(max(-5.0, min(5.0, -self.meta_lr * lr * h))))
                for lr, h in zip(self._lrs, hyper)
            ]
        else:
            new = [self._clip(lr - self.meta_lr * h) for lr, h in zip(self._lrs, hyper)]
        # theta <- theta' + (alpha'/alpha - 1) delta = theta' - (alpha'/alpha - 1) neg_delta
        with torch.no_grad():
            start = 0
            for j, ps in enumerate(groups):
                scale = new[j] / self._lrs[j] - 1.0
                if scale != 0.0 and ps:
                    torch._foreach_add_(
                        [p.detach() for p in ps], neg_delta[start : start + len(ps)], alpha=-scale
                    )
                start += len(ps)
        self.last_hypergrad = hyper
        self._lrs = new
        self._write_lrs()
        self.meta_steps += 1
        self._history_steps.append(self._step_count)
        self._history_lrs.append(list(new))
