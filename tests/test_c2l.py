"""C2L: loss, mixup, queue, teacher, training on real X-rays, resume, DDP (gloo), errors."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

import hyperinit.c2l.pretrainer as pretrainer_mod
from hyperinit.c2l import (
    C2LPretrainer,
    batch_mixup,
    c2l_loss,
    default_augment,
    info_nce,
    load_backbone,
    strip_head,
    suggested_queue_size,
)
from hyperinit.c2l.loss import mix, sample_lambda
from hyperinit.c2l.queue import FeatureQueue
from hyperinit.c2l.teacher import momentum_update
from hyperinit.errors import C2LCheckpointError, C2LConfigError, HyperInitError

torch.set_num_threads(1)


class TinyNet(nn.Module):
    """A small CNN returning (B, 4 * width) features."""

    def __init__(self, in_chans: int = 1, width: int = 8) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, w, 3, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(4 * w),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class Images(Dataset):
    """Real chest X-rays as (1, S, S) float tensors in [0, 1]."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


@pytest.fixture(scope="module")
def xrays(data_dir: Path) -> torch.Tensor:
    """128 real chest X-rays (half normal, half pneumonia), 40 px, grayscale, in [0, 1]."""
    from PIL import Image

    root = data_dir / "chest_xray_kermany" / "train"
    files = sorted((root / "NORMAL").glob("*.jpeg"))[:64]
    files += sorted((root / "PNEUMONIA").glob("*.jpeg"))[:64]
    out = []
    for f in files:
        img = Image.open(f).convert("L").resize((40, 40))
        out.append(torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(1, 40, 40))
    return torch.stack(out).float() / 255


def _trainer(seed: int = 0, **kw) -> C2LPretrainer:
    torch.manual_seed(seed)
    opts = {"image_size": 24, "queue_size": 256, "momentum": 0.99}
    opts.update(kw)
    return C2LPretrainer(TinyNet(), **opts)


# ---------------------------------------------------------------- loss and mixup


def test_info_nce_matches_the_per_row_cross_entropy_of_algorithm_1():
    g = torch.Generator().manual_seed(0)
    q, k, queue = (
        torch.randn(5, 8, generator=g),
        torch.randn(5, 8, generator=g),
        torch.randn(11, 8, generator=g),
    )
    t = 0.07
    expected = []
    qn, kn, Qn = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    for j in range(5):
        logits = torch.cat([(qn[j] @ kn[j]).view(1), Qn @ qn[j]]) / t
        expected.append(-torch.log_softmax(logits, 0)[0])
    assert torch.allclose(info_nce(q, k, queue, t), torch.stack(expected).mean(), atol=1e-5)


def test_info_nce_gradient_flows_only_into_the_query():
    q = torch.randn(4, 6, requires_grad=True)
    k = torch.randn(4, 6, requires_grad=True)
    queue = torch.randn(9, 6, requires_grad=True)
    info_nce(q, k, queue).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None and queue.grad is None


def test_c2l_loss_is_the_mean_of_the_three_terms_with_feature_mixup_of_v2a():
    g = torch.Generator().manual_seed(1)
    v1a, v1m, v2a, v2m = (torch.randn(6, 8, generator=g) for _ in range(4))
    queue = F.normalize(torch.randn(20, 8, generator=g), dim=1)
    lam, perm = 0.7, torch.tensor([3, 0, 5, 1, 2, 4])
    out = c2l_loss(v1a, v1m, v2a, v2m, queue, lam=lam, perm=perm, temperature=0.1)
    vm = lam * v2a + (1 - lam) * v2a[perm]
    a = info_nce(v1a, v2a, queue, 0.1)
    m = info_nce(v1m, v2m, queue, 0.1)
    x = info_nce(v1m, vm, queue, 0.1)
    assert torch.allclose(out.loss, (a + m + x) / 3, atol=1e-6)
    assert torch.allclose(out.terms["mix"], x, atol=1e-6)
    # keys to enqueue: normalised v2A, v2M, vm in that order
    expected = torch.cat([F.normalize(t, dim=1) for t in (v2a, v2m, vm)])
    assert torch.allclose(out.keys, expected, atol=1e-6)


