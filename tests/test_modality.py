"""Convolution-based modality distance and initialize(modality="auto") on the real data."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

import hyperinit
from hyperinit import modality_auto as M
from hyperinit.modalities import MODALITIES
from tests.conftest import REPO


def _coords_script():
    spec = importlib.util.spec_from_file_location(
        "modality_coords", REPO / "tools" / "modality_coords.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def heldout(data_dir):
    """16 held-out (test-split) files per dataset, spread over the split."""
    script = _coords_script()
    out = {}
    for name in script.DATASETS:
        files = script.split_files(name, "test", data_dir)
        out[name] = [files[i] for i in M.spread_indices(len(files), 16)]
    return out


def test_each_dataset_picks_its_own_modality(heldout):
    for name, files in heldout.items():
        best, distances = M.choose_modality(files)
        assert best == name, (name, distances)
        assert next(iter(distances)) == name and set(distances) == set(MODALITIES)


def test_distance_inputs_and_properties(heldout, data_dir):
    xray = M.load_images(heldout["xray"])
    assert xray.shape == (16, 3, M.IMAGE_SIZE, M.IMAGE_SIZE)
    assert float(xray.min()) >= 0 and float(xray.max()) <= 1
    fundus_folder = data_dir / "fundus_drive" / "test" / "images"
    d_xf = hyperinit.modality_distance(xray, fundus_folder)
    d_fx = hyperinit.modality_distance(fundus_folder, xray)
    assert d_xf == pytest.approx(d_fx, rel=1e-6)
    # same modality, different images: far closer than across modalities
    other_xray = M.load_images(data_dir / "chest_xray_kermany" / "train", max_images=16)
    assert hyperinit.modality_distance(xray, other_xray) < 0.5 * d_xf
    # any affine normalisation of a tensor, a dataset of (image, label) pairs: same answer
    raw = torch.stack([M.to_chw(torch.rand(1, 40, 50) * 255) for _ in range(6)])
    ds = [(img, 0) for img in raw * 0.02 - 1.3]
    assert hyperinit.modality_distance(raw, ds) == pytest.approx(0.0, abs=1e-5)


def test_committed_coordinates_are_reproducible(data_dir):
    from hyperinit.modality_auto import COORDS

    script = _coords_script()
    params = COORDS["params"]
    kw = {k: params[k] for k in ("subset_size", "n_subsets", "nets_per_init", "max_images")}
    fresh = M.cmv_coordinates(script.split_files("fundus", "train", data_dir), **kw)
    stored = torch.tensor(COORDS["coords"]["fundus"]["kaiming"])
    assert torch.allclose(fresh["kaiming"], stored, rtol=1e-3, atol=1e-4)


def test_initialize_auto(data_dir):
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)
    )
    folder = data_dir / "fundus_drive" / "test" / "images"
    report = hyperinit.initialize(model, modality="auto", sample=folder, seed=0)
    assert report.modality == "fundus"
    assert next(iter(report.modality_distances)) == "fundus"
    assert "auto" in str(report) and "fundus" in str(report)
    with pytest.raises(hyperinit.HyperInitError, match="sample="):
        hyperinit.initialize(model, modality="auto")
