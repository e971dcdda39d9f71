"""AttentionMiner training: kill and resume, bad inputs, save/load, DDP (gloo), the CLI."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from hyperinit import AttentionMiner
from hyperinit.errors import LocalizationError, UnreadableImageError
from hyperinit.localize import load_localization_data
from tests.test_localize import TinyCNN

torch.set_num_threads(1)


class Cached(Dataset):
    """Real images held in memory, with ``.labels`` as LocalizationImages has."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> None:
        self.x, self.labels, self.classes = x, labels, classes

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.labels[i]


def _pick(labels: torch.Tensor, n: int) -> list[int]:
    """n images such that every class has at least two positives."""
    chosen: list[int] = []
    for c in range(labels.shape[1]):
        chosen += [i for i in torch.nonzero(labels[:, c]).flatten().tolist() if i not in chosen][:2]
    chosen += [i for i in range(len(labels)) if i not in chosen][: n - len(chosen)]
    return chosen[:n]


@pytest.fixture(scope="module")
def bbox(data_dir):
    return load_localization_data(data_dir / "chestxray14_bbox", image_size=64)


@pytest.fixture(scope="module")
def train_set(bbox) -> Cached:
    idx = _pick(bbox.labels, 32)
    x = torch.stack([bbox.image(i) for i in idx])
    return Cached(x, bbox.labels[idx], bbox.classes)


def _miner(seed: int = 0, **kw) -> AttentionMiner:
    torch.manual_seed(seed)
    opts = {"in_chans": 1, "image_size": 64, "kp": "features", "am_fraction": 0.25}
    opts.update(kw)
    return AttentionMiner(TinyCNN(), 8, **opts)


FIT = {"epochs": 3, "batch_size": 8, "mining_start": 1, "progress": False, "seed": 3}


class _Killed(Exception):
    pass


def _kill_after_second_epoch(miner: AttentionMiner, epoch: int) -> None:
    if epoch == 1:
        raise _Killed


