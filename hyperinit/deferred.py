"""Build a model without paying for its default initialisation: :func:`deferred_init`.

Inside the context, every parameter is allocated as usual (shapes, dtypes, devices, tying and
buffers are exactly the constructor's), but the in-place writes that initialise parameters
(``nn.init.*``, ``weight.data.normal_()``, timm's ``trunc_normal_``, ``fill_``, ``copy_``...)
are recorded instead of run. Afterwards :meth:`DeferredInit.replay` runs the recorded writes
for the parameters that need their default init (the head, anything not predicted), in their
original order, and the hypernetwork writes the others: the cost of default init is paid only
for the tensors that keep it. Writes to anything that is not a parameter (buffers, temporaries)
run at once, so buffers such as batch-norm statistics or relative-position indices are built
exactly as the constructor builds them.

Parameters whose writes were deferred hold uninitialised memory until :meth:`replay` (or a
prediction) fills them; :attr:`DeferredInit.pending` lists them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_parameter_registration_hook

__all__ = ["DeferredInit", "deferred_init"]

log = logging.getLogger(__name__)


def _storage_key(t: torch.Tensor) -> int | None:
    if t.numel() == 0 or t.device.type == "meta":
        return None
    return t.untyped_storage().data_ptr()


#: In-place tensor methods that change metadata (shape, strides, autograd flags), not values:
#: these run at once, or the constructor would see the wrong shapes.
_METADATA = frozenset(
    {
        "requires_grad_",
        "share_memory_",
        "resize_",
        "resize_as_",
        "set_",
        "as_strided_",
        "squeeze_",
        "unsqueeze_",
        "transpose_",
        "t_",
        "swapdims_",
        "swapaxes_",
        "detach_",
        "rename_",
        "names_",
        "_coalesced_",
        "_dtensor__new__",
        "retain_grad",
    }
)
_AUGMENTED = ("add", "sub", "mul", "truediv", "div", "floordiv", "mod", "pow", "matmul")
_AUGMENTED += ("and", "or", "xor", "lshift", "rshift")


def _write_methods() -> list[str]:
    """Names of the value-writing in-place methods of ``torch.Tensor``."""
    names = [
        n
        for n in dir(torch.Tensor)
        if n.endswith("_") and not n.startswith("__") and n not in _METADATA
    ]
    names += ["__setitem__"] + [f"__i{op}__" for op in _AUGMENTED]
    return [n for n in names if callable(getattr(torch.Tensor, n, None))]


@dataclass
class DeferredInit:
    """The parameters created in a :func:`deferred_init` block and their recorded writes."""

    params: dict[int, nn.Parameter] = field(default_factory=dict)  # storage -> parameter
    writes: list[tuple[int, Any, tuple, dict]] = field(default_factory=list)

    @property
    def pending(self) -> set[int]:
        """Storage keys of the parameters that have recorded writes not yet run."""
        return {key for key, *_ in self.writes}

    def replay(
        self, params: Iterable[nn.Parameter] | None = None, *, keep_others: bool = False
    ) -> int:
        """Run the recorded writes, in their original order, for ``params`` (default: every
        parameter created in the block). Writes to other parameters are dropped: the predicted
        ones are overwritten anyway, and parameters the model no longer holds (a replaced
        first convolution) need none; ``keep_others=True`` keeps them for a later replay.
        Returns the number of writes run."""
        wanted = None if params is None else {_storage_key(p) for p in params}
        done, others = 0, []
        with torch.no_grad():
            for write in self.writes:
                key, method, args, kwargs = write
                if wanted is None or key in wanted:
                    method(*args, **kwargs)
                    done += 1
                else:
                    others.append(write)
        self.writes[:] = others if keep_others else []
        return done


def _deferring(method: Any, state: DeferredInit) -> Any:
    def write(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        key = _storage_key(self) if type(self) in _PLAIN else None
        if key is not None and key in state.params:
            state.writes.append((key, method, (self, *args), kwargs))
            return self
        return method(self, *args, **kwargs)

    return write


_PLAIN = (torch.Tensor, nn.Parameter)


@contextmanager
def deferred_init() -> Iterator[DeferredInit]:
    """Construct models inside this block to defer the initialisation of their parameters.

    >>> with deferred_init() as deferred:
    ...     model = timm.create_model("densenet121")
    >>> deferred.replay()  # default init after all (or let initialize() predict most of it)

    The in-place methods of ``torch.Tensor`` are wrapped for the duration of the block (only
    writes to parameters created in it are deferred), so constructors run at native speed.
    Not thread-safe: other threads see the wrapped methods meanwhile.
    """
    state = DeferredInit()

    def registered(_module: nn.Module, _name: str, param: nn.Parameter | None) -> None:
        if param is not None:
            key = _storage_key(param)
            if key is not None:
                state.params[key] = param  # kept alive: its memory is not reused meanwhile

    originals = {name: getattr(torch.Tensor, name) for name in _write_methods()}
    handle = register_module_parameter_registration_hook(registered)
    try:
        for name, method in originals.items():
            setattr(torch.Tensor, name, _deferring(method, state))
        yield state
    finally:
        for name, method in originals.items():
            setattr(torch.Tensor, name, method)
        handle.remove()
    log.debug("deferred %d writes to %d parameters", len(state.writes), len(state.pending))
