"""Triton building blocks shared by the fused loss kernel and the logconf threshold kernel.

They live in one place because the threshold pass must compute ``p[:, 0]`` bit-identically to the fused
loss pass (the quantile taken from one is compared against values of the other): both call the same code.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def row_block(N, K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """This program's row block: ``(pid, rows, cols, rmask, mask)`` (``mask`` covers rows < N and cols < K)."""
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_K)
    rmask = rows < N
    mask = rmask[:, None] & (cols[None, :] < K)
    return pid, rows, cols, rmask, mask


@triton.jit
def load_rows_tile(PTR, pid, rows, cols, mask, N, NK, K: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_K: tl.constexpr, ACC: tl.constexpr):
    """The ``(BLOCK_N, BLOCK_K)`` tile of rows ``rows`` of a row-major ``(N, K)`` tensor, in ``ACC``.

    With a power-of-two ``K == BLOCK_K`` the tile is one contiguous span, loaded without a mask unless it is
    the last, partial block: 16-byte vector accesses even when a row is only 4 bytes. Otherwise a masked 2-D
    load (masked-out entries are 0).
    """
    FLAT: tl.constexpr = BLOCK_K == K
    if FLAT:
        flat = pid.to(tl.int64) * (BLOCK_N * K) + tl.arange(0, BLOCK_N * K)
        if (pid + 1) * BLOCK_N <= N:
            xf = tl.load(PTR + flat)
        else:
            xf = tl.load(PTR + flat, mask=flat < NK, other=0.0)
        x = tl.reshape(xf, (BLOCK_N, BLOCK_K)).to(ACC)
    else:
        offs = rows.to(tl.int64)[:, None] * K + cols[None, :]
        x = tl.load(PTR + offs, mask=mask, other=0.0).to(ACC)
    return x


@triton.jit
def softmax_tile(z, mask, rmask):
    """Row softmax pieces of a tile: ``(zm, m, e, d)`` with ``p = e / d[:, None]``.

    ``zm`` is ``z`` with masked entries at -inf, ``m`` the row max (0 on padding rows), ``e = exp(zm - m)``,
    ``d`` the row sum of ``e`` (1 on padding rows, so nothing divides by 0).
    """
    zm = tl.where(mask, z, float("-inf"))
    m = tl.where(rmask, tl.max(zm, axis=1), 0.0)
    e = tl.exp(zm - m[:, None])
    d = tl.where(rmask, tl.sum(e, axis=1), 1.0)
    return zm, m, e, d


@triton.jit
def store_rows_tile(PTR, x, pid, rows, cols, mask, N, NK, K: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_K: tl.constexpr):
    """Store a ``(BLOCK_N, BLOCK_K)`` tile where :func:`load_rows_tile` loaded it (same contiguous fast path)."""
    FLAT: tl.constexpr = BLOCK_K == K
    x = x.to(PTR.dtype.element_ty)
    if FLAT:
        flat = pid.to(tl.int64) * (BLOCK_N * K) + tl.arange(0, BLOCK_N * K)
        xf = tl.reshape(x, (BLOCK_N * K,))
        if (pid + 1) * BLOCK_N <= N:
            tl.store(PTR + flat, xf)
        else:
            tl.store(PTR + flat, xf, mask=flat < NK)
    else:
        offs = rows.to(tl.int64)[:, None] * K + cols[None, :]
        tl.store(PTR + offs, x, mask=mask)
