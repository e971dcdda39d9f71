"""Training the hypernetwork: objectives, steps, exact resume, CLI, on real chest X-rays."""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import hyperinit
from hyperinit.archspace import held_out_specs
from hyperinit.cli import main as cli_main
from hyperinit.training import (
    HyperTrainer,
    Objective,
    ObjectiveError,
    ObjectiveOutput,
    RotationObjective,
    TrainConfig,
    create_objective,
    list_objectives,
    register_objective,
)
from hyperinit.training.archs import bind
from hyperinit.training.checkpoint import STATE_NAME
from hyperinit.training.data import ImageBank, normalize
from hyperinit.training.evaluate import evaluate_objective
from hyperinit.training.step import twice_differentiable
from tests.conftest import REPO, xray_train_files

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def xray_files(data_dir: Path) -> list[Path]:
    return xray_train_files(data_dir, 12)


@pytest.fixture(scope="module")
def bank(xray_files) -> ImageBank:
    return ImageBank(xray_files, load_size=40, progress=False)


def _config(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(
        modality="xray",
        objective="rotation",
        steps=4,
        meta_batch=2,
        batch_size=8,
        image_size=32,
        load_size=40,
        checkpoint_every=2,
        log_every=1,
        out=str(tmp_path / "run"),
        max_params=300_000,
    )
    return TrainConfig(**{**base, **kw})


def test_registry_names_combinations_and_errors():
    assert {"rotation", "c2l"} <= set(list_objectives())
    combo = create_objective("rotation+c2l", 16)
    assert combo.name == "rotation+c2l" and len(combo.parts) == 2
    with pytest.raises(ObjectiveError, match=r"registered: .*rotation"):
        create_objective("jigsaw")
    with pytest.raises(ObjectiveError):
        create_objective("rotation", 16, temperature=0)


def test_rotation_task_labels_are_the_applied_rotations(bank):
    x = bank.batch(16, 32, torch.Generator().manual_seed(0))
    rotated, k = RotationObjective.make_task(x, torch.Generator().manual_seed(1))
    assert len(set(k.tolist())) > 1
    for i in range(len(x)):
        matches = [
            (r, f)
            for f in (False, True)
            for r in range(4)
            if torch.equal(rotated[i], torch.rot90(x[i].flip(2) if f else x[i], r, (1, 2)))
        ]
        assert matches and all(r == int(k[i]) for r, _ in matches)


def test_image_bank_skips_unreadable_files_and_is_reproducible(xray_files, tmp_path, caplog):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with caplog.at_level(logging.WARNING, logger="hyperinit.training.data"):
        b = ImageBank([*xray_files[:4], bad], load_size=24, progress=False)
    assert len(b) == 4 and b.skipped == [str(bad)]
    assert any("skipping unreadable image" in r.getMessage() for r in caplog.records)
    one = b.batch(6, 16, torch.Generator().manual_seed(3))
    two = b.batch(6, 16, torch.Generator().manual_seed(3))
    assert torch.equal(one, two) and one.shape == (6, 3, 16, 16)
    assert one.min() >= 0 and one.max() <= 1
    assert not torch.equal(one, b.batch(6, 16, torch.Generator().manual_seed(4)))


def test_a_step_trains_the_hypernetwork_and_the_head(tmp_path, bank):
    trainer = HyperTrainer(_config(tmp_path, objective="rotation+c2l"), bank=bank)
    before = {k: v.clone() for k, v in trainer.step_module.state_dict().items()}
    row = trainer.train_step(0)
    assert row["archs_per_s"] > 0 and row["images_per_s"] > 0
    assert {"rot_loss", "c2l_loss"} <= set(row)
    after = trainer.step_module.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("hypernet.core_fc") for k in changed)
    assert any(k.startswith("hypernet.gnn") for k in changed)
    assert any(k.startswith("objective.parts.0.head") for k in changed)
    assert row["c2l_acc"] >= 0
    # the architectures of a step are a function of (seed, rank, step)
    assert [a.spec for a in trainer.architectures(5)] == [a.spec for a in trainer.architectures(5)]
    assert [a.spec for a in trainer.architectures(5)] != [a.spec for a in trainer.architectures(6)]


def _state(trainer: HyperTrainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.step_module.state_dict().items()}


