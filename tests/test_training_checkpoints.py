"""The shipped trained modality checkpoints: registered, verified, documented, different from
the untrained reference, and trained on training images only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hyperinit
from hyperinit.hub import sha256_file
from hyperinit.hypernet.reference import make_reference
from hyperinit.modalities import _TRAINED, MODALITIES, get_modality

TRAINED = sorted(_TRAINED)


def test_some_modalities_are_trained():
    assert TRAINED, "no trained checkpoint is registered"
    assert set(TRAINED) <= set(MODALITIES)


@pytest.mark.parametrize("modality", TRAINED)
def test_registry_entry_matches_embedded_files(modality):
    entry = get_modality(modality)
    assert entry.trained and entry.embedded == modality and entry.path.name == modality
    for name, sha in entry.sha256.items():
        assert sha256_file(entry.path / name) == sha
    card = (entry.path / "README.md").read_text()
    for words in ("**Data**", "**Objective**", "**Training**", "wall time", "**Results"):
        assert words in card
    training = hyperinit.HyperInitializer.from_pretrained(entry.path).config.training
    assert training["steps"] > 0 and training["wall_time_s"] > 0
    assert training["data"] == f"bundled {modality} training images"


@pytest.mark.parametrize("modality", TRAINED)
def test_trained_checkpoint_predicts_other_weights_than_the_reference(modality):
    trained = hyperinit.HyperInitializer.from_pretrained(modality)
    reference = make_reference()
    assert trained.config.modality == modality
    diff = [
        k for k, v in reference.state_dict().items() if not torch.equal(v, trained.state_dict()[k])
    ]
    assert any(k.startswith("gnn.") for k in diff) and any(k.startswith("core_") for k in diff)

    def net() -> nn.Module:
        torch.manual_seed(0)
        return hyperinit.models.create_model("timm:resnet10t", in_chans=1, num_classes=2)

    a, b = net(), net()
    report = hyperinit.initialize(a, modality=modality, seed=3)
    hyperinit.initialize(b, checkpoint=reference, seed=3)
    assert "(trained)" in report.checkpoint
    conv = "conv1.0.weight"
    assert conv in report.predicted
    wa, wb = dict(a.named_parameters())[conv], dict(b.named_parameters())[conv]
    assert not torch.allclose(wa, wb)
    # still a sound initialisation: fan-in scaled
    assert 0.2 < float(wa.std() / wb.std()) < 5


@pytest.mark.parametrize("modality", TRAINED)
def test_pretraining_images_exclude_test_images(modality, data_dir):
    from hyperinit.data import drive_split, load_split, pretraining_files

    train = {p.resolve() for p in pretraining_files(modality)}
    test: set = set()
    for name in ("chest_xray", "ct_covid", "busi", "dermamnist"):
        test |= {p.resolve() for p in load_split(name, "test").files}
    test |= {p.resolve() for p in drive_split("test").images}
    assert train and not train & test
