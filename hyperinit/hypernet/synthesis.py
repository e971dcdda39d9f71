"""Cheap building blocks that turn small decoded tensors into full-size parameters.

A predicted weight matrix (rows = output channels, cols = input channels x kernel) is

    W = alpha * C_out @ Q  +  beta * N

* ``C_out @ Q`` is the structured part: ``Q`` mixes the decoded kernel core (``r x r`` learned
  kernels) with seeded random codes ``C_in`` of the input channels, and ``C_out`` are seeded
  random codes of the output channels, so the hypernetwork describes a layer with a few numbers
  whatever its width. The codes are random, not a fixed basis: fixed codes align the subspaces
  of consecutive layers, and the gains of low-rank layers with aligned subspaces multiply
  (VGG-11 activations grew 10^4-fold in our tests); random codes keep the learned spatial
  kernel patterns and leave consecutive layers uncorrelated;
* ``N`` is a seeded, zero-mean, unit-RMS full-rank random matrix that breaks the symmetry
  between channels. It is a Kronecker product of two small Gaussian factors, which costs one
  broadcast multiply instead of a random draw per element (a draw per element takes ~4 ns on
  a laptop CPU, i.e. 0.1 s for ResNet-50 alone). When the shape cannot be factored with full
  rank, it falls back to ``torch.randn``. With ``noise="orthogonal"`` both factors are
  replaced by their polar factors (an SVD of two small matrices), so ``N`` is a scaled
  semi-orthogonal matrix: every singular value equal, where a product of two Gaussian factors
  has most of its singular values near zero (the low effective rank the diagnostic found).

``alpha`` and ``beta`` are computed from the factors so that W has exactly zero mean and (up to
the vanishing cross term) the requested standard deviation, without another pass over W.
"""

from __future__ import annotations

import functools
import math
import zlib
from functools import lru_cache
from typing import Any

import torch

__all__ = [
    "cosine_basis",
    "gaussian_noise",
    "kron_factors",
    "kron_noise",
    "param_generator",
    "polar_factor",
    "symmetry_noise",
]


@lru_cache(maxsize=512)
def _cosine_basis_cpu(n: int, rank: int) -> torch.Tensor:
    idx = torch.arange(n, dtype=torch.float64) + 0.5
    freq = torch.arange(rank, dtype=torch.float64)
    basis = torch.cos(math.pi * idx[:, None] * freq[None, :] / n)
    basis[:, 1:] *= math.sqrt(2.0)  # unit RMS columns (column 0 is all ones)
    return basis.float()


