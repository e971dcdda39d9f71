"""`HubCheckpointMixin`: huggingface_hub's ``ModelHubMixin`` with hyperinit's loading rules.

Every checkpoint hyperinit writes (the hypernetwork, a C2L backbone) is a folder of
``config.json`` + ``model.safetensors`` + ``README.md`` saved, loaded and pushed through
``ModelHubMixin``; a class supplies its ``_save_pretrained`` / ``_from_pretrained`` hooks and
``_check_checkpoint``. This base adds what huggingface_hub does not do:

- ``from_pretrained`` first resolves its argument to a verified local folder
  (:func:`hyperinit.hub.resolve_pretrained`): a local directory, a registered modality with the
  registry's sha256 pins and the embedded fallback, or a repo id whose files are checked against
  the sha256 the Hub announced; then the mixin loads that folder. Pickles are never loaded.
- the Hub environment is read at call time (:mod:`hyperinit.hfenv`), also by ``push_to_hub``.
"""

from __future__ import annotations

import inspect
import logging
import tempfile
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from huggingface_hub import ModelCard, ModelHubMixin

from hyperinit import hfenv
from hyperinit.hub import CHECKPOINT_FILES, resolve_pretrained

__all__ = ["HubCheckpointMixin"]

log = logging.getLogger(__name__)

T = TypeVar("T", bound="HubCheckpointMixin")


#: what ModelHubMixin itself passes to ``_from_pretrained``: not the user's to give
_HUB_KEYWORDS = frozenset(
    {"model_id", "revision", "cache_dir", "force_download", "local_files_only", "token"}
)


def _check_keywords(cls: type, given: dict[str, Any]) -> None:
    """``TypeError`` for a keyword ``_from_pretrained`` does not take (a typo such as
    ``devcie=`` would otherwise vanish into its ``**_hub_kwargs``)."""
    params = inspect.signature(cls._from_pretrained).parameters
    known = (
        {n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
        - _HUB_KEYWORDS
        - {"cls"}
    )
    unknown = sorted(set(given) - known)
    if unknown:
        raise TypeError(
            f"{cls.__name__}.from_pretrained() got unexpected keyword arguments {unknown}; "
            f"it takes {sorted(known)} besides revision, cache_dir, local_files_only and token"
        )


class HubCheckpointMixin(ModelHubMixin):
    """``ModelHubMixin`` whose ``from_pretrained`` only ever loads verified local files."""

    #: files fetched from a Hub repo (all of them sha256-checked)
    _checkpoint_files: ClassVar[tuple[str, ...]] = CHECKPOINT_FILES
    #: whether a modality name (``xray``, ...) resolves through the registry
    _resolves_modalities: ClassVar[bool] = False

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls: type[T],
        name_or_repo_id_or_path: str | Path,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool | None = None,
        token: str | bool | None = None,
        **model_kwargs: Any,
    ) -> T:
        """Load a checkpoint from a local directory (always wins when it exists), a Hub repo
        id ``owner/name`` or, for the hypernetwork, a registered modality.

        Args:
            name_or_repo_id_or_path: the folder, repo id or modality.
            revision: branch, tag or commit of the Hub repo (defaults to the registry's pin for
                a modality and to ``main`` for a repo id).
            cache_dir: the Hub cache (defaults to ``HF_HUB_CACHE`` / ``HF_HOME/hub``).
            local_files_only: never touch the network (defaults to ``HF_HUB_OFFLINE``).
            token: Hub token (defaults to ``HF_TOKEN`` / the stored login).
            model_kwargs: passed on to the class's ``_from_pretrained`` (e.g. ``device``).

        Every file from the Hub or its cache is checked against its sha256 before loading;
        pickled files are never loaded.
        """
        _check_keywords(cls, model_kwargs)
        folder, source = resolve_pretrained(
            name_or_repo_id_or_path,
            files=cls._checkpoint_files,
            modalities=cls._resolves_modalities,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
        log.debug("loading %s from %s", cls.__name__, source)
        cls._check_checkpoint(folder)
        return super().from_pretrained(folder, local_files_only=True, **model_kwargs)

    @classmethod
    def _check_checkpoint(cls, folder: Path) -> None:
        """Raise a clear error for a folder that is not a checkpoint of this class, before the
        mixin reads its ``config.json``."""

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The model card written as ``README.md`` (:meth:`model_card` when the class has one)."""
        text = getattr(self, "model_card", None)
        if callable(text):
            return ModelCard(text())
        return super().generate_model_card(*args, **kwargs)

    def push_to_hub(  # type: ignore[override]
        self,
        repo_id: str,
        *,
        commit_message: str = "Upload hyperinit checkpoint",
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        **save_kwargs: Any,
    ) -> Any:
        """Upload the checkpoint (``save_pretrained``'s files) to a Hub repo, creating it if
        needed; returns the ``CommitInfo``. ``save_kwargs`` go to ``save_pretrained`` (e.g.
        ``model_card=``). Pin the uploaded weights with ``hyperinit.hub.sha256_file``."""
        import huggingface_hub

        api = huggingface_hub.HfApi(endpoint=hfenv.endpoint(), token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, **save_kwargs)
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                commit_message=commit_message,
                revision=revision,
                create_pr=create_pr,
            )
