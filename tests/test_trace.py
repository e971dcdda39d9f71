"""hyperinit.trace: any nn.Module to an ArchGraph, leaving the model untouched."""

from __future__ import annotations

import networkx as nx
import pytest
import timm
import torch
import torchvision
from hypothesis import given
from torch import nn

import hyperinit
from hyperinit.graph import default_example_input
from hyperinit.graph.ops import OP_TYPES
from tests.archs import RandomNet, architectures


def _state(model: nn.Module) -> dict[str, tuple[int, torch.Tensor]]:
    return {
        k: (id(v), v.detach().clone())
        for k, v in [*model.named_parameters(), *model.named_buffers()]
    }


def _assert_unchanged(model: nn.Module, before: dict[str, tuple[int, torch.Tensor]]) -> None:
    after = dict([*model.named_parameters(), *model.named_buffers()])
    assert set(after) == set(before)
    for k, (ident, value) in before.items():
        assert id(after[k]) == ident, f"{k} was replaced"
        assert torch.equal(after[k], value), f"{k} changed"


def test_resnet18_graph_structure():
    model = torchvision.models.resnet18()
    g = hyperinit.trace(model)
    counts = g.op_counts()
    assert counts["conv7x7"] == 1 and counts["conv3x3"] == 16 and counts["conv1x1"] == 3
    assert counts["batch_norm"] == 20 and counts["add"] == 8 and counts["linear"] == 1
    assert counts["input"] == 1 and counts["output"] == 1
    assert g.unbound == []
    assert set(g.param_owner) == {n for n, _ in model.named_parameters()}
    owner = g.nodes[g.param_owner["layer1.0.conv1.weight"]]
    assert owner.op == "conv3x3" and owner.module == "layer1.0.conv1"
    assert owner.param_shape == (64, 64, 3, 3)
    # edges follow the data flow: every edge goes forward; the residual add has two inputs
    e = g.edges
    assert bool((e[0] < e[1]).all())
    adds = [n for n in g.nodes if n.op == "add"]
    assert all(len(n.inputs) == 2 for n in adds)
    assert all(n.op in OP_TYPES for n in g.nodes)


def test_shortest_paths_match_networkx():
    g = hyperinit.trace(torchvision.models.resnet18())
    nxg = g.to_networkx()
    d = g.distances
    lengths = dict(nx.all_pairs_shortest_path_length(nxg, cutoff=g.s_max))
    for u in range(len(g)):
        for v in range(len(g)):
            expected = lengths[u].get(v)
            got = int(d[v, u])
            assert (got == 255 and expected is None) or got == expected, (u, v, got, expected)
    w = g.shortest_path_weights()
    assert float(w.max()) == pytest.approx(0.5)  # 1/s for s >= 2 only
    assert nxg.number_of_nodes() == len(g) and nxg.number_of_edges() == g.num_edges
    assert nxg.nodes[g.param_owner["fc.weight"]]["op"] == "linear"


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("grad", [True, False])
def test_trace_leaves_model_and_rng_untouched(mode: str, grad: bool):
    model = torchvision.models.resnet18()
    getattr(model, mode)()
    before = _state(model)
    rng = torch.get_rng_state()
    with torch.set_grad_enabled(grad):
        g = hyperinit.trace(model)
    assert len(g) > 50
    _assert_unchanged(model, before)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training == (mode == "train")


def test_meta_fallback_restores_shared_modules():
    # CoaT registers the same conv-position-encoding module under several names and rejects
    # empty batches, so it is traced on the meta device; nothing may stay on meta afterwards
    model = timm.create_model("coat_lite_tiny", num_classes=2).train()
    before = _state(model)
    g = hyperinit.trace(model)
    assert g.traced_as == "meta"
    _assert_unchanged(model, before)
    shared = [n for n in g.nodes if n.shared_params]
    assert shared, "reused modules must show up as nodes sharing parameters"


def test_grayscale_and_input_size():
    model = timm.create_model("resnet18", in_chans=1, num_classes=2)
    g = hyperinit.trace(model, torch.randn(2, 1, 96, 80))
    assert g.input_shapes == [(2, 1, 96, 80)]
    assert g.nodes[g.param_owner["conv1.weight"]].param_shape == (64, 1, 7, 7)
    assert default_example_input(model).shape == (2, 1, 224, 224)


