"""Hugging Face Hub distribution of hypernetwork checkpoints: download, cache, integrity, fallback.

Resolution order for a registered modality (see :mod:`hyperinit.modalities`):

1. the Hub cache, when it holds the pinned files with the registry's sha256 (no network);
2. ``hf_hub_download`` from the pinned repo id + revision (honours ``HF_HOME``,
   ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, ``HF_HUB_ETAG_TIMEOUT`` and the usual
   tokens), checked against the registry's sha256 and downloaded once more on a mismatch;
3. the copy embedded in the wheel, with one log line saying why.

An explicit local directory always wins (:func:`resolve_pretrained`, behind every
``from_pretrained``, see :mod:`hyperinit.hub_mixin`). Any repo id works too; its files are checked
against the sha256 the Hub announced for them (the ETag of LFS files). A file whose sha256 does
not match is never loaded. Environment variables are read at call time (see
:mod:`hyperinit.hfenv`), so setting ``HF_HUB_OFFLINE=1`` after importing hyperinit still takes
effect.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperinit.errors import CheckpointDownloadError, CheckpointError, CheckpointIntegrityError
from hyperinit.hfenv import cache_dir as default_cache_dir
from hyperinit.hfenv import endpoint as _endpoint
from hyperinit.hfenv import etag_timeout as _etag_timeout
from hyperinit.hfenv import is_offline
from hyperinit.modalities import ModalityCheckpoint, get_modality, is_modality, list_modalities

__all__ = [
    "CheckpointInfo",
    "default_cache_dir",
    "download_checkpoint",
    "fetch_repo_files",
    "is_offline",
    "list_checkpoints",
    "looks_like_repo_id",
    "resolve_checkpoint",
    "resolve_pretrained",
    "sha256_file",
]

log = logging.getLogger(__name__)

CHECKPOINT_FILES = ("config.json", "model.safetensors")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def looks_like_repo_id(name: object) -> bool:
    """Whether ``name`` has the shape of a Hub repo id (``owner/name``) rather than a path."""
    return isinstance(name, str) and bool(_REPO_ID.match(name)) and not Path(name).exists()


def _blob_sha256(path: Path) -> str | None:
    """The sha256 the Hub announced for a cached file: its blob's name, when that is a sha256."""
    name = Path(os.path.realpath(path)).name
    return name if _SHA256.fullmatch(name) else None


def _drop_cached(path: Path) -> None:
    """Delete a cached file and the blob it points to, so the next download starts afresh."""
    real = Path(os.path.realpath(path))
    for p in {path, real}:
        with contextlib.suppress(OSError):
            p.unlink()


def _verify(path: Path, expected: str | None, label: str) -> None:
    if expected is None:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointIntegrityError(
            f"{label} ({path}) has sha256 {actual}, expected {expected}: the file is corrupted "
            "or truncated and was not loaded."
        )


def _hf_download(
    repo_id: str,
    filename: str,
    *,
    revision: str | None,
    cache_dir: Path,
    local_files_only: bool,
    force_download: bool = False,
    token: str | bool | None = None,
) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(
        hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=str(cache_dir),
            local_files_only=local_files_only,
            force_download=force_download,
            token=token,
            endpoint=_endpoint(),
            etag_timeout=_etag_timeout(),
        )
    )


def _preflight(repo_id: str, filename: str, revision: str | None, token: str | bool | None) -> None:
    """One HEAD request without retries, so that a dead network fails in seconds, not minutes
    (huggingface_hub retries with back-off when nothing is cached)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=_endpoint())
    get_hf_file_metadata(url, token=token, timeout=_etag_timeout(), retry_on_errors=False)


def _describe(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _fetch_file(
    repo_id: str,
    filename: str,
    *,
    revision: str | None,
    cache_dir: Path,
    local_files_only: bool,
    expected: str | None,
    token: str | bool | None,
) -> Path:
    """One checkpoint file, verified; see the module docstring for the order."""
    label = f"{repo_id}@{revision or 'main'}/{filename}"
    cached: Path | None = None
    try:
        cached = _hf_download(
            repo_id, filename, revision=revision, cache_dir=cache_dir, local_files_only=True
        )
    except Exception:  # not cached (LocalEntryNotFoundError and friends)
        cached = None
    if cached is not None:
        want = expected or _blob_sha256(cached)
        try:
            _verify(cached, want, f"cached {label}")
            if expected is not None or local_files_only:
                return cached  # pinned and intact, or offline: no network needed
        except CheckpointIntegrityError as e:
            log.warning(
                "%s; deleting it%s", e, "" if local_files_only else " and downloading again"
            )
            _drop_cached(cached)
            cached = None
            if local_files_only:
                raise
    if local_files_only:
        raise CheckpointDownloadError(
            f"{label} is not in the Hub cache ({cache_dir}) and downloads are disabled "
            "(HF_HUB_OFFLINE=1 or local_files_only=True). Run `hyperinit download` where the "
            "Hub is reachable and copy the cache, or pass a local checkpoint directory."
        )
    if cached is None:
        try:
            _preflight(repo_id, filename, revision, token)
        except Exception as e:
            raise CheckpointDownloadError(f"could not download {label}: {_describe(e)}") from e
    problem: Exception | None = None
    for attempt in range(2):  # a failed or corrupted download is tried once more, afresh
        try:
            path = _hf_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=False,
                force_download=attempt > 0,
                token=token,
            )
        except Exception as e:  # truncated body, dropped connection, 5xx on GET ...
            problem = CheckpointDownloadError(f"could not download {label}: {_describe(e)}")
            problem.__cause__ = e
            log.warning("%s%s", problem, "; trying once more" if attempt == 0 else "")
            continue
        try:
            _verify(path, expected or _blob_sha256(path), f"downloaded {label}")
            return path
        except CheckpointIntegrityError as e:
            problem = e
            log.warning("%s%s", e, "; downloading it once more" if attempt == 0 else "")
            _drop_cached(path)
    assert problem is not None
    raise problem


def fetch_repo_files(
    repo_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
    sha256: dict[str, str] | None = None,
    token: str | bool | None = None,
    files: tuple[str, ...] = CHECKPOINT_FILES,
) -> Path:
    """Fetch a checkpoint's files from the Hub (or its cache), verified; returns their folder.

    Raises:
        CheckpointDownloadError: offline without a cache, network failure, 404, 5xx, timeout.
        CheckpointIntegrityError: a file's sha256 is still wrong after a second download.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    offline = is_offline() if local_files_only is None else bool(local_files_only)
    sha256 = sha256 or {}
    paths = [
        _fetch_file(
            repo_id,
            name,
            revision=revision,
            cache_dir=cache,
            local_files_only=offline,
            expected=sha256.get(name),
            token=token,
        )
        for name in files
    ]
    folders = {p.parent for p in paths}
    if len(folders) != 1:  # the files came from two snapshots (a branch moved in between)
        raise CheckpointDownloadError(
            f"{repo_id}: {', '.join(files)} resolved to different revisions; pass a commit "
            "hash as revision= to pin one."
        )
    return folders.pop()


