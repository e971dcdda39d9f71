"""The distill objective: CKA, stage features of real models, a C2L teacher, training steps."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import timm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hyperinit
from hyperinit.archspace import training_spec
from hyperinit.c2l import C2LPretrainer, strip_head
from hyperinit.cli import main as cli_main
from hyperinit.training import (
    DistillObjective,
    HyperTrainer,
    ObjectiveError,
    TrainConfig,
    TrainingError,
)
from hyperinit.training.data import ImageBank, normalize
from hyperinit.training.distill import StageRecorder, linear_cka, load_teacher, match_depths
from tests.conftest import xray_train_files

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bank(data_dir: Path) -> ImageBank:
    return ImageBank(xray_train_files(data_dir, 8), load_size=40, progress=False)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, data_dir: Path) -> Path:
    """A C2L teacher as ``hyperinit c2l`` writes it (a few steps on real chest X-rays)."""
    out = tmp_path_factory.mktemp("teacher")
    images = data_dir / "chest_xray_kermany" / "train" / "NORMAL"
    args = f"--model timm:resnet10t --image-size 32 --epochs 1 --batch-size 8 --out {out}"
    args += " --max-steps-per-epoch 2 --queue-size 16 --num-workers 0"
    code = cli_main(["c2l", "--data", str(images), *args.split()])
    assert code == 0
    return out


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(4, 24),
    p=st.integers(1, 16),
    scale=st.floats(0.01, 100),
    seed=st.integers(0, 2**16),
)
def test_cka_is_one_for_rotated_rescaled_copies_and_lies_in_unit_interval(b, p, scale, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, p, generator=g)
    q = torch.linalg.qr(torch.randn(p, p, generator=g))[0]
    assert float(linear_cka(x, scale * x @ q)) == pytest.approx(1.0, abs=1e-4)
    y = torch.randn(b, p + 3, generator=g)
    assert -1e-6 <= float(linear_cka(x, y)) <= 1 + 1e-6


def test_cka_refuses_mismatched_batches():
    with pytest.raises(ObjectiveError, match="batches"):
        linear_cka(torch.randn(4, 3), torch.randn(5, 3))


@given(n=st.integers(1, 30), m=st.integers(1, 30), depths=st.integers(1, 6))
def test_depth_pairs_rise_together_and_end_at_the_deepest_stages(n, m, depths):
    pairs = match_depths(n, m, depths)
    assert pairs[-1] == (n - 1, m - 1)
    assert all(0 <= i < n and 0 <= j < m for i, j in pairs)
    assert all(a <= c and b <= d for (a, b), (c, d) in itertools.pairwise(pairs))


@pytest.mark.parametrize(
    ("model", "kwargs", "stages"),
    [
        ("resnet18", {}, 5),  # stem + 4 stages
        ("mobilenetv3_small_100", {}, 5),
        ("efficientnet_b0", {}, 5),
        ("deit_tiny_patch16_224", {"img_size": 48}, 12),  # its 12 blocks (tokens)
    ],
)
def test_stage_features_of_real_models(model, kwargs, stages):
    net = timm.create_model(model, num_classes=0, in_chans=1, **kwargs)
    with StageRecorder(net) as rec:
        net(torch.randn(4, 1, 48, 48))
    feats = rec.stages()
    assert len(feats) == stages and all(f.shape[0] == 4 and f.dim() == 2 for f in feats)
    with torch.no_grad():  # the hooks are gone after the block
        net(torch.randn(4, 1, 48, 48))
    assert len(rec.stages()) == stages


def test_teacher_loads_from_the_c2l_cli_folder_with_its_architecture(teacher_dir):
    net, chans = load_teacher(teacher_dir)
    assert chans == 1 and not net.training
    assert all(not p.requires_grad for p in net.parameters())
    ref = strip_head(timm.create_model("resnet10t", in_chans=1))
    from safetensors.torch import load_file

    saved = load_file(str(teacher_dir / "model.safetensors"))
    key = next(k for k in saved if k.endswith("weight") and saved[k].dim() == 4)
    assert torch.equal(net.state_dict()[key], saved[key])
    assert not torch.equal(ref.state_dict()[key], saved[key])


def test_bad_teachers_are_refused_with_the_fix(tmp_path, teacher_dir):
    with pytest.raises(ObjectiveError, match="needs a teacher"):
        DistillObjective()
    with pytest.raises(ObjectiveError, match="hyperinit c2l"):
        DistillObjective(teacher=tmp_path)
    nameless = tmp_path / "nameless"
    nameless.mkdir()
    trainer = C2LPretrainer(strip_head(timm.create_model("resnet10t", in_chans=1)), image_size=32)
    trainer.save_pretrained(nameless)
    with pytest.raises(ObjectiveError, match="teacher_model"):
        DistillObjective(teacher=nameless)
    assert DistillObjective(teacher=nameless, teacher_model="timm:resnet10t").teacher_chans == 1
    with pytest.raises(ObjectiveError, match="depths"):
        DistillObjective(teacher=teacher_dir, depths=0)


def _config(tmp_path: Path, teacher: Path, **kw) -> TrainConfig:
    base = dict(
        objective="distill",
        objective_options={"distill": {"teacher": str(teacher)}},
        steps=4,
        meta_batch=2,
        batch_size=8,
        image_size=32,
        load_size=40,
        checkpoint_every=2,
        log_every=1,
        out=str(tmp_path / "run"),
        max_params=300_000,
        in_chans=(1, 3),
    )
    return TrainConfig(**{**base, **kw})


def test_distill_step_trains_the_hypernetwork_toward_the_teacher(tmp_path, bank, teacher_dir):
    trainer = HyperTrainer(_config(tmp_path, teacher_dir, lr=3e-3, warmup=1), bank=bank)
    assert trainer.objective.state_dict() == {}  # the teacher is reloaded, not checkpointed
    before = {k: v.clone() for k, v in trainer.hypernet.state_dict().items()}
    first = trainer.train_step(0)
    assert 0 <= first["cka"] <= 1 and first["distill_loss"] == pytest.approx(1 - first["cka"])
    changed = [k for k, v in trainer.hypernet.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("gnn") for k in changed)
    # the same batch and architectures again: steps on them raise the CKA with the teacher
    step0 = [trainer.train_step(0)["cka"] for _ in range(6)]
    assert step0[-1] > first["cka"]


def test_distill_with_three_channel_architectures_sees_the_grey_teacher_input(teacher_dir):
    obj = DistillObjective(teacher=teacher_dir)
    grey = torch.rand(4, 1, 32, 32)
    one = obj.teacher_stages(normalize(grey))
    three = obj.teacher_stages(normalize(grey.expand(-1, 3, -1, -1)))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(one, three))


def test_distill_run_resumes_and_refuses_another_teacher(tmp_path, bank, teacher_dir):
    HyperTrainer(_config(tmp_path, teacher_dir), bank=bank).fit(stop_after=2)
    resumed = HyperTrainer(_config(tmp_path, teacher_dir), bank=bank)
    resumed.fit()
    assert resumed.step == 4
    other = {"distill": {"teacher": str(teacher_dir), "depths": 2}}
    again = HyperTrainer(_config(tmp_path, teacher_dir, objective_options=other), bank=bank)
    with pytest.raises(Exception, match="objective_options"):
        again.load_state()
    summary = resumed.training_summary()
    assert summary["objective_options"]["distill"]["teacher"] == str(teacher_dir)


def test_options_for_an_objective_not_in_the_sum_are_refused(teacher_dir):
    from hyperinit.training import create_objective

    with pytest.raises(ObjectiveError, match="does not include"):
        create_objective("rotation", options={"distill": {"teacher": str(teacher_dir)}})
    both = create_objective("rotation+distill", options={"distill": {"teacher": str(teacher_dir)}})
    assert both.name == "rotation+distill"


def test_archspace_networks_have_stage_features():
    from hyperinit.archspace import build

    for seed in range(8):
        net = build(training_spec(seed), 1)
        with StageRecorder(net) as rec:
            net(torch.randn(4, 1, 32, 32))
        assert rec.stages(), training_spec(seed).family


def test_ridge_probe_separates_informative_features_and_not_noise():
    from hyperinit.training.proxy import ridge_probe_auc

    g = torch.Generator().manual_seed(0)
    y = torch.arange(120) % 2
    signal = torch.randn(120, 16, generator=g) + 1.5 * y[:, None]
    assert ridge_probe_auc(signal, y, seed=0) > 0.9
    assert abs(ridge_probe_auc(torch.randn(120, 16, generator=g), y, seed=0) - 0.5) < 0.15
    three = torch.arange(150) % 3
    feats = torch.nn.functional.one_hot(three, 3).float() + 0.3 * torch.randn(150, 3, generator=g)
    assert ridge_probe_auc(feats, three, seed=1) > 0.9


def test_snapshots_are_checkpoints_and_the_probe_chooses_one(tmp_path, bank, data_dir):
    import json

    import hyperinit
    from hyperinit.training.proxy import ProbeData, probe_score, select_snapshot

    cfg = _config(tmp_path, Path("unused"), objective="rotation", objective_options={})
    cfg.snapshot_every = 2
    trainer = HyperTrainer(cfg, bank=bank)
    trainer.fit()
    snaps = sorted((tmp_path / "run" / "snapshots").glob("step_*"))
    assert [s.name for s in snaps] == ["step_00002", "step_00004"]
    model = timm.create_model("resnet10t", in_chans=1, num_classes=2)
    hyperinit.initialize(model, checkpoint=snaps[0], seed=0)  # a snapshot is a checkpoint
    data = ProbeData.from_task("chest_xray", size=32, limit=48)
    assert len(data.y) <= 48 and set(data.y.tolist()) == {0, 1}
    from hyperinit.archspace import held_out_specs

    specs = held_out_specs(False)[:2]
    one = probe_score(trainer.hypernet, data, specs=specs, image_size=32)
    assert 0 <= one["score"] <= 1 and len(one["per_arch"]) == 2
    assert probe_score(trainer.hypernet, data, specs=specs, image_size=32) == one
    best, rows = select_snapshot(tmp_path / "run", data, specs=specs, image_size=32)
    assert best in snaps and len(rows) == 2
    assert json.loads((tmp_path / "run" / "snapshots" / "probe.json").read_text()) == rows


def test_probe_refuses_segmentation_and_runs_without_snapshots(tmp_path):
    from hyperinit.training.proxy import ProbeData, select_snapshot

    with pytest.raises(TrainingError, match="classification"):
        ProbeData.from_task("drive")
    with pytest.raises(TrainingError, match="snapshot-every"):
        select_snapshot(tmp_path, ProbeData(torch.zeros(4, 1, 8, 8), torch.zeros(4)))


def test_cli_trains_a_distilled_hypernetwork_with_snapshots(
    tmp_path, data_dir, teacher_dir, capsys
):
    images = tmp_path / "images"
    images.mkdir()
    for f in xray_train_files(data_dir, 5):
        (images / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "run"
    args = f"--objective distill --teacher {teacher_dir} --steps 2 --batch-size 8 --out {out}"
    args += " --image-size 32 --load-size 40 --max-params 300000 --snapshot-every 1"
    assert cli_main(["train", "--data", str(images), *args.split()]) == 0
    hn = hyperinit.HyperInitializer.from_pretrained(out / "hypernet")
    assert hn.config.training["objective"] == "distill"
    assert hn.config.training["objective_options"] == {"distill": {"teacher": str(teacher_dir)}}
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["step_00001", "step_00002"]
    bad = args.replace(str(teacher_dir), str(images)).replace(str(out), str(tmp_path / "bad"))
    assert cli_main(["train", "--data", str(images), *bad.split()]) != 0  # not a C2L folder
    assert "no C2L teacher" in capsys.readouterr().err


def test_distill_scores_held_out_architectures(bank, teacher_dir):
    from hyperinit.archspace import held_out_specs
    from hyperinit.initialize import load_hypernetwork
    from hyperinit.training.evaluate import evaluate_objective

    hypernet = load_hypernetwork("xray")[0]
    options = {"distill": {"teacher": str(teacher_dir)}}
    rows = evaluate_objective(
        hypernet,
        "distill",
        held_out_specs(False)[:2],
        bank,
        batches=1,
        batch_size=8,
        image_size=32,
        options=options,
    )
    assert len(rows) == 2 and all(0 <= r["score"] <= 1 for r in rows)