def test_positive_pair_accuracy_counts_rows_whose_positive_beats_all_negatives():
    q = torch.eye(4, 8)
    queue = torch.eye(8)[4:]  # orthogonal negatives
    key = q.clone()
    key[1] = -key[1]  # row 1's positive is the worst logit
    out = c2l_loss(q, q, key, key, queue, lam=1.0, perm=torch.arange(4))
    assert out.accuracy.item() == pytest.approx(0.75)


def test_batch_mixup_uses_one_lambda_and_one_permutation_for_both_views():
    g = torch.Generator().manual_seed(3)
    xa = torch.randn(16, 1, 8, 8, generator=g)
    xb = torch.randn(16, 1, 8, 8, generator=g)
    ma, mb, lam, perm = batch_mixup(xa, xb, 1.0, torch.Generator().manual_seed(5))
    assert sorted(perm.tolist()) == list(range(16)) and perm.tolist() != list(range(16))
    assert 0.5 <= lam <= 1.0
    assert torch.allclose(ma, lam * xa + (1 - lam) * xa[perm])
    assert torch.allclose(mb, lam * xb + (1 - lam) * xb[perm])
    again = batch_mixup(xa, xb, 1.0, torch.Generator().manual_seed(5))
    assert again[2] == lam and torch.equal(again[3], perm)


def test_lambda_follows_beta_alpha_alpha():
    g = torch.Generator().manual_seed(0)
    lams = torch.tensor([sample_lambda(1.0, g, fold=False) for _ in range(3000)])
    assert abs(lams.mean().item() - 0.5) < 0.03  # Beta(1, 1) = U(0, 1)
    assert abs(lams.var().item() - 1 / 12) < 0.01
    small = torch.tensor([sample_lambda(0.2, g, fold=False) for _ in range(3000)])
    assert abs(small.var().item() - 1 / (4 * 1.4)) < 0.01  # var of Beta(a, a): 1/(4(2a+1))
    folded = [sample_lambda(1.0, g) for _ in range(200)]
    assert min(folded) >= 0.5


def test_the_trainer_mixes_student_and_teacher_views_with_the_same_lambda_and_permutation(
    xrays, monkeypatch
):
    seen: list[tuple[float, torch.Tensor]] = []
    real = pretrainer_mod.batch_mixup

    def spy(xa, xb, alpha, generator):
        xm_a, xm_b, lam, perm = real(xa, xb, alpha, generator)
        seen.append((lam, perm))
        return xm_a, xm_b, lam, perm

    inputs: dict[str, list[torch.Tensor]] = {"student": [], "teacher": []}
    monkeypatch.setattr(pretrainer_mod, "batch_mixup", spy)
    trainer = _trainer()
    trainer.student.backbone.register_forward_pre_hook(
        lambda m, a: inputs["student"].append(a[0].detach().clone())
    )
    trainer.teacher.backbone.register_forward_pre_hook(
        lambda m, a: inputs["teacher"].append(a[0].detach().clone())
    )
    trainer.fit(Images(xrays[:16]), epochs=1, batch_size=8, max_steps_per_epoch=1, progress=False)
    ((lam, perm),) = seen
    x1, xm1 = inputs["student"]
    x2, xm2 = inputs["teacher"]
    assert not torch.equal(x1, x2)  # two different augmentations
    assert torch.allclose(xm1, mix(x1, lam, perm), atol=1e-6)
    assert torch.allclose(xm2, mix(x2, lam, perm), atol=1e-6)


# ---------------------------------------------------------------- queue


def test_queue_is_first_in_first_out():
    q = FeatureQueue(5, 2)
    assert torch.allclose(q.features.norm(dim=1), torch.ones(5))
    k = torch.arange(18, dtype=torch.float32).view(9, 2)
    q.enqueue(k[:3])
    assert int(q.ptr) == 3 and torch.equal(q.features[:3], k[:3])
    q.enqueue(k[3:7])  # wraps: rows 0..1 now hold keys 5, 6
    assert int(q.ptr) == 2
    assert torch.equal(q.ordered(), k[2:7])  # oldest first: the last five keys
    q.enqueue(k)  # more keys than rows: keep the last five
    assert torch.equal(q.ordered(), k[4:9])
    with pytest.raises(C2LConfigError):
        q.enqueue(torch.zeros(2, 3))


def test_queue_round_trips_through_state_dict():
    q = FeatureQueue(7, 3)
    q.enqueue(torch.randn(4, 3))
    r = FeatureQueue(7, 3)
    r.load_state_dict(q.state_dict())
    assert torch.equal(r.features, q.features) and int(r.ptr) == 4


