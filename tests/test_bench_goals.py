"""The goal scoreboard of the repository's benchmark report (benchmarks/goals.py)."""

from __future__ import annotations

from hyperinit.bench.report import load_results, same_setting, write_report
from tests.scripts import load_script
from tests.test_bench_report import results_dir  # noqa: F401  (the fixture cells)


def _goals():
    return load_script("benchmarks/goals.py")


def test_goal_scoreboard_verdicts_and_tally(results_dir):  # noqa: F811
    results, _ = same_setting(load_results([results_dir]))
    text = "\n".join(_goals().goal_lines(results))
    # goals: one row per task / labels / arch, with the verdicts and a tally above
    assert (
        "| chest_xray | 10 % | resnet18 | hyperinit:own 0.810 ± 0.014 (n=2) | 0.710 ± 0.014 "
        "(n=2) | +0.100 **met** (> std) | 2 / 4 | **met** | not run | – |" in text
    )
    assert "| busi | 10 % | resnet18 | hyperinit:own 0.600 (n=1) | 0.660 (n=1) | -0.060 " in text
    assert "**missed** (one seed)" in text
    assert (
        "- Ahead of default init: **1 of 2** comparisons (1 by more than the larger std)." in text
    )
    assert "**1 of 2** measurable comparisons" in text
    assert "- Ahead of the C2L-pretrained backbone: **0 of 0** comparisons" in text


def test_the_scoreboard_is_an_extra_section_of_the_report(results_dir, tmp_path):  # noqa: F811
    goals = _goals()
    plain = write_report([results_dir], tmp_path / "plain.md").read_text()
    full = write_report(
        [results_dir], tmp_path / "full.md", extra_sections=[goals.goal_section]
    ).read_text()
    assert "## Goals" not in plain
    assert "## Goals" in full and "**met**" in full


def test_the_panel_is_a_report_section_with_its_plot(results_dir, tmp_path):  # noqa: F811
    goals = _goals()
    folder = tmp_path / "panel"
    assert goals.panel_section(folder)([]) == []  # not run yet: no section
    folder.mkdir()
    (folder / "panel.md").write_text(
        "# Architecture panel\n\n| a | b |\n|---|---|\n## Scoreboard\n"
    )
    report = write_report(
        [results_dir], tmp_path / "R.md", extra_sections=[goals.panel_section(folder)]
    ).read_text()
    assert "## Architecture panel" in report and "### Scoreboard" in report
    assert "![trained − default per pair](panel/panel.png)" in report
