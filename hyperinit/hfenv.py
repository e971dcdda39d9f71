"""The Hugging Face Hub environment variables, read when a call needs them.

huggingface_hub reads ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, ``HF_HUB_CACHE`` / ``HF_HOME`` and
``HF_HUB_ETAG_TIMEOUT`` once, when it is imported (``huggingface_hub.constants``), and uses
those values ever after. hyperinit promises that setting them after ``import hyperinit`` (in a
notebook, a test, a job script that imports first) still takes effect, so this module reads them
at call time, parsed as huggingface_hub parses them, and hyperinit passes the values explicitly
(``endpoint=``, ``cache_dir=``, ``local_files_only=``, ``etag_timeout=``). Everything else
(tokens, proxies, telemetry, ...) is left to huggingface_hub, which reads it at call time.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "endpoint", "etag_timeout", "is_offline"]

_TRUE = {"1", "true", "yes", "on"}
_DEFAULT_ETAG_TIMEOUT = 10.0


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) as set now, not at import time."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def cache_dir() -> Path:
    """The Hub cache: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else huggingface_hub's default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser()


def endpoint() -> str | None:
    """``HF_ENDPOINT`` without a trailing slash; ``None`` leaves huggingface_hub's default."""
    value = os.environ.get("HF_ENDPOINT")
    return value.rstrip("/") if value else None


def etag_timeout() -> float:
    """``HF_HUB_ETAG_TIMEOUT`` in seconds (10 when unset or not a number)."""
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT", _DEFAULT_ETAG_TIMEOUT))
    except ValueError:
        return _DEFAULT_ETAG_TIMEOUT
