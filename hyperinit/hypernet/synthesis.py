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
  rank, it falls back to ``torch.randn``.

``alpha`` and ``beta`` are computed from the factors so that W has exactly zero mean and (up to
the vanishing cross term) the requested standard deviation, without another pass over W.
"""

from __future__ import annotations

import math
import zlib
from functools import lru_cache

import torch

__all__ = ["cosine_basis", "gaussian_noise", "kron_factors", "kron_noise", "param_generator"]


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


def gaussian_noise(
    rows: int,
    cols: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    scale: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """A new ``(rows, cols)`` i.i.d. Gaussian matrix with exactly zero mean and RMS ``scale``:
    the slower, unstructured alternative to :func:`kron_noise`."""
    noise = torch.randn(rows, cols, generator=generator, dtype=torch.float64)
    noise -= noise.mean()
    noise /= noise.pow(2).mean().sqrt().clamp_min(1e-12)
    return noise.to(device=device, dtype=dtype) * scale


def kron_noise(
    rows: int,
    cols: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    scale: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """A new ``(rows, cols)`` full-rank random matrix with exactly zero mean and RMS ``scale``
    (a float or a 0-dim tensor, through which gradients flow)."""
    factors = kron_factors(rows, cols)
    if factors is None:
        return gaussian_noise(rows, cols, generator, device, dtype, scale)
    r1, c1, r2, c2 = factors
    a = torch.randn(r1, c1, generator=generator, dtype=torch.float64)
    b = torch.randn(r2, c2, generator=generator, dtype=torch.float64)
    a -= a.mean()
    rms = a.pow(2).mean().sqrt() * b.pow(2).mean().sqrt()
    a = (a / rms.clamp_min(1e-12)).to(device=device, dtype=dtype) * scale
    b = b.to(device=device, dtype=dtype)
    return (a[:, None, :, None] * b[None, :, None, :]).reshape(rows, cols)