def test_trainer_enqueues_v2a_v2m_vm_after_each_step(xrays):
    trainer = _trainer(queue_size=1000)
    trainer.fit(Images(xrays[:32]), epochs=1, batch_size=8, max_steps_per_epoch=3, progress=False)
    assert int(trainer.queue.ptr) == 3 * 3 * 8
    written = trainer.queue.features[: 3 * 3 * 8]
    assert torch.allclose(written.norm(dim=1), torch.ones(72), atol=1e-5)


def test_suggested_queue_size_holds_the_seeds_share_of_an_epoch():
    # the seed itself: ChestX-ray14's 112,120 images x 3 keys -> its 2**15
    assert suggested_queue_size(3 * 112_120, 3 * 256) == 2**15
    # a small set gets at least one step's keys
    assert suggested_queue_size(3 * 544, 3 * 64) == 192
    assert suggested_queue_size(3 * 4693, 3 * 64) == 1024
    with pytest.raises(C2LConfigError, match="keys_per_epoch"):
        suggested_queue_size(0, 8)


def test_a_queue_far_over_the_seeds_share_of_an_epoch_warns_with_a_size_that_fits(xrays, caplog):
    """Over an epoch, its own earlier keys are every image's negatives; the warning names a fix."""
    trainer = _trainer(queue_size=1000)
    with caplog.at_level("WARNING", logger=pretrainer_mod.__name__):
        trainer.fit(
            Images(xrays[:32]), epochs=1, batch_size=8, max_steps_per_epoch=1, progress=False
        )
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "queue_size 1000 holds 4167% of an epoch's keys" in msg
    assert "its own earlier keys" in msg
    assert "queue_size=24" in msg  # one step's keys: 3 x 8
    caplog.clear()
    trainer = _trainer(queue_size=72)  # 3/4 of an epoch's 96 keys: long, but no self-contrast
    with caplog.at_level("WARNING", logger=pretrainer_mod.__name__):
        trainer.fit(Images(xrays[:32]), epochs=1, batch_size=8, progress=False)
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "queue_size 72 holds 75% of an epoch's keys" in msg
    assert "its own earlier keys" not in msg
    caplog.clear()
    trainer = _trainer(queue_size=24)
    with caplog.at_level("WARNING", logger=pretrainer_mod.__name__):
        trainer.fit(Images(xrays[:32]), epochs=1, batch_size=8, progress=False)
    assert not [r for r in caplog.records if "of an epoch's keys" in r.getMessage()]


def _auto(seed: int = 0) -> C2LPretrainer:
    torch.manual_seed(seed)
    return C2LPretrainer(TinyNet(), image_size=24, momentum=0.99)  # queue_size="auto"


def test_auto_queue_takes_the_seeds_share_of_an_epoch_at_the_first_fit(xrays, caplog):
    kw = {"epochs": 1, "batch_size": 4, "progress": False, "seed": 3}
    trainer = _auto()
    with caplog.at_level("WARNING", logger=pretrainer_mod.__name__):
        trainer.fit(Images(xrays[:64]), **kw)
    # 16 steps x 12 keys = 192 keys an epoch; a tenth, ~19, rounds to 16 (>= one step's 12)
    assert trainer.queue_size == suggested_queue_size(192, 12) == 16
    assert trainer.queue.features.shape == (16, 128)
    assert trainer.config()["queue_size"] == 16
    assert not [r for r in caplog.records if "of an epoch's keys" in r.getMessage()]
    twin = _auto()
    twin.fit(Images(xrays[:64]), **kw)
    assert twin.history.loss == trainer.history.loss
    assert torch.equal(twin.queue.features, trainer.queue.features)
    # a second fit (more epochs, other data) keeps the queue it has
    trainer.fit(Images(xrays[:128]), **{**kw, "epochs": 2})
    assert trainer.queue_size == 16


@pytest.mark.parametrize("bad", ["big", 0, -5])
def test_bad_queue_sizes_are_refused_by_name(bad):
    with pytest.raises(C2LConfigError, match="queue_size must be an int >= 1 or 'auto'"):
        C2LPretrainer(TinyNet(), image_size=24, queue_size=bad)


# ---------------------------------------------------------------- teacher


