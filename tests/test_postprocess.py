"""Post-processing of predictions (hyperinit.postprocess) and the orthogonal noise kind."""

from __future__ import annotations

import doctest
import json
import logging
from copy import deepcopy

import pytest
import timm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import hyperinit
import hyperinit.postprocess as pp_module
from hyperinit.bench.inits import hypernet_version
from hyperinit.errors import CheckpointError
from hyperinit.hypernet.synthesis import _batched_noise, _flat_factors, symmetry_noise
from hyperinit.initialize import load_hypernetwork
from hyperinit.postprocess import (
    PostProcess,
    depthwise_weights,
    orthogonalize,
    zero_init_last_norms,
)
from tests.scripts import load_script


def _singular_values(w: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(w.detach().reshape(w.shape[0], -1).double())


def _effective_rank_share(w: torch.Tensor) -> float:
    s = _singular_values(w)
    p = s**2 / (s**2).sum()
    return float(torch.exp(-(p * p.clamp_min(1e-30).log()).sum()) / len(s))


def test_doctests():
    assert doctest.testmod(pp_module).failed == 0


@settings(max_examples=25, deadline=None)
@given(
    out=st.integers(1, 40),
    cin=st.integers(1, 12),
    k=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**16),
)
def test_orthogonalize_flattens_the_spectrum_at_the_same_rms(out, cin, k, seed):
    w = torch.randn(out, cin, k, k, generator=torch.Generator().manual_seed(seed))
    w[0] *= 10  # a dominant direction, like the predicted structured part
    q = orthogonalize(w)
    assert q.shape == w.shape and q.dtype == w.dtype
    assert torch.allclose(q.pow(2).mean(), w.pow(2).mean(), rtol=1e-4)
    s = _singular_values(q)
    assert float(s.max() / s.min()) < 1 + 1e-4
    # the nearest such matrix: closer to w than any other at that scale, e.g. a random one
    r = orthogonalize(torch.randn(w.shape, generator=torch.Generator().manual_seed(seed + 1)))
    r = r * (w.pow(2).mean() / r.pow(2).mean()).sqrt()  # at w's RMS, like q
    assert (q - w).norm() <= (r - w).norm() + 1e-4


def test_orthogonalize_refuses_vectors_and_seeds_its_noise():
    with pytest.raises(ValueError, match="2\\+ dimensions"):
        orthogonalize(torch.ones(8))
    w = torch.randn(16, 8)
    a = orthogonalize(w, noise=0.2, generator=torch.Generator().manual_seed(1))
    b = orthogonalize(w, noise=0.2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, orthogonalize(w))


def test_options_round_trip_and_bad_options_are_named():
    pp = PostProcess(orthogonalize=True, noise=0.1, norm_weights="one")
    assert PostProcess.from_dict(json.loads(json.dumps(pp.to_dict()))) == pp
    assert PostProcess.from_dict(None).is_identity and PostProcess().key() == ""
    keys = {PostProcess(orthogonalize=True).key(), pp.key(), PostProcess(noise=0.1).key()}
    assert len(keys) == 3 and all(k.startswith("-pp") for k in keys)
    with pytest.raises(CheckpointError, match=r"unknown options \['orth'\]"):
        PostProcess.from_dict({"orth": True})
    with pytest.raises(CheckpointError, match="norm_weights must be one of"):
        PostProcess.from_dict({"norm_weights": "zero"})
    with pytest.raises(CheckpointError, match="noise must be a number"):
        PostProcess.from_dict({"noise": -1})
    with pytest.raises(CheckpointError, match="upgrade hyperinit"):
        PostProcess.from_dict({"version": 99})
    with pytest.raises(CheckpointError, match="JSON object"):
        PostProcess.from_dict([1])


def test_residual_scale_is_validated_and_absent_from_old_files_and_keys():
    shipped = {"orthogonalize": "depthwise"}
    assert PostProcess.from_dict(shipped).to_dict() == {
        **shipped,
        "noise": 0.0,
        "norm_weights": "predicted",
        "version": 1,
    }  # no residual_scale: same file, same key
    damped = PostProcess.from_dict({**shipped, "residual_scale": 0.25})
    assert damped.to_dict()["residual_scale"] == 0.25 and not damped.is_identity
    assert damped.key() != PostProcess.from_dict(shipped).key()
    assert PostProcess.from_dict(damped.to_dict()) == damped
    assert not PostProcess(residual_scale=0.5).is_identity
    for bad in (1.5, -0.1, True, "0.5"):
        with pytest.raises(CheckpointError, match=r"residual_scale must be a number in \[0, 1\]"):
            PostProcess.from_dict({"residual_scale": bad})