def test_resumed_run_equals_uninterrupted_run(tmp_path, bank):
    straight = HyperTrainer(_config(tmp_path / "a", objective="rotation+c2l"), bank=bank)
    straight.fit()
    paused = HyperTrainer(_config(tmp_path / "b", objective="rotation+c2l"), bank=bank)
    paused.fit(stop_after=2)
    assert paused.step == 2
    resumed = HyperTrainer(_config(tmp_path / "b", objective="rotation+c2l"), bank=bank)
    resumed.fit()
    assert resumed.step == 4
    a, b = _state(straight), _state(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with (
        open(tmp_path / "a" / "run" / "log.csv") as f1,
        open(tmp_path / "b" / "run" / "log.csv") as f2,
    ):
        la, lb = list(csv.DictReader(f1)), list(csv.DictReader(f2))
    assert [r["loss"] for r in la] == [r["loss"] for r in lb] and len(la) == 4


def test_resume_refuses_a_run_with_other_settings(tmp_path, bank):
    HyperTrainer(_config(tmp_path), bank=bank).fit(stop_after=2)
    other = HyperTrainer(_config(tmp_path, batch_size=4), bank=bank)
    with pytest.raises(hyperinit.HyperInitError, match="batch_size"):
        other.fit()


def test_bad_structured_share_cap_is_refused(tmp_path, bank):
    with pytest.raises(hyperinit.HyperInitError, match="max_structured_share"):
        HyperTrainer(_config(tmp_path, max_structured_share=1.5), bank=bank)


def test_bilevel_loss_is_the_mean_before_and_after_an_inner_sgd_step(tmp_path, bank):
    cfg = _config(tmp_path, batch_size=16, inner_steps=1, inner_lr=0.05, scale_range=4.0)
    trainer = HyperTrainer(cfg, bank=bank)  # the reference gets a scale head, starting at 1
    hn = trainer.hypernet
    assert hn.config.scale_range == 4.0 and torch.count_nonzero(hn.log_scale.weight) == 0
    arch = trainer.architectures(0)[0]
    x = normalize(bank.batch(16, 32, torch.Generator().manual_seed(1))[:, : arch.in_chans])
    loss, _, metrics, images = trainer.step_module(arch, x, torch.Generator().manual_seed(2))
    assert images == 16 and {"inner_loss", "inner_gain"} <= set(metrics)
    # by hand: the loss on the first half, one SGD step on it, the loss on the second half
    gen = torch.Generator().manual_seed(2)
    params = hn.predict_params(arch.graph, roles=arch.roles, seed=arch.draw % (1 << 31))
    obj = trainer.objective
    first = obj(bind(arch, params), x[:8], gen).loss
    grads = torch.autograd.grad(first, list(params.values()), create_graph=True)
    stepped = {k: v - 0.05 * g for (k, v), g in zip(params.items(), grads)}
    with twice_differentiable():
        second = obj(bind(arch, stepped), x[8:], gen).loss
    assert loss.item() == pytest.approx(((first + second) / 2).item(), rel=1e-4)
    assert metrics["inner_loss"] == pytest.approx(second.item(), rel=1e-4)
    # the hypernetwork (its scale head too) is trained through the inner step
    loss.backward()
    assert hn.log_scale.weight.grad.abs().sum() > 0
    bilevel = {n: p.grad.clone() for n, p in hn.named_parameters() if p.grad is not None}
    hn.zero_grad()
    trainer.step_module.inner_steps = 0
    trainer.step_module(arch, x, torch.Generator().manual_seed(2))[0].backward()
    one = {n: p.grad for n, p in hn.named_parameters() if p.grad is not None}
    assert not torch.allclose(bilevel["core_fc.weight"], one["core_fc.weight"])


def test_bilevel_run_resumes_and_refuses_other_inner_settings(tmp_path, bank):
    kw = dict(batch_size=16, inner_steps=1, scale_range=3.0, objective="rotation+c2l")
    HyperTrainer(_config(tmp_path, **kw), bank=bank).fit(stop_after=2)
    resumed = HyperTrainer(_config(tmp_path, **kw), bank=bank)
    resumed.fit()
    assert resumed.step == 4 and resumed.hypernet.config.training["inner_steps"] == 1
    assert all(float(r["inner_loss"]) > 0 for r in resumed.history)
    other = HyperTrainer(_config(tmp_path, **{**kw, "inner_steps": 0}), bank=bank)
    with pytest.raises(hyperinit.HyperInitError, match="inner_steps"):
        other.fit()


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"inner_steps": -1}, "inner_steps must be"),
        ({"inner_steps": 1, "inner_lr": 0.0}, "inner_lr must be"),
        ({"inner_steps": 1, "batch_size": 8}, r"4 images per slice.*batch_size >= 16"),
        ({"scale_range": 1.0}, "scale_range must be"),
    ],
)
def test_bad_bilevel_settings_are_refused(tmp_path, bank, settings, match):
    with pytest.raises(hyperinit.HyperInitError, match=match):
        HyperTrainer(_config(tmp_path, **settings), bank=bank)


