"""Variants on the quick check: several inits of a few architectures on one task, paired by
seed, collected into one table (the shape of most ``research/`` experiments).

``inits(seed, arch)`` names each init and says where its cells live: ``{name: (init,
init_name, cells_dir)}``, with ``init`` anything :class:`hyperinit.bench.Cell` takes (a spec
string or a callable, then named by ``init_name``). Inits shared with the panel read the
panel's committed cells by passing its folder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hyperinit.bench.quick import panel_cell, run_quick
from hyperinit.bench.stats import paired_text

__all__ = ["Rows", "best_val_and_test", "collect", "variant_table"]

#: arch -> init name -> {"val": [...], "test": [...]} over seeds
Rows = dict[str, dict[str, dict[str, list[float]]]]
InitSpec = tuple[object, "str | None", Path]


def best_val_and_test(result: dict) -> tuple[float, float]:
    """A finished cell's best validation score and its test score."""
    primary = result["task"]["primary"]
    return max(v[primary] for v in result["curves"]["val"]), result["test"][primary]


def collect(
    seeds: int,
    archs: Sequence[str],
    task: str,
    inits: Callable[[int, str], Mapping[str, InitSpec]],
    cache: Path,
    *,
    cell: Callable[..., object] = panel_cell,
    log: Callable[[str], None] | None = None,
) -> Rows:
    """Run (or read back) every cell, seed by seed; ``cell(arch, task, init, seed,
    init_name=...)`` builds one (default: the panel's keys)."""
    rows: Rows = {}
    for seed in range(seeds):
        for arch in archs:
            for name, (init, init_name, cells) in inits(seed, arch).items():
                r = run_quick(cell(arch, task, init, seed, init_name=init_name), cells, cache)
                val, test = best_val_and_test(r)
                out = rows.setdefault(arch, {}).setdefault(name, {"val": [], "test": []})
                out["val"].append(val)
                out["test"].append(test)
            if log is not None:
                log(f"seed {seed} {arch} done")
    return rows


def variant_table(rows: Rows, first: str, second: str) -> list[str]:
    """Markdown rows: every init's mean validation and test score and its paired difference
    from inits ``first`` and ``second``."""
    lines = [
        f"| arch | init | val | val − {first} | val − {second} | test | test − {first} "
        f"| test − {second} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arch, by in rows.items():
        a, b = by[first], by[second]
        for name, v in by.items():
            cells = [f"{sum(v['val']) / len(v['val']):.3f}"]
            cells += [paired_text(v["val"], a["val"]), paired_text(v["val"], b["val"])]
            cells += [f"{sum(v['test']) / len(v['test']):.3f}"]
            cells += [paired_text(v["test"], a["test"]), paired_text(v["test"], b["test"])]
            lines.append(f"| {arch} | {name} | {' | '.join(cells)} |")
    return lines
