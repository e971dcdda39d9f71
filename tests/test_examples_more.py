"""The benchmark, checkpoint-download and C2L examples run at tiny size."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hyperinit.initialize import _load_cached, _resolve_cached
from hyperinit.modalities import get_modality
from tests.fakehub import FakeHub

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, argv: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")


def test_run_benchmark_example(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench"
    _run("run_benchmark.py", ["busi", str(out), "1", "32", "24", "1"], monkeypatch)
    text = capsys.readouterr().out
    assert "busi default        seed 0: test macro_auc" in text
    assert "busi hyperinit:own  seed 0: test macro_auc" in text
    assert len(list((out / "cells").glob("*.json"))) == 2
    assert "## Table 2" in (out / "REPORT.md").read_text()


def test_download_checkpoints_example(tmp_path, monkeypatch, capsys):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    _resolve_cached.cache_clear()
    _load_cached.cache_clear()
    with FakeHub() as server:  # serves the xray repo only
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        server.add_folder("hyperinit/hyperinit-xray", "main", get_modality("xray").path)
        cache = str(tmp_path / "cache")
        _run("download_checkpoints.py", ["xray", "ct", "--cache-dir", cache], monkeypatch)
    _resolve_cached.cache_clear()
    _load_cached.cache_clear()
    text = capsys.readouterr().out
    assert "xray        verified in" in text
    assert "ct          not downloaded (CheckpointDownloadError)" in text
    assert "xray        loads from cached" in text


def test_c2l_pretrain_example(tmp_path, monkeypatch, capsys):
    if not (EXAMPLES / "c2l_pretrain.py").exists():
        pytest.skip("examples/c2l_pretrain.py not present")
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(folder / f"{i}.png")
    _run("c2l_pretrain.py", [str(folder), str(tmp_path / "o"), "1", "32", "1"], monkeypatch)
    assert "C2L loss" in capsys.readouterr().out