def resolve_checkpoint(
    modality: str | ModalityCheckpoint,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
) -> tuple[Path, str]:
    """The checkpoint folder for a modality and where it came from (``hub:...``/``embedded:...``).

    Never fails for a modality with an embedded copy: Hub errors and integrity errors fall back
    to it with one log line. The embedded copy is verified against the same sha256.
    """
    entry = modality if isinstance(modality, ModalityCheckpoint) else get_modality(modality)
    pinned = revision is None or revision == entry.revision
    sha = entry.sha256 if pinned else {}
    rev = revision or entry.revision
    try:
        folder = fetch_repo_files(
            entry.repo_id,
            revision=rev,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            sha256=sha,
            token=token,
        )
        return folder, f"hub:{entry.repo_id}@{rev}"
    except CheckpointError as e:
        if entry.embedded is None:
            raise
        reason = e
    folder = entry.path
    for name, expected in entry.sha256.items():
        _verify(folder / name, expected, f"embedded checkpoint file {name}")
    log.info(
        "hyperinit: using the checkpoint embedded in the package for modality '%s' (%s)",
        entry.name,
        reason,
    )
    return folder, f"embedded:{entry.embedded}"


def resolve_pretrained(
    name_or_path: str | Path,
    *,
    files: tuple[str, ...] = CHECKPOINT_FILES,
    modalities: bool = True,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
) -> tuple[Path, str]:
    """The local folder behind what ``from_pretrained`` was given, and where it came from.

    An existing path wins; then (with ``modalities``) a registered modality, through
    :func:`resolve_checkpoint`; then a Hub repo id, through :func:`fetch_repo_files` (its
    ``files``). Anything else is returned as a path, for the loader to report as missing.
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path, str(path)
    name = str(name_or_path)
    kwargs: dict[str, Any] = {
        "revision": revision,
        "cache_dir": cache_dir,
        "local_files_only": local_files_only,
        "token": token,
    }
    if modalities and is_modality(name):
        return resolve_checkpoint(name, **kwargs)
    if looks_like_repo_id(name):
        return fetch_repo_files(name, files=files, **kwargs), f"hub:{name}@{revision or 'main'}"
    return path, name


@dataclass(frozen=True)
class CheckpointInfo:
    """A row of :func:`list_checkpoints`."""

    name: str
    repo_id: str
    revision: str
    size_bytes: int
    source: str  # "cached", "embedded" or "remote"
    trained: bool
    training_data: str
    date: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_checkpoints(cache_dir: str | Path | None = None) -> list[CheckpointInfo]:
    """The registry: name, size, where each checkpoint would load from, training data, date.

    ``source`` is ``cached`` (verified files in the Hub cache), ``remote`` (would be downloaded;
    the embedded copy is the fallback) or ``embedded`` (offline, nothing cached).
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    rows = []
    for entry in list_modalities():
        folder: Path | None = None
        with contextlib.suppress(CheckpointError):  # verified files in the cache, or none
            folder = fetch_repo_files(
                entry.repo_id,
                revision=entry.revision,
                cache_dir=cache,
                local_files_only=True,
                sha256=entry.sha256,
            )
        if folder is not None:
            source = "cached"
        elif is_offline() and entry.embedded is not None:
            source = "embedded"
        else:
            source = "remote"
        base = folder or (entry.path if entry.embedded is not None else None)
        size = sum((base / n).stat().st_size for n in entry.files) if base else 0
        rows.append(
            CheckpointInfo(
                name=entry.name,
                repo_id=entry.repo_id,
                revision=entry.revision,
                size_bytes=size,
                source=source,
                trained=entry.trained,
                training_data=entry.training_data,
                date=entry.date,
            )
        )
    return rows


def download_checkpoint(
    modality: str,
    *,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
) -> Path:
    """Pre-fill the Hub cache with a modality's checkpoint (network required); its folder."""
    entry = get_modality(modality)
    pin: dict[str, Any] = {
        "revision": entry.revision,
        "cache_dir": cache_dir,
        "local_files_only": False,
    }
    folder = fetch_repo_files(entry.repo_id, sha256=entry.sha256, token=token, **pin)
    try:  # the model card is optional and not checksummed
        fetch_repo_files(entry.repo_id, token=token, files=("README.md",), **pin)
    except CheckpointError as e:
        log.debug("no model card for %s: %s", entry.repo_id, e)
    return folder