def test_kill_and_resume_gives_the_weights_of_an_uninterrupted_run(train_set, tmp_path):
    full = _miner(seed=1)
    full.fit(train_set, checkpoint_dir=tmp_path / "a", **FIT)
    assert full.step == 12 and full.frozen is not None
    assert [e["mining"] for e in full.history["epochs"]] == [0.0, 1.0, 1.0]
    assert full.history["epochs"][2]["kp"] > 0  # KP is active once the network moved

    first = _miner(seed=1)
    with pytest.raises(_Killed):
        first.fit(train_set, checkpoint_dir=tmp_path / "b",
                  on_epoch_end=_kill_after_second_epoch, **FIT)  # fmt: skip
    assert (tmp_path / "b" / "last.safetensors").is_file()
    resumed = _miner(seed=99)  # another init: everything must come from the checkpoint
    resumed.fit(train_set, checkpoint_dir=tmp_path / "b", resume=True, **FIT)
    assert resumed.step == full.step and resumed.epoch == 3
    assert resumed.history == full.history
    for a, b in ((full.net, resumed.net), (full.frozen, resumed.frozen)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
    # the frozen copy is the network at mining_start, not the final one
    fw = full.frozen.classifier.weight
    assert not torch.equal(fw, full.net.classifier.weight)


def test_bad_inputs_raise_before_anything_is_written(train_set, tmp_path):
    ckpt = tmp_path / "ck"
    _miner().fit(train_set, checkpoint_dir=ckpt, **{**FIT, "epochs": 1})
    saved = (ckpt / "last.safetensors").read_bytes()
    kw = {**FIT, "checkpoint_dir": ckpt, "resume": True}

    rgb = Cached(train_set.x.repeat(1, 3, 1, 1), train_set.labels, train_set.classes)
    with pytest.raises(LocalizationError, match="3 channels but the model takes 1"):
        _miner().fit(rgb, **kw)
    narrow = Cached(train_set.x, train_set.labels[:, :5], train_set.classes[:5])
    with pytest.raises(LocalizationError, match="5 entries but num_classes=8"):
        _miner().fit(narrow, **kw)
    no_mass = train_set.labels.clone()
    no_mass[:, 4] = 0
    with pytest.raises(LocalizationError, match=r"no positive image for class\(es\) \['Mass'\]"):
        _miner(class_names=train_set.classes).fit(
            Cached(train_set.x, no_mass, train_set.classes), **kw
        )
    with pytest.raises(LocalizationError, match="other settings"):
        _miner(mining_steps=2).fit(train_set, **kw)
    with pytest.raises(LocalizationError, match="a folder, a label CSV or a Dataset"):
        _miner().fit([1, 2, 3], **kw)
    assert (ckpt / "last.safetensors").read_bytes() == saved  # nothing lost
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "last.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(LocalizationError, match="not an AttentionMiner checkpoint"):
        _miner().fit(train_set, **{**kw, "checkpoint_dir": tmp_path / "junk"})


def test_save_and_load_give_the_same_heatmaps_and_boxes(train_set, tmp_path):
    miner = _miner(class_names=train_set.classes)
    miner.fit(train_set, **{**FIT, "epochs": 2})
    miner.save(tmp_path / "m")
    torch.manual_seed(5)
    again = AttentionMiner.load(tmp_path / "m", TinyCNN())
    x = train_set.x[:4]
    assert torch.equal(miner.heatmaps(x), again.heatmaps(x))
    assert miner.boxes(x) == again.boxes(x)
    assert again.class_names == train_set.classes
    t1 = AttentionMiner.load(tmp_path / "m", TinyCNN(), mining_steps=1)
    assert t1.mining_steps == 1
    with pytest.raises(LocalizationError, match="change the network"):
        AttentionMiner.load(tmp_path / "m", TinyCNN(), msa=False)
    with pytest.raises(LocalizationError, match="pass a fresh TinyCNN"):
        AttentionMiner.load(tmp_path / "m")


def test_mining_steps_one_is_the_cam_baseline(train_set):
    """T=1: plain training and the heatmap is the normalised CAM."""
    miner = _miner(mining_steps=1, msa=False)
    miner.fit(train_set, **{**FIT, "epochs": 1, "mining_start": None})
    assert miner.frozen is None and miner.history["epochs"][0]["mining"] == 0.0
    x = train_set.x[:2]
    d = miner.heatmaps(x, details=True)
    cam = torch.nn.functional.interpolate(d["steps"][:, 0], size=(64, 64), mode="bilinear")
    from hyperinit.localize import normalize_maps

    assert torch.allclose(d["heatmaps"], normalize_maps(cam), atol=1e-6)


# ---------------------------------------------------------------- distributed (gloo)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, x, labels, classes, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )  # fmt: skip
    torch.set_num_threads(1)
    from hyperinit.distributed import cleanup_distributed

    miner = _miner(seed=rank)  # different inits: rank 0's must win
    miner.fit(Cached(x, labels, classes), epochs=2, batch_size=4, mining_start=1,
              progress=False, device="cpu", checkpoint_dir=f"{out}/ck")  # fmt: skip
    torch.save({"net": miner.net.state_dict(), "frozen": miner.frozen.state_dict(),
                "history": miner.history, "step": miner.step}, f"{out}/rank{rank}.pt")  # fmt: skip
    cleanup_distributed()


def test_two_process_gloo_run_keeps_both_ranks_identical(train_set, tmp_path):
    import torch.multiprocessing as mp

    args = (2, _free_port(), train_set.x, train_set.labels, train_set.classes, str(tmp_path))
    mp.spawn(_ddp_worker, args=args, nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert r0["step"] == r1["step"] == 8  # 32 images / 2 ranks / batch 4, 2 epochs
    for part in ("net", "frozen"):
        for k, v in r0[part].items():
            assert torch.allclose(v.float(), r1[part][k].float(), atol=1e-6), (part, k)
    assert r0["history"] == r1["history"]  # the logged loss is the mean over ranks
    assert (tmp_path / "ck" / "last.safetensors").is_file()  # written by rank 0


# ---------------------------------------------------------------- CLI


def test_cli_localize_trains_and_writes_boxes_overlays_and_scores(data_dir, bbox, tmp_path, capsys):
    from hyperinit.cli import main

    src = data_dir / "chestxray14_bbox"
    folder = tmp_path / "cxr"
    (folder / "images").mkdir(parents=True)
    idx = _pick(bbox.labels, 16)
    stems = {bbox.files[i].stem for i in idx}
    for i in idx:
        shutil.copy(bbox.files[i], folder / "images" / bbox.files[i].name)
    for name in ("Data_Entry_2017_bbox_images.csv", "BBox_List_2017.csv"):
        with open(src / name, newline="") as fh:
            rows = list(csv.reader(fh))
        keep = [rows[0]] + [r for r in rows[1:] if Path(r[0]).stem in stems]
        with open(folder / name, "w", newline="") as fh:
            csv.writer(fh).writerows(keep)
    out = tmp_path / "out" / "boxes.csv"
    args = ["localize", "--data", str(folder), "--model", "timm:resnet10t", "--in-chans", "1",
            "--image-size", "64", "--epochs", "2", "--batch-size", "8", "--out", str(out),
            "--overlays", str(tmp_path / "png"), "--max-overlays", "2"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "| T(iou) |" in text and "overlays" in text
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and set(rows[0]) == {"image", "class", "x", "y", "w", "h", "score"}
    assert max(float(r["x"]) + float(r["w"]) for r in rows) <= 512  # original 512-px pixels
    assert list((tmp_path / "png").glob("*.png"))
    assert (out.parent / "boxes.scores.json").is_file()
    # load the trained miner instead of training
    again = tmp_path / "again.csv"
    assert main(["localize", "--data", str(folder), "--checkpoint", str(out.parent / "boxes" /
                 "miner"), "--out", str(again)]) == 0  # fmt: skip
    assert again.read_text() == out.read_text()
    # bad input: a class with no positive image -> exit 2 and a message naming it
    code = main([*args[:-4], "--classes", "Mass,Hernia", "--out", str(tmp_path / "x.csv")])
    assert code == 2
    assert "no positive image for class(es) ['Hernia']" in capsys.readouterr().err


def test_an_unreadable_image_is_skipped_with_its_labels_not_the_run(bbox, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="hyperinit.localize.data")
    first = bbox.subset([0, 1, 2])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    first.files[1] = broken
    x, y = first[1]  # falls back to image 2, with image 2's labels
    assert torch.equal(x, first.image(2))
    assert torch.equal(y, first.labels[2])
    assert first.skipped == 1
    assert "skipping unreadable image" in caplog.text
    with pytest.raises(UnreadableImageError, match=r"broken\.jpg"):
        first.image(1)  # asked for by name: still an error
