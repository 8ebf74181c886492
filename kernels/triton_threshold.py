"""logconf's adaptive threshold: ``torch.quantile(softmax(z)[:, 0], mean(y, 0)[1])``, without host syncs.

Pipeline of the balanced binary logconf on the Triton backend (passes over memory in brackets):

1. ``prob0``: a Triton kernel reads the logits once [N*k] and writes ``p0 = softmax(z)[:, 0]`` [N floats].
2. ``m = targets.float().mean(0)`` in torch, the very expressions the reference uses, so the quantile level
   (and therefore which rows land on the threshold when the rank is an integer) is bit-identical [N*k].
3. ``torch.quantile(p0, m[1])`` itself (sort of the (N,) vector, two gathers, a lerp): the reference's own
   call on the same float32 values, hence a bit-identical threshold on every torch version. It touches
   N floats, i.e. 1/k of the logits' size, and does not synchronise with the host for a CUDA ``q``
   (torch only range-checks ``q`` on the CPU; we clamp ``q`` to [0, 1] so a rounding error in a mean of
   probabilities can never become an out-of-bounds gather). Above 2**24 rows, where ``torch.quantile``
   refuses to run (and so does the reference), ``quantile_linear`` follows the same steps.
4. The fused loss+grad kernel (``HARD_THRESHOLD``) recomputes ``p0`` exactly as in step 1 (same code, same
   rounding), compares it with the threshold read from device memory, builds the one-hot and writes the
   gradient [N*k read of logits + targets, N*k write].

A selection (``kthvalue``) instead of the sort would need the rank on the host (a sync per step); at the
sizes that matter (N <= 1M) one radix sort of N floats is cheap compared with the (N, k) passes.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_tiles import load_rows_tile, row_block, softmax_tile

#: Largest k for the prob0 kernel (one tile per row block, the same code as the fused single-tile kernel).
PROB0_MAX_K = 8192


@triton.jit
def _prob0_kernel(
    Z, P0, N, NK, K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, ACC: tl.constexpr
):
    pid, rows, cols, rmask, mask = row_block(N, K, BLOCK_N, BLOCK_K)
    z = load_rows_tile(Z, pid, rows, cols, mask, N, NK, K, BLOCK_N, BLOCK_K, ACC)
    # The same helpers as triton_softce._rows_kernel, so that p0 is bit-identical in both passes.
    _zm, _m, e, d = softmax_tile(z, mask, rmask)
    p = e / d[:, None]
    p0 = tl.sum(tl.where(cols[None, :] == 0, p, 0.0), axis=1)
    tl.store(P0 + rows, p0, mask=rmask)


def prob0(logits: torch.Tensor) -> torch.Tensor:
    """``softmax(z, -1)[:, 0]`` in the compute dtype (float64 for float64 logits, else float32), shape (N,).

    The threshold path only uses k == 2 (the fused kernel re-derives p0 with the same single-tile code);
    for k > ``PROB0_MAX_K`` this falls back to torch.
    """
    from .triton_softce import LOGITS_DTYPES, _small_config, device_of

    if logits.dtype not in LOGITS_DTYPES:
        raise TypeError(f"logits must be one of {LOGITS_DTYPES}, got {logits.dtype}")
    n, k = logits.shape
    acc_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    out = torch.empty(n, dtype=acc_dtype, device=logits.device)
    if n == 0:
        return out
    if k > PROB0_MAX_K:
        return torch.softmax(logits.to(acc_dtype), dim=-1)[:, 0].contiguous()
    logits = logits.contiguous()
    block_n, block_k, num_warps = _small_config(n, k)
    with device_of(logits):
        _prob0_kernel[(triton.cdiv(n, block_n),)](
            logits, out, n, n * k, K=k, BLOCK_N=block_n, BLOCK_K=block_k,
            ACC=tl.float64 if acc_dtype == torch.float64 else tl.float32, num_warps=num_warps,
        )
    return out


def quantile_linear(values: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``torch.quantile(values, q)`` (1-D ``values``, 0-dim ``q``, linear interpolation) for any length.

    Sort, rank = q * (N - 1), gather trunc(rank) and ceil(rank), lerp with weight rank - trunc(rank); rank
    and lerp in float64, which reproduces torch 2.14's ``torch.quantile`` bit for bit on float32 inputs
    (checked in the tests). NaNs propagate; ``q`` is clamped to [0, 1]. No host synchronisation.
    """
    values = values.reshape(-1)
    n = values.numel()
    if n == 0:
        return torch.full((), float("nan"), dtype=values.dtype, device=values.device)
    sorted_vals = torch.sort(values).values
    last = n - 1
    q = q.to(device=values.device, dtype=torch.float64).reshape(()).clamp(0.0, 1.0)
    ranks = q * last
    ranks = torch.where(torch.isnan(sorted_vals[-1]), torch.full_like(ranks, last), ranks)
    below = ranks.to(torch.long)
    weights = ranks - below
    above = torch.ceil(ranks).to(torch.long)
    v_below = sorted_vals.gather(0, below.reshape(1)).double()
    v_above = sorted_vals.gather(0, above.reshape(1)).double()
    return torch.lerp(v_below, v_above, weights.reshape(1)).to(values.dtype).reshape(())


def balanced_threshold(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The reference's binary threshold ``quantile(p[:, 0], mean(y, 0)[1])`` (0-dim, compute dtype).

    ``level`` is built with the reference's exact expressions (``y.to(dtype).mean(0)[1:].sum()``), so it is
    bit-identical to the one ``reference.hardened_targets`` passes to ``torch.quantile``.
    """
    p0 = prob0(logits)
    level = targets.detach().to(p0.dtype).mean(dim=0)[1:].sum().clamp(0.0, 1.0)
    if p0.numel() <= 2**24:
        return torch.quantile(p0, level)
    return quantile_linear(p0, level)
