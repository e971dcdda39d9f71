"""The graph hypernetwork: encoders, gated GNN, decoder, normalisation, save/load."""

from __future__ import annotations

from hyperinit.hypernet.config import HyperInitConfig
from hyperinit.hypernet.model import HyperInitializer

__all__ = ["HyperInitConfig", "HyperInitializer"]
