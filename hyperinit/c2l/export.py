"""The pretrained backbone as a checkpoint: `C2LBackbone` (huggingface_hub's ``ModelHubMixin``)
and :func:`load_backbone`, which loads one into a model of any library."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from hyperinit.atomic import atomic_write_text
from hyperinit.c2l.backbone import HEAD_NAMES
from hyperinit.errors import C2LCheckpointError
from hyperinit.hub_mixin import HubCheckpointMixin

__all__ = ["C2LBackbone", "load_backbone"]

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class C2LBackbone(
    HubCheckpointMixin,
    library_name="hyperinit",
    tags=["c2l", "self-supervised", "medical-imaging"],
):
    """A C2L-pretrained backbone as a checkpoint folder (local or on the Hub).

    ``model.safetensors`` is the backbone's state dict (``load_state_dict`` into the same
    architecture; tensors that share storage are written once, by
    ``safetensors.torch.save_model``), ``config.json`` the C2L settings and run
    (:meth:`hyperinit.C2LPretrainer.save_pretrained`), ``README.md`` a model card.
    ``C2LBackbone.from_pretrained(path_or_repo_id, model=...)`` loads the weights into
    ``model`` (see :func:`load_backbone`); ``.model``, ``.config`` and ``.missing_keys`` hold
    the result.
    """

    _checkpoint_files = (CONFIG_NAME, WEIGHTS_NAME)

    def __init__(self, model: nn.Module, config: dict[str, Any] | None = None) -> None:
        self.model = model
        self.config = dict(config or {})
        #: model tensors the checkpoint did not set (a classifier head left at its init)
        self.missing_keys: list[str] = []

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> Path:  # type: ignore[override]
        """Write ``model.safetensors``, ``config.json`` and ``README.md``; returns the folder."""
        path = Path(save_directory)
        super().save_pretrained(path, **kwargs)
        return path

    def _save_pretrained(self, save_directory: Path) -> None:
        from safetensors.torch import save_model

        meta = {"format": "pt", "method": "c2l"}
        save_model(self.model, str(save_directory / WEIGHTS_NAME), metadata=meta)
        atomic_write_text(json.dumps(self.config, indent=2) + "\n", save_directory / CONFIG_NAME)

    @classmethod
    def _check_checkpoint(cls, folder: Path) -> None:
        if not (folder / WEIGHTS_NAME).is_file():
            raise C2LCheckpointError(f"no C2L weights at {folder / WEIGHTS_NAME}")

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        model: nn.Module,
        config: dict[str, Any] | None = None,
        strict: bool = True,
        ignore_head: bool = True,
        **_hub_kwargs: Any,  # revision, cache_dir, ...: model_id is a verified local folder
    ) -> C2LBackbone:
        out = cls(model, config if isinstance(config, dict) else None)
        out.missing_keys = _load_weights(model, Path(model_id) / WEIGHTS_NAME, strict, ignore_head)
        return out

    def model_card(self) -> str:
        """A minimal model card from the config (the ``README.md`` of the checkpoint)."""
        cfg = self.config
        return (
            "---\nlibrary_name: hyperinit\ntags: [c2l, self-supervised, medical-imaging]\n---\n"
            f"# C2L-pretrained {cfg.get('backbone_class', 'backbone')}\n\n"
            "Comparing-to-Learn (Zhou et al., MICCAI 2020) self-supervised pretraining with "
            f"hyperinit: {cfg.get('steps', '?')} steps, {cfg.get('in_chans', '?')}-channel "
            f"{cfg.get('image_size', '?')} px crops, {cfg.get('feature_width', '?')}-d features."
            "\n\nLoad with `hyperinit.c2l.load_backbone(model, repo_id_or_folder)`.\n"
        )


def load_backbone(
    model: nn.Module, path: str | Path, *, strict: bool = True, ignore_head: bool = True
) -> list[str]:
    """Load C2L weights written by :meth:`C2LPretrainer.save_pretrained` into ``model``.

    ``path``: the folder, its ``model.safetensors`` or a Hub repo id. With ``strict``, every
    saved tensor must fit and every model tensor must be loaded, except (``ignore_head``) those
    of a classifier head the backbone did not have (``fc``/``classifier``/``head``...), left at
    their init. A backbone pretrained on 1-channel images loads into a 3-channel model (and
    back): the stem is adapted with timm's ``adapt_input_conv``. Returns the names left
    unloaded.
    """
    if Path(path).is_file():
        return _load_weights(model, Path(path), strict, ignore_head)
    return C2LBackbone.from_pretrained(
        path, model=model, strict=strict, ignore_head=ignore_head
    ).missing_keys


def _load_weights(model: nn.Module, file: Path, strict: bool, ignore_head: bool) -> list[str]:
    """Load ``file`` into ``model``; the names left unloaded (see :func:`load_backbone`)."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            # save_model writes one name per shared storage; the metadata names the others
            aliases = dict(f.metadata() or {})
            state = {k.removeprefix("module."): f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except Exception as e:
        raise C2LCheckpointError(f"cannot read {file}: {e}") from e
    _adapt_stem(state, model, file)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise C2LCheckpointError(f"{file} does not fit {type(model).__name__}: {e}") from e
    tied = {k for k in result.missing_keys if aliases.get(k, "").removeprefix("module.") in state}
    missing = [k for k in result.missing_keys if k not in tied]
    if strict:
        head_missing = [k for k in missing if k.split(".")[0] in HEAD_NAMES]
        other = [k for k in missing if k not in head_missing or not ignore_head]
        if result.unexpected_keys or other:
            raise C2LCheckpointError(
                f"{file} does not fit {type(model).__name__}: missing {other[:5]}, "
                f"unexpected {list(result.unexpected_keys)[:5]}"
            )
    return missing


def _adapt_stem(state: dict[str, Tensor], model: nn.Module, file: Path) -> None:
    """Fit a stem convolution saved for 1 (or 3) input channels to a model with C (or 1),
    with timm's ``adapt_input_conv``: a 1-channel stem is first written as the 3-channel stem
    that gives its response on a gray image copied into 3 channels. Only the input-channel
    dimension may differ, and only for one tensor."""
    from timm.models import adapt_input_conv

    own = model.state_dict()
    odd = [
        k
        for k, v in state.items()
        if k in own
        and v.ndim == 4
        and own[k].ndim == 4
        and v.shape[1] != own[k].shape[1]
        and v.shape[0] == own[k].shape[0]
        and v.shape[2:] == own[k].shape[2:]
    ]
    if len(odd) != 1:
        return
    key = odd[0]
    weight = state[key]
    saved, want = weight.shape[1], own[key].shape[1]
    if saved == 1:
        weight = weight.repeat(1, 3, 1, 1) / 3
    elif saved > 3 or (saved != 3 and want != 1):
        return
    state[key] = adapt_input_conv(want, weight)
    logger.info("%s: %s adapted from %d to %d input channels", file, key, saved, want)
