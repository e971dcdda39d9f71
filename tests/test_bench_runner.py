"""run_cell: model factories, init callables, caching, resuming an interrupted cell."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import hyperinit.bench.celldata as celldata
import hyperinit.bench.runner as runner
from hyperinit.bench import Cell, cell_path, run_cell
from hyperinit.bench.tasks import SplitData
from hyperinit.errors import BenchConfigError
from hyperinit.postprocess import PostProcess


def _split(n: int, seed: int) -> SplitData:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = (torch.rand(n, 1, 16, 16, generator=g) * 100 + 100 * y[:, None, None, None]).to(
        torch.uint8
    )  # class 1 is brighter: learnable
    return SplitData(x, y, [f"img{i}.png" for i in range(n)], ["normal", "finding"])


@pytest.fixture
def fake_data(monkeypatch):
    """Replace the real datasets by small synthetic splits; counts loads."""
    calls = []

    def load(task, split, **kw):
        calls.append(split)
        return _split({"train": 24, "val": 12, "test": 12}[split], hash(split) % 100)

    monkeypatch.setattr(celldata, "load_task_split", load)
    return calls


def tiny_net(in_chans: int, num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_chans, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, num_classes),
    )


def zero_init(model: nn.Module) -> None:
    for p in model.parameters():
        nn.init.zeros_(p)


def _cell(**kw) -> Cell:
    base = dict(task="chest_xray", arch=tiny_net, epochs=3, batch_size=8, size=16, lr=0.05)
    return Cell(**{**base, **kw})


def test_factory_and_init_callable(fake_data, tmp_path):
    cell = _cell(init=zero_init, cam_epochs=(1, 3), cam_images=2)
    r = run_cell(cell, tmp_path, progress=False)
    assert r["cell"]["arch"] == "tiny_net" and r["cell"]["init"] == "zero_init"
    assert len(r["curves"]["train_loss"]) == 3 and len(r["curves"]["val"]) == 3
    assert set(r["cams"]) == {"1", "3"} and len(r["cams"]["1"]) == 2
    assert {"auc", "acc"} <= set(r["test"])
    assert cell_path(cell, tmp_path).exists()


def test_finished_cell_is_not_rerun(fake_data, tmp_path, monkeypatch):
    first = run_cell(_cell(), tmp_path, progress=False)

    def boom(*a, **k):
        raise AssertionError("a finished cell was built again")

    monkeypatch.setattr(runner, "build_model", boom)
    again = run_cell(_cell(), tmp_path, progress=False)
    assert again == json.loads(json.dumps(first, default=float))
    with pytest.raises(AssertionError):  # a different cell is run
        run_cell(_cell(seed=1), tmp_path, progress=False)


def test_interrupted_cell_resumes_from_last_epoch(fake_data, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    reference = run_cell(_cell(), tmp_path / "straight", progress=False)

    real_evaluate = runner._evaluate
    seen = {"n": 0}

    def stop_in_epoch_2(*a, **k):
        seen["n"] += 1
        if seen["n"] == 2:
            raise KeyboardInterrupt
        return real_evaluate(*a, **k)

    monkeypatch.setattr(runner, "_evaluate", stop_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run_cell(_cell(), tmp_path / "resumed", progress=False)
    assert not cell_path(_cell(), tmp_path / "resumed").exists()
    assert list((tmp_path / "resumed" / "cache" / "resume").glob("*.pt"))

    epochs_trained = {"n": 0}
    real_batches = celldata.CellData.batches

    def counting(self, *a, **k):
        epochs_trained["n"] += 1
        return real_batches(self, *a, **k)

    monkeypatch.setattr(runner, "_evaluate", real_evaluate)
    monkeypatch.setattr(celldata.CellData, "batches", counting)
    resumed = run_cell(_cell(), tmp_path / "resumed", progress=False)
    assert epochs_trained["n"] == 2  # epochs 2 and 3 only
    assert resumed["curves"]["train_loss"] == pytest.approx(reference["curves"]["train_loss"])
    assert resumed["test"] == pytest.approx(reference["test"])
    assert not list((tmp_path / "resumed" / "cache" / "resume").glob("*.pt"))


def test_cell_keys_and_validation():
    assert _cell().key() != _cell(seed=1).key() != _cell(fraction=0.5).key()
    assert _cell(scheme="metalr").key().split("__")[-2] == "metalr"
    with pytest.raises(BenchConfigError):
        Cell("chest_xray", arch=lambda a, b: tiny_net(a, b)).key()
    with pytest.raises(BenchConfigError):
        Cell("no_such_task")
    with pytest.raises(BenchConfigError):
        Cell("busi", scheme="sideways")


@pytest.mark.parametrize("scheme", ["last_layer_only", "metalr"])
def test_schemes_run(fake_data, tmp_path, scheme):
    from hyperinit.bench.suites import ARCHS  # noqa: F401 - the suite module imports cleanly

    r = run_cell(_cell(arch="timm:resnet18", epochs=1, scheme=scheme), tmp_path, progress=False)
    assert r["cell"]["scheme"] == scheme and len(r["curves"]["val"]) == 1


def test_hyperinit_init_is_recorded(fake_data, tmp_path):
    r = run_cell(
        _cell(arch="timm:resnet18", epochs=1, init="hyperinit:own"), tmp_path, progress=False
    )
    assert r["init_info"]["modality"] == "xray"
    assert r["init_info"]["predicted_elements"] > 0


def test_checkpoint_dir_gets_its_own_key(tmp_path):
    import hashlib
    import shutil

    from hyperinit.modalities import get_modality

    folder = tmp_path / "ck"
    shutil.copytree(get_modality("xray").path, folder)
    weights = (folder / "model.safetensors").read_bytes()
    cell = Cell("chest_xray", init=f"hyperinit:{folder}")
    # the weights' sha, then the prediction settings that differ from the defaults
    depthwise = PostProcess(orthogonalize="depthwise", residual_scale=0.25).key()
    settings = "-orthogonal-flat-centre_except_depthwise" + depthwise
    assert cell.config()["hypernet"] == hashlib.sha256(weights).hexdigest()[:8] + settings
    assert cell.init_label == "hyperinit:ck"
    xray = get_modality("xray")  # the registry's pin when trained, none for the reference
    pin = xray.sha256["model.safetensors"][:8] + settings if xray.trained else None
    assert Cell("chest_xray", init="hyperinit:own").config().get("hypernet") == pin
    before = cell.key()
    (folder / "model.safetensors").write_bytes(weights + b"\0")
    assert cell.key() != before


def test_structured_share_cap_gets_its_own_key(tmp_path):
    import json
    import shutil

    from hyperinit.modalities import get_modality

    folder = tmp_path / "ck"
    shutil.copytree(get_modality("xray").path, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(noise="kron", spectrum="predicted", centre_rows="all", postprocess=None)
    (folder / "config.json").write_text(json.dumps(config))
    cell = Cell("chest_xray", init=f"hyperinit:{folder}")
    uncapped = cell.config()["hypernet"]
    assert len(uncapped) == 8  # the weights' sha alone: default settings
    config["max_structured_share"] = 0.25
    (folder / "config.json").write_text(json.dumps(config))
    # same weights file, different predictions: the cache must not hand back uncapped results
    assert cell.config()["hypernet"] == uncapped + "-cap0.25"
    config["noise"] = "gaussian"
    (folder / "config.json").write_text(json.dumps(config))
    assert cell.config()["hypernet"] == uncapped + "-cap0.25-gaussian"
    assert cell.key() != Cell("chest_xray", init="hyperinit:own").key()
    config.update(spectrum="flat", centre_rows="none", postprocess={"orthogonalize": True})
    (folder / "config.json").write_text(json.dumps(config))
    pp = PostProcess(orthogonalize=True).key()
    assert cell.config()["hypernet"] == uncapped + "-cap0.25-gaussian-flat-centre_none" + pp
