"""The sweep's acceptance check for MONAI and smp models (tests/test_ecosystem_*.py)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import hyperinit
from hyperinit.diagnostics import activation_stats, band_violations

#: Why a parameter may keep its init in these models: the head, PReLU slopes (no clear role),
#: parameters the forward pass never uses (MONAI ViT's cross-attention norms without
#: cross-attention; smp's EfficientNet encoder keeps the classifier's 1x1 conv it never calls).
ALLOWED_KEPT = {"head", "role 'scale'", "unused in forward"}


def _outputs(out: object) -> list[torch.Tensor]:
    flat = torch.utils._pytree.tree_flatten(out)[0]
    return [t for t in flat if isinstance(t, torch.Tensor)]


def check_model(model: nn.Module, x: torch.Tensor, modality: str, seed: int = 0) -> dict:
    """Initialise ``model`` (train mode, batch statistics) on ``x`` and assert what the model
    sweep asserts: coverage, finite weights and outputs, no layer out of the activation band
    (``band_violations`` against the model's own default init on the same input) and >= 90 %
    of layers inside it; plus the same seed giving identical weights and another seed other
    ones. Returns the report and the coverage of used parameters."""
    model.train()
    params = dict(model.named_parameters())
    default = activation_stats(model, x)
    report = hyperinit.initialize(model, modality, seed=seed, example_input=x)
    assert set(report.kept.values()) <= ALLOWED_KEPT, report.kept
    unused = sum(params[n].numel() for n, why in report.kept.items() if why == "unused in forward")
    denominator = report.total_elements - report.head_elements - unused
    used = report.predicted_elements / denominator
    # every used non-head tensor but PReLU slopes is predicted (they are a few dozen elements)
    assert used >= 0.999, (used, report.kept)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    head = {n.rsplit(".", 1)[0] for n, why in report.kept.items() if why == "head"}
    ours = activation_stats(model, x, skip=head)
    assert ours, "no parameterised layer ran"
    bad = band_violations(ours, default)
    assert not bad, bad
    inside = sum(0.05 <= s.output <= 20 for s in ours.values())
    assert inside >= 0.9 * len(ours), (inside, len(ours))
    with torch.no_grad():
        outs = _outputs(model(x))
    assert outs and all(bool(torch.isfinite(t).all()) for t in outs)
    # deterministic: the same seed writes the same weights, another seed others
    first = {n: params[n].detach().clone() for n in report.predicted}
    hyperinit.initialize(model, modality, seed=seed, example_input=x)
    assert all(torch.equal(params[n], v) for n, v in first.items())
    hyperinit.initialize(model, modality, seed=seed + 1, example_input=x)
    assert not all(torch.equal(params[n], v) for n, v in first.items())
    return {"report": report, "used_coverage": used}


def ct_volumes(data_dir: Path, n: int = 2, size: int = 16, depth: int = 16) -> torch.Tensor:
    """``(n, 1, depth, size, size)`` short volumes from real CT slices: slice k of a volume is
    its slice shifted by k pixels (a smooth third axis; not real anatomy), standardised."""
    from hyperinit.data import find_images, image_to_tensor, read_image

    files = find_images(data_dir / "ct_covid" / "CT_COVID")[:n]
    vols = []
    for f in files:
        img = image_to_tensor(read_image(f, 1).resize((size + depth, size + depth)))
        vols.append(torch.stack([img[:, k : k + size, k : k + size] for k in range(depth)], 1))
    x = torch.stack(vols).float()
    return (x - x.mean()) / x.std()


def fundus_images(data_dir: Path, n: int = 2, size: int = 64) -> torch.Tensor:
    """``(n, 3, size, size)`` real DRIVE fundus photographs, resized, standardised."""
    from hyperinit.data import find_images, image_to_tensor, read_image

    files = find_images(data_dir / "fundus_drive" / "training" / "images")[:n]
    x = torch.stack([image_to_tensor(read_image(f, 3).resize((size, size))) for f in files])
    return (x - x.mean()) / x.std()
