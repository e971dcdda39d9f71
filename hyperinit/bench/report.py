"""REPORT.md and its figures, generated only from the cell JSON files of finished runs.

>>> from hyperinit.bench.report import write_report
>>> write_report(["benchmarks/results/suite_default"], "benchmarks/results/REPORT.md")
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hyperinit.bench.figures import plot_cams, plot_convergence, plot_sweep
from hyperinit.bench.results import (
    CONVERGED,
    aggregate,
    convergence_epochs,
    load_results,
    same_setting,
)
from hyperinit.bench.tables import (
    all_metrics_table,
    checkpoint_lines,
    collapsed_note,
    compute_lines,
    coverage_lines,
    fraction_table,
    init_time_table,
    localize_section,
    main_table,
    md_table,
    scheme_table,
)
from hyperinit.bench.tasks import TASKS

__all__ = ["aggregate", "convergence_epochs", "load_results", "same_setting", "write_report"]

log = logging.getLogger(__name__)


def write_report(
    dirs: Sequence[str | Path],
    out: str | Path,
    *,
    command: str = "",
    planned: Sequence[Any] | None = None,
    extra_sections: Sequence[Callable[[list[dict]], list[str]]] = (),
) -> Path:
    """Write ``out`` (Markdown) and its PNG figures beside it from the cells in ``dirs``.

    Args:
        dirs: result folders (each with ``cells/*.json``).
        command: the command that made the results, quoted in the report.
        planned: the suite's cells, to say what has not run yet.
        extra_sections: functions of the results that return more Markdown lines, placed
            before the main table (the repository's benchmark adds its goal scoreboard).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results, left_out = same_setting(load_results(dirs))
    stem = out.stem.lower()
    fig_dir = out.parent / "suite_figures"
    fig_dir.mkdir(exist_ok=True)
    figs = {name: fig_dir / f"{stem}_{name}.png" for name in ("sweep", "convergence")}
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
        *[f"  {line}" for line in checkpoint_lines(results)],
        "",
    ]
    from hyperinit.data.medical import SPLIT_RULES

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
    L += md_table(
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
    notes += collapsed_note(results)
    L += ["", *notes, ""]
    cov = coverage_lines(results, planned)
    if cov:
        L += ["### What has run", "", *cov, ""]
    for section in extra_sections:
        L += section(results)
    L += [
        "## Table 2: test metric at 10 % labels (mean ± std over seeds; in brackets: vs default)",
        "",
        *main_table(results),
        "",
        "All metrics:",
        "",
        *all_metrics_table(results),
        "",
    ]
    frac = fraction_table(results)
    if frac:
        L += ["## Label-fraction sweep (ResNet-18, test primary metric)", "", *frac]
    if plot_sweep(results, figs["sweep"]):
        L += [f"![label-fraction sweep](suite_figures/{figs['sweep'].name})", ""]
    conv_tasks = plot_convergence(results, figs["convergence"])
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
        L += [*md_table(["task", "init", "epoch"], rows), ""]
    cams = plot_cams(results, fig_dir, stem)
    if cams:
        L += [
            "## Grad-CAM during fine-tuning (seed 0; first test images with a finding)",
            "",
        ]
        for task, fig in cams.items():
            L += [f"![{task} CAMs](suite_figures/{fig.name})", ""]
    sch = scheme_table(results)
    if sch:
        L += ["## Fine-tuning schemes (ResNet-18, 10 % labels)", "", *sch, ""]
    L += localize_section(out.parent)
    L += ["## Initialisation time per architecture", "", *init_time_table(dirs), ""]
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
    L += compute_lines(results, planned)
    out.write_text("\n".join(L) + "\n")
    log.info("wrote %s", out)
    return out
