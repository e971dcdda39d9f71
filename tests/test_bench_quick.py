"""hyperinit.bench.quick: the quick downstream check shared by tools/, benchmarks/, research/."""

from __future__ import annotations

import json
import math

import pytest

from hyperinit.bench import Cell
from hyperinit.bench import quick as Q
from hyperinit.bench.inits import hypernet_version, init_label
from tests.conftest import REPO

COMPARISONS = sorted(REPO.glob("research/*/compare_*.json"))


def test_shipped_checkpoints_are_the_package_folders():
    assert Q.checkpoint_dir("xray") == REPO / "hyperinit" / "checkpoints" / "xray"
    assert (Q.checkpoint_dir("reference") / "config.json").is_file()
    assert Q.checkpoint_init("ct", "default") == "default"
    assert Q.checkpoint_init("ct", "trained") == f"hyperinit:{REPO}/hyperinit/checkpoints/ct"
    assert Q.checkpoint_init("ct", "reference").endswith("hyperinit/checkpoints/reference")


@pytest.mark.parametrize("modality", ["xray", "fundus"])
def test_cell_keys_match_the_cwd_relative_specs_they_replace(modality, monkeypatch):
    """Cells cached by the scripts before the move (init ``hyperinit:hyperinit/checkpoints/<m>``,
    run from the repository root) are read back: the absolute spec gives the same key."""
    monkeypatch.chdir(REPO)
    task = Q.TASK[modality]
    size = Q.quick_size(task)
    old = Cell(
        task=task,
        arch=Q.ARCHS[1],
        init=f"hyperinit:hyperinit/checkpoints/{modality}",
        fraction=0.1,
        seed=3,
        epochs=5,
        size=size,
    )
    new = Q.quick_cell(task, Q.ARCHS[1], Q.checkpoint_init(modality, "trained"), 3, size=size)
    assert new.key() == old.key()
    assert init_label(new.init) == f"hyperinit:{modality}"
    assert (size, new.fraction, new.epochs) == ((128 if modality == "fundus" else 64), 0.1, 5)


