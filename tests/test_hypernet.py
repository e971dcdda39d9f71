"""HyperInitializer: GNN, decoder, normalisation, checkpoints."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest
import timm
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st

import hyperinit
from hyperinit.errors import CheckpointError
from hyperinit.graph import OP_TYPES
from hyperinit.hypernet.model import CONFIG_NAME, WEIGHTS_NAME
from hyperinit.hypernet.roles import BIAS_RANGE, NORM_WEIGHT_RANGE, assign_roles
from hyperinit.hypernet.synthesis import gaussian_noise, kron_factors, kron_noise
from hyperinit.initialize import load_hypernetwork
from hyperinit.modalities import MODALITIES


@pytest.fixture(scope="module")
def hypernet() -> hyperinit.HyperInitializer:
    return load_hypernetwork("xray")[0]


@pytest.fixture(scope="module")
def resnet_graph() -> hyperinit.ArchGraph:
    return hyperinit.trace(torchvision.models.resnet18())


def test_reference_checkpoint_is_loadable_and_in_eval_mode(hypernet):
    assert not hypernet.training
    assert hypernet.config.s_max == 50
    assert hypernet.config.op_types == list(OP_TYPES)
    n = sum(p.numel() for p in hypernet.parameters())
    assert 100_000 < n < 1_000_000


def test_predictions_have_shapes_scales_and_are_deterministic(hypernet, resnet_graph):
    with torch.no_grad():
        a = hypernet.predict_params(resnet_graph, seed=1)
        b = hypernet.predict_params(resnet_graph, seed=1)
        c = hypernet.predict_params(resnet_graph, seed=2)
    shapes = resnet_graph.param_shapes
    assert set(a) == set(shapes)
    roles = {r.name: r for r in assign_roles(resnet_graph)}
    for name, t in a.items():
        assert t.shape == shapes[name]
        assert torch.isfinite(t).all()
        assert torch.equal(t, b[name])
        r = roles[name]
        if r.role == "weight":
            assert float(t.std()) == pytest.approx(r.target_std, rel=0.1), name
            assert abs(float(t.mean())) < 0.05 * r.target_std + 1e-6
            assert not torch.equal(t, c[name])
        elif r.role == "norm_weight":
            assert float((t - 1).abs().max()) <= NORM_WEIGHT_RANGE + 1e-6
        else:
            assert float(t.abs().max()) <= BIAS_RANGE + 1e-6
    # He scaling with the ReLU gain for a conv followed by BN + ReLU
    conv = roles["layer1.0.conv1.weight"]
    assert conv.gain == pytest.approx(math.sqrt(2), rel=1e-4) and conv.fan_in == 64 * 9


def test_noise_is_independent_of_which_params_are_predicted(hypernet, resnet_graph):
    with torch.no_grad():
        full = hypernet.predict_params(resnet_graph, seed=3)
        part = hypernet.predict_params(resnet_graph, seed=3, names={"layer2.0.conv1.weight"})
    assert list(part) == ["layer2.0.conv1.weight"]
    # same noise; the structured part may differ only through batching, not at all here
    assert torch.allclose(part["layer2.0.conv1.weight"], full["layer2.0.conv1.weight"], atol=1e-6)


@pytest.mark.parametrize("modality", MODALITIES)
def test_channels_are_not_copies(modality, resnet_graph):
    """Symmetry is broken: no two filters alike, full rank, little common structure. Trained
    checkpoints correlate filters more than the reference (xray most: mean |r| 0.16)."""
    hypernet = load_hypernetwork(modality)[0]
    with torch.no_grad():
        w = hypernet.predict_params(resnet_graph, seed=0)["layer3.0.conv2.weight"]
    flat = w.flatten(1)
    corr = torch.corrcoef(flat)
    off = (corr - torch.eye(len(corr))).abs()
    assert float(off.max()) < 0.8
    assert float(off.sum()) / (len(off) * (len(off) - 1)) < 0.2
    assert torch.linalg.matrix_rank(flat) == flat.shape[0]


def test_predict_params_is_differentiable(resnet_graph):
    hn = hyperinit.HyperInitializer()
    preds = hn.predict_params(resnet_graph, seed=0)
    loss = sum((t**2).mean() for t in preds.values())
    loss.backward()
    grads = {n: p.grad for n, p in hn.named_parameters()}
    for key in (
        "op_embed.weight",
        "gnn.gru.0.weight_hh",
        "core_fc.weight",
        "mix.bias",
        "vec.weight",
    ):
        assert grads[key] is not None and float(grads[key].abs().sum()) > 0, key


def test_gnn_uses_graph_structure(hypernet):
    a = hyperinit.trace(torchvision.models.resnet18())
    b = hyperinit.trace(torchvision.models.resnet34())
    with torch.no_grad():
        ha, hb = hypernet.encode(a), hypernet.encode(b)
    # the stem conv sees the same neighbourhood, but deeper nodes see different graphs
    assert not torch.allclose(ha[-2], hb[-2])


def test_save_and_load_round_trip(tmp_path, resnet_graph):
    hn = hyperinit.HyperInitializer(d_model=32, gnn_rounds=1)
    hn.save_pretrained(tmp_path / "ckpt", model_card="# test card\n")
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["README.md", CONFIG_NAME, WEIGHTS_NAME]
    loaded = hyperinit.HyperInitializer.from_pretrained(tmp_path / "ckpt")
    assert not loaded.training and loaded.config.d_model == 32
    with torch.no_grad():
        x = hn.eval().predict_params(resnet_graph, seed=5)
        y = loaded.predict_params(resnet_graph, seed=5)
    assert all(torch.equal(x[k], y[k]) for k in x)


def _set_config_value(folder, key: str, value) -> None:
    """Write ``value`` under ``key`` into a saved checkpoint's config.json."""
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    cfg[key] = value
    (folder / CONFIG_NAME).write_text(json.dumps(cfg))


