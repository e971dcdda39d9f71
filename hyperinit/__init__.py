"""hyperinit: initialise, fine-tune and pretrain medical-imaging models with little labelled data."""

from __future__ import annotations

from hyperinit.errors import (
    CheckpointError,
    ExampleInputError,
    HyperInitError,
    NoParametersError,
    TraceError,
    UnknownModalityError,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "CheckpointError",
    "ExampleInputError",
    "HyperInitError",
    "NoParametersError",
    "TraceError",
    "UnknownModalityError",
    "__version__",
]
