"""Finished benchmark cells: loading, same-setting filtering and aggregation over seeds."""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from string import hexdigits

import numpy as np

from hyperinit.bench.tasks import TASKS

__all__ = [
    "CONVERGED",
    "INIT_ORDER",
    "aggregate",
    "convergence_epochs",
    "fmt_mean_std",
    "init_order",
    "load_results",
    "mean_std",
    "same_setting",
]

log = logging.getLogger(__name__)

#: Fraction of the default init's best mean validation score that counts as "converged".
CONVERGED = 0.98
INIT_ORDER = ("default", "hyperinit:own", "hyperinit:mixed", "hyperinit:auto", "c2l")


def _training_identity(cell: dict) -> str:
    """The cell's configuration without what does not change training (tags, CAM settings)."""
    same = {k: v for k, v in cell.items() if k not in ("tags", "cam_epochs", "cam_images")}
    return json.dumps(same, sort_keys=True)


def _shipped_checkpoints() -> tuple[set[str], set[str]]:
    """The cache-key versions of the trained checkpoints this version of hyperinit ships
    (weights sha256 prefix and prediction settings, own modality and ``auto``), and their
    weights sha256 prefixes alone."""
    from hyperinit.bench.inits import hypernet_version
    from hyperinit.modalities import MODALITIES, get_modality

    trained = [m for m in MODALITIES if get_modality(m).trained]
    versions = {hypernet_version(f"hyperinit:{m}", m) for m in trained}
    versions.add(hypernet_version("hyperinit:auto", "auto"))
    return versions - {None}, {get_modality(m).sha256["model.safetensors"][:8] for m in trained}


def _checkpoint_tag(version: str, shipped: tuple[set[str], set[str]]) -> str:
    """``trained`` for a shipped checkpoint under its shipped settings, ``trained-earlier-settings``
    for its weights under earlier prediction settings, else the version itself."""
    versions, weights = shipped
    if version in versions:
        return "trained"
    shas = {t for t in version.split("-") if len(t) == 8 and all(c in hexdigits for c in t)}
    if shas and shas <= weights:  # the weights' sha prefixes, whatever settings follow them
        return "trained-earlier-settings"
    return version


def load_results(dirs: Iterable[str | Path]) -> list[dict]:
    """Every finished cell under ``<dir>/cells/*.json``; the same training found twice (also
    under other tags or CAM settings) is read once, preferring the copy with CAMs."""
    seen: dict[str, dict] = {}
    shipped = _shipped_checkpoints()
    for d in dirs:
        for path in sorted(Path(d).glob("cells/*.json")):
            r = json.loads(path.read_text())
            if r["cell"].get("hypernet"):  # a trained / user checkpoint: its own column
                tag = _checkpoint_tag(r["cell"]["hypernet"], shipped)
                r["cell"]["init"] = f"{r['cell']['init']}@{tag}"
            elif "untrained" in str(r.get("init_info", {}).get("checkpoint", "")):
                r["cell"]["init"] = f"{r['cell']['init']}@reference"  # say so in every table
            ident = _training_identity(r["cell"])
            keys = {r["key"]} | (seen[ident]["same_training"] if ident in seen else set())
            if ident not in seen or (r.get("cams") and not seen[ident].get("cams")):
                seen[ident] = r
            seen[ident]["same_training"] = keys  # every cell key this training stands for
    return list(seen.values())


SETTING = ("size", "epochs", "batch_size", "lr", "max_train", "max_eval", "min_steps_per_epoch")


def _split_policy(r: dict) -> str:
    """``fixed`` labelled subset for every seed, or one ``per-seed``."""
    c = r["cell"]
    return (
        "fixed"
        if c.get("data_seed", 0) == 0
        else "per-seed"
        if c["data_seed"] == c["seed"]
        else "other"
    )


def same_setting(results: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split results into those with their task's most common training setting (size,
    epochs, batch, rate, caps, fixed or per-seed label subset) and the rest, so that tables
    never mix settings."""
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_task[r["cell"]["task"]].append(r)
    kept, left = [], []
    for rs in by_task.values():
        settings = [(*(r["cell"].get(k) for k in SETTING), _split_policy(r)) for r in rs]
        common = max(set(settings), key=settings.count)
        for r, st in zip(rs, settings, strict=True):
            (kept if st == common else left).append(r)
    return kept, left


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return float("nan"), float("nan"), 0
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals)


def fmt_mean_std(m: float, s: float, n: int) -> str:
    if n == 0:
        return "–"
    return f"{m:.3f} ± {s:.3f} (n={n})" if n > 1 else f"{m:.3f} (n=1)"


def init_order(names: Iterable[str]) -> list[str]:
    names = set(names)
    rank = {n: i for i, n in enumerate(INIT_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def arch_short(arch: str) -> str:
    return arch.split(":", 1)[-1]


def aggregate(results: list[dict], metric: str | None = None) -> dict[tuple, tuple]:
    """``(task, arch, init, fraction, scheme) -> (mean, std, n)`` of a test metric over seeds
    (the task's primary metric by default)."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in results:
        c = r["cell"]
        m = metric or r["task"]["primary"]
        key = (c["task"], c["arch"], c["init"], c["fraction"], c["scheme"])
        groups[key].append(r["test"].get(m, float("nan")))
    return {k: mean_std(v) for k, v in groups.items()}


def _mean_curve(runs: list[dict], primary: str) -> np.ndarray:
    n = min(len(r["curves"]["val"]) for r in runs)
    return np.array([[r["curves"]["val"][e][primary] for e in range(n)] for r in runs]).mean(0)


def convergence_epochs(
    results: list[dict], task: str, arch: str, fraction: float
) -> dict[str, int | None]:
    """Per init: the first epoch whose mean validation score (over seeds) reaches
    ``CONVERGED`` x the default init's best mean score; ``None`` if never."""
    runs: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        c = r["cell"]
        if (c["task"], c["arch"], c["fraction"], c["scheme"]) == (
            task,
            arch,
            fraction,
            "all_layers",
        ):
            runs[c["init"]].append(r)
    if "default" not in runs:
        return {}
    primary = TASKS[task].primary
    target = CONVERGED * float(np.nanmax(_mean_curve(runs["default"], primary)))
    out: dict[str, int | None] = {}
    for init, rs in runs.items():
        curve = _mean_curve(rs, primary)
        hit = np.nonzero(curve >= target)[0]
        out[init] = int(hit[0]) + 1 if len(hit) else None
    return out
