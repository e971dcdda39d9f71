"""`hyperinit bench`: the quick suite at tiny size, --list, --report-only, unknown suite."""

from __future__ import annotations

import pytest

from hyperinit.cli import main


def test_bench_quick_two_cells_then_report_only(data_dir, tmp_path, capsys):
    res, rep = tmp_path / "res", tmp_path / "REPORT.md"
    args = ["bench", "--quick", "--results", str(res), "--report", str(rep), "--threads", "1"]
    assert main([*args, "--max-cells", "2", "--init", "default"]) == 0
    cells = sorted(p.name.rsplit("__", 1)[0] for p in (res / "cells").glob("*.json"))
    assert cells == [
        "chest_xray__timm-resnet18__default__f0.1__s0",
        "ct_covid__timm-resnet18__default__f0.1__s0",
    ]
    text = rep.read_text()
    assert "| chest_xray | auc | resnet18 |" in text and "| quick | 2 / 10 |" in text
    rep.unlink()
    assert main([*args, "--report-only"]) == 0
    assert "hyperinit bench quick" in rep.read_text()
    assert "report:" in capsys.readouterr().out


def test_bench_list_and_unknown_suite(tmp_path, capsys):
    assert main(["bench", "default", "--list"]) == 0
    out = capsys.readouterr().out
    assert "h with two workers" in out
    assert "chest_xray__timm-resnet18__hyperinit-own__f0.1__s0" in out
    assert main(["bench", "nosuch", "--results", str(tmp_path)]) == 2
    assert "unknown suite" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_quick_whole_suite(data_dir, tmp_path):
    res = tmp_path / "res"
    assert main(["bench", "--quick", "--results", str(res), "--threads", "1"]) == 0
    assert len(list((res / "cells").glob("*.json"))) == 10
    text = (res / "REPORT.md").read_text()
    for task in ("chest_xray", "ct_covid", "busi", "dermamnist", "drive"):
        assert f"| {task} |" in text
