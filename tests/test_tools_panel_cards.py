"""tools/panel_cards.py: the model cards' Downstream lines from the committed panel results."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.scripts import REPO, load_script


def _tool():
    return load_script("tools/panel_cards.py")


def test_cards_get_the_panel_numbers_and_unmeasured_ones_are_marked(tmp_path):
    tool = _tool()
    results = json.loads(tool.PANEL.read_text())["results"]
    for name in ("xray", "fundus"):
        shutil.copytree(REPO / "hyperinit" / "checkpoints" / name, tmp_path / name)
    xray, fundus = tmp_path / "xray" / "README.md", tmp_path / "fundus" / "README.md"
    old = [x for x in xray.read_text().splitlines() if not x.startswith(tool.LINE)]
    old.append(f"{tool.LINE} (chest_xray, older numbers): resnet18 0.900 vs 0.865.")
    old = [x + tool.SETTINGS_CAVEAT if "**Prediction settings**" in x else x for x in old]
    xray.write_text("\n".join(old) + "\n")  # a card as tools/set_prediction.py leaves it

    line = tool.downstream_line("chest_xray", results)
    by = results["ResNet-18|chest_xray"]
    mean, se, n = tool.paired(by, "trained", "default")
    assert "ResNet-18 " in line and f"({mean:+.3f} ± {se:.3f}, {n} seeds" in line
    assert tool.update_card(xray, line)
    card = xray.read_text()
    assert card.count(tool.LINE) == 1 and line in card
    assert tool.SETTINGS_CAVEAT not in card and "**Prediction settings**" in card
    assert not tool.update_card(xray, line)  # idempotent

    assert tool.card_line("mixed", "chest_xray", results) is None  # the panel ran xray's
    assert tool.card_line("xray", "chest_xray", results) == line
    assert tool.downstream_line("drive", {}) is None
    fundus.write_text(fundus.read_text().replace(tool.STALE, ""))  # as before the first run
    assert tool.update_card(fundus, None)
    assert fundus.read_text().count(tool.STALE) == 1
    assert not tool.update_card(fundus, None)  # marked once


def test_verdicts_follow_two_standard_errors():
    tool = _tool()
    ahead = {"trained": {0: [0, 0.9], 1: [0, 0.92]}, "default": {0: [0, 0.8], 1: [0, 0.81]}}
    level = {"trained": {0: [0, 0.9], 1: [0, 0.72]}, "default": {0: [0, 0.8], 1: [0, 0.8]}}
    line = tool.downstream_line("busi", {"A|busi": ahead, "B|busi": level, "A|ct_covid": ahead})
    assert "A 0.910 vs 0.805 (+0.105 ± 0.005, 2 seeds ahead)" in line
    assert "B 0.810 vs 0.800 (+0.010 ± 0.090, 2 seeds)" in line
    assert line.count("seeds") == 2  # the other task's pair is not on this card


def test_readme_table_has_every_pair_and_is_rewritten_between_its_markers(tmp_path):
    tool = _tool()
    ahead = {"trained": {s: [0, 0.9 + s / 100] for s in range(6)}}
    ahead["default"] = {s: [0, 0.8] for s in range(6)}
    few = {"trained": {0: [0, 0.5], 1: [0, 0.7]}, "default": {0: [0, 0.6], 1: [0, 0.6]}}
    table = tool.readme_table({"A|busi": ahead, "B|busi": few, "A|drive": ahead})
    assert table[0] == "| architecture | BUSI (ultrasound, macro AUC) | DRIVE (fundus, Dice) |"
    assert table[2] == "| A | **+0.125 ± 0.008** | **+0.125 ± 0.008** |"  # 6 seeds: no count
    assert table[3] == "| B | +0.000 ± 0.100 (2) | — |"  # level, 2 seeds, DRIVE not run
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nabove\n")
    with pytest.raises(SystemExit, match="add the lines"):
        tool.update_readme(readme, table)
    readme.write_text(f"above\n{tool.TABLE_START}\n| old |\n{tool.TABLE_END}\nbelow\n")
    assert tool.update_readme(readme, table)
    text = readme.read_text()
    assert "| old |" not in text and text.startswith("above\n") and text.endswith("\nbelow\n")
    assert "\n".join(table) in text and not tool.update_readme(readme, table)


def test_readme_summary_states_the_scoreboard_and_names_what_is_behind():
    tool = _tool()
    behind = {"trained": {s: [0, 0.7 - s / 100] for s in range(6)}}
    behind["default"] = {s: [0, 0.8] for s in range(6)}
    board = {
        "pairs": 3,
        "behind_2se": ["B|drive"],
        "ahead_2se": ["A|busi"],
        "archs_never_ahead": ["B"],
        "trained_over_reference": "2/3",
        "resnets_ahead_of_fair_baseline": {"A": "1/2"},
    }
    blank, *lines = tool.readme_summary(board, {"B|drive": behind})
    assert blank == "" and all(len(line) <= 96 for line in lines)
    text = " ".join(lines)
    assert text.startswith("Of these 3 pairs, 1 are ahead of default init by more than two")
    assert "1 behind: B on DRIVE (−0.125 ± 0.008)." in text
    assert "Ahead on no task: B." in text and "on 2/3 pairs" in text
    assert "on 1/2 tasks for A." in text
    quiet = {
        **board,
        "behind_2se": [],
        "archs_never_ahead": [],
        "resnets_ahead_of_fair_baseline": {},
    }
    text = " ".join(tool.readme_summary(quiet, {})[1:])
    assert "0 behind." in text and "no task" not in text and "fair baseline" not in text
