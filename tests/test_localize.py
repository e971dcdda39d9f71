"""AttentionMiner parts: erasure, eq. 8, KP, MSA, stages, boxes and scores, ChestX-ray14 data."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from hyperinit.errors import DataError, HyperInitError, LocalizationError
from hyperinit.localize import (
    AttentionMiner,
    aggregate_heatmaps,
    class_activation_maps,
    component_at_max,
    connected_components,
    frozen_copy,
    heatmap_boxes,
    iobb,
    iou,
    kp_loss,
    load_localization_data,
    localization_scores,
    mine,
    normalize_maps,
)
from hyperinit.localize import mining as mining_mod
from hyperinit.models import set_input_channels

torch.set_num_threads(1)


class TinyCNN(nn.Module):
    """Three stride-2 stages (a 64-px input gives 16 and 8 px maps) and a 2-class head."""

    def __init__(self, in_chans: int = 1, w: int = 8) -> None:
        super().__init__()

        def block(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, 2, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

        self.stem = block(in_chans, w)
        self.stage1 = block(w, 2 * w)
        self.stage2 = block(2 * w, 4 * w)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.stage2(self.stage1(self.stem(x)))).flatten(1))


@pytest.fixture(scope="module")
def bbox_data(data_dir):
    return load_localization_data(data_dir / "chestxray14_bbox", image_size=64)


@pytest.fixture(scope="module")
def real_images(bbox_data) -> torch.Tensor:
    return torch.stack([bbox_data.image(i) for i in range(8)])


def _flood(binary: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """8-connected flood fill from ``start`` (the test's own, independent of the library)."""
    out = np.zeros_like(binary, dtype=bool)
    if not binary[start]:
        return out
    todo = deque([start])
    out[start] = True
    h, w = binary.shape
    while todo:
        y, x = todo.popleft()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                if 0 <= ny < h and 0 <= nx < w and binary[ny, nx] and not out[ny, nx]:
                    out[ny, nx] = True
                    todo.append((ny, nx))
    return out


# ---------------------------------------------------------------- data


def test_chestxray14_bbox_loads_labels_and_halved_boxes(bbox_data, data_dir):
    import csv

    assert len(bbox_data) == 880
    assert sum(len(b) for b in bbox_data.boxes) == 984
    assert bbox_data.classes[3] == "Infiltration"  # the box CSV's "Infiltrate" maps to it
    counts = {c: sum(b[0] == c for bs in bbox_data.boxes for b in bs) for c in bbox_data.classes}
    assert counts["Infiltration"] == 123 and counts["Atelectasis"] == 180
    # every boxed finding is also among the image's labels
    for i, bs in enumerate(bbox_data.boxes):
        for b in bs:
            assert bbox_data.labels[i, bbox_data.classes.index(b[0])] == 1
    with open(data_dir / "chestxray14_bbox" / "BBox_List_2017.csv") as fh:
        first = list(csv.reader(fh))[1]
    i = [f.stem for f in bbox_data.files].index(first[0].removesuffix(".png"))
    x, y = bbox_data.boxes[i][0][1:3]
    assert x == pytest.approx(float(first[2]) * 64 / 1024)  # 1024-px frame -> 64 px
    assert y == pytest.approx(float(first[3]) * 64 / 1024)
    img, lab = bbox_data[i]
    assert img.shape == (1, 64, 64) and lab.shape == (8,)


def test_missing_label_csv_and_missing_images_are_named(tmp_path, data_dir):
    with pytest.raises(DataError, match="no label CSV"):
        load_localization_data(tmp_path)
    import shutil

    real = data_dir / "chestxray14_bbox" / "images" / "00000032_037.jpg"
    shutil.copy(real, tmp_path / real.name)
    (tmp_path / "labels.csv").write_text(
        "Image Index,Finding Labels\n00000032_037.png,Mass\nnope.png,Mass\n"
    )
    with pytest.raises(DataError, match=r"1 images named in .* e\.g\. nope\.png"):
        load_localization_data(tmp_path / "labels.csv")


# ---------------------------------------------------------------- mining


@given(st.lists(st.lists(st.booleans(), min_size=7, max_size=7), min_size=5, max_size=5))
def test_connected_components_scipy_and_torch_fallback_agree(rows):
    mask = np.array(rows)
    ours, n_ours = mining_mod._components_torch(mask)
    labels, n = connected_components(mask)
    assert n == n_ours
    # same partition: a bijection between labels
    pairs = {(int(a), int(b)) for a, b in zip(labels.ravel(), ours.ravel())}
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


def test_erasure_removes_exactly_the_component_around_the_maximum(real_images):
    torch.manual_seed(0)
    miner = AttentionMiner(TinyCNN(), 3, msa=True, in_chans=1, image_size=64)
    miner.net.eval()
    with torch.no_grad():
        fmap, cams, logits, _ = miner.net(real_images)
    w = miner.net.classifier.weight
    maps, masks = mine(fmap, w, steps=3, threshold=0.5)
    assert len(maps) == 3 and len(masks) == 4 and fmap.shape[-1] == 16  # MSA: 16 px, not 8
    erased_any = 0
    for n in range(real_images.shape[0]):
        for c in range(3):
            for t in range(3):
                h = maps[t][n, c].numpy()
                peak = np.unravel_index(int(h.argmax()), h.shape)
                region = _flood(h >= 0.5, peak)
                before, after = masks[t][n, c].numpy(), masks[t + 1][n, c].numpy()
                # exactly the component is newly erased; nothing else changes
                assert np.array_equal(after, np.where(region, 0.0, before))
                erased_any += int(region.sum() > 0)
                # the next map is 0 on everything erased so far
                if t < 2:
                    assert (maps[t + 1][n, c].numpy()[after == 0] == 0).all()
    assert erased_any == 8 * 3 * 3
    # eq. 7: CAM on the erased feature map X * M equals the CAM times M
    m = masks[1]
    direct = torch.einsum("nchw,nchw->nchw", class_activation_maps(fmap, w), m)
    per_class = torch.stack(
        [torch.einsum("ndhw,d->nhw", fmap * m[:, c : c + 1], w[c]) for c in range(3)], 1
    )
    assert torch.allclose(direct, per_class, atol=1e-5)
    # eqs. 1-2: the branch on GAP(X * M^c) equals the logits minus the erased CAM mass
    gap_branch = torch.stack(
        [(fmap * m[:, c : c + 1]).mean((2, 3)) @ w[c] + miner.net.classifier.bias[c]
         for c in range(3)], 1
    )  # fmt: skip
    assert torch.allclose(gap_branch, logits - (cams * (1 - m)).mean((2, 3)), atol=1e-5)


def test_component_at_max_is_empty_below_the_threshold_and_ignores_other_blobs():
    h = np.zeros((6, 6))
    h[0, 0], h[0, 1], h[4, 4] = 1.0, 0.7, 0.9
    assert component_at_max(h).sum() == 2 and component_at_max(h)[4, 4] == 0
    assert component_at_max(np.full((3, 3), 0.2)).sum() == 0


def test_normalize_maps_uses_only_kept_pixels_and_zeroes_erased_ones():
    x = torch.tensor([[[[5.0, 1.0], [3.0, 2.0]]]])
    keep = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])
    out = normalize_maps(x, keep)
    assert torch.allclose(out, torch.tensor([[[[0.0, 0.0], [1.0, 0.5]]]]))
    assert normalize_maps(torch.ones(1, 1, 2, 2)).sum() == 0