def _resnet18_inits(**post):
    """timm ResNet-18 initialised with the shipped xray checkpoint and ``post`` on top."""
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=2)
    options = {"orthogonalize": "depthwise", **post}
    hyperinit.initialize(model, "xray", seed=3, postprocess=options)
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_residual_scale_damps_exactly_the_norms_the_model_zero_inits(one_thread):
    plain, damped = _resnet18_inits(), _resnet18_inits(residual_scale=0.25)
    zeroed = {f"layer{i}.{b}.bn2.weight" for i in range(1, 5) for b in range(2)}
    assert {n for n in plain if not torch.equal(plain[n], damped[n])} == zeroed
    assert all(torch.equal(damped[n], plain[n] * 0.25) for n in zeroed)
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=2)
    hyperinit.initialize(model, "xray", seed=3)  # the shipped settings damp by 0.25
    assert all(torch.equal(p, damped[n]) for n, p in model.named_parameters())
    hyperinit.initialize(model, "xray", seed=3)  # again: its zeros are gone, the result is not
    assert all(torch.equal(p, damped[n]) for n, p in model.named_parameters())
    # built without default init: the norms' recorded init is run to find them, same result
    built = hyperinit.create_model(
        "timm:resnet18",
        num_classes=2,
        modality="xray",
        seed=3,
        postprocess={"orthogonalize": "depthwise", "residual_scale": 0.25},
    )
    params = dict(built.named_parameters())
    assert all(torch.equal(params[n], damped[n]) for n in damped if not n.startswith("fc."))


def test_zero_init_last_norms_are_found_from_the_blocks_without_changing_the_model():
    torch.manual_seed(0)
    model = timm.create_model("resnet50", num_classes=2)
    hyperinit.initialize(model, "xray", seed=0, postprocess={"orthogonalize": "depthwise"})
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = set(before)
    bn3 = {n for n in names if n.endswith("bn3.weight")}
    assert len(bn3) == 16 and zero_init_last_norms(model, names) == bn3
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert zero_init_last_norms(model, names - {"layer1.0.bn3.weight"}) == bn3 - {
        "layer1.0.bn3.weight"
    }
    with torch.device("meta"):
        on_meta = timm.create_model("resnet50", num_classes=2)
    assert zero_init_last_norms(on_meta, names) == bn3
    torchvision = pytest.importorskip("torchvision")
    tv = torchvision.models.resnet18(zero_init_residual=True)  # no zero_init_last(): zeros only
    assert zero_init_last_norms(tv, {n for n, _ in tv.named_parameters()}) == set()


def test_residual_scale_damps_timm_blocks_whatever_their_current_values(one_thread):
    damped = _resnet18_inits(residual_scale=0.25)
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=2)
    hyperinit.initialize(model, "xray", seed=3, postprocess={})  # its zeros are gone
    copy = deepcopy(model)  # a new object: nothing remembered about it
    hyperinit.initialize(copy, "xray", seed=3)
    assert all(torch.equal(p, damped[n]) for n, p in copy.named_parameters())
    torch.manual_seed(0)
    ones = timm.create_model("resnet18", num_classes=2, zero_init_last=False)
    hyperinit.initialize(ones, "xray", seed=3)  # the same architecture, the same init
    assert all(torch.equal(p, damped[n]) for n, p in ones.named_parameters())
    with torch.device("meta"):
        on_meta = timm.create_model("resnet18", num_classes=2)
    hyperinit.initialize(on_meta, "xray", seed=3)
    params = dict(on_meta.named_parameters())
    assert all(torch.equal(params[n], damped[n]) for n in damped if not n.startswith("fc."))


def test_residual_scale_leaves_models_without_zero_init_norms_alone(one_thread):
    import torchvision

    def init(**post):
        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=2)  # zero_init_residual=False
        hyperinit.initialize(model, "xray", seed=1, postprocess=post)
        return model.state_dict()

    plain, damped = init(), init(residual_scale=0.25)
    assert all(torch.equal(plain[k], damped[k]) for k in plain)