def test_structured_share_cap(tmp_path, resnet_graph):
    hn = copy.deepcopy(load_hypernetwork("xray")[0])
    hn.config.spectrum = "predicted"  # the shares as trained, not capped by the flat spectrum
    shares = hn.structured_shares(resnet_graph)
    assert max(shares.values()) > 0.3  # the trained checkpoint is well above the cap below
    capped = hyperinit.HyperInitializer.from_pretrained(hn.save_pretrained(tmp_path / "c"))
    capped.config.max_structured_share = 0.25
    capped.save_pretrained(tmp_path / "c")
    capped = hyperinit.HyperInitializer.from_pretrained(tmp_path / "c")
    assert capped.config.max_structured_share == 0.25
    capped_shares = capped.structured_shares(resnet_graph)
    assert max(capped_shares.values()) <= 0.25 + 1e-6
    # shares below the cap are untouched
    low = [k for k, v in shares.items() if v < 0.25]
    assert all(abs(capped_shares[k] - shares[k]) < 1e-6 for k in low)
    with torch.no_grad():
        a = hn.predict_params(resnet_graph, seed=0)
        b = capped.predict_params(resnet_graph, seed=0)
    w = "layer2.0.conv1.weight"
    assert shares[w] > 0.25 and not torch.allclose(a[w], b[w])
    # the cap moves variance from structure to noise; the scale stays the target's
    assert abs(b[w].std().item() / a[w].std().item() - 1) < 0.15
    with pytest.raises(ValueError, match="max_structured_share"):
        hyperinit.HyperInitializer(max_structured_share=0.0)
    _set_config_value(tmp_path / "c", "max_structured_share", 2)
    with pytest.raises(CheckpointError, match=r"max_structured_share must be .*config"):
        hyperinit.HyperInitializer.from_pretrained(tmp_path / "c")