def test_eq8_aggregation_on_a_constructed_heatmap():
    h1 = torch.tensor([[1.0, 0.2], [0.4, 0.6]])[None, None]
    m1 = torch.tensor([[0.0, 1.0], [1.0, 1.0]])[None, None]
    h2 = torch.tensor([[0.0, 0.8], [0.5, 0.1]])[None, None]
    m2 = torch.tensor([[0.0, 0.0], [1.0, 1.0]])[None, None]
    h3 = torch.tensor([[0.0, 0.0], [0.9, 0.3]])[None, None]
    m3 = torch.tensor([[0.0, 0.0], [0.0, 1.0]])[None, None]
    # T=2: 1/2 [H1 + (H2 + H1 (1 - M1))]
    two = aggregate_heatmaps([h1, h2], [m1, m2])
    assert torch.allclose(two[0, 0], torch.tensor([[1.0, 0.5], [0.45, 0.35]]))
    # T=3, by hand: (0,0) 3/3; (0,1) (.2+.8+.8)/3; (1,0) (.4+.5+.9)/3; (1,1) (.6+.1+.3)/3
    three = aggregate_heatmaps([h1, h2, h3], [torch.ones_like(m1), m1, m2, m3])
    assert torch.allclose(three[0, 0], torch.tensor([[1.0, 0.6], [0.6, 1.0 / 3]]))
    assert torch.equal(aggregate_heatmaps([h1], [m1]), h1)  # T=1: the CAM itself
    with pytest.raises(ValueError, match="masks"):
        aggregate_heatmaps([h1, h2], [m1])