@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(0)
    return timm.create_model("mobilenetv3_small_100", in_chans=1, num_classes=2).eval()


def test_depthwise_orthogonalisation_touches_only_depthwise_kernels(mobilenet):
    hyperinit.initialize(mobilenet, "xray", seed=4, postprocess={})
    raw = {n: p.detach().clone() for n, p in mobilenet.named_parameters()}
    report = hyperinit.initialize(
        mobilenet, "xray", seed=4, postprocess={"orthogonalize": "depthwise"}
    )
    assert report.postprocess["orthogonalize"] == "depthwise"
    modules = dict(mobilenet.named_modules())
    depthwise = {
        f"{n}.weight"
        for n, m in modules.items()
        if isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels > 1
    }
    assert len(depthwise) == 11  # one per inverted-residual block of MobileNetV3-S
    assert depthwise_weights(mobilenet) == depthwise
    params = dict(mobilenet.named_parameters())
    for name in report.predicted:
        if name in depthwise:
            s = _singular_values(params[name])
            assert float(s.max() / s.min()) < 1.01, name
            assert torch.allclose(params[name].pow(2).mean(), raw[name].pow(2).mean(), rtol=1e-3)
            assert not torch.allclose(params[name], raw[name])
        else:  # the 1-channel stem (16 x 9) and every other weight keep their prediction
            assert torch.equal(params[name], raw[name]), name


def test_depthwise_orthogonalisation_leaves_a_network_without_them_unchanged():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", in_chans=1, num_classes=2)
    hyperinit.initialize(model, "xray", seed=2, postprocess={})
    raw = {n: p.detach().clone() for n, p in model.named_parameters()}
    hyperinit.initialize(model, "xray", seed=2, postprocess={"orthogonalize": "depthwise"})
    assert all(torch.equal(p, raw[n]) for n, p in model.named_parameters())


def test_initialize_orthogonalises_every_predicted_weight(mobilenet):
    plain = hyperinit.initialize(mobilenet, "xray", seed=3, postprocess={})
    raw = {n: p.detach().clone() for n, p in mobilenet.named_parameters()}
    report = hyperinit.initialize(mobilenet, "xray", seed=3, postprocess={"orthogonalize": True})
    assert report.postprocess["orthogonalize"] is True and plain.postprocess == {}
    assert "postprocess  : orthogonalize=True" in str(report)
    assert report.predicted == plain.predicted
    params = dict(mobilenet.named_parameters())
    weights = [n for n in report.predicted if params[n].dim() > 1]
    assert len(weights) > 50
    for name in weights:
        s = _singular_values(params[name])
        assert float(s.max() / s.min()) < 1.01, name
        assert torch.allclose(params[name].pow(2).mean(), raw[name].pow(2).mean(), rtol=1e-3)
    # biases and norm parameters are the raw predictions; same seed, same weights
    vectors = [n for n in report.predicted if params[n].dim() == 1]
    assert all(torch.equal(params[n], raw[n]) for n in vectors)
    again = {n: p.detach().clone() for n, p in mobilenet.named_parameters()}
    hyperinit.initialize(mobilenet, "xray", seed=3, postprocess=PostProcess(orthogonalize=True))
    assert all(torch.equal(p, again[n]) for n, p in mobilenet.named_parameters())


def test_norm_weights_one_and_default():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=2)  # timm zero-inits each block's bn2
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    report = hyperinit.initialize(model, "xray", seed=0, postprocess={"norm_weights": "default"})
    params = dict(model.named_parameters())
    kept = [n for n, why in report.kept.items() if why.startswith("postprocess")]
    norms = {f"{m}.weight" for m, mod in model.named_modules() if isinstance(mod, nn.BatchNorm2d)}
    assert set(kept) == norms
    assert all(torch.equal(params[n], before[n]) for n in kept)
    assert float(params["layer1.0.bn2.weight"].detach().abs().max()) == 0.0  # zero_init_last kept
    hyperinit.initialize(model, "xray", seed=0, postprocess={"norm_weights": "one"})
    assert all(torch.equal(params[n], torch.ones_like(params[n])) for n in kept)
    with pytest.raises(ValueError, match=r"unknown options \['norm'\].*Fix the argument"):
        hyperinit.initialize(model, "xray", postprocess={"norm": "one"})
    with pytest.raises(TypeError, match="PostProcess or a dict"):
        hyperinit.initialize(model, "xray", postprocess="orthogonalize")
    assert all(torch.equal(params[n], torch.ones_like(params[n])) for n in kept)  # untouched