def test_learned_weight_scale(tmp_path, resnet_graph):
    hn = load_hypernetwork("xray")[0]
    assert hn.log_scale is None and set(hn.weight_scales(resnet_graph).values()) == {1.0}
    scaled = hyperinit.HyperInitializer(dataclasses.replace(hn.config, scale_range=4.0))
    missing, unexpected = scaled.load_state_dict(hn.state_dict(), strict=False)
    assert sorted(missing) == ["log_scale.bias", "log_scale.weight"] and not unexpected
    scaled.eval()
    # an untrained scale head predicts exactly what the checkpoint without one does
    with torch.no_grad():
        a = hn.predict_params(resnet_graph, seed=3)
        b = scaled.predict_params(resnet_graph, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a head output of atanh(1/2) doubles every weight (4 ** 0.5) and leaves the rest alone
    with torch.no_grad():
        scaled.log_scale.bias.fill_(math.atanh(0.5))
        c = scaled.predict_params(resnet_graph, seed=3)
    roles = {r.name: r.role for r in assign_roles(resnet_graph)}
    for k in a:
        if roles[k] == "weight":
            assert torch.allclose(c[k], 2 * a[k], rtol=1e-4, atol=1e-7), k
        else:
            assert torch.equal(c[k], a[k]), k
    assert all(v == pytest.approx(2.0) for v in scaled.weight_scales(resnet_graph).values())
    # the head and its range survive save/load
    loaded = hyperinit.HyperInitializer.from_pretrained(scaled.save_pretrained(tmp_path / "s"))
    assert loaded.config.scale_range == 4.0
    with torch.no_grad():
        d = loaded.predict_params(resnet_graph, seed=3)
    assert all(torch.equal(c[k], d[k]) for k in c)
    for bad in (1.0, 0.5, True, "2", float("inf")):
        with pytest.raises(ValueError, match="scale_range"):
            hyperinit.HyperInitializer(scale_range=bad)
    _set_config_value(tmp_path / "s", "scale_range", 0.5)
    with pytest.raises(CheckpointError, match=r"scale_range must be .*config"):
        hyperinit.HyperInitializer.from_pretrained(tmp_path / "s")


def test_gaussian_noise_option(tmp_path, resnet_graph):
    hn = load_hypernetwork("xray")[0]
    iid = hyperinit.HyperInitializer.from_pretrained(hn.save_pretrained(tmp_path / "g"))
    iid.config.noise = "gaussian"
    with torch.no_grad():
        a = hn.predict_params(resnet_graph, seed=0)
        b = iid.predict_params(resnet_graph, seed=0)
        c = iid.predict_params(resnet_graph, seed=0)
    w = "layer3.1.conv2.weight"  # 256 x 2304: Kronecker noise by default
    assert not torch.allclose(a[w], b[w]) and torch.equal(b[w], c[w])
    assert abs(b[w].std().item() / a[w].std().item() - 1) < 0.1
    # Kronecker noise repeats one small factor across blocks of the matrix; i.i.d. noise does not
    g = torch.Generator().manual_seed(0)
    kron = kron_noise(256, 2304, g)
    iid_noise = gaussian_noise(256, 2304, torch.Generator().manual_seed(0))
    assert torch.linalg.matrix_rank(kron[:32, :32]) < 32
    assert torch.linalg.matrix_rank(iid_noise[:32, :32]) == 32
    with pytest.raises(ValueError, match="noise"):
        hyperinit.HyperInitializer(noise="uniform")
    iid.save_pretrained(tmp_path / "g")
    assert hyperinit.HyperInitializer.from_pretrained(tmp_path / "g").config.noise == "gaussian"
    cfg = json.loads((tmp_path / "g" / CONFIG_NAME).read_text())
    cfg["noise"] = "uniform"
    (tmp_path / "g" / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"noise must be one of kron, gaussian"):
        hyperinit.HyperInitializer.from_pretrained(tmp_path / "g")


def test_vocabulary_is_remapped_by_name(tmp_path, resnet_graph):
    hn = hyperinit.HyperInitializer().eval()
    hn.save_pretrained(tmp_path / "c")
    cfg = json.loads((tmp_path / "c" / CONFIG_NAME).read_text())
    order = list(reversed(cfg["op_types"]))
    perm = [cfg["op_types"].index(name) for name in order]
    cfg["op_types"] = order
    (tmp_path / "c" / CONFIG_NAME).write_text(json.dumps(cfg))
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "c" / WEIGHTS_NAME))
    state["op_embed.weight"] = state["op_embed.weight"][perm].contiguous()
    save_file(state, str(tmp_path / "c" / WEIGHTS_NAME))
    loaded = hyperinit.HyperInitializer.from_pretrained(tmp_path / "c")
    with torch.no_grad():
        assert torch.allclose(hn.encode(resnet_graph), loaded.encode(resnet_graph), atol=1e-6)


