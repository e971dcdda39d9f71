"""The graph hypernetwork: encoders, gated GNN, decoder, normalisation, save/load."""

from hyperinit.hypernet.config import HyperInitConfig
from hyperinit.hypernet.model import HyperInitializer
from hyperinit.hypernet.roles import ROLES, ParamRole, assign_roles

__all__ = ["ROLES", "HyperInitConfig", "HyperInitializer", "ParamRole", "assign_roles"]
