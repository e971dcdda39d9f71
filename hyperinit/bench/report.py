"""REPORT.md and its figures, generated only from the cell JSON files of finished runs.

>>> from hyperinit.bench.report import write_report
>>> write_report(["benchmarks/results/suite_default"], "benchmarks/results/REPORT.md")
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hyperinit.bench.tasks import TASKS

__all__ = ["aggregate", "convergence_epochs", "load_results", "write_report"]

log = logging.getLogger(__name__)

#: Fraction of the default init's best mean validation score that counts as "converged".
CONVERGED = 0.98
INIT_ORDER = ("default", "hyperinit:own", "hyperinit:mixed", "hyperinit:auto", "c2l")


def _training_identity(cell: dict) -> str:
    """The cell's configuration without what does not change training (tags, CAM settings)."""
    same = {k: v for k, v in cell.items() if k not in ("tags", "cam_epochs", "cam_images")}
    return json.dumps(same, sort_keys=True)


def _shipped_checkpoints() -> set[str]:
    """sha256 prefixes of the trained checkpoints this version of hyperinit ships."""
    from hyperinit.modalities import MODALITIES, get_modality

    return {get_modality(m).sha256["model.safetensors"][:8] for m in MODALITIES}


def load_results(dirs: Iterable[str | Path]) -> list[dict]:
    """Every finished cell under ``<dir>/cells/*.json``; the same training found twice (also
    under other tags or CAM settings) is read once, preferring the copy with CAMs."""
    seen: dict[str, dict] = {}
    for d in dirs:
        for path in sorted(Path(d).glob("cells/*.json")):
            r = json.loads(path.read_text())
            if r["cell"].get("hypernet"):  # a trained / user checkpoint: its own column
                sha = r["cell"]["hypernet"]
                tag = "trained" if set(sha.split("-")) <= _shipped_checkpoints() else sha
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


def _ms(values: Sequence[float]) -> tuple[float, float, int]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return float("nan"), float("nan"), 0
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals)


def _fmt(m: float, s: float, n: int) -> str:
    if n == 0:
        return "–"
    return f"{m:.3f} ± {s:.3f} (n={n})" if n > 1 else f"{m:.3f} (n=1)"


