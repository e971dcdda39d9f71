"""Exception types for errors a user can fix.

Every error raised on purpose by hyperinit derives from :class:`HyperInitError`, and its message
says what went wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "ArchSpaceError",
    "BenchConfigError",
    "C2LCheckpointError",
    "C2LConfigError",
    "CheckpointDownloadError",
    "CheckpointError",
    "CheckpointIntegrityError",
    "DataError",
    "ExampleInputError",
    "HyperInitError",
    "LocalizationError",
    "MetaDeviceError",
    "MetaLRConfigError",
    "MetaLRStateError",
    "NoParametersError",
    "ObjectiveError",
    "ParamGroupingError",
    "TraceError",
    "TrainingError",
    "UnknownModalityError",
    "UnreadableImageError",
]


class HyperInitError(Exception):
    """Base class of all errors raised on purpose by hyperinit."""


class TraceError(HyperInitError, RuntimeError):
    """The model could not be traced, e.g. its forward pass failed on the example input."""


class ExampleInputError(TraceError, ValueError):
    """The example input does not fit the model (wrong number of channels, dimensions, ...)."""


class MetaDeviceError(HyperInitError, ValueError):
    """A model built on the meta device cannot be initialised exactly (lost buffer values)."""


class NoParametersError(HyperInitError, ValueError):
    """The model has no parameters to initialise."""


class CheckpointError(HyperInitError, ValueError):
    """A hypernetwork checkpoint is missing, of the wrong format, corrupted or incompatible."""


class UnknownModalityError(HyperInitError, KeyError):
    """The modality name is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MetaLRConfigError(HyperInitError, ValueError):
    """A MetaLROptimizer argument is invalid (rates, meta_every, validation source, ...)."""


class ParamGroupingError(MetaLRConfigError):
    """The parameters could not be split into layer groups as asked."""


class MetaLRStateError(HyperInitError, ValueError):
    """A MetaLROptimizer state dict is missing keys or does not fit this optimizer."""


class CheckpointDownloadError(CheckpointError):
    """A checkpoint could not be fetched from the Hub (offline, network failure, 404, 5xx)."""


class CheckpointIntegrityError(CheckpointError):
    """A checkpoint file's sha256 does not match the expected one (corrupted or truncated)."""


class DataError(HyperInitError, ValueError):
    """A dataset cannot be built: missing folder, no images, bad CSV, unknown split or name."""


class UnreadableImageError(DataError, OSError):
    """One image file cannot be decoded (corrupt, truncated, unsupported or DICOM without
    pydicom). Datasets skip such files with a warning; :func:`hyperinit.data.read_image`
    raises it."""


class C2LConfigError(HyperInitError, ValueError):
    """A C2L argument or input is invalid (backbone output, data, queue, hyperparameters)."""


class C2LCheckpointError(HyperInitError, ValueError):
    """A C2L training checkpoint or saved backbone is missing, corrupted or does not fit."""


class BenchConfigError(HyperInitError, ValueError):
    """A benchmark cell or suite is misconfigured (unknown task, init, scheme, suite...)."""


class ArchSpaceError(HyperInitError, ValueError):
    """An architecture spec of :mod:`hyperinit.archspace` is invalid or cannot be built."""


class ObjectiveError(HyperInitError, ValueError):
    """Unknown self-supervised objective name or invalid objective argument."""


class TrainingError(HyperInitError, RuntimeError):
    """Hypernetwork training cannot start or continue (bad config, checkpoint of another run,
    no data)."""


class LocalizationError(HyperInitError, ValueError):
    """An AttentionMiner argument, input or checkpoint is invalid (backbone without a spatial
    feature map, labels that do not fit ``num_classes``, a class without positives, ...)."""
