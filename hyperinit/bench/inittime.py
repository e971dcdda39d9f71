"""Initialisation time per architecture: building with the default init vs hyperinit.initialize."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

__all__ = ["measure_init_time"]


def measure_init_time(
    arch: str,
    results_dir: str | Path | None = None,
    *,
    modality: str = "xray",
    in_chans: int = 1,
    size: int = 64,
    repeats: int = 3,
) -> dict:
    """Median seconds to build ``arch`` (its default init) and to run
    :func:`hyperinit.initialize` on it, after one warm-up; cached in
    ``results_dir/inittime/<arch>.json`` when given (a finished measurement is not redone)."""
    from hyperinit.initialize import initialize
    from hyperinit.models import create_model

    path = None
    if results_dir is not None:
        path = Path(results_dir) / "inittime" / f"{arch.replace(':', '-')}.json"
        if path.exists():
            return json.loads(path.read_text())
    example = torch.randn(2, in_chans, size, size)
    build, init = [], []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        model = create_model(arch, in_chans=in_chans, num_classes=2)
        t1 = time.perf_counter()
        initialize(model, modality, example_input=example, seed=i)
        t2 = time.perf_counter()
        if i:  # the first round warms up imports and caches
            build.append(t1 - t0)
            init.append(t2 - t1)
    out = {
        "arch": arch,
        "params": sum(p.numel() for p in model.parameters()),
        "build_seconds": statistics.median(build),
        "init_seconds": statistics.median(init),
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "size": size,
        "in_chans": in_chans,
    }
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out) + "\n")
    return out