def test_checkpoint_config_carries_the_postprocessing(tmp_path, mobilenet):
    hn = load_hypernetwork("xray")[0]
    folder = hn.save_pretrained(tmp_path / "pp")
    cfg = json.loads((folder / "config.json").read_text())
    shipped = {"orthogonalize": "depthwise", "residual_scale": 0.25}
    assert cfg["postprocess"] == shipped  # what the checkpoints ship
    cfg["postprocess"] = None
    (folder / "config.json").write_text(json.dumps(cfg))
    shipped_key = hypernet_version(f"hyperinit:{folder}", "xray")
    cfg["postprocess"] = {"orthogonalize": True, "version": 1}
    (folder / "config.json").write_text(json.dumps(cfg))
    assert hypernet_version(f"hyperinit:{folder}", "xray") == (
        shipped_key + PostProcess(orthogonalize=True).key()
    )
    loaded = hyperinit.HyperInitializer.from_pretrained(folder)
    report = hyperinit.initialize(mobilenet, checkpoint=loaded, seed=1)
    assert report.postprocess == PostProcess(orthogonalize=True).to_dict()
    raw = hyperinit.initialize(mobilenet, checkpoint=loaded, seed=1, postprocess={})
    assert raw.postprocess == {}
    # the options survive save_pretrained, and a bad value is refused at load with the fix
    loaded.save_pretrained(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["postprocess"]["orthogonalize"] is True
    cfg["postprocess"] = {"orthogonalize": "yes"}
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointError, match=r"orthogonalize must be true, false or \"depthwise\".*config\.json"
    ):
        hyperinit.HyperInitializer.from_pretrained(folder)


@pytest.mark.parametrize("shape", [(256, 2304), (96, 27), (24, 9), (17, 13)])
def test_orthogonal_noise_is_flat_centred_and_unit_rms(shape):
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    n = symmetry_noise(*shape, g(), kind="orthogonal")
    kron = symmetry_noise(*shape, g(), kind="kron")
    assert abs(float(n.mean())) < 1e-6 and abs(float(n.pow(2).mean()) - 1) < 1e-5
    assert _effective_rank_share(n) > 0.99
    assert _effective_rank_share(n) >= _effective_rank_share(kron)
    batched = _batched_noise(*shape, [g(), g()], "cpu", torch.tensor([1.0, 2.0]), "orthogonal")
    assert torch.allclose(batched[0], n, atol=1e-6) and torch.allclose(batched[1], 2 * n, atol=1e-5)


def test_orthogonal_noise_raises_the_effective_rank_of_predictions(mobilenet, tmp_path):
    hn = hyperinit.HyperInitializer.from_pretrained(
        load_hypernetwork("xray")[0].save_pretrained(tmp_path / "k")
    )
    hn.config.noise, hn.config.spectrum = "kron", "predicted"
    flat = hyperinit.HyperInitializer.from_pretrained(hn.save_pretrained(tmp_path / "flat"))
    flat.config.noise = "orthogonal"
    shares = {}
    for name, net in (("kron", hn), ("orthogonal", flat)):
        report = hyperinit.initialize(mobilenet, checkpoint=net, seed=2)
        params = dict(mobilenet.named_parameters())
        big = [n for n in report.predicted if params[n].dim() > 1 and min(params[n].shape[:2]) > 16]
        shares[name] = torch.tensor([_effective_rank_share(params[n]) for n in big]).median()
    assert shares["orthogonal"] > shares["kron"] + 0.05, shares