def test_bad_checkpoints_raise_clear_errors(tmp_path):
    pt = tmp_path / "model.pt"
    torch.save({"a": torch.zeros(1)}, pt)
    with pytest.raises(CheckpointError, match="pickle"):
        hyperinit.HyperInitializer.from_pretrained(pt)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"missing config\.json, model"):
        hyperinit.HyperInitializer.from_pretrained(empty)
    good = hyperinit.HyperInitializer().save_pretrained(tmp_path / "good")
    (good / WEIGHTS_NAME).write_bytes((good / WEIGHTS_NAME).read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        hyperinit.HyperInitializer.from_pretrained(good)
    other = tmp_path / "other"
    other.mkdir()
    (other / CONFIG_NAME).write_text(json.dumps({"architectures": ["BertModel"]}))
    (other / WEIGHTS_NAME).write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a hyperinit checkpoint config"):
        hyperinit.HyperInitializer.from_pretrained(other)
    small = hyperinit.HyperInitializer(d_model=16).save_pretrained(tmp_path / "small")
    cfg = json.loads((small / CONFIG_NAME).read_text())
    cfg["d_model"] = 64
    (small / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"does not match its config\.json"):
        hyperinit.HyperInitializer.from_pretrained(small)


@given(st.integers(1, 600), st.integers(1, 5000))
def test_kron_factors_give_full_rank_with_few_numbers(rows, cols):
    f = kron_factors(rows, cols)
    if f is None:
        return
    r1, c1, r2, c2 = f
    assert r1 * r2 == rows and c1 * c2 == cols
    assert min(r1, c1) * min(r2, c2) == min(rows, cols)
    assert 8 * (r1 * c1 + r2 * c2) <= rows * cols


@pytest.mark.parametrize(("rows", "cols"), [(64, 576), (256, 64), (7, 11), (128, 1152)])
def test_kron_noise_is_centred_unit_rms_and_full_rank(rows, cols):
    n = kron_noise(rows, cols, torch.Generator().manual_seed(0))
    assert float(n.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(n.pow(2).mean().sqrt()) == pytest.approx(1.0, rel=1e-4)
    assert torch.linalg.matrix_rank(n.double()) == min(rows, cols)


def test_vit_embeddings_use_small_scale(hypernet):
    g = hyperinit.trace(timm.create_model("vit_tiny_patch16_224", img_size=64))
    roles = {r.name: r for r in assign_roles(g)}
    assert roles["pos_embed"].role == "embedding" and roles["cls_token"].role == "embedding"
    with torch.no_grad():
        p = hypernet.predict_params(g, seed=0)
    assert float(p["pos_embed"].std()) == pytest.approx(0.02, rel=0.15)


@pytest.mark.parametrize("noise", ["kron", "orthogonal", "gaussian"])
def test_inference_synthesis_equals_the_differentiable_one_in_separate_storage(noise):
    """The weights are filled in place (one full-size tensor per weight fewer): the same
    bits with and without grad, none sharing storage."""
    from hyperinit.hypernet.synthesis import synthesise_weights

    q = torch.randn(3, 8, 2304, generator=torch.Generator().manual_seed(1))
    phi, target = torch.full((3,), 0.6), torch.tensor([0.02, 0.03, 0.05])

    def run():
        gens = [torch.Generator().manual_seed(s) for s in range(3)]
        return synthesise_weights(q, 256, phi, target, gens, noise, flat=True)

    differentiable = run()
    with torch.no_grad():
        inference = run()
    assert all(torch.equal(a, b) for a, b in zip(differentiable, inference))
    assert len({w.untyped_storage().data_ptr() for w in inference}) == 3


def test_flat_spectrum_backward_is_the_polar_factors_and_finite_where_qr_and_svd_are_not():
    """The flat spectrum trains: its gradient matches finite differences, and stays finite for
    centred (rank-deficient) rows, where autograd through the QR and SVD gave nan in training
    (the shipped-settings test below)."""
    from hyperinit.hypernet.synthesis import _FlatFactors

    g = torch.Generator().manual_seed(0)
    codes = torch.randn(2, 7, 3, generator=g, dtype=torch.float64)

    def loss(q):
        x, y = _FlatFactors.apply(codes, q)
        gram = (x.transpose(1, 2) @ x) * (y @ y.transpose(1, 2))  # as synthesise_weights
        return gram.sum() + (x @ y).pow(3).sum()

    q = torch.randn(2, 3, 5, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(loss, (q,), eps=1e-6, atol=1e-5)
    centred = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    centred = (centred - centred.mean(2, keepdim=True)).requires_grad_()
    wide = torch.randn(2, 9, 4, generator=g, dtype=torch.float64)
    x, y = _FlatFactors.apply(wide, centred)
    (x @ y).pow(3).sum().backward()
    assert torch.isfinite(centred.grad).all()


def test_training_under_the_shipped_settings_keeps_the_hypernetwork_finite():
    """Gradients through the shipped prediction (flat spectrum, orthogonal noise) of real
    models are finite."""
    hn = copy.deepcopy(load_hypernetwork("xray")[0]).train()
    assert hn.config.spectrum == "flat" and hn.config.noise == "orthogonal"
    for name in ("mobilenetv3_small_100", "resnet18"):
        model = timm.create_model(name, in_chans=1, num_classes=2)
        graph = hyperinit.trace(model, torch.zeros(2, 1, 48, 48))
        roles = assign_roles(graph)
        preds = hn.predict_params(graph, roles=roles, seed=0)
        loss = sum(p.pow(2).mean() + p.pow(3).mean() for p in preds.values())
        hn.zero_grad()
        loss.backward()
        grads = [p.grad for p in hn.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(gr).all() for gr in grads), name
