"""Write the legacy checkpoints of tests/test_legacy_checkpoints.py.

Run once with hyperinit as it was before the checkpoint code moved onto huggingface_hub's
ModelHubMixin (commit b85e6a0); the files it wrote are committed and must keep loading. Running
it again with newer code would defeat the test: do not regenerate them.

    python3 tests/data/legacy/make_legacy.py
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

HERE = Path(__file__).resolve().parent


def tiny_target() -> nn.Module:
    """The network whose parameters the legacy hypernetwork predicts."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )


def tiny_backbone() -> nn.Module:
    """The backbone of the legacy C2L export: (B, 1, H, W) images to (B, 16) features."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def probe_images() -> torch.Tensor:
    """A fixed (2, 1, 16, 16) input for the backbone."""
    return torch.linspace(-1, 1, 2 * 16 * 16).reshape(2, 1, 16, 16).sin()


def main() -> None:
    import hyperinit
    from hyperinit.c2l import C2LPretrainer

    torch.manual_seed(0)
    hn = hyperinit.HyperInitializer(d_model=16, gnn_rounds=1, code_rank=4, decoder_hidden=8)
    hn.save_pretrained(HERE / "hypernet", model_card="# legacy test checkpoint\n")
    with torch.no_grad():
        preds = hn.eval().predict_params(hyperinit.trace(tiny_target()), seed=3)
    preds = {k: v.contiguous() for k, v in preds.items()}
    save_file(preds, str(HERE / "hypernet_predictions.safetensors"))

    torch.manual_seed(0)
    trainer = C2LPretrainer(tiny_backbone(), image_size=16, queue_size=32, feature_dim=8)
    trainer.save_pretrained(HERE / "c2l")
    with torch.no_grad():
        feats = trainer.backbone.eval()(probe_images())
    save_file({"features": feats.contiguous()}, str(HERE / "c2l_features.safetensors"))


if __name__ == "__main__":
    main()