# ---------------------------------------------------------------- KP, MSA, stages


def test_kp_loss_is_zero_for_identical_networks_and_positive_after_an_update(real_images):
    torch.manual_seed(0)
    miner = AttentionMiner(TinyCNN(), 3, in_chans=1, image_size=64)
    net = miner.net.train()
    frozen = frozen_copy(net).train()
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    layers_b = net(real_images)[3]
    with torch.no_grad():
        layers_a = frozen(real_images)[3]
    assert len(layers_a) == 4  # the two stages, MSA, the logits
    assert kp_loss(layers_a, layers_b).item() == 0.0
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net(real_images)[2].sum().backward()
    opt.step()
    with torch.no_grad():
        layers_a = frozen(real_images)[3]
    loss = kp_loss(layers_a, net(real_images)[3])
    assert loss.item() > 1e-4 and loss.requires_grad
    for k, v in frozen.state_dict().items():  # N_A never changes, BN statistics included
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, before[k]), k
    # by hand: mean over images of the L2 distance of GAP features, averaged over layers
    a, b = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    assert kp_loss([a, a[:, :, 0, 0]], [b, a[:, :, 0, 0]]).item() == pytest.approx(3**0.5 / 2)


@pytest.mark.parametrize(("msa", "size"), [(False, 8), ("bilinear", 16), ("deconv", 16)])
def test_msa_doubles_the_cam_resolution_of_timm_and_torchvision_backbones(msa, size):
    import timm
    import torchvision

    for backbone in (timm.create_model("resnet10t", in_chans=1),
                     set_input_channels(torchvision.models.resnet18(), 1)):  # fmt: skip
        miner = AttentionMiner(backbone, 4, msa=msa, in_chans=1, image_size=256)
        maps = miner.heatmaps(torch.randn(2, 1, 256, 256), details=True)
        assert maps["steps"].shape == (2, 3, 4, size, size)
        assert maps["heatmaps"].shape == (2, 4, 256, 256)
        assert maps["heatmaps"].min() >= 0 and maps["heatmaps"].max() <= 1
    assert miner.stages == ("layer3", "layer4")  # found by hooks on the torchvision model


def test_backbone_without_a_spatial_feature_map_is_refused_by_name():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64 * 64, 16), nn.ReLU(), nn.Linear(16, 2))
    with pytest.raises(LocalizationError, match="no spatial feature map"):
        AttentionMiner(mlp, 2, in_chans=1, image_size=64)
    with pytest.raises(LocalizationError, match="in_chans"):
        AttentionMiner(TinyCNN(in_chans=3), 2, in_chans=1, image_size=64)
    with pytest.raises(LocalizationError, match="kp must be"):
        AttentionMiner(TinyCNN(), 2, kp="strong", image_size=64)
    with pytest.raises(LocalizationError, match="class_names"):
        AttentionMiner(TinyCNN(), 2, class_names=["a"], image_size=64)
    assert issubclass(LocalizationError, HyperInitError)


def test_heatmaps_refuse_images_of_the_wrong_channel_count(real_images):
    miner = AttentionMiner(TinyCNN(), 2, in_chans=1, image_size=64)
    with pytest.raises(LocalizationError, match="3 channels but the model takes 1"):
        miner.heatmaps(real_images.repeat(1, 3, 1, 1))