def _init_order(names: Iterable[str]) -> list[str]:
    names = set(names)
    rank = {n: i for i, n in enumerate(INIT_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def _arch_short(arch: str) -> str:
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
    return {k: _ms(v) for k, v in groups.items()}


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


# ----------------------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_sweep(results: list[dict], path: Path) -> list[str]:
    """Primary test metric vs label fraction, per task with more than one fraction."""
    by: dict[str, dict[str, dict[float, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for r in results:
        c = r["cell"]
        if c["scheme"] == "all_layers" and c["arch"] == "timm:resnet18":
            by[c["task"]][c["init"]][c["fraction"]].append(r["test"][r["task"]["primary"]])
    tasks = [t for t, d in by.items() if any(len(f) > 1 for f in d.values())]
    if not tasks:
        return []
    plt = _plt()
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for init in _init_order(by[task]):
            fr = sorted(by[task][init])
            if len(fr) < 2:
                continue
            stats = [_ms(by[task][init][f]) for f in fr]
            ax.errorbar(
                [100 * f for f in fr],
                [s[0] for s in stats],
                yerr=[s[1] for s in stats],
                marker="o",
                capsize=3,
                label=init,
            )
        ax.set_xscale("log")
        ax.set_xlabel("training labels used (%)")
        ax.set_ylabel(f"test {TASKS[task].primary}")
        ax.set_title(f"{task}, ResNet-18")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return tasks


def _plot_convergence(results: list[dict], path: Path) -> list[str]:
    """Mean ± std validation score per epoch, ResNet-18 at 10 % labels."""
    by: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        c = r["cell"]
        if (c["arch"], c["fraction"], c["scheme"]) == ("timm:resnet18", 0.1, "all_layers"):
            by[c["task"]][c["init"]].append(r)
    tasks = [t for t in TASKS if t in by]
    if not tasks:
        return []
    plt = _plt()
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.2 * len(tasks), 6.5), squeeze=False)
    for k, task in enumerate(tasks):
        primary = TASKS[task].primary
        for init in _init_order(by[task]):
            rs = by[task][init]
            n = min(len(r["curves"]["val"]) for r in rs)
            ep = np.arange(1, n + 1)
            val = np.array([[r["curves"]["val"][e][primary] for e in range(n)] for r in rs])
            loss = np.array([r["curves"]["train_loss"][:n] for r in rs])
            for row, arr in ((0, val), (1, loss)):
                ax = axes[row, k]
                (line,) = ax.plot(ep, arr.mean(0), label=f"{init} (n={len(rs)})")
                ax.fill_between(
                    ep,
                    arr.mean(0) - arr.std(0),
                    arr.mean(0) + arr.std(0),
                    alpha=0.15,
                    color=line.get_color(),
                )
        split = by[task][next(iter(by[task]))][0].get("val_split", "val")
        axes[0, k].set_title(f"{task}: {split} {primary}")
        axes[1, k].set_title(f"{task}: training loss")
        axes[1, k].set_xlabel("epoch")
        axes[0, k].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return tasks


def _read_image(file: str, size: int) -> np.ndarray | None:
    from hyperinit.data import read_image
    from hyperinit.errors import UnreadableImageError

    try:
        img = read_image(file, channels=1).resize((size, size))
    except UnreadableImageError:
        return None
    return np.asarray(img, dtype=np.float32) / 255


def _plot_cams(results: list[dict], path: Path, max_images: int = 2) -> list[str]:
    """Grad-CAM overlays: rows (task, init, image), columns the stored epochs."""
    rows = []
    for r in sorted(results, key=lambda r: (r["cell"]["task"], r["cell"]["init"])):
        c = r["cell"]
        wanted = (c["seed"], c["arch"], c["fraction"], c["scheme"])
        if r.get("cams") and wanted == (0, "timm:resnet18", 0.1, "all_layers"):
            rows += [(r, i) for i in range(min(max_images, len(r["cam_files"])))]
    if not rows:
        return []
    order = {n: k for k, n in enumerate(_init_order({r["cell"]["init"] for r, _ in rows}))}
    rows.sort(key=lambda t: (t[0]["cell"]["task"], t[1], order[t[0]["cell"]["init"]]))
    epochs = sorted({int(e) for r, _ in rows for e in r["cams"]})
    plt = _plt()
    fig, axes = plt.subplots(
        len(rows), len(epochs), figsize=(1.6 * len(epochs) + 1.5, 1.6 * len(rows)), squeeze=False
    )
    for i, (r, j) in enumerate(rows):
        size = r["cam_size"]
        img = _read_image(r["cam_files"][j], size)
        for k, e in enumerate(epochs):
            ax = axes[i, k]
            ax.set_xticks([]), ax.set_yticks([])
            cam = r["cams"].get(str(e))
            if img is not None:
                ax.imshow(img, cmap="gray")
            if cam is not None:
                ax.imshow(
                    np.array(cam[j]),
                    cmap="jet",
                    alpha=0.45,
                    extent=(-0.5, size - 0.5, size - 0.5, -0.5),
                    interpolation="bilinear",
                )
            if i == 0:
                ax.set_title(f"epoch {e}", fontsize=8)
            if k == 0:
                c = r["cell"]
                ax.set_ylabel(f"{c['task']}\n{c['init']}\nimg {j}", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return sorted({r["cell"]["task"] for r, _ in rows})


# ----------------------------------------------------------------------------- tables


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _main_table(results: list[dict], fraction: float = 0.1) -> list[str]:
    agg = aggregate(results)
    sel = {k: v for k, v in agg.items() if k[3] == fraction and k[4] == "all_layers"}
    inits = _init_order({k[2] for k in sel})
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
            txt = _fmt(*v)
            if base and init != "default" and v[2] and base[2]:
                txt += f" ({v[0] - base[0]:+.3f})"
            cells.append(txt)
        rows.append([task, TASKS[task].primary, _arch_short(arch), *cells])
    return _table(["task", "metric", "arch", *inits], rows)


def _all_metrics_table(results: list[dict], fraction: float = 0.1) -> list[str]:
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
        vals = [f"{m} {_fmt(*_ms([r['test'].get(m, float('nan')) for r in rs]))}" for m in metrics]
        fin = _ms([r["test_final"][TASKS[task].primary] for r in rs])
        rows.append([task, _arch_short(arch), init, "; ".join(vals), _fmt(*fin)])
    return _table(
        ["task", "arch", "init", "test metrics (best-val epoch)", "primary, last epoch"], rows
    )


def _fraction_table(results: list[dict]) -> list[str]:
    agg = aggregate(results)
    sel = {k: v for k, v in agg.items() if k[1] == "timm:resnet18" and k[4] == "all_layers"}
    tasks = sorted({k[0] for k in sel}, key=list(TASKS).index)
    rows = []
    for task in tasks:
        fracs = sorted({k[3] for k in sel if k[0] == task})
        if len(fracs) < 2:
            continue
        for init in _init_order({k[2] for k in sel if k[0] == task}):
            row = [task, init]
            for f in fracs:
                v = sel.get((task, "timm:resnet18", init, f, "all_layers"))
                row.append(_fmt(*v) if v else "–")
            rows.append((fracs, row))
    if not rows:
        return []
    out: list[str] = []
    for fracs in sorted({tuple(f) for f, _ in rows}):
        out += _table(
            ["task", "init", *[f"{100 * f:g} %" for f in fracs]],
            [r for f, r in rows if tuple(f) == fracs],
        )
        out.append("")
    return out


def _scheme_table(results: list[dict]) -> list[str]:
    agg = aggregate(results)
    schemes = ("last_layer_only", "all_layers", "layerwise", "bidirectional", "metalr")
    tasks = sorted({k[0] for k in agg if k[4] != "all_layers"}, key=list(TASKS).index)
    rows = []
    for task in tasks:
        inits = _init_order({k[2] for k in agg if k[0] == task and k[4] != "all_layers"})
        for scheme in schemes:
            row = [task, scheme]
            for init in inits:
                v = agg.get((task, "timm:resnet18", init, 0.1, scheme))
                row.append(_fmt(*v) if v else "–")
            rows.append(row)
        header = ["task", "scheme", *inits]
    return _table(header, rows) if rows else []


def _init_time_table(dirs: Sequence[str | Path]) -> list[str]:
    rows = []
    for d in dirs:
        for path in sorted(Path(d).glob("inittime/*.json")):
            r = json.loads(path.read_text())
            rows.append(
                [
                    _arch_short(r["arch"]),
                    f"{r['params'] / 1e6:.1f} M",
                    f"{r['build_seconds']:.3f}",
                    f"{r['init_seconds']:.3f}",
                    f"{r['repeats']}, {r['threads']} thread(s), {r['size']} px",
                ]
            )
    if not rows:
        return ["Not measured."]
    header = ["arch", "params", "build with default init (s)", "hyperinit.initialize (s)"]
    return _table([*header, "median of"], rows)


def _goals(results: list[dict]) -> list[str]:
    """The issue's goals, checked per task, architecture and label fraction (<= 10 %) for the
    hyper-initialisation this version ships (``@trained`` when there is one): a summary, then
    one row per comparison with met / missed."""
    agg = aggregate(results)
    rows: list[list[str]] = []
    tally = {"default": [0, 0, 0], "half": [0, 0], "c2l": [0, 0]}
    for task in TASKS:
        archs = sorted({k[1] for k in agg if k[0] == task}, key=lambda a: (a != _R18, a))
        for arch in archs:
            for f in sorted({k[3] for k in agg if k[:2] == (task, arch) and k[3] <= 0.1}):
                base = agg.get((task, arch, "default", f, "all_layers"))
                owns = [
                    k[2]
                    for k in agg
                    if k[:2] == (task, arch)
                    and k[3:] == (f, "all_layers")
                    and k[2].startswith("hyperinit:own")
                ]
                shipped = [o for o in owns if o.endswith("@trained")]
                for own in sorted(shipped or owns):
                    row = _goal_row(results, agg, (task, arch, f), base, own, tally)
                    if row:
                        rows.append(row)
    if not rows:
        return ["- No default vs hyperinit pair at ≤ 10 % labels has finished yet."]
    d, h, c = tally["default"], tally["half"], tally["c2l"]
    lines = [
        f"- Ahead of default init: **{d[0]} of {d[1]}** comparisons ({d[2]} by more than the "
        "larger std).",
        f"- At most half the epochs default init needs to reach {CONVERGED:.0%} of its best "
        f"validation score: **{h[0]} of {h[1]}** measurable comparisons.",
        f"- Ahead of the C2L-pretrained backbone: **{c[0]} of {c[1]}** comparisons where C2L ran.",
        "",
    ]
    header = [
        "task",
        "labels",
        "arch",
        "hyperinit",
        "default",
        "hyperinit − default",
        "epoch to converge (hyperinit / default)",
        "≤ half the epochs",
        "C2L",
        "ahead of C2L",
    ]
    return lines + _table(header, rows)


_R18 = "timm:resnet18"


def _goal_row(
    results: list[dict],
    agg: dict,
    where: tuple[str, str, float],
    base: tuple | None,
    own: str,
    tally: dict[str, list[int]],
) -> list[str] | None:
    """One goal row of a hyperinit variant against default (and C2L) on one setting."""
    task, arch, f = where
    hyp = agg.get((task, arch, own, f, "all_layers"))
    if not base or not hyp:
        return None
    diff = hyp[0] - base[0]
    seeds_ok = min(hyp[2], base[2]) >= 2
    clear = seeds_ok and diff > max(hyp[1], base[1])
    tally["default"][0] += diff > 0
    tally["default"][1] += 1
    tally["default"][2] += bool(diff > 0 and clear)
    verdict = ("**met**" if diff > 0 else "**missed**") + (" (> std)" if clear else "")
    verdict += "" if seeds_ok else " (one seed)"
    conv = convergence_epochs(results, task, arch, f)
    epochs, half = "–", "–"
    if conv.get("default") and own in conv:
        e_d, e_h = conv["default"], conv[own]
        epochs = f"{e_h if e_h else 'never'} / {e_d}"
        if e_d == 1:
            half = "n/a (default: epoch 1)"
        else:
            ok = e_h is not None and e_h <= e_d / 2
            half = "**met**" if ok else "**missed**"
            tally["half"][0] += ok
            tally["half"][1] += 1
    c2l = agg.get((task, arch, "c2l", f, "all_layers"))
    c2l_val, c2l_verdict = "not run", "–"
    if c2l:
        c2l_val = _fmt(*c2l)
        ahead = hyp[0] > c2l[0]
        c2l_verdict = "**met**" if ahead else "**missed**"
        tally["c2l"][0] += ahead
        tally["c2l"][1] += 1
    return [
        task,
        f"{100 * f:g} %",
        _arch_short(arch),
        f"{own} {_fmt(*hyp)}",
        _fmt(*base),
        f"{diff:+.3f} {verdict}",
        epochs,
        half,
        c2l_val,
        c2l_verdict,
    ]


def _collapsed_note(results: list[dict]) -> list[str]:
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


def _compute_lines(results: list[dict], planned: Sequence[Any] | None) -> list[str]:
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


def _coverage(results: list[dict], planned: Sequence[Any] | None) -> list[str]:
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
    return _table(header, rows)


def _checkpoints(results: list[dict]) -> list[str]:
    seen: dict[str, set[str]] = defaultdict(set)
    for r in results:
        ck = r.get("init_info", {}).get("checkpoint")
        if ck:
            seen[r["init_info"].get("modality", "?")].add(ck)
    lines = [f"- {m}: {', '.join(sorted(v))}" for m, v in sorted(seen.items())]
    lines.append(
        "- An init label with `@trained` was run with the trained checkpoint this version "
        "ships for that modality (listed above); `@<sha256 prefix>` with another (older or "
        "user) checkpoint; `@reference` with the untrained reference hypernetwork."
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


def _localize_section(folder: Path) -> list[str]:
    """``localize/localize_benchmark.md`` (benchmarks/localize_benchmark.py) if it is there,
    one heading level down, with its links pointing into ``localize/``."""
    md = folder / "localize" / "localize_benchmark.md"
    if not md.is_file():
        return []
    text = md.read_text().replace("](fig2_overlays.png)", "](localize/fig2_overlays.png)")
    body = ["#" + ln if ln.startswith("#") else ln for ln in text.splitlines()]
    return [*body, ""]


def write_report(
    dirs: Sequence[str | Path],
    out: str | Path,
    *,
    command: str = "",
    planned: Sequence[Any] | None = None,
) -> Path:
    """Write ``out`` (Markdown) and its PNG figures beside it from the cells in ``dirs``.

    Args:
        dirs: result folders (each with ``cells/*.json``).
        command: the command that made the results, quoted in the report.
        planned: the suite's cells, to say what has not run yet.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results, left_out = same_setting(load_results(dirs))
    stem = out.stem.lower()
    fig_dir = out.parent / "suite_figures"
    fig_dir.mkdir(exist_ok=True)
    figs = {name: fig_dir / f"{stem}_{name}.png" for name in ("sweep", "convergence", "cams")}
    L: list[str] = [
        "# hyperinit benchmark report",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from {len(results)} "
        f"finished cells (JSON in {', '.join(f'`{Path(d).name}/cells/`' for d in dirs)}) by "
        "`hyperinit bench --report-only` (`hyperinit.bench.report.write_report`). "
        "Every number below is read from those files.",
    ]
    if command:
        L += ["", f"Results made with: `{command}`"]
    if not results:
        L += ["", "No cell has finished yet."]
        out.write_text("\n".join(L) + "\n")
        return out
    hosts = sorted(
        {f"{r['device']}, {r['torch_threads']} thread(s), torch {r['torch']}" for r in results}
    )
    L += [
        "",
        "## Setup",
        "",
        f"- Hardware: {'; '.join(hosts)}; CPU shared with other jobs, so times are indicative.",
        "- Training: SGD (momentum 0.9, weight decay 1e-4), cosine schedule, horizontal flips; "
        "each seed sets the default init, the hypernetwork's noise and the data order. "
        "Classification test metrics are taken at the epoch with the best validation primary "
        "metric (the last epoch's are listed too); DRIVE uses the last epoch.",
        "- Hypernetwork checkpoints used (from each cell's `init_info`):",
        *[f"  {line}" for line in _checkpoints(results)],
        "",
    ]
    from hyperinit.data import SPLIT_RULES

    rows = []
    for name, task in TASKS.items():
        rs = [r for r in results if r["cell"]["task"] == name]
        if not rs:
            continue
        sizes = sorted({r["cell"]["size"] for r in rs})
        n_tr = sorted({r["n_train"] for r in rs if r["cell"]["fraction"] == 0.1})
        rows.append(
            [
                name,
                task.modality,
                ", ".join(task.metrics),
                "/".join(map(str, sizes)) + " px",
                "/".join(map(str, n_tr)) or "–",
                f"{rs[0]['n_val']} / {rs[0]['n_test']}",
                SPLIT_RULES.get(task.dataset, ""),
            ]
        )
    L += _table(
        ["task", "modality", "metrics", "size", "train images at 10 %", "val / test", "split"],
        rows,
    )
    notes = [f"- {t.name}: {t.note}" for t in TASKS.values() if t.note]
    if left_out:
        notes.append(
            f"- {len(left_out)} finished cell(s) with another training setting than their "
            "task's usual one are left out of every table: "
            + ", ".join(sorted(r["key"] for r in left_out)[:10])
        )
    notes += _collapsed_note(results)
    L += ["", *notes, ""]
    cov = _coverage(results, planned)
    if cov:
        L += ["### What has run", "", *cov, ""]
    L += ["## Goals", "", *_goals(results), ""]
    L += [
        "## Table 2: test metric at 10 % labels (mean ± std over seeds; in brackets: vs default)",
        "",
        *_main_table(results),
        "",
        "All metrics:",
        "",
        *_all_metrics_table(results),
        "",
    ]
    frac = _fraction_table(results)
    if frac:
        L += ["## Label-fraction sweep (ResNet-18, test primary metric)", "", *frac]
    if _plot_sweep(results, figs["sweep"]):
        L += [f"![label-fraction sweep](suite_figures/{figs['sweep'].name})", ""]
    conv_tasks = _plot_convergence(results, figs["convergence"])
    if conv_tasks:
        L += [
            "## Convergence (ResNet-18, 10 % labels, mean ± std over seeds)",
            "",
            f"![convergence curves](suite_figures/{figs['convergence'].name})",
            "",
            f"Epoch at which the mean validation curve first reaches {CONVERGED:.0%} of the "
            "default init's best mean validation score:",
            "",
        ]
        rows = []
        for task in conv_tasks:
            conv = convergence_epochs(results, task, "timm:resnet18", 0.1)
            rows += [[task, init, str(e or "never")] for init, e in conv.items()]
        L += [*_table(["task", "init", "epoch"], rows), ""]
    if _plot_cams(results, figs["cams"]):
        L += [
            "## Grad-CAM during fine-tuning (seed 0; first test images with a finding)",
            "",
            f"![CAMs](suite_figures/{figs['cams'].name})",
            "",
        ]
    sch = _scheme_table(results)
    if sch:
        L += ["## Fine-tuning schemes (ResNet-18, 10 % labels)", "", *sch, ""]
    L += _localize_section(out.parent)
    L += ["## Initialisation time per architecture", "", *_init_time_table(dirs), ""]
    L += [
        "## Reproduce",
        "",
        "```bash",
        "hyperinit bench --quick                 # every task at tiny size: checks the pipeline",
        "hyperinit bench default --list          # the cells, in order, with time estimates",
        "python benchmarks/suite.py default --threads 1 --shard 0/2 &  # two workers on 2 cores",
        "python benchmarks/suite.py default --threads 1 --shard 1/2 &",
        "python benchmarks/suite.py full                       # + ResNet-50, RegNetY, DenseNet",
        "python benchmarks/suite.py gpu --device cuda          # full suite at 224 px (DRIVE 448)",
        "python benchmarks/suite.py default --report-only      # regenerate this file",
        "```",
        "",
        "Finished cells are never rerun and an interrupted cell resumes from its last epoch, "
        "so any of these can be stopped and restarted.",
        "",
    ]
    L += _compute_lines(results, planned)
    out.write_text("\n".join(L) + "\n")
    log.info("wrote %s", out)
    return out
