"""The goal scoreboard of this repository's benchmark report.

The issues that built hyperinit set goals (ahead of default init, converging in half the epochs,
ahead of C2L); this scoreboard checks them on the finished cells. It belongs to the benchmark,
not to the package: ``python benchmarks/suite.py`` adds it to ``benchmarks/results/REPORT.md``
through ``write_report(..., extra_sections=[goal_section])``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hyperinit.bench.results import (
    CONVERGED,
    aggregate,
    arch_short,
    convergence_epochs,
    fmt_mean_std,
)
from hyperinit.bench.tables import md_table
from hyperinit.bench.tasks import TASKS

__all__ = ["goal_lines", "goal_section", "panel_section"]


def goal_section(results: list[dict]) -> list[str]:
    """The "Goals" section of the report."""
    return ["## Goals", "", *goal_lines(results), ""]


def panel_section(folder: Path) -> Callable[[list[dict]], list[str]]:
    """The architecture panel (``benchmarks/panel.py``, written to ``folder``) as a report
    section: the one-initializer goal, judged on the checkpoints as shipped now."""

    def section(results: list[dict]) -> list[str]:
        md = folder / "panel.md"
        if not md.is_file():
            return []
        body = ["#" + ln if ln.startswith("#") else ln for ln in md.read_text().splitlines()]
        link = f"![trained − default per pair]({folder.name}/panel.png)"
        return [*body, "", link, ""]

    return section


def goal_lines(results: list[dict]) -> list[str]:
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
    return lines + md_table(header, rows)


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
        c2l_val = fmt_mean_std(*c2l)
        ahead = hyp[0] > c2l[0]
        c2l_verdict = "**met**" if ahead else "**missed**"
        tally["c2l"][0] += ahead
        tally["c2l"][1] += 1
    return [
        task,
        f"{100 * f:g} %",
        arch_short(arch),
        f"{own} {fmt_mean_std(*hyp)}",
        fmt_mean_std(*base),
        f"{diff:+.3f} {verdict}",
        epochs,
        half,
        c2l_val,
        c2l_verdict,
    ]