def test_teacher_is_an_ema_of_parameters_and_a_copy_of_buffers():
    trainer = _trainer(momentum=0.9)
    s, t = trainer.student, trainer.teacher
    with torch.no_grad():
        for i, (ps, pt) in enumerate(zip(s.parameters(), t.parameters())):
            ps.fill_(float(i + 1))
            pt.fill_(-1.0)
        for b in s.buffers():
            b.fill_(3)
    momentum_update(trainer.teacher, trainer.student, trainer.momentum)
    for i, pt in enumerate(t.parameters()):
        assert torch.allclose(pt, torch.full_like(pt, 0.9 * -1.0 + 0.1 * (i + 1)), atol=1e-6)
    for bt in t.buffers():
        assert torch.all(bt == 3)
    assert all(not p.requires_grad for p in t.parameters())


def test_teacher_follows_the_student_by_the_momentum_rule_during_fit(xrays):
    trainer = _trainer(momentum=0.8)
    start = [p.clone() for p in trainer.student.parameters()]
    trainer.fit(Images(xrays[:16]), epochs=1, batch_size=8, max_steps_per_epoch=1, progress=False)
    # one step from teacher == student: teacher = 0.8 * start + 0.2 * student after the step
    moved = 0
    for p0, ps, pt in zip(start, trainer.student.parameters(), trainer.teacher.parameters()):
        assert torch.allclose(pt, 0.8 * p0 + 0.2 * ps, atol=1e-6)
        moved += int(not torch.equal(ps, p0))
    assert moved > 0
    for bs, bt in zip(trainer.student.buffers(), trainer.teacher.buffers()):
        assert torch.equal(bs, bt)


# ---------------------------------------------------------------- training on real images


def _loss_falls(
    trainer: C2LPretrainer, data, steps: int, *, batch_size: int = 16, epochs: int = 1, lr=0.05
) -> tuple[float, float, float, float]:
    hist = trainer.fit(
        data, epochs=epochs, batch_size=batch_size, max_steps_per_epoch=steps // epochs, lr=lr,
        lr_milestones=(), progress=False,
    )  # fmt: skip
    assert len(hist.steps) == steps
    early = sum(hist.loss[5:20]) / 15  # the queue holds real keys after a few steps
    late = sum(hist.loss[-15:]) / 15
    acc_early = sum(hist.accuracy[:15]) / 15
    acc_late = sum(hist.accuracy[-15:]) / 15
    return early, late, acc_early, acc_late


def test_loss_falls_on_real_xrays_fast(xrays):
    data = Images(xrays.repeat(8, 1, 1, 1))  # 1024 items: 64 distinct batches of 16
    early, late, acc_early, acc_late = _loss_falls(_trainer(), data, 60)
    assert late < early - 0.1, (early, late)
    assert acc_late > acc_early, (acc_early, acc_late)


@pytest.mark.slow
def test_loss_falls_over_300_steps_on_a_real_xray_folder(data_dir):
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet10t", num_classes=0, in_chans=1)
    trainer = C2LPretrainer(model, image_size=32, queue_size=512, momentum=0.99)
    folder = data_dir / "chest_xray_kermany" / "train"  # 5216 images: 163 batches of 32
    early, late, acc_early, acc_late = _loss_falls(
        trainer, folder, 300, batch_size=32, epochs=2, lr=0.03
    )
    assert late < early - 0.2, (early, late)
    assert acc_late > acc_early + 0.1, (acc_early, acc_late)


def test_fit_accepts_a_dataloader_of_image_batches(xrays):
    loader = DataLoader(torch.utils.data.TensorDataset(xrays[:32]), batch_size=8, shuffle=True)
    hist = _trainer().fit(loader, epochs=1, progress=False)
    assert len(hist.steps) == 4 and all(torch.isfinite(torch.tensor(hist.loss)))
    auto = _auto()
    auto.fit(loader, epochs=1, progress=False)  # batch_size left at its default
    assert auto.queue_size == 24  # the loader's batches of 8: 3 x 8 keys a step, 4 steps


# ---------------------------------------------------------------- checkpoints and resume


class _Killed(Exception):
    pass


def _kill_after_first_epoch(trainer: C2LPretrainer, epoch: int) -> None:
    if epoch == 0:
        raise _Killed