def test_shown_path(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    assert Q.shown_path(REPO / "hyperinit" / "checkpoints" / "ct") == "hyperinit/checkpoints/ct"
    assert Q.shown_path("hyperinit/checkpoints/ct") == "hyperinit/checkpoints/ct"
    assert Q.shown_path(tmp_path / "x") == str(tmp_path / "x")


def test_capped_checkpoint_changes_only_the_config(tmp_path):
    copy = Q.capped_checkpoint("ct", 0.25, tmp_path)
    assert copy == tmp_path / "cap0.25" / "ct"
    src = Q.checkpoint_dir("ct")
    assert (copy / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    config = json.loads((copy / "config.json").read_text())
    assert config["max_structured_share"] == 0.25 and config["noise"] == "kron"
    weights = hypernet_version(f"hyperinit:{src}", "ct").split("-")[0]  # the weights' sha
    # the copy pins the settings it was measured with (SETTINGS_V0) plus the cap
    assert hypernet_version(f"hyperinit:{copy}", "ct") == weights + "-cap0.25"
    v0 = Q.checkpoint_copy("ct", tmp_path)
    assert v0 == tmp_path / "v0" / "ct" and hypernet_version(f"hyperinit:{v0}", "ct") == weights
    shipped = weights
    gauss = Q.capped_checkpoint("ct", None, tmp_path, noise="gaussian")
    assert gauss == tmp_path / "uncapped-gaussian" / "ct"
    assert hypernet_version(f"hyperinit:{gauss}", "ct") == shipped + "-gaussian"


def test_compare_checkpoints_by_hand(tmp_path, monkeypatch):
    """Three architectures x two seeds of made-up scores, paired B - A by hand."""
    monkeypatch.chdir(REPO)
    a, b = Q.checkpoint_dir("ct"), Q.capped_checkpoint("ct", 0.25, tmp_path)
    label = {"default": "default", f"hyperinit:{a}": "A", f"hyperinit:{b}": "B"}
    # (arch index, init) -> test auc per seed; B - A: +0.1, +0.2 | -0.1, +0.3 | 0.0, +0.1
    test = {
        (0, "default"): [0.5, 0.6],
        (0, "A"): [0.6, 0.6],
        (0, "B"): [0.7, 0.8],
        (1, "default"): [0.5, 0.5],
        (1, "A"): [0.7, 0.5],
        (1, "B"): [0.6, 0.8],
        (2, "default"): [0.4, 0.4],
        (2, "A"): [0.5, 0.5],
        (2, "B"): [0.5, 0.6],
    }
    seen = []

    def fake_run_quick(cell, cells_dir, cache_dir):
        seen.append((cell, cells_dir, cache_dir))
        key = (Q.ARCHS.index(cell.arch), label[cell.init])
        score = test[key][cell.seed]
        loss = [1.0, 2.0] if key == (2, "B") and cell.seed == 1 else [1.0, 0.9]
        return {
            "test": {"auc": score},
            "curves": {"train_loss": loss, "val": [{"auc": score - 0.1}, {"auc": 0.0}]},
        }

    monkeypatch.setattr(Q, "run_quick", fake_run_quick)
    r = Q.compare_checkpoints("ct", a, b, 2, tmp_path / "cells", tmp_path / "data")
    assert len(seen) == 3 * 3 * 2
    assert {(c.task, c.size, c.fraction, c.epochs) for c, _, _ in seen} == {
        ("ct_covid", 64, 0.1, 5)
    }
    assert {(d, e) for _, d, e in seen} == {(tmp_path / "cells", tmp_path / "data")}
    assert [row["b_minus_a"] for row in r["rows"]] == pytest.approx([0.15, 0.1, 0.05])
    assert [row["b_better"] for row in r["rows"]] == [2, 1, 1]
    assert r["rows"][1]["A"]["mean"] == pytest.approx(0.6)
    assert r["rows"][1]["A"]["sd"] == pytest.approx(math.sqrt(0.02))
    assert r["rows"][0]["val"]["B"] == pytest.approx(0.65)
    assert r["rows"][2]["loss_spikes"] == {"default": 0, "A": 0, "B": 1}
    p = r["paired"]
    diffs = [0.1, 0.2, -0.1, 0.3, 0.0, 0.1]  # mean 0.1, sample variance 0.02
    assert p["n"] == 6 and p["b_better"] == 4
    assert p["mean_b_minus_a"] == pytest.approx(0.1)
    assert p["se"] == pytest.approx(math.sqrt(0.02 / 6))
    assert sum(diffs) / 6 == pytest.approx(0.1)
    assert r["a"]["path"] == "hyperinit/checkpoints/ct"
    assert r["b"]["sha256"] == r["a"]["sha256"].split("-")[0] + "-cap0.25"
    assert (r["task"], r["metric"], r["seeds"]) == ("ct_covid", "auc", 2)


@pytest.mark.parametrize("path", COMPARISONS, ids=lambda p: p.stem)
def test_write_comparison_rewrites_the_committed_results(path, tmp_path):
    """Every comparison in research/ (made by the script before its helpers moved here) comes
    out byte for byte the same from its JSON."""
    result = json.loads(path.read_text())
    name = path.stem.removeprefix(f"compare_{result['modality']}_")
    md = Q.write_comparison(result, name, tmp_path / "out")
    assert md == tmp_path / "out" / f"{path.stem}.md"
    assert md.read_text() == path.with_suffix(".md").read_text()
    assert (tmp_path / "out" / path.name).read_text() == path.read_text()


def test_there_are_comparisons_to_check():
    assert len(COMPARISONS) == 7


def test_variants_collect_pairs_by_seed_and_tabulates(tmp_path, monkeypatch):
    """Two inits of one panel architecture, two seeds, made-up scores; the table by hand."""
    from hyperinit.bench import variants as V

    scores = {("default", 0): 0.5, ("default", 1): 0.6, ("x", 0): 0.7, ("x", 1): 0.7}
    seen = []

    def fake_run_quick(cell, cells_dir, cache_dir):
        seen.append((cell.init, cell.init_name, cells_dir, cell.arch_name, cell.size))
        s = scores[(cell.init_name or cell.init, cell.seed)]
        curves = {"val": [{"auc": s}, {"auc": s - 0.2}]}
        return {"task": {"primary": "auc"}, "test": {"auc": s - 0.1}, "curves": curves}

    monkeypatch.setattr(V, "run_quick", fake_run_quick)

    def inits(seed, arch):
        return {"default": ("default", None, tmp_path / "a"), "x": (len, "x", tmp_path / "b")}

    rows = V.collect(2, ["DeiT-Tiny"], "chest_xray", inits, tmp_path / "cache")
    assert rows["DeiT-Tiny"]["x"] == {"val": [0.7, 0.7], "test": pytest.approx([0.6, 0.6])}
    assert {s[3] for s in seen} == {"deit_tiny_64"} and {s[4] for s in seen} == {64}
    assert (len, "x", tmp_path / "b", "deit_tiny_64", 64) in seen
    table = V.variant_table(rows, "default", "x")
    assert table[0].startswith("| arch | init | val | val − default | val − x |")
    assert table[3] == (
        "| DeiT-Tiny | x | 0.700 | +0.150 ± 0.050 (2/2) | +0.000 ± 0.000 (0/2) "
        "| 0.600 | +0.150 ± 0.050 (2/2) | +0.000 ± 0.000 (0/2) |"
    )
