"""Checkpoints of the hypernetwork: ``config.json`` + ``model.safetensors`` + ``README.md``.

:class:`HyperInitCheckpoint` gives :class:`~hyperinit.HyperInitializer` huggingface_hub's
``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` (through
:class:`~hyperinit.hub_mixin.HubCheckpointMixin`); ``config.json`` keeps the format of
:class:`~hyperinit.hypernet.config.HyperInitConfig`, so checkpoints written before and after
the move to the mixin load in either.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from hyperinit.errors import CheckpointError
from hyperinit.hub_mixin import HubCheckpointMixin
from hyperinit.hypernet.config import HyperInitConfig

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "HyperInitCheckpoint"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class HyperInitCheckpoint(HubCheckpointMixin):
    """The checkpoint methods of :class:`~hyperinit.HyperInitializer` (which has ``config``,
    a :class:`HyperInitConfig`, and is built as ``cls(config)``)."""

    _resolves_modalities = True
    config: HyperInitConfig

    def save_pretrained(  # type: ignore[override]
        self, save_directory: str | Path, model_card: str | None = None, **kwargs: Any
    ) -> Path:
        """Write ``config.json``, ``model.safetensors`` and ``README.md`` (``model_card``,
        default :meth:`model_card`; an existing card is kept unless one is given); returns the
        folder. ``kwargs`` go to ``ModelHubMixin.save_pretrained`` (e.g. ``push_to_hub=True``).
        """
        path = Path(save_directory)
        if model_card is not None:
            path.mkdir(parents=True, exist_ok=True)
            (path / "README.md").write_text(model_card)
        super().save_pretrained(path, **kwargs)
        return path

    def _save_pretrained(self, save_directory: Path) -> None:
        from safetensors.torch import save_model

        from hyperinit import __version__

        self.config.library_version = __version__
        self.config.save(save_directory / CONFIG_NAME)
        save_model(self, str(save_directory / WEIGHTS_NAME), metadata={"format": "pt"})

    @classmethod
    def _check_checkpoint(cls, folder: Path) -> None:
        if folder.is_file():
            raise CheckpointError(
                f"{folder} is a file; a hyperinit checkpoint is a directory holding "
                f"{CONFIG_NAME} and {WEIGHTS_NAME} (pickled .pt/.pth files are never loaded, for "
                "safety). Pass the directory written by HyperInitializer.save_pretrained()."
            )
        missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
        if missing:
            raise CheckpointError(
                f"{folder} is not a hyperinit checkpoint: missing {', '.join(missing)}. A "
                f"checkpoint directory holds {CONFIG_NAME} and {WEIGHTS_NAME} (see "
                "save_pretrained())."
            )
        HyperInitConfig.load(folder / CONFIG_NAME)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        device: torch.device | str | None = None,
        **_hub_kwargs: Any,  # revision, cache_dir, ...: model_id is a verified local folder
    ) -> Any:
        return cls._from_directory(model_id, device=device)

    def model_card(self) -> str:
        """A minimal model card built from the config (the ``README.md`` of a checkpoint)."""
        cfg = self.config
        training = json.dumps(cfg.training, indent=2, sort_keys=True)
        return (
            "---\nlibrary_name: hyperinit\ntags: [hypernetwork, initialization, "
            "medical-imaging]\n---\n"
            f"# hyperinit hypernetwork ({cfg.modality or 'no modality'})\n\n"
            f"- **Architecture**: HyperInitializer, d_model={cfg.d_model}, "
            f"K={cfg.gnn_rounds} GNN rounds, s_max={cfg.s_max}, rank-{cfg.code_rank} codes, "
            f"{cfg.core_size}x{cfg.core_size} kernel core, op vocabulary v{cfg.vocab_version}.\n"
            f"- **Training** (from config.json):\n\n```json\n{training}\n```\n\n"
            "Load with `hyperinit.HyperInitializer.from_pretrained(repo_id)` or "
            "`hyperinit.initialize(model, checkpoint=repo_id)`.\n"
        )

    @classmethod
    def _from_directory(cls, path: str | Path, *, device: torch.device | str | None = None) -> Any:
        """Load a checkpoint directory written by :meth:`save_pretrained` (in eval mode)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        cls._check_checkpoint(path)
        config = HyperInitConfig.load(path / CONFIG_NAME)
        try:
            state = load_file(str(path / WEIGHTS_NAME))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(
                f"{path / WEIGHTS_NAME} is not a readable safetensors file ({e}): the download "
                "may be truncated or corrupted. Delete it and fetch the checkpoint again."
            ) from e
        model = cls(config)
        expected = model.state_dict()
        bad = sorted(set(expected) ^ set(state)) + [
            k for k in expected if k in state and state[k].shape != expected[k].shape
        ]
        if bad:
            raise CheckpointError(
                f"{path} does not match its config.json: mismatched tensors {bad[:5]}"
                f"{' ...' if len(bad) > 5 else ''}. The checkpoint is corrupted or was written "
                "by an incompatible version of hyperinit."
            )
        model.load_state_dict(state)
        if device is not None:
            model.to(device)
        return model.eval()