@pytest.mark.parametrize("make", [_trainer, _auto], ids=["fixed queue", "auto queue"])
def test_resume_after_a_kill_equals_an_uninterrupted_run(xrays, tmp_path, make):
    data = Images(xrays[:48])
    kw = {"epochs": 3, "batch_size": 8, "max_steps_per_epoch": 3, "progress": False, "seed": 4}
    full = make(seed=1)
    full.fit(data, checkpoint_dir=tmp_path / "a", **kw)

    first = make(seed=1)
    with pytest.raises(_Killed):
        first.fit(data, checkpoint_dir=tmp_path / "b", on_epoch_end=_kill_after_first_epoch, **kw)
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 3
    assert torch.equal(state["queue"]["features"], first.queue.features)  # queue is saved

    resumed = make(seed=99)  # different fresh init: everything must come from the file
    resumed.fit(data, checkpoint_dir=tmp_path / "b", resume=True, **kw)
    assert resumed.step == full.step == 9
    assert resumed.queue_size == full.queue_size == (256 if make is _trainer else 24)
    assert resumed.history.loss == full.history.loss
    for a, b in zip(full.student.state_dict().values(), resumed.student.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(full.teacher.state_dict().values(), resumed.teacher.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(full.queue.features, resumed.queue.features)
    assert int(full.queue.ptr) == int(resumed.queue.ptr)
    logged = json.loads((tmp_path / "b" / "history.json").read_text())
    assert [r["loss"] for r in logged["steps"]] == full.history.loss
    csv_rows = (tmp_path / "b" / "steps.csv").read_text().strip().splitlines()
    assert len(csv_rows) == 1 + 9


def test_resume_refuses_a_checkpoint_of_other_settings(xrays, tmp_path):
    data = Images(xrays[:16])
    _trainer().fit(data, epochs=1, batch_size=8, checkpoint_dir=tmp_path, progress=False)
    other = _trainer(queue_size=128)
    with pytest.raises(C2LCheckpointError, match="queue_size"):
        other.fit(data, epochs=2, batch_size=8, checkpoint_dir=tmp_path, resume=True)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(C2LCheckpointError):
        _trainer().fit(data, epochs=1, batch_size=8, resume=tmp_path / "junk.pt")


# ---------------------------------------------------------------- export


def test_save_pretrained_loads_into_timm_and_torchvision_models_and_other_channels(xrays, tmp_path):
    import timm
    import torchvision
    from safetensors.torch import load_file

    torch.manual_seed(0)
    tv = strip_head(torchvision.models.resnet18(weights=None))
    tv.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    trainer = C2LPretrainer(tv, image_size=32, queue_size=64)
    trainer.fit(Images(xrays[:16]), epochs=1, batch_size=8, max_steps_per_epoch=1, progress=False)
    trainer.save_pretrained(tmp_path / "tv")
    cfg = json.loads((tmp_path / "tv" / "config.json").read_text())
    assert cfg["feature_width"] == 512 and cfg["steps"] == 1 and cfg["method"] == "c2l"

    fresh = torchvision.models.resnet18(weights=None, num_classes=2)
    fresh.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    missing = load_backbone(fresh, tmp_path / "tv")
    assert sorted(missing) == ["fc.bias", "fc.weight"]
    headless = strip_head(torchvision.models.resnet18(weights=None))
    headless.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    headless.load_state_dict(load_file(str(tmp_path / "tv" / "model.safetensors")), strict=True)
    x = xrays[:4, :, :32, :32]
    assert torch.allclose(headless.eval()(x), trainer.backbone.eval()(x), atol=1e-5)

    model = timm.create_model("resnet10t", in_chans=1, num_classes=0)
    t2 = C2LPretrainer(model, image_size=32, queue_size=64)
    t2.save_pretrained(tmp_path / "timm")
    again = timm.create_model("resnet10t", in_chans=1, num_classes=0)
    again.load_state_dict(load_file(str(tmp_path / "timm" / "model.safetensors")), strict=True)
    with pytest.raises(C2LCheckpointError):
        load_backbone(timm.create_model("resnet18", in_chans=1), tmp_path / "timm")
    with pytest.raises(C2LCheckpointError):
        load_backbone(again, tmp_path / "nowhere")

    # a grayscale backbone loads into an RGB model: a gray image copied into 3 channels gives
    # the same features; and back to 1 channel
    rgb = timm.create_model("resnet10t", in_chans=3, num_classes=0)
    assert load_backbone(rgb, tmp_path / "timm") == []
    gray = torch.rand(2, 1, 32, 32)
    assert torch.allclose(rgb.eval()(gray.expand(-1, 3, -1, -1)), again.eval()(gray), atol=1e-5)
    t3 = C2LPretrainer(timm.create_model("resnet10t", in_chans=3, num_classes=0), image_size=32)
    t3.save_pretrained(tmp_path / "rgb")
    back = timm.create_model("resnet10t", in_chans=1, num_classes=0)
    assert load_backbone(back, tmp_path / "rgb") == []
    stem = next(k for k in back.state_dict() if k.endswith("weight"))
    saved = load_file(str(tmp_path / "rgb" / "model.safetensors"))[stem]
    assert torch.allclose(back.state_dict()[stem], saved.sum(1, keepdim=True))


def test_export_writes_tied_weights_once_and_loads_them_back(tmp_path):
    """Tensors that share storage go into model.safetensors once (safetensors' save_model) and
    come back tied: not reported missing, and equal to the saved ones."""

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = TinyNet(width=2)
            self.proj = nn.Linear(8, 8, bias=False)
            self.out = nn.Linear(8, 8, bias=False)
            self.out.weight = self.proj.weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.proj(self.body(x)))

    torch.manual_seed(0)
    trainer = C2LPretrainer(Tied(), image_size=16, queue_size=16)
    out = trainer.save_pretrained(tmp_path / "tied")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    from safetensors.torch import load_file

    assert len(load_file(str(out / "model.safetensors"))) == len(trainer.backbone.state_dict()) - 1
    fresh = Tied()
    assert load_backbone(fresh, out) == []
    assert fresh.out.weight is fresh.proj.weight
    assert torch.equal(fresh.proj.weight, trainer.backbone.proj.weight)


# ---------------------------------------------------------------- bad inputs


def test_bad_inputs_give_clear_errors(tmp_path, xrays):
    with pytest.raises(C2LConfigError, match="feature"):
        C2LPretrainer(nn.Conv2d(1, 4, 3), image_size=16)  # (B, C, H, W), not a vector
    with pytest.raises(C2LConfigError, match="dry forward"):
        C2LPretrainer(TinyNet(in_chans=3), in_chans=1, image_size=16)
    with pytest.raises(C2LConfigError):
        C2LPretrainer("resnet18")  # type: ignore[arg-type]
    with pytest.raises(C2LConfigError, match="momentum"):
        _trainer(momentum=1.0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(C2LConfigError, match="no images"):
        _trainer().fit(empty, epochs=1, batch_size=8)
    with pytest.raises(C2LConfigError, match="not a folder"):
        _trainer().fit(tmp_path / "missing", epochs=1, batch_size=8)
    with pytest.raises(C2LConfigError, match="fewer than one batch"):
        _trainer().fit(Images(xrays[:5]), epochs=1, batch_size=8)
    with pytest.raises(C2LConfigError, match="DataLoader"):
        _trainer().fit([1, 2, 3], epochs=1)  # type: ignore[arg-type]
    bad = DataLoader(torch.utils.data.TensorDataset(torch.rand(8, 24)), batch_size=4)
    with pytest.raises(C2LConfigError, match=r"\(B, C, H, W\)"):
        _trainer().fit(bad, epochs=1, progress=False)
    with pytest.raises(C2LConfigError, match="sync"):
        _trainer(bn_mode="sync").fit(Images(xrays[:16]), epochs=1, batch_size=8, device="cpu")
    with pytest.raises(C2LConfigError):
        strip_head(TinyNet())
    assert issubclass(C2LConfigError, HyperInitError)


def test_default_augment_gives_normalised_views_of_the_requested_size(xrays):
    torch.manual_seed(0)
    aug = default_augment(24, 1)
    a, b = aug(xrays[0]), aug(xrays[0])
    assert a.shape == b.shape == (1, 24, 24) and not torch.equal(a, b)
    rgb = default_augment(24, 3)(xrays[0].repeat(3, 1, 1))
    assert rgb.shape == (3, 24, 24)


# ---------------------------------------------------------------- distributed (gloo)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, x: torch.Tensor, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )  # fmt: skip
    torch.set_num_threads(1)
    from hyperinit.distributed import cleanup_distributed

    trainer = _trainer(seed=rank)  # different inits: rank 0's must win
    trainer.fit(Images(x), epochs=2, batch_size=8, progress=False, device="cpu")
    torch.save(
        {
            "student": trainer.student.state_dict(),
            "teacher": trainer.teacher.state_dict(),
            "queue": trainer.queue.state_dict(),
            "loss": trainer.history.loss,
            "step": trainer.step,
        },
        f"{out}/rank{rank}.pt",
    )
    cleanup_distributed()


def test_two_process_gloo_run_keeps_both_ranks_identical(xrays, tmp_path):
    import torch.multiprocessing as mp

    x = xrays[:32].clone()
    mp.spawn(_ddp_worker, args=(2, _free_port(), x, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["step"] == r1["step"] == 4  # 32 images / 2 ranks / batch 8, 2 epochs
    for part in ("student", "teacher", "queue"):
        for k, v in r0[part].items():
            assert torch.allclose(v.float(), r1[part][k].float(), atol=1e-6), (part, k)
    # keys from both ranks were gathered: 4 steps x 3 kinds x 8 images x 2 ranks
    assert int(r0["queue"]["ptr"]) == 4 * 3 * 8 * 2 % 256
    assert r0["loss"] == r1["loss"]  # the logged loss is the mean over ranks


# ---------------------------------------------------------------- CLI


def test_cli_c2l_pretrains_a_folder_and_writes_loadable_weights(data_dir, tmp_path, capsys):
    import shutil

    import timm
    from safetensors.torch import load_file

    from hyperinit.cli import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    for f in sorted((data_dir / "chest_xray_kermany" / "train" / "NORMAL").glob("*.jpeg"))[:16]:
        shutil.copy(f, folder / f.name)
    out = tmp_path / "out"
    args = ["c2l", "--data", str(folder), "--model", "timm:resnet10t", "--in-chans", "1",
            "--image-size", "32", "--epochs", "1", "--batch-size", "8",
            "--num-workers", "0", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert "C2L: 2 steps" in capsys.readouterr().out
    # --queue-size auto (the default): 2 steps x 24 keys an epoch -> one step's 24
    assert json.loads((out / "config.json").read_text())["queue_size"] == 24
    with pytest.raises(SystemExit):
        main([*args, "--queue-size", "big"])
    assert "expected a positive integer or 'auto', got 'big'" in capsys.readouterr().err
    model = timm.create_model("resnet10t", in_chans=1, num_classes=0)
    model.load_state_dict(load_file(str(out / "model.safetensors")), strict=True)
    assert (out / "checkpoints" / "last.pt").is_file()
    empty = tmp_path / "none"
    empty.mkdir()
    args[2] = str(empty)
    assert main(args) == 2
    assert "no images" in capsys.readouterr().err


def test_example_script_runs(data_dir, tmp_path, monkeypatch, capsys):
    import runpy
    import shutil
    import sys

    folder = tmp_path / "imgs"
    folder.mkdir()
    for f in sorted((data_dir / "chest_xray_kermany" / "train" / "NORMAL").glob("*.jpeg"))[:16]:
        shutil.copy(f, folder / f.name)
    script = Path(__file__).resolve().parent.parent / "examples" / "c2l_pretrain.py"
    monkeypatch.setattr(sys, "argv", [str(script), str(folder), str(tmp_path / "o"), "1", "32"])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "C2L loss" in out and "left at init: ['fc.weight', 'fc.bias']" in out


def test_teacher_runs_without_dropout_but_with_batch_statistics(xrays):
    torch.manual_seed(0)
    net = nn.Sequential(TinyNet(), nn.Dropout(0.5))
    trainer = C2LPretrainer(net, image_size=24, queue_size=64)
    trainer.fit(Images(xrays[:16]), epochs=1, batch_size=8, max_steps_per_epoch=1, progress=False)
    trainer.student.train()  # fit leaves the student in eval mode
    trainer._setup(
        lr=0.01, weight_decay=0, sgd_momentum=0, lr_milestones=(), lr_gamma=1, total_steps=1,
        seed=0,
    )  # fmt: skip
    drop = trainer.teacher.backbone[1]
    bns = [m for m in trainer.teacher.modules() if isinstance(m, nn.BatchNorm2d)]
    assert not drop.training and all(m.training for m in bns)
    assert trainer.student.backbone[1].training