def test_default_example_input_rules():
    vit = timm.create_model("vit_tiny_patch16_224", img_size=64, in_chans=1)
    assert default_example_input(vit).shape == (2, 1, 64, 64)
    assert default_example_input(torchvision.models.vit_b_32()).shape[-1] == 224
    mlp = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2))
    assert default_example_input(mlp).shape == (2, 10)
    # patches embedded by a Linear, no convolution: timm's pretrained_cfg gives the image size
    naflex = timm.create_model("naflexvit_base_patch16_gap", num_classes=2)
    assert default_example_input(naflex).shape == (2, 3, 384, 384)
    assert hyperinit.trace(naflex).unbound == []
    # Inception-v3's auxiliary head (run in train mode) fails at 224 px: retried at 299 px
    g = hyperinit.trace(torchvision.models.inception_v3(init_weights=False).train())
    assert g.input_shapes[0][-1] == 299


class Reused(nn.Module):
    """Python control flow and a layer applied several times."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.unused = nn.Linear(3, 3)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        steps = 3 if x.shape[-1] >= 32 else 1
        for _ in range(steps):
            x = x + torch.relu(self.shared(x))
        x = torch.cumsum(x, dim=1)  # outside the vocabulary: a generic node
        return self.head(x.mean(dim=(2, 3)))


def test_reused_layers_control_flow_generic_and_unbound():
    model = Reused()
    g = hyperinit.trace(model, torch.randn(2, 1, 32, 32))
    shared_nodes = [n for n in g.nodes if n.module == "shared" and n.op == "conv3x3"]
    assert len(shared_nodes) == 3
    assert shared_nodes[0].params == ["shared.weight", "shared.bias"]
    assert all(n.shared_params == ["shared.weight", "shared.bias"] for n in shared_nodes[1:])
    assert any(n.op == "generic" and n.func == "cumsum" for n in g.nodes)
    assert g.unbound == ["unused.weight", "unused.bias"]
    assert len(hyperinit.trace(model, torch.randn(2, 1, 16, 16)).nodes) < len(g.nodes)


@pytest.mark.parametrize(
    "name",
    ["fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"],
)
def test_torchvision_segmentation(name: str):
    model = hyperinit.create_model(f"torchvision:{name}", num_classes=2)
    g = hyperinit.trace(model, torch.randn(2, 3, 64, 64))
    assert not g.unbound or all("aux" in n for n in g.unbound)
    assert any(n.op == "interpolate" for n in g.nodes)


@pytest.mark.parametrize(
    "name",
    [
        "vit_tiny_patch16_224",
        "swin_tiny_patch4_window7_224",
        "convnext_atto",
        "efficientnet_b0",
        "densenet121",
        "regnety_016",
        "mobilenetv3_small_100",
        "resnext26ts",
    ],
)
def test_timm_families_bind_every_parameter(name: str):
    model = timm.create_model(name, num_classes=2)
    g = hyperinit.trace(model)
    assert g.unbound == []
    assert sum(1 for n in g.nodes if n.params) >= 10


def test_vit_nodes_include_tokens_and_attention():
    g = hyperinit.trace(timm.create_model("vit_tiny_patch16_224", img_size=64))
    ops = g.op_counts()
    assert ops["token"] == 1 and ops["pos_embed"] == 1 and ops["attention"] == 12
    assert g.nodes[g.param_owner["pos_embed"]].op == "pos_embed"
    assert g.nodes[g.param_owner["cls_token"]].op == "token"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_trace_on_cuda():
    model = torchvision.models.resnet18().cuda()
    g = hyperinit.trace(model)
    assert g.unbound == []


@given(architectures)
def test_property_random_architectures_trace(specs):
    model = RandomNet(specs)
    g = hyperinit.trace(model, torch.randn(2, 3, 16, 16))
    names = {n for n, _ in model.named_parameters()}
    assert set(g.param_owner) | set(g.unbound) == names
    assert not set(g.param_owner) & set(g.unbound)
    assert all(i < n.index for n in g.nodes for i in n.inputs)
    assert g.nodes[-1].op == "output" and g.nodes[-1].inputs