# ---------------------------------------------------------------- boxes and scores


def test_boxes_from_a_constructed_heatmap_are_ranked_by_mean_intensity():
    h = np.zeros((32, 32), dtype=np.float32)
    h[20:28, 16:30] = 0.6
    h[4:10, 4:12] = 0.9
    boxes = heatmap_boxes(h, per_class=3, thresholds=(0.3, 0.5, 0.7))
    # duplicates over the thresholds are dropped: two boxes, not five
    assert boxes == [(4.0, 4.0, 8.0, 6.0, pytest.approx(0.9)),
                     (16.0, 20.0, 14.0, 8.0, pytest.approx(0.6))]  # fmt: skip
    assert len(heatmap_boxes(h, per_class=1)) == 1


def test_localization_scores_match_hand_computed_iou_and_afp():
    truth = [[("a", 0, 0, 10, 10)], [("a", 0, 0, 10, 10), ("b", 20, 20, 10, 10)],
             [("b", 0, 0, 4, 4)]]  # fmt: skip
    pred = [
        [("a", 0, 0, 10, 5, 0.9), ("a", 50, 50, 5, 5, 0.8)],  # IoU 0.5; a miss
        [("a", 5, 5, 10, 10, 0.7), ("b", 20, 20, 10, 10, 0.9)],  # IoU 25/175; IoU 1
        [("a", 0, 0, 4, 4, 0.5)],  # no "a" truth here: not scored
    ]
    assert iou((0, 0, 10, 10), (5, 5, 10, 10)) == pytest.approx(25 / 175)
    assert iobb((5, 5, 10, 10), (0, 0, 10, 10)) == pytest.approx(0.25)
    s = localization_scores(pred, truth, iou=(0.1, 0.3, 0.5, 0.6))
    assert s.n_boxes == {"a": 2, "b": 2} and s.n_images == {"a": 2, "b": 2}
    assert s.acc["a"] == {0.1: 1.0, 0.3: 0.5, 0.5: 0.5, 0.6: 0.0}
    assert s.afp["a"] == {0.1: 0.5, 0.3: 1.0, 0.5: 1.0, 0.6: 1.5}
    assert s.acc["b"] == {0.1: 0.5, 0.3: 0.5, 0.5: 0.5, 0.6: 0.5}
    assert s.afp["b"] == {0.1: 0.0, 0.3: 0.0, 0.5: 0.0, 0.6: 0.0}
    bb = localization_scores(pred, truth, iou=(0.25, 0.5), metric="iobb", classes=["a"])
    # IoBB: (0,0,10,5) 1.0; (50,50,5,5) 0; (5,5,10,10) 0.25
    assert bb.acc["a"] == {0.25: 1.0, 0.5: 0.5} and bb.afp["a"] == {0.25: 0.5, 0.5: 1.0}
    keyed = localization_scores({"x": pred[0]}, {"x": truth[0]}, iou=(0.5,))
    assert keyed.acc["a"] == {0.5: 1.0}
    assert "| 0.3 | 0.50-1.00 | 0.50-0.00 |" in s.to_markdown()
    with pytest.raises(LocalizationError, match="same order"):
        localization_scores(pred[:2], truth)


def test_miner_boxes_are_in_input_pixels_and_score_against_real_boxes(bbox_data):
    torch.manual_seed(0)
    miner = AttentionMiner(TinyCNN(), 8, class_names=bbox_data.classes, in_chans=1,
                           image_size=64)  # fmt: skip
    sub = bbox_data.subset(range(6))
    boxes = miner.boxes(sub, per_class=3)
    assert len(boxes) == 6
    for found in boxes:
        per = {c: sum(b[0] == c for b in found) for c in bbox_data.classes}
        assert max(per.values()) <= 3
        for c, x, y, w, h, score in found:
            assert c in bbox_data.classes and x >= 0 and x + w <= 64 and y + h <= 64
            assert 0 < score <= 1
    s = localization_scores(boxes, sub.boxes)
    assert set(s.classes) == {b[0] for bs in sub.boxes for b in bs}
