"""The untrained reference hypernetwork shipped in the wheel.

It is a :class:`HyperInitializer` with the default configuration, initialised from a fixed seed
and never trained: its predictions are fan-in scaled, symmetry-broken weights with a small
structured component, i.e. a sound default initialisation without learned medical features.
Regenerate the embedded copy with ``python -m hyperinit.hypernet.reference``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from hyperinit.hypernet.config import HyperInitConfig
from hyperinit.hypernet.model import HyperInitializer

__all__ = ["MODEL_CARD", "make_reference"]

MODEL_CARD = """\
---
library_name: hyperinit
tags: [hypernetwork, initialization, medical-imaging]
---
# hyperinit reference hypernetwork (untrained)

- **What it is**: the default `HyperInitializer` architecture (d_model=64, K=2 GNN rounds,
  s_max=50, rank-16 channel codes, 7x7 kernel core), initialised from seed 0, **never trained**.
- **Data**: none. **Objective**: none. **Training budget**: 0 steps.
- **What its predictions are**: zero-mean weights with standard deviation gain/sqrt(fan_in)
  (the variance-preserving gain of the next activation), 10 % of their variance in a structured
  part and 90 % in seeded full-rank noise; normalisation weights in [0.9, 1.1]; biases within
  +-0.02; embeddings with standard deviation 0.02.
- **Use**: the fallback for every modality until trained modality checkpoints ship. Measured
  trainability against PyTorch's default initialisation: `research/trainability/trainability.md`.
"""


def make_reference(seed: int = 0) -> HyperInitializer:
    """Build the reference hypernetwork deterministically."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = HyperInitializer(
            HyperInitConfig(modality=None, training={"steps": 0, "data": None, "seed": seed})
        )
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else Path(__file__).parent.parent / "checkpoints" / "reference"
    make_reference().save_pretrained(out, model_card=MODEL_CARD)


if __name__ == "__main__":
    main()