def test_inner_steps_run_mobilenetv3_twice_differentiably():
    """timm's MobileNetV3 uses hardsigmoid gates, which have no double backward in torch."""
    model = hyperinit.models.create_model("timm:mobilenetv3_small_050", num_classes=4)
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    x = torch.randn(2, 3, 32, 32)

    def grad_norm() -> torch.Tensor:
        out = torch.func.functional_call(model, params, (x,)).square().sum()
        grads = torch.autograd.grad(out, list(params.values()), create_graph=True)
        return sum(g.square().sum() for g in grads)

    with pytest.raises(RuntimeError, match="hardsigmoid"):
        grad_norm().backward()
    original = torch.nn.functional.hardsigmoid
    with twice_differentiable():
        grad_norm().backward()
    assert torch.nn.functional.hardsigmoid is original
    assert all(p.grad is not None for p in params.values())
    with pytest.raises(KeyError), twice_differentiable():
        raise KeyError("boom")
    assert torch.nn.functional.hardsigmoid is original


def test_custom_objective_plugs_in(tmp_path, bank):
    @register_objective
    class MeanIntensity(Objective):
        """Regress each image's mean intensity (a toy objective)."""

        name = "test_mean"

        def __init__(self, feature_dim: int = 128):
            super().__init__(feature_dim)
            self.head = nn.Linear(feature_dim, 1)

        def forward(self, net, x, generator) -> ObjectiveOutput:
            pred = self.head(net(x)).squeeze(1)
            loss = (pred - x.mean((1, 2, 3))).pow(2).mean()
            return ObjectiveOutput(loss, torch.exp(-loss), {"mse": loss.item()}, len(x))

    trainer = HyperTrainer(_config(tmp_path, objective="test_mean", steps=2), bank=bank)
    trainer.fit()
    assert trainer.history[-1]["mse"] >= 0 and trainer.step == 2


def test_cli_train_then_initialize_with_the_checkpoint(tmp_path, xray_files):
    data = tmp_path / "images" / "nested"
    data.mkdir(parents=True)
    for f in xray_files[:10]:
        shutil.copy(f, data / f.name)
    (data / "corrupt.jpeg").write_bytes(b"\xff\xd8 truncated")
    out, export = tmp_path / "run", tmp_path / "ckpt"
    argv = [
        "train",
        "--modality",
        "ct",
        "--data",
        str(tmp_path / "images"),
        "--steps",
        "2",
        "--batch-size",
        "16",
        "--image-size",
        "32",
        "--load-size",
        "40",
        "--out",
        str(out),
        "--export",
        str(export),
        "--max-params",
        "300000",
        "--checkpoint-every",
        "1",
        "--max-structured-share",
        "0.3",
        "--inner-steps",
        "1",
        "--scale-range",
        "3",
    ]
    assert cli_main(argv) == 0
    assert (out / STATE_NAME).is_file() and (out / "log.csv").is_file()
    hn = hyperinit.HyperInitializer.from_pretrained(export)
    assert hn.config.modality == "ct" and hn.config.training["steps"] == 2
    assert hn.config.training["images"] == 10
    assert hn.config.max_structured_share == 0.3
    assert hn.config.scale_range == 3.0 and hn.config.training["inner_steps"] == 1
    shares = hn.structured_shares(hyperinit.trace(hyperinit.models.create_model("timm:resnet10t")))
    assert max(shares.values()) <= 0.3 + 1e-6
    model = hyperinit.models.create_model("timm:resnet10t", in_chans=1, num_classes=2)
    report = hyperinit.initialize(model, checkpoint=export, seed=0)
    assert report.predicted and str(export) in report.checkpoint


def test_evaluate_objective_on_held_out_architectures(bank):
    hn = hyperinit.HyperInitializer()
    specs = held_out_specs(include_models=False)[:2]
    rows = evaluate_objective(hn, "rotation", specs, bank, batches=1, batch_size=8, image_size=32)
    assert [r["arch"] for r in rows] == [str(s) for s in specs]
    assert all(0 <= r["score"] <= 1 and r["loss"] > 0 for r in rows)
    probed = evaluate_objective(
        hn, "rotation", specs[:1], bank, batches=1, batch_size=8, image_size=32, probe_steps=3
    )
    assert probed[0]["loss"] != rows[0]["loss"]


def test_normalize_matches_c2l_statistics(bank):
    x = bank.batch(4, 16, torch.Generator().manual_seed(0))
    y = normalize(x)
    assert y.shape == x.shape and not torch.allclose(x, y)
    assert torch.allclose(normalize(x[:, :1]), (x[:, :1] - 0.449) / 0.226, atol=1e-3)


def test_a_run_from_the_reference_trains_with_the_shipped_prediction_settings(tmp_path, bank):
    """The reference start is the shipped reference checkpoint, settings included."""
    from hyperinit.hypernet.model import HyperInitializer
    from hyperinit.hypernet.reference import make_reference

    trainer = HyperTrainer(_config(tmp_path), bank=bank)
    shipped = HyperInitializer.from_pretrained(str(REPO / "hyperinit/checkpoints/reference"))
    for key in ("noise", "spectrum", "centre_rows"):
        assert getattr(trainer.hypernet.config, key) == getattr(shipped.config, key)
    ref = make_reference().state_dict()
    assert all(torch.equal(v.cpu(), ref[k]) for k, v in trainer.hypernet.state_dict().items())
