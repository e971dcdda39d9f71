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
The arithmetic of steps 2-4 is in :mod:`hyperinit.metalr.hypergrad`, the rates in
:mod:`hyperinit.metalr.rates`, the layer-group partition in :mod:`hyperinit.metalr.partition` and
the state dict in :mod:`hyperinit.metalr.state`.
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

from hyperinit.errors import MetaLRConfigError
from hyperinit.metalr.grouping import GroupSpec
from hyperinit.metalr.hypergrad import (
    hypergradients,
    kept_buffers,
    rescale_step,
    snapshot,
    updated_rates,
)
from hyperinit.metalr.partition import layer_params, optimizer_layer_groups, regroup
from hyperinit.metalr.rates import check_rate, clip_rate, initial_rates, write_rates
from hyperinit.metalr.state import load_metalr_state, metalr_state
from hyperinit.metalr.validation import ValidationLoss

__all__ = ["MetaLROptimizer"]

logger = logging.getLogger(__name__)

Closure = Callable[[], torch.Tensor]


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
        self.meta_lr = check_rate("meta_lr", meta_lr)
        self.lr_min = check_rate("lr_min", lr_min)
        if self.lr_min <= 0:
            raise MetaLRConfigError("lr_min must be > 0 (the paper uses 1e-6).")
        self.lr_max = check_rate("lr_max", lr_max, allow_none=True)
        if self.lr_max is not None and self.lr_max < self.lr_min:
            raise MetaLRConfigError(f"lr_max ({self.lr_max}) is below lr_min ({self.lr_min}).")
        if isinstance(meta_every, bool) or not isinstance(meta_every, int) or meta_every < 1:
            raise MetaLRConfigError(f"meta_every must be an int >= 1, got {meta_every!r}.")
        self.meta_every = meta_every
        self.head_lr_scale = check_rate("head_lr_scale", head_lr_scale)
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

        layers, from_model = optimizer_layer_groups(base_optimizer, model, groups)
        self.group_names: list[str] = [g.name for g in layers]
        regroup(base_optimizer, layers)
        self._layer_params = layer_params(base_optimizer.param_groups, len(layers))
        self.param_groups = base_optimizer.param_groups
        self.state = base_optimizer.state
        self._lrs = initial_rates(
            self.param_groups,
            self.group_names,
            init_lrs,
            head_lr_scale=self.head_lr_scale,
            scale_head=from_model,
            lr_min=self.lr_min,
            lr_max=self.lr_max,
        )
        self._write_lrs()

        self._step_count = 0
        self.meta_steps = 0
        self.skipped_meta_steps = 0
        self.last_hypergrad: list[float] | None = None
        self._history_steps: list[int] = [0]
        self._history_lrs: list[list[float]] = [list(self._lrs)]
        self._warned_nonfinite = False
        self._buffer: list[torch.Tensor] | None = None  # parameter snapshot, reused

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
        return metalr_state(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a MetaLROptimizer built the same way."""
        load_metalr_state(self, state_dict)

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
        return clip_rate(lr, self.lr_min, self.lr_max)

    def _write_lrs(self) -> None:
        write_rates(self.param_groups, self._lrs)

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

    def _meta_step(self, val_closure: Closure) -> None:
        groups = self._layer_params
        params = [p for ps in groups for p in ps]
        with torch.no_grad():
            self._buffer = neg_delta = snapshot(self._buffer, params)  # theta, then theta - theta'
        if not self._base_step():
            self._warn_nonfinite("a gradient (grad scaler)")
            return
        with torch.no_grad():
            torch._foreach_sub_(neg_delta, [p.detach() for p in params])

        with kept_buffers(self.model), torch.enable_grad():  # BN statistics off val data
            vloss = self._check_loss(val_closure(), "val_closure")
            if not bool(torch.isfinite(vloss.detach())):
                self._warn_nonfinite("the validation loss")
                return
            scaler = self._scaler()
            target = scaler.scale(vloss) if scaler is not None else vloss
            trainable = [i for i, p in enumerate(params) if p.requires_grad]
            grads = torch.autograd.grad(target, [params[i] for i in trainable], allow_unused=True)

        inv_scale = 1.0 / float(scaler.get_scale()) if scaler is not None else 1.0
        hyper = hypergradients(groups, trainable, grads, neg_delta, self._lrs, inv_scale)
        if not all(math.isfinite(h) for h in hyper):
            self._warn_nonfinite("the hypergradient")
            return
        new = updated_rates(self._lrs, hyper, self.meta_lr, self.meta_update, self._clip)
        rescale_step(groups, neg_delta, self._lrs, new)
        self.last_hypergrad = hyper
        self._lrs = new
        self._write_lrs()
        self.meta_steps += 1
        self._history_steps.append(self._step_count)
        self._history_lrs.append(list(new))
