"""The report's tables and notes, as Markdown lines."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hyperinit.bench.results import aggregate, arch_short, fmt_mean_std, init_order, mean_std
from hyperinit.bench.tasks import TASKS

__all__ = [
    "all_metrics_table",
    "checkpoint_lines",
    "collapsed_note",
    "compute_lines",
    "coverage_lines",
    "fraction_table",
    "init_time_table",
    "localize_section",
    "main_table",
    "md_table",
    "scheme_table",
]


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def main_table(results: list[dict], fraction: float = 0.1) -> list[str]:
    agg = aggregate(results)
    sel = {k: v for k, v in agg.items() if k[3] == fraction and k[4] == "all_layers"}
    inits = init_order({k[2] for k in sel})
    pairs = sorted({(k[0], k[1]) for k in sel}, key=lambda p: (list(TASKS).index(p[0]), p[1]))
    rows = []
    for task, arch in pairs:
        base = sel.get((task, arch, "default", fraction, "all_layers"))
        cells = []
        for init in inits:
            v = sel.get((task, arch, init, fraction, "all_layers"))
            if v is None:
                cells.append("–")
                continue
            txt = fmt_mean_std(*v)
            if base and init != "default" and v[2] and base[2]:
                txt += f" ({v[0] - base[0]:+.3f})"
            cells.append(txt)
        rows.append([task, TASKS[task].primary, arch_short(arch), *cells])
    return md_table(["task", "metric", "arch", *inits], rows)


def all_metrics_table(results: list[dict], fraction: float = 0.1) -> list[str]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        c = r["cell"]
        if c["fraction"] == fraction and c["scheme"] == "all_layers":
            groups[(c["task"], c["arch"], c["init"])].append(r)
    rows = []
    for (task, arch, init), rs in sorted(
        groups.items(), key=lambda kv: (list(TASKS).index(kv[0][0]), kv[0][1], kv[0][2])
    ):
        metrics = TASKS[task].metrics
        vals = [
            f"{m} {fmt_mean_std(*mean_std([r['test'].get(m, float('nan')) for r in rs]))}"
            for m in metrics
        ]
        fin = mean_std([r["test_final"][TASKS[task].primary] for r in rs])
        rows.append([task, arch_short(arch), init, "; ".join(vals), fmt_mean_std(*fin)])
    return md_table(
        ["task", "arch", "init", "test metrics (best-val epoch)", "primary, last epoch"], rows
    )


def fraction_table(results: list[dict]) -> list[str]:
    agg = aggregate(results)
    sel = {k: v for k, v in agg.items() if k[1] == "timm:resnet18" and k[4] == "all_layers"}
    tasks = sorted({k[0] for k in sel}, key=list(TASKS).index)
    rows = []
    for task in tasks:
        fracs = sorted({k[3] for k in sel if k[0] == task})
        if len(fracs) < 2:
            continue
        for init in init_order({k[2] for k in sel if k[0] == task}):
            row = [task, init]
            for f in fracs:
                v = sel.get((task, "timm:resnet18", init, f, "all_layers"))
                row.append(fmt_mean_std(*v) if v else "–")
            rows.append((fracs, row))
    if not rows:
        return []
    out: list[str] = []
    for fracs in sorted({tuple(f) for f, _ in rows}):
        out += md_table(
            ["task", "init", *[f"{100 * f:g} %" for f in fracs]],
            [r for f, r in rows if tuple(f) == fracs],
        )
        out.append("")
    return out


def scheme_table(results: list[dict]) -> list[str]:
    agg = aggregate(results)
    schemes = ("last_layer_only", "all_layers", "layerwise", "bidirectional", "metalr")
    tasks = sorted({k[0] for k in agg if k[4] != "all_layers"}, key=list(TASKS).index)
    rows = []
    for task in tasks:
        inits = init_order({k[2] for k in agg if k[0] == task and k[4] != "all_layers"})
        for scheme in schemes:
            row = [task, scheme]
            for init in inits:
                v = agg.get((task, "timm:resnet18", init, 0.1, scheme))
                row.append(fmt_mean_std(*v) if v else "–")
            rows.append(row)
        header = ["task", "scheme", *inits]
    return md_table(header, rows) if rows else []


def init_time_table(dirs: Sequence[str | Path]) -> list[str]:
    rows = []
    for d in dirs:
        for path in sorted(Path(d).glob("inittime/*.json")):
            r = json.loads(path.read_text())
            rows.append(
                [
                    arch_short(r["arch"]),
                    f"{r['params'] / 1e6:.1f} M",
                    f"{r['build_seconds']:.3f}",
                    f"{r['init_seconds']:.3f}",
                    f"{r['repeats']}, {r['threads']} thread(s), {r['size']} px",
                ]
            )
    if not rows:
        return ["Not measured."]
    header = ["arch", "params", "build with default init (s)", "hyperinit.initialize (s)"]
    return md_table([*header, "median of"], rows)


def collapsed_note(results: list[dict]) -> list[str]:
    """Segmentation runs that ended predicting background only (test Dice 0)."""
    dead = [
        r["cell"]
        for r in results
        if TASKS[r["cell"]["task"]].kind == "segmentation" and not r["test"].get("dice", 1) > 0
    ]
    if not dead:
        return []
    runs = ", ".join(
        f"{c['arch'].split(':')[-1]} {c['init']} {100 * c['fraction']:g} % s{c['seed']}"
        for c in sorted(dead, key=lambda c: (c["init"], c["fraction"], c["seed"]))
    )
    return [
        f"- {len(dead)} segmentation run(s) ended with test Dice 0, the U-Net predicting "
        f"background only (every init passes through that state in early epochs; these never "
        f"left it): {runs}. They count in the means."
    ]


def compute_lines(results: list[dict], planned: Sequence[Any] | None) -> list[str]:
    """What the finished cells cost: training + validation seconds summed over cells."""
    secs = sum(r["train_seconds"] for r in results)
    lines = [f"Training and validation time of all {len(results)} cells: {secs / 60:.0f} min."]
    if planned:
        keys = {c.key() for c in planned}
        mine = [r for r in results if r.get("same_training", {r["key"]}) & keys]
        if mine:
            threads = sorted({r.get("torch_threads") for r in mine if r.get("torch_threads")})
            s = sum(r["train_seconds"] for r in mine)
            lines.append(
                f"Of the {len(keys)} cells of this suite, {len(mine)} distinct trainings have "
                "finished; they took "
                f"{s / 3600:.2f} h summed over cells ({'/'.join(map(str, threads))} thread(s) "
                f"each), i.e. about {s / 7200:.2f} h of wall time for two workers on two cores."
            )
    return [*lines, ""]


def coverage_lines(results: list[dict], planned: Sequence[Any] | None) -> list[str]:
    if not planned:
        return []
    from hyperinit.bench.suites import estimate_seconds

    done = {k for r in results for k in r.get("same_training", {r["key"]})}
    by_tag: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for cell in planned:
        row = by_tag[cell.tags[0] if cell.tags else "other"]
        row[1] += 1
        if cell.key() in done:
            row[0] += 1
        else:
            row[2] += estimate_seconds(cell)
    rows = [[t, f"{d} / {n}", f"{s / 3600:.1f} h"] for t, (d, n, s) in by_tag.items()]
    header = ["part of the suite", "cells finished / planned", "estimated cell time left"]
    return md_table(header, rows)


def checkpoint_lines(results: list[dict]) -> list[str]:
    seen: dict[str, set[str]] = defaultdict(set)
    for r in results:
        ck = r.get("init_info", {}).get("checkpoint")
        if ck:
            seen[r["init_info"].get("modality", "?")].add(ck)
    lines = [f"- {m}: {', '.join(sorted(v))}" for m, v in sorted(seen.items())]
    lines.append(
        "- An init label with `@trained` was run with the trained checkpoint this version "
        "ships for that modality (listed above) under its shipped prediction settings; "
        "`@trained-earlier-settings` with the same weights under earlier prediction settings "
        "(`config.json`: noise, spectrum, post-processing); `@<sha256 prefix>` with another "
        "(older or user) checkpoint; `@reference` with the untrained reference hypernetwork."
    )
    if seen and all("untrained" in ck for v in seen.values() for ck in v):
        lines.append(
            "- Every hyperinit cell used the untrained reference hypernetwork (no trained "
            "modality checkpoint was available), so `hyperinit:own`, `hyperinit:mixed` and "
            "`hyperinit:auto` predict the same weights for a given seed and their rows "
            "coincide; these rows measure the reference's well-scaled initialisation, not "
            "learned medical features. Cells made with a trained checkpoint get new keys "
            "(its sha256 prefix), so rerunning the suite runs them and leaves these intact."
        )
    return lines


def localize_section(folder: Path) -> list[str]:
    """``localize/localize_benchmark.md`` (benchmarks/localize_benchmark.py) if it is there,
    one heading level down, with its links pointing into ``localize/``."""
    md = folder / "localize" / "localize_benchmark.md"
    if not md.is_file():
        return []
    text = md.read_text().replace("](fig2_overlays.png)", "](localize/fig2_overlays.png)")
    body = ["#" + ln if ln.startswith("#") else ln for ln in text.splitlines()]
    return [*body, ""]
