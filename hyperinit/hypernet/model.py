"""`HyperInitializer`: the graph hypernetwork of the seed paper (section 2).

node embedding (op type, parameter shape, depth)
  -> K rounds of gated message passing (eq. 2): each round a forward sweep over incoming
     neighbours plus shortest-path neighbours weighted by 1/s_vu (s <= s_max), GRU update, then
     the same backward; all nodes at once, as sparse/dense matrix products (no loop over nodes)
  -> decoder of linear and convolutional layers: a kernel core per parameter, expanded to any
     shape with a cosine channel basis, plus seeded full-rank noise (see ``synthesis``)
  -> per-role normalisation (see ``roles``).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hyperinit.graph.archgraph import ArchGraph
from hyperinit.graph.ops import OP_TYPES
from hyperinit.hypernet.checkpoint import CONFIG_NAME, WEIGHTS_NAME, HyperInitCheckpoint
from hyperinit.hypernet.config import HyperInitConfig
from hyperinit.hypernet.roles import (
    BIAS_RANGE,
    NORM_WEIGHT_RANGE,
    PREDICTED_ROLES,
    ParamRole,
    assign_roles,
)
from hyperinit.hypernet.synthesis import cosine_basis, param_generator, synthesise_weights

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "HyperInitializer"]

log = logging.getLogger(__name__)

_SHAPE_BUCKETS = 18
_DEPTH_FREQS = 8


def _shape_codes(shape: tuple[int, ...]) -> list[int]:
    """Four log2 buckets (out, in, kernel h, kernel w); 0 marks an absent dimension."""
    dims = list(shape[:2]) + ([1, 1] if len(shape) == 2 else list(shape[2:4]))
    codes = []
    for slot in range(4):
        s = dims[slot] if slot < len(dims) else 0
        bucket = 0 if s <= 0 else 1 + min(int(math.log2(s)), _SHAPE_BUCKETS - 2)
        codes.append(slot * _SHAPE_BUCKETS + bucket)
    return codes


def _kernel_hw(shape: tuple[int, ...]) -> tuple[int, int]:
    dims = list(shape)
    while len(dims) > 1 and dims[0] == 1:
        dims.pop(0)
    k = dims[2:]
    if not k:
        return 1, 1
    if len(k) == 1:
        return 1, k[0]
    return math.prod(k[:-1]), k[-1]


class _MLP(nn.Sequential):
    def __init__(self, d: int):
        super().__init__(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))


class GatedGNN(nn.Module):
    """Synchronous gated GNN over a DAG: eq. 2 of the seed, run forward then backward."""

    def __init__(self, d: int, rounds: int):
        super().__init__()
        self.rounds = rounds
        self.msg = nn.ModuleList([_MLP(d), _MLP(d)])
        self.msg_sp = nn.ModuleList([_MLP(d), _MLP(d)])
        self.gru = nn.ModuleList([nn.GRUCell(d, d), nn.GRUCell(d, d)])

    def forward(self, h: torch.Tensor, edges: torch.Tensor, sp: torch.Tensor) -> torch.Tensor:
        src, dst = edges[0], edges[1]
        for _ in range(self.rounds):
            for direction in (0, 1):
                x = self.msg[direction](h)
                if direction == 0:  # messages flow along the edges u -> v
                    m = torch.zeros_like(h).index_add_(0, dst, x[src])
                    m = m + sp @ self.msg_sp[0](h)
                else:  # and back against them
                    m = torch.zeros_like(h).index_add_(0, src, x[dst])
                    m = m + sp.t() @ self.msg_sp[1](h)
                h = self.gru[direction](m, h)
        return h


class HyperInitializer(
    nn.Module,
    HyperInitCheckpoint,
    library_name="hyperinit",
    tags=["hypernetwork", "initialization", "medical-imaging"],
):
    """Graph hypernetwork that predicts the parameters of any traced network.

    Use :meth:`predict_params` on an :class:`~hyperinit.ArchGraph`, or the one-call
    :func:`hyperinit.initialize`. Checkpoints are directories with ``config.json`` and
    ``model.safetensors`` (:meth:`save_pretrained` / :meth:`from_pretrained` /
    :meth:`push_to_hub`, from huggingface_hub's ``ModelHubMixin``); :meth:`from_pretrained`
    also takes a modality name (``xray``, ``cxr``, ...), which falls back to the copy embedded
    in the package when the Hub cannot be reached, and ``device=``.
    """

    def __init__(self, config: HyperInitConfig | None = None, **overrides: Any):
        super().__init__()
        config = config or HyperInitConfig()
        for key, value in overrides.items():
            if not hasattr(config, key):
                raise TypeError(f"unknown HyperInitConfig field {key!r}")
            setattr(config, key, value)
        problem = config.problem()
        if problem:
            raise ValueError(problem)
        self.config = config
        d, r, hid, k0 = config.d_model, config.code_rank, config.decoder_hidden, config.core_size
        self.op_embed = nn.Embedding(len(config.op_types), d)
        self.shape_embed = nn.Embedding(4 * _SHAPE_BUCKETS, d)
        self.depth_proj = nn.Linear(2 * _DEPTH_FREQS, d)
        self.gnn = GatedGNN(d, config.gnn_rounds)
        self.norm = nn.LayerNorm(d)
        self.role_embed = nn.Embedding(len(config.roles), d)
        self.core_fc = nn.Linear(d, hid * k0 * k0)
        self.core_conv = nn.Sequential(
            nn.Conv2d(hid, hid, 3, padding=1), nn.GELU(), nn.Conv2d(hid, r * r, 1)
        )
        self.mix = nn.Linear(d, 1)
        self.vec = nn.Linear(d, r)
        # per-tensor log-scale of predicted weights (config.scale_range), absent otherwise
        self.log_scale = nn.Linear(d, 1) if config.scale_range is not None else None
        # library op index -> this checkpoint's embedding row ("generic" for unknown ops)
        own = {name: i for i, name in enumerate(config.op_types)}
        fallback = own.get("generic", 0)
        self.register_buffer(
            "_op_map",
            torch.tensor([own.get(name, fallback) for name in OP_TYPES], dtype=torch.long),
            persistent=False,
        )
        self._role_index = {name: i for i, name in enumerate(config.roles)}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise an untrained hypernetwork (structured share = config.structured_fraction)."""
        frac = min(max(self.config.structured_fraction, 1e-4), 1 - 1e-4)
        with torch.no_grad():
            nn.init.zeros_(self.mix.weight)
            # phi = pi/2 * sigmoid(logit); structured share of variance = cos(phi)^2
            phi = math.acos(math.sqrt(frac))
            p = phi / (math.pi / 2)
            self.mix.bias.fill_(math.log(p / (1 - p)))
            nn.init.normal_(self.vec.weight, std=0.1)
            nn.init.zeros_(self.vec.bias)
            if self.log_scale is not None:  # untrained: the fan-in scale of each role
                nn.init.zeros_(self.log_scale.weight)
                nn.init.zeros_(self.log_scale.bias)

    @property
    def device(self) -> torch.device:
        return self.op_embed.weight.device

    # -- encoder ---------------------------------------------------------------------------
    def encode(self, graph: ArchGraph) -> torch.Tensor:
        """Node features ``(N, d_model)`` after the gated GNN."""
        dev = self.device
        ops = self._op_map[graph.op_ids.to(dev)]
        codes = torch.tensor([_shape_codes(n.param_shape) for n in graph.nodes], device=dev)
        depth = graph.depth_fraction().to(dev)
        freqs = math.pi * torch.arange(1, _DEPTH_FREQS + 1, device=dev, dtype=torch.float32)
        angles = depth[:, None] * freqs[None, :]
        h = (
            self.op_embed(ops)
            + self.shape_embed(codes).sum(1)
            + self.depth_proj(torch.cat([angles.sin(), angles.cos()], dim=1))
        )
        sp = graph.shortest_path_weights().to(dev)
        h = self.gnn(h, graph.edges.to(dev), sp)
        return self.norm(h)

    # -- decoder ---------------------------------------------------------------------------
    def _param_features(self, h: torch.Tensor, roles: list[ParamRole]) -> torch.Tensor:
        dev = h.device
        nodes = torch.tensor([p.node for p in roles], device=dev, dtype=torch.long)
        role_ids = torch.tensor([self._role_index[p.role] for p in roles], device=dev)
        codes = torch.tensor([_shape_codes(p.shape) for p in roles], device=dev)
        return h[nodes] + self.role_embed(role_ids) + self.shape_embed(codes).sum(1)

    def _mix_angles(self, feats: torch.Tensor) -> torch.Tensor:
        """phi per weight: ``cos(phi)^2`` of its variance is structured, ``sin(phi)^2`` noise."""
        phi = (math.pi / 2) * torch.sigmoid(self.mix(feats).squeeze(-1))
        cap = self.config.max_structured_share
        if cap is not None and cap < 1:
            phi = phi.clamp_min(math.acos(math.sqrt(cap)))
        return phi

    def _flat_cap(self, phi: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """With ``spectrum="flat"``: at most the share of variance that the structured part's
        ``r`` directions hold in a flat spectrum, ``r / min(rows, cols)``."""
        if self.config.spectrum != "flat":
            return phi
        rank = min(self.config.code_rank, rows, cols)
        return phi.clamp_min(math.acos(math.sqrt(min(1.0, rank / min(rows, cols)))))

    def structured_shares(self, graph: ArchGraph) -> dict[str, float]:
        """Share of each predicted weight's variance in the structured part (after the cap)."""
        roles = [p for p in assign_roles(graph) if p.role in ("weight", "embedding")]
        if not roles:
            return {}
        with torch.no_grad():
            phi = self._mix_angles(self._param_features(self.encode(graph), roles))
        return {
            p.name: float(torch.cos(self._flat_cap(a, rows, cols * kernel)) ** 2)
            for p, a in zip(roles, phi)
            for rows, cols, kernel in [p.matrix_shape]
        }

    def _scales(self, feats: torch.Tensor) -> torch.Tensor | None:
        """Multiplier of each weight's fan-in scale, in ``[1/r, r]`` (``None``: fixed scale)."""
        if self.log_scale is None:
            return None
        r = float(self.config.scale_range)
        return torch.exp(math.log(r) * torch.tanh(self.log_scale(feats).squeeze(-1)))

    def weight_scales(self, graph: ArchGraph) -> dict[str, float]:
        """Predicted std of each weight over its role's fan-in std (all 1 without
        ``config.scale_range``)."""
        roles = [p for p in assign_roles(graph) if p.role in ("weight", "embedding")]
        if not roles:
            return {}
        with torch.no_grad():
            m = self._scales(self._param_features(self.encode(graph), roles))
        return {p.name: 1.0 if m is None else float(m[i]) for i, p in enumerate(roles)}

    def _cores(self, feats: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        x = self.core_fc(feats).view(-1, cfg.decoder_hidden, cfg.core_size, cfg.core_size)
        x = self.core_conv(x)
        return x.view(-1, cfg.code_rank, cfg.code_rank, cfg.core_size, cfg.core_size)

    def _fit_kernel(self, core: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
        k0 = self.config.core_size
        if kh <= k0 and kw <= k0:
            top, left = (k0 - kh) // 2, (k0 - kw) // 2
            return core[..., top : top + kh, left : left + kw]
        b, r1, r2 = core.shape[:3]
        flat = core.reshape(b, r1 * r2, k0, k0)
        out = F.interpolate(flat, size=(kh, kw), mode="bilinear", align_corners=True)
        return out.view(b, r1, r2, kh, kw)

    def predict_params(
        self,
        graph: ArchGraph,
        *,
        names: set[str] | None = None,
        seed: int = 0,
        roles: list[ParamRole] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Predict every parameter of ``graph`` that has a predicted role.

        Args:
            graph: a traced network.
            names: restrict prediction to these parameter names.
            seed: seeds the symmetry-breaking noise; equal seeds give equal tensors.
            roles: ``assign_roles(graph)`` if the caller has it already.

        Returns:
            ``{name: float32 tensor of the parameter's shape}`` on this module's device.
            Differentiable w.r.t. the hypernetwork's parameters when grad is enabled.
        """
        roles = [
            p
            for p in (assign_roles(graph) if roles is None else roles)
            if p.role in PREDICTED_ROLES and (names is None or p.name in names)
        ]
        if not roles:
            return {}
        h = self.encode(graph)
        feats = self._param_features(h, roles)
        cfg = self.config
        dev = h.device
        out: dict[str, torch.Tensor] = {}
        matrix = [i for i, p in enumerate(roles) if p.role in ("weight", "embedding")]
        vector = [i for i, p in enumerate(roles) if p.role not in ("weight", "embedding")]
        if vector:
            z = self.vec(feats[vector])
            for row, i in enumerate(vector):
                p = roles[i]
                n = p.shape[0] if p.shape else 1
                rank = min(cfg.code_rank, n)
                v = cosine_basis(n, rank, dev) @ z[row, :rank]
                if p.role == "norm_weight":
                    v = 1.0 + NORM_WEIGHT_RANGE * torch.tanh(v)
                else:
                    v = BIAS_RANGE * torch.tanh(v)
                out[p.name] = v.reshape(p.shape)
        if matrix:
            mfeats = feats[matrix]
            cores = self._cores(mfeats)
            phi = self._mix_angles(mfeats)
            scales = self._scales(mfeats)
            groups: dict[tuple[int, int, int], list[int]] = defaultdict(list)
            for row, i in enumerate(matrix):
                _, cols, _ = roles[i].matrix_shape
                groups[(cols, *_kernel_hw(roles[i].shape))].append(row)
            for (cols, kh, kw), rows_in_group in groups.items():
                rank_in = min(cfg.code_rank, cols)
                core = self._fit_kernel(cores[rows_in_group], kh, kw)[:, :, :rank_in]
                gens = [param_generator(seed, roles[matrix[row]].name) for row in rows_in_group]
                codes_in = torch.stack([torch.randn(cols, rank_in, generator=g) for g in gens])
                # Q[b, a, i, k] = sum_s core[b, a, s, k] * codes_in[b, i, s]
                q = torch.einsum("bask,bis->baik", core.flatten(3), codes_in.to(dev))
                q = q.reshape(len(rows_in_group), cfg.code_rank, cols * kh * kw)
                by_rows: dict[int, list[int]] = defaultdict(list)
                for j, row in enumerate(rows_in_group):
                    by_rows[roles[matrix[row]].matrix_shape[0]].append(j)
                for n_rows, js in by_rows.items():
                    members = [roles[matrix[rows_in_group[j]]] for j in js]
                    idx = torch.tensor([rows_in_group[j] for j in js], device=dev)
                    target = torch.tensor([p.target_std for p in members], device=dev)
                    if scales is not None:
                        target = target * scales[idx]
                    ph = self._flat_cap(phi[idx], n_rows, cols * kh * kw)
                    weights = synthesise_weights(
                        q[js],
                        n_rows,
                        ph,
                        target,
                        [gens[j] for j in js],
                        cfg.noise,
                        flat=cfg.spectrum == "flat",
                        centre=cfg.centre_rows == "all"
                        or (cfg.centre_rows == "except_depthwise" and cols > 1),
                    )
                    for p, w in zip(members, weights):
                        out[p.name] = w.view(p.shape)
        return out