@settings(max_examples=25, deadline=None)
@given(m=st.integers(2, 40), n=st.integers(2, 40), r=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_flat_factors_are_the_polar_factor_of_the_structured_part(m, n, r, seed):
    g = torch.Generator().manual_seed(seed)
    r = min(r, m)
    codes = torch.randn(2, m, r, generator=g, dtype=torch.float64)
    q = torch.randn(2, r, n, generator=g, dtype=torch.float64)
    q = q - q.mean(dim=2, keepdim=True)
    a, b = _flat_factors(codes, q)
    for i in range(2):
        s = codes[i] @ q[i]
        u, sv, vh = torch.linalg.svd(s, full_matrices=False)
        k = int((sv > 1e-6 * sv[0]).sum())
        assert torch.allclose(a[i] @ b[i], u[:, :k] @ vh[:k], atol=1e-8)
        assert torch.allclose((a[i] @ b[i]).sum(dim=1), torch.zeros(m, dtype=q.dtype), atol=1e-8)


def test_flat_spectrum_option(mobilenet, tmp_path):
    hn = load_hypernetwork("xray")[0]
    flat = hyperinit.HyperInitializer.from_pretrained(hn.save_pretrained(tmp_path / "f"))
    flat.config.spectrum, flat.config.noise = "flat", "orthogonal"
    graph = hyperinit.trace(mobilenet, torch.zeros(1, 1, 64, 64))
    shares = flat.structured_shares(graph)
    for name, share in shares.items():
        p = dict(mobilenet.named_parameters())[name]
        rows, cols = p.shape[0], p[0].numel()
        assert share <= min(16, rows, cols) / min(rows, cols) + 1e-6, name
    report = hyperinit.initialize(mobilenet, checkpoint=flat, seed=0)
    params = dict(mobilenet.named_parameters())
    ranks = [_effective_rank_share(params[n]) for n in report.predicted if params[n].dim() > 1]
    assert min(ranks) > 0.75
    cfg = json.loads((tmp_path / "f" / "config.json").read_text())
    cfg["spectrum"] = "flatter"
    (tmp_path / "f" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="spectrum must be one of predicted, flat"):
        hyperinit.HyperInitializer.from_pretrained(tmp_path / "f")


def test_set_prediction_tool_writes_configs_cards_and_pins(tmp_path):
    import shutil
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    tool = load_script("tools/set_prediction.py")
    root = tmp_path / "checkpoints"
    for name in ("xray", "reference"):
        shutil.copytree(repo / "hyperinit" / "checkpoints" / name, root / name)
    registry = tmp_path / "modalities.json"
    shutil.copy(repo / "hyperinit" / "modalities.json", registry)
    settings = {"noise": "orthogonal", "spectrum": "flat", "centre_rows": "except_depthwise"}
    settings["postprocess"] = None
    shas = tool.set_prediction(settings, "a test", root, registry)
    pins = json.loads(registry.read_text())
    assert pins["trained"]["xray"]["sha256"]["config.json"] == shas["xray"]
    assert pins["reference"]["sha256"]["config.json"] == shas["reference"]
    loaded = hyperinit.HyperInitializer.from_pretrained(root / "xray")
    assert (loaded.config.noise, loaded.config.spectrum) == ("orthogonal", "flat")
    shipped = hypernet_version(f"hyperinit:{repo / 'hyperinit' / 'checkpoints' / 'xray'}", "xray")
    assert hypernet_version(f"hyperinit:{root / 'xray'}", "xray") == (
        shipped.split("-")[0] + "-orthogonal-flat-centre_except_depthwise"
    )
    card = (root / "xray" / "README.md").read_text()
    assert card.count("**Prediction settings**") == 1 and "`spectrum=flat`" in card
    tool.set_prediction({"noise": "kron"}, "again", root, registry)  # replaces the line
    card = (root / "xray" / "README.md").read_text()
    assert card.count("**Prediction settings**") == 1 and "`noise=kron`" in card
    assert "`spectrum=flat`" in card  # the line states every setting, not only the new one
    with pytest.raises(SystemExit, match="spectrum must be one of"):
        tool.set_prediction({"spectrum": "round"}, "bad", root, registry)


def test_residual_scale_on_the_meta_device_without_zero_init_last_warns(caplog):
    import torchvision

    with torch.device("meta"):
        tv = torchvision.models.resnet18(num_classes=2, zero_init_residual=True)
    with caplog.at_level(logging.WARNING, logger="hyperinit"):
        hyperinit.initialize(tv, "xray", seed=0)
    assert "has no timm zero_init_last(), so its own init is unknown" in caplog.text
    assert not any(p.is_meta for p in tv.parameters())