def cosine_basis(n: int, rank: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(n, rank)`` DCT-II basis with unit-RMS columns; column 0 is constant, the others sum to
    zero (for ``rank <= n``). Used for the smooth per-channel profile of vector parameters."""
    return _cosine_basis_cpu(n, rank).to(device)


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


@lru_cache(maxsize=4096)
def kron_factors(rows: int, cols: int) -> tuple[int, int, int, int] | None:
    """``(r1, c1, r2, c2)`` with ``r1 * r2 = rows`` and ``c1 * c2 = cols`` such that the Kronecker
    product of an ``r1 x c1`` and an ``r2 x c2`` Gaussian matrix has full rank, with the fewest
    random numbers; ``None`` when none saves at least 8x over drawing every element."""
    full = min(rows, cols)
    best: tuple[int, tuple[int, int, int, int]] | None = None
    for r1 in _divisors(rows):
        r2 = rows // r1
        for c1 in _divisors(cols):
            c2 = cols // c1
            if min(r1, c1) * min(r2, c2) != full:
                continue
            cost = r1 * c1 + r2 * c2
            if best is None or cost < best[0]:
                best = (cost, (r1, c1, r2, c2))
    if best is None or best[0] * 8 > rows * cols:
        return None
    return best[1]


def param_generator(seed: int, name: str) -> torch.Generator:
    """A CPU generator seeded from the global seed and the parameter name, so a parameter's
    noise does not depend on which other parameters are predicted."""
    return torch.Generator().manual_seed(
        (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % 2**63
    )


def symmetry_noise(
    rows: int,
    cols: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    scale: torch.Tensor | float = 1.0,
    *,
    kind: str = "kron",
) -> torch.Tensor:
    """A new ``(rows, cols)`` full-rank random matrix with exactly zero mean and RMS ``scale``
    (a float or a 0-dim tensor, through which gradients flow).

    ``kind="kron"``: a Kronecker product of two small Gaussian factors (one broadcast multiply;
    i.i.d. when the shape has no full-rank factorisation, see :func:`kron_factors`);
    ``kind="gaussian"``: i.i.d. Gaussian, one draw per element (slower, unstructured);
    ``kind="orthogonal"``: the Kronecker product of the two factors' polar factors, a scaled
    semi-orthogonal matrix (up to the mean removal); the polar factor of an i.i.d. draw when
    the shape has no full-rank factorisation.
    """
    factors = kron_factors(rows, cols) if kind != "gaussian" else None
    if factors is None:
        noise = torch.randn(rows, cols, generator=generator, dtype=torch.float64)
        if kind == "orthogonal":
            noise = polar_factor(noise)
        noise -= noise.mean()
        noise /= noise.pow(2).mean().sqrt().clamp_min(1e-12)
        return noise.to(device=device, dtype=dtype) * scale
    r1, c1, r2, c2 = factors
    a = torch.randn(r1, c1, generator=generator, dtype=torch.float64)
    b = torch.randn(r2, c2, generator=generator, dtype=torch.float64)
    if kind == "orthogonal":
        a, b = polar_factor(a), polar_factor(b)
    a -= a.mean()
    rms = a.pow(2).mean().sqrt() * b.pow(2).mean().sqrt()
    a = (a / rms.clamp_min(1e-12)).to(device=device, dtype=dtype) * scale
    b = b.to(device=device, dtype=dtype)
    return (a[:, None, :, None] * b[None, :, None, :]).reshape(rows, cols)


def polar_factor(mat: torch.Tensor) -> torch.Tensor:
    """``U V^T`` of ``mat = U S V^T`` (batched over leading dims): the nearest matrix with every
    singular value 1."""
    u, _, vh = torch.linalg.svd(mat, full_matrices=False)
    return u @ vh


#: :func:`symmetry_noise` as a Kronecker product (the default) and i.i.d.
kron_noise = functools.partial(symmetry_noise, kind="kron")
gaussian_noise = functools.partial(symmetry_noise, kind="gaussian")


def _batched_noise(
    rows: int,
    cols: int,
    generators: list[torch.Generator],
    device: torch.device | str,
    scale: torch.Tensor,
    kind: str,
) -> list[torch.Tensor]:
    """:func:`kron_noise` (or :func:`gaussian_noise`) for several generators at once: the same
    draws from each generator, the arithmetic batched. ``scale`` is ``(B,)``."""
    factors = kron_factors(rows, cols) if kind != "gaussian" else None
    if factors is None:
        return [
            symmetry_noise(rows, cols, g, device, scale=scale[b], kind=kind)
            for b, g in enumerate(generators)
        ]
    r1, c1, r2, c2 = factors
    pairs = [
        (
            torch.randn(r1, c1, generator=g, dtype=torch.float64),
            torch.randn(r2, c2, generator=g, dtype=torch.float64),
        )
        for g in generators
    ]
    a = torch.stack([p[0] for p in pairs])
    b = torch.stack([p[1] for p in pairs])
    if kind == "orthogonal":
        a, b = polar_factor(a), polar_factor(b)
    a = a - a.mean(dim=(1, 2), keepdim=True)
    rms = a.pow(2).mean(dim=(1, 2)).sqrt() * b.pow(2).mean(dim=(1, 2)).sqrt()
    a = (a / rms.clamp_min(1e-12)[:, None, None]).to(device=device, dtype=torch.float32)
    a = a * scale[:, None, None]
    b = b.to(device=device, dtype=torch.float32)
    # one product per weight: each its own storage, so the caller may fill it in place
    return [(x[:, None, :, None] * y[None, :, None, :]).reshape(rows, cols) for x, y in zip(a, b)]


class _FlatFactors(torch.autograd.Function):
    """Factors ``(X, Y)`` of the polar factor ``X @ Y`` of ``codes @ q`` (batched): with
    ``codes = Q1 R1``, ``q^T = Q2 R2`` and ``R1 R2^T = u s v^T``, ``X = Q1 u``, ``Y = v^T Q2^T``.
    Directions with a singular value under 1e-6 of the largest are dropped (centred rows have
    rank < cols when cols <= r), so rows of ``q`` that sum to zero keep doing so.

    The backward is the polar factor's own, from the thin SVD ``codes @ q = U S V^T``: autograd
    through the QRs and the SVD divides by ``R`` and by ``s_i^2 - s_j^2``, infinite for the
    rank-deficient ``q`` of centred rows and for the equal singular values of a flat spectrum;
    this divides by ``s_i + s_j`` and ``s_i`` of kept directions only. ``codes`` (seeded random)
    gets no gradient. Valid where the loss depends on ``X`` and ``Y`` through ``X @ Y`` only,
    as in :func:`synthesise_weights`."""

    @staticmethod
    def forward(
        ctx: Any, codes: torch.Tensor, q: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q1, r1 = torch.linalg.qr(codes)
        q2, r2 = torch.linalg.qr(q.transpose(1, 2))
        u, s, vh = torch.linalg.svd(r1 @ r2.transpose(1, 2), full_matrices=False)
        keep = (s > 1e-6 * s[:, :1]).to(u.dtype)
        x, y = q1 @ (u * keep[:, None, :]), vh @ q2.transpose(1, 2)
        ctx.save_for_backward(codes, x, y, s, keep)
        return x, y

    @staticmethod
    def backward(ctx: Any, grad_x: torch.Tensor, grad_y: torch.Tensor) -> tuple[None, torch.Tensor]:
        codes, u, y, s, keep = ctx.saved_tensors
        vt = y * keep[:, :, None]  # V^T of the kept directions (u's other columns are zero)
        gx = torch.zeros_like(u) if grad_x is None else grad_x * keep[:, None, :]  # P' V
        gy = torch.zeros_like(y) if grad_y is None else grad_y * keep[:, :, None]  # U^T P'
        inv = keep / s.clamp_min(torch.finfo(s.dtype).tiny)
        b = u.transpose(1, 2) @ gx  # U^T P' V
        both = keep[:, :, None] * keep[:, None, :]
        denom = (s[:, :, None] + s[:, None, :]).clamp_min(torch.finfo(s.dtype).tiny)
        w = (b - b.transpose(1, 2)) * both / denom
        left = gx - u @ (u.transpose(1, 2) @ gx)  # (I - U U^T) P' V
        right = gy - (gy @ vt.transpose(1, 2)) @ vt  # U^T P' (I - V V^T)
        ct_u = codes.transpose(1, 2) @ u
        grad_q = (ct_u @ w) @ vt
        grad_q = grad_q + ((codes.transpose(1, 2) @ left) * inv[:, None, :]) @ vt
        grad_q = grad_q + (ct_u * inv[:, None, :]) @ right
        return None, grad_q


def _flat_factors(codes: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors of the polar factor of ``codes @ q`` (see :class:`_FlatFactors`)."""
    return _FlatFactors.apply(codes, q)


def synthesise_weights(
    q: torch.Tensor,
    rows: int,
    phi: torch.Tensor,
    target: torch.Tensor,
    generators: list[torch.Generator],
    noise: str = "kron",
    flat: bool = False,
    centre: bool = True,
) -> list[torch.Tensor]:
    """``W = alpha * C_out @ Q + beta * N`` for ``B`` weights of one ``(rows, cols)`` shape.

    Args:
        q: ``(B, r, cols)`` structured rows (kernel core mixed with the input codes).
        rows: output rows of every weight.
        phi: ``(B,)`` mixing angles: ``cos(phi)^2`` of the variance is structured.
        target: ``(B,)`` standard deviation each weight must have.
        generators: one per weight (:func:`param_generator`); each draws its output codes
            ``C_out`` and then its noise factors, so a weight does not depend on the others.
        noise: ``"kron"``, ``"gaussian"`` or ``"orthogonal"`` (:func:`symmetry_noise`).
        flat: replace ``C_out @ Q`` by its polar factor (computed from the factors, so it
            costs ``O((rows + cols) r^2)``): its ``r`` singular values equal.
        centre: make each row of the structured part sum to zero. Off for a depthwise
            kernel (one input channel), where a zero sum is a zero response to the channel's
            local mean: every such filter would be high-pass.

    Returns:
        ``B`` separate ``(rows, cols)`` tensors (no shared storage), differentiable w.r.t.
        ``q``, ``phi`` and ``target``.
    """
    dev = q.device
    rank = min(q.shape[1], rows)
    # centre each row of q: every row of the structured part then sums to zero, so it adds
    # nothing to the mean a layer passes on (after a ReLU the input mean is large)
    q = q[:, :rank]
    if centre:
        q = q - q.mean(dim=2, keepdim=True)
    codes = torch.stack([torch.randn(rows, rank, generator=g) for g in generators]).to(dev)
    if flat:
        codes, q = _flat_factors(codes, q)
    # ||C_out @ q||_F^2 = <C_out^T C_out, q q^T>: the RMS without forming W
    gram = (codes.transpose(1, 2) @ codes) * (q @ q.transpose(1, 2))
    rms = (gram.sum(dim=(1, 2)).clamp_min(0) / (rows * q.shape[2])).sqrt().clamp_min(1e-12)
    alpha = torch.cos(phi) * target / rms
    beta = torch.sin(phi) * target
    noises = _batched_noise(rows, q.shape[2], generators, dev, beta, noise)
    structured = q * alpha[:, None, None]
    # into the fresh noise tensors, saving a full-size copy (autograd-safe: the product that
    # made each keeps its inputs, not its output)
    return [n.addmm_(c, s) for n, c, s in zip(noises, codes, structured)]
