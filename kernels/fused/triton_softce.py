"""Fused soft-target cross-entropy (loss + gradient in one pass) for the xent / product / logconf losses.

All three losses are "cross-entropy of ``softmax(z)`` against a per-row target ``t``" and differ only in how
``t`` is built from the soft labels ``y`` (and, for product / logconf, from the detached probabilities):

* ``MODE_XENT``:    ``t = y``
* ``MODE_PRODUCT``: ``t = normalise(softmax(z)**beta * y**alpha)``, computed in log space as in
  ``kernels/fused/reference.py``: ``t = softmax(beta * log_softmax(z) + xlogy(alpha, y))``, so a product that
  underflows to 0 in every class (hard or soft labels) still gives the exact normalised product; a row whose
  ``t`` is still non-finite (``log_softmax(z)`` not finite on any class the label supports) falls back to
  ``t = y``
* ``MODE_LOGCONF``: ``t = (1 - coef) * y + coef * onehot(h)`` where the hardened class ``h`` comes from
  ``HARD_IDS`` (an int vector computed elsewhere), ``HARD_THRESHOLD`` (``h = 0 if p0 >= thr else 1``, the
  binary adaptive threshold read from a device scalar: no host sync) or ``HARD_ARGMAX`` (``argmax(p)``,
  first index on ties, like ``torch.argmax``).

Because ``t`` is detached, ``d loss_row / dz = sum(t) * softmax(z) - t``; the kernels write this (times
``grad_scale`` = 1/N for the batch mean) in the logits dtype while computing the per-row loss
``sum(t * -log_softmax(z))``. The maths runs in the reference's compute dtype (``ACC``): float32 for fp16 / bf16 /
fp32 logits, float64 for float64 logits (so gradcheck can run in double precision); the loss has that dtype.

Memory traffic per call:

* ``k <= MAX_SINGLE_TILE_K`` (``_rows_kernel``): each program owns ``BLOCK_N`` rows, holds them in registers and
  reads logits + targets once and writes the gradient once. For power-of-two ``k`` the tile is loaded as one
  contiguous flat vector (vectorised 16-byte accesses even for ``k == 2``, where a row is only 8 bytes) and
  reshaped to ``(BLOCK_N, k)``.
* ``k > MAX_SINGLE_TILE_K`` (``_tiled_kernel``, one row per program, Liger-style): pass 1 is an online softmax
  (running max and rescaled sum of exponentials) over ``BLOCK_K`` tiles; pass 2 re-reads the row to
  accumulate the loss and write the gradient (from L2 only while the rows in flight fit in it: at
  k = 131,072 they do not, so that is a second HBM read). ``MODE_PRODUCT`` needs one extra read (its target
  is an online softmax of its own, whose normaliser must be known before the gradient is written) and
  ``HARD_ARGMAX`` one extra read of the logits (the argmax of the *probabilities* must be known before the
  one-hot gradient is written). ``HARD_THRESHOLD`` (k == 2) always uses the single-tile kernel.

The gradient is produced in forward (as Liger-Kernel does) and kept for backward, where ``scale_by_`` multiplies
it in place by ``grad_output`` read from device memory; each program exits early when ``grad_output == 1``,
so the usual ``loss.backward()`` costs one tiny launch and no extra pass (no host synchronisation either);
the same kernel records the factor for a second backward. The loss is reduced in the kernel: each program
writes one partial sum (already scaled by ``1/N``) and ``partials.sum()`` is the one deterministic final
reduction, so a fused xent / product step is 4 launches (kernel, final sum, autograd's ``ones_like``, scale).
"""

from __future__ import annotations

import contextlib
import struct

import torch
import triton
import triton.language as tl

from .triton_tiles import load_rows_tile, row_block, softmax_tile, store_rows_tile

MODE_XENT = 0
MODE_PRODUCT = 1
MODE_LOGCONF = 2

HARD_NONE = 0
HARD_IDS = 1
HARD_THRESHOLD = 2
HARD_ARGMAX = 3

#: Logits dtypes the fused kernels take; also the gradient's dtype and the linear head's hidden / weight dtype.
#: The compute dtype ``ACC`` follows: float64 for float64 logits, float32 for the others. ``soft_ce_forward``
#: rejects any other dtype, and ``tests/kernels/_compile_kernels.py`` compiles every launch for each of them.
LOGITS_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
#: Target dtypes the fused kernels take (converted to ``ACC`` when loaded).
TARGET_DTYPES = LOGITS_DTYPES
#: The hardening choices ``soft_ce_forward`` launches for each mode. ``HARD_THRESHOLD`` (k == 2) always takes
#: the single-tile kernel; every other pair can take either kernel.
HARD_BY_MODE = {
    MODE_XENT: (HARD_NONE,),
    MODE_PRODUCT: (HARD_NONE,),
    MODE_LOGCONF: (HARD_IDS, HARD_THRESHOLD, HARD_ARGMAX),
}

#: Largest ``k`` handled with the whole row in registers (single read); larger ``k`` is tiled.
MAX_SINGLE_TILE_K = 8192
#: Tile width over ``k`` for the tiled kernel (16 warps: 16 fp32 elements per thread and tensor; float64
#: takes a quarter of it on 8 warps, see ``tiled_config``).
TILED_BLOCK_K = 8192
#: Target number of elements in one program's (BLOCK_N, BLOCK_K) tile for small ``k``.
TILE_ELEMS = 2048


@triton.jit
def _xlogy(a, y):
    """``torch.xlogy(a, y)`` for a scalar ``a``: ``0`` where ``a == 0``, ``a * log(y)`` otherwise."""
    r = a * tl.log(tl.where(y > 0, y, 1.0))
    r = tl.where(y > 0, r, tl.where(y == 0, tl.where(a > 0, float("-inf"), float("inf")), float("nan")))
    return tl.where(a == 0, 0.0, r)


@triton.jit
def _hilo(hi, lo, ACC: tl.constexpr):
    """A float64 kernel scalar passed as two float32 halves (Triton passes Python floats as float32)."""
    zero = tl.zeros([1], ACC)
    return tl.sum(zero + hi, axis=0) + tl.sum(zero + lo, axis=0)


@triton.jit
def _scalar(value, BLOCK: tl.constexpr, ACC: tl.constexpr):
    """A 0-d ``ACC`` tensor (loop-carried scalars must keep one dtype, float64 included)."""
    return tl.max(tl.full([BLOCK], value, ACC), axis=0)


@triton.jit
def _rows_kernel(
    Z, Y, G, LOSS, HID, THR,
    N, NK, coef_hi, coef_lo, alpha_hi, alpha_lo, beta_hi, beta_lo, gs_hi, gs_lo, ls_hi, ls_lo,
    K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    MODE: tl.constexpr, HARD: tl.constexpr, ACC: tl.constexpr, WRITE_GRAD: tl.constexpr,
):
    """``BLOCK_N`` rows per program, the whole row (``K <= BLOCK_K``) in registers: one read, one write.
    ``LOSS[pid]`` gets this block's partial ``loss_scale * sum(row losses)`` (no per-row loss buffer)."""
    coef = _hilo(coef_hi, coef_lo, ACC)
    alpha = _hilo(alpha_hi, alpha_lo, ACC)
    beta = _hilo(beta_hi, beta_lo, ACC)
    grad_scale = _hilo(gs_hi, gs_lo, ACC)
    pid, rows, cols, rmask, mask = row_block(N, K, BLOCK_N, BLOCK_K)
    z = load_rows_tile(Z, pid, rows, cols, mask, N, NK, K, BLOCK_N, BLOCK_K, ACC)
    y = load_rows_tile(Y, pid, rows, cols, mask, N, NK, K, BLOCK_N, BLOCK_K, ACC)

    _zm, m, e, d = softmax_tile(z, mask, rmask)
    logd = tl.log(d)
    p = e / d[:, None]
    # -log_softmax(z) = log(d) - (z - m): shift first (exact), so |z| ~ 1e4 loses no digits to cancellation.
    nlp = logd[:, None] - (z - m[:, None])

    if MODE == 0:
        t = y
    elif MODE == 1:
        # t = softmax(beta * log_softmax(z) + xlogy(alpha, y)); rows with a non-finite t fall back to y.
        u = tl.where(beta == 0, 0.0, -beta * nlp) + _xlogy(alpha, y)
        u = tl.where(mask, u, float("-inf"))
        mu = tl.max(u, axis=1)
        mu = tl.where(mu == float("-inf"), 0.0, mu)  # an all -inf row gives su == 0 -> undefined
        eu = tl.exp(u - mu[:, None])
        su = tl.sum(tl.where(mask, eu, 0.0), axis=1)
        t = eu / tl.where(su > 0, su, 1.0)[:, None]
        finite = tl.abs(t) < float("inf")  # False for NaN too
        bad = (tl.sum(tl.where(mask & ~finite, 1, 0), axis=1) > 0) | ~(su > 0)
        t = tl.where(bad[:, None], y, t)
    else:
        if HARD == 1:
            h = tl.load(HID + rows, mask=rmask, other=-1).to(tl.int32)
        elif HARD == 2:
            thr = tl.load(THR).to(ACC)
            p0 = tl.sum(tl.where(cols[None, :] == 0, p, 0.0), axis=1)
            h = tl.where(p0 >= thr, 0, 1)
        else:
            h = tl.argmax(tl.where(mask, p, -1.0), axis=1).to(tl.int32)
        onehot = tl.where(cols[None, :] == h[:, None], 1.0, 0.0)
        t = y * (1.0 - coef) + onehot * coef
    t = tl.where(mask, t, 0.0)
    tsum = tl.sum(t, axis=1)
    loss = tl.sum(t * nlp, axis=1)
    tl.store(LOSS + pid, tl.sum(tl.where(rmask, loss, 0.0), axis=0) * _hilo(ls_hi, ls_lo, ACC))
    if WRITE_GRAD:
        g = (tsum[:, None] * p - t) * grad_scale
        store_rows_tile(G, g, pid, rows, cols, mask, N, NK, K, BLOCK_N, BLOCK_K)


@triton.jit
def _tiled_kernel(
    Z, Y, G, LOSS, HID, THR,
    coef_hi, coef_lo, alpha_hi, alpha_lo, beta_hi, beta_lo, gs_hi, gs_lo, ls_hi, ls_lo,
    K: tl.constexpr, BLOCK_K: tl.constexpr, MODE: tl.constexpr, HARD: tl.constexpr, ACC: tl.constexpr,
    WRITE_GRAD: tl.constexpr, TSUM_ONE: tl.constexpr = False,
):
    """One row per program, ``BLOCK_K`` columns at a time (large ``k``): online softmax, then loss + grad.

    ``K`` is a ``constexpr`` (one compiled variant per class count, like ``_rows_kernel``; ``k`` is the
    vocabulary size here, fixed per model) and not a runtime argument, so the loop bounds
    ``range(0, K, BLOCK_K)`` never turn a runtime scalar into a Python int. Triton 3.6's interpreter does
    that with ``int(array_of_shape_1)``, which NumPy >= 2.4 rejects (``TypeError: only 0-dimensional arrays
    can be converted to Python scalars``; fixed in Triton 3.7's interpreter; compiled code never does it).
    """
    coef = _hilo(coef_hi, coef_lo, ACC)
    alpha = _hilo(alpha_hi, alpha_lo, ACC)
    beta = _hilo(beta_hi, beta_lo, ACC)
    grad_scale = _hilo(gs_hi, gs_lo, ACC)
    row = tl.program_id(0).to(tl.int64)
    zrow = Z + row * K
    yrow = Y + row * K
    grow = G + row * K
    cols = tl.arange(0, BLOCK_K)

    # Pass 1: running max m and sum of exp(z - m), rescaled whenever m grows (online softmax).
    m = _scalar(float("-inf"), BLOCK_K, ACC)
    d = _scalar(0.0, BLOCK_K, ACC)
    ysum = _scalar(0.0, BLOCK_K, ACC)
    for start in range(0, K, BLOCK_K):
        c = start + cols
        msk = c < K
        z = tl.load(zrow + c, mask=msk, other=float("-inf")).to(ACC)
        m_new = tl.maximum(m, tl.max(z, axis=0))
        d = d * tl.exp(m - m_new) + tl.sum(tl.exp(z - m_new), axis=0)
        m = m_new
        if MODE != 1 and not TSUM_ONE:  # TSUM_ONE: rows of y known to sum to 1, no read of y in this pass
            ysum += tl.sum(tl.load(yrow + c, mask=msk, other=0.0).to(ACC), axis=0)
    if TSUM_ONE:
        ysum = _scalar(1.0, BLOCK_K, ACC)
    logd = tl.log(d)  # -log_softmax(z) = logd - (z - m), shifted first (no cancellation for large |z|)

    if MODE == 1:
        # Pass 2 (product only): online softmax of u = beta * log_softmax(z) + xlogy(alpha, y), with the
        # loss numerator sum(exp(u - mu) * -log_softmax(z)) rescaled alongside; plus the t = y fallback sums.
        mu = _scalar(float("-inf"), BLOCK_K, ACC)
        su = _scalar(0.0, BLOCK_K, ACC)
        acc = _scalar(0.0, BLOCK_K, ACC)
        loss_y = _scalar(0.0, BLOCK_K, ACC)
        n_nan = _scalar(0.0, BLOCK_K, ACC)
        for start in range(0, K, BLOCK_K):
            c = start + cols
            msk = c < K
            z = tl.load(zrow + c, mask=msk, other=0.0).to(ACC)
            y = tl.load(yrow + c, mask=msk, other=0.0).to(ACC)
            nlp = logd - (z - m)
            u = tl.where(msk, tl.where(beta == 0, 0.0, -beta * nlp) + _xlogy(alpha, y), float("-inf"))
            n_nan += tl.sum(tl.where(tl.abs(u) <= float("inf"), 0.0, 1.0), axis=0)  # counts NaNs
            mu_new = tl.maximum(mu, tl.max(u, axis=0))
            mu_s = tl.where(mu_new == float("-inf"), 0.0, mu_new)  # all -inf so far: su = acc = 0 anyway
            scale = tl.exp(mu - mu_s)
            eu = tl.exp(u - mu_s)
            su = su * scale + tl.sum(eu, axis=0)
            acc = acc * scale + tl.sum(eu * nlp, axis=0)
            mu = mu_new
            loss_y += tl.sum(y * nlp, axis=0)
            ysum += tl.sum(y, axis=0)
        # t = exp(u - mu) / su is finite everywhere unless u has a NaN / +inf or every u is -inf.
        bad = (n_nan > 0) | (mu == float("inf")) | (mu == float("-inf"))
        inv_su = 1.0 / tl.where(bad, 1.0, su)
        loss = tl.where(bad, loss_y, acc * inv_su)
        tsum = tl.where(bad, ysum, 1.0)
        tl.store(LOSS + row, loss * _hilo(ls_hi, ls_lo, ACC))
        if WRITE_GRAD:
            for start in range(0, K, BLOCK_K):
                c = start + cols
                msk = c < K
                z = tl.load(zrow + c, mask=msk, other=0.0).to(ACC)
                y = tl.load(yrow + c, mask=msk, other=0.0).to(ACC)
                p = tl.exp(z - m) / d
                u = tl.where(beta == 0, 0.0, -beta * (logd - (z - m))) + _xlogy(alpha, y)
                t = tl.where(bad, y, tl.exp(u - mu) * inv_su)
                g = (tsum * p - t) * grad_scale
                tl.store(grow + c, g.to(G.dtype.element_ty), mask=msk)
    else:
        if MODE == 2:
            if HARD == 1:
                h = tl.load(HID + row).to(tl.int32)
            elif HARD == 2:
                thr = tl.load(THR).to(ACC)
                p0 = tl.exp(tl.load(zrow).to(ACC) - m) / d
                h = tl.where(p0 >= thr, 0, 1)
            else:
                # argmax of the probabilities (as computed in the small-k path), first index on ties: it
                # must be known before the one-hot gradient is written, hence this extra read of z.
                best = _scalar(-1.0, BLOCK_K, ACC)
                h = tl.max(tl.zeros([BLOCK_K], tl.int32), axis=0)
                for start in range(0, K, BLOCK_K):
                    c = start + cols
                    msk = c < K
                    z = tl.load(zrow + c, mask=msk, other=float("-inf")).to(ACC)
                    p = tl.where(msk, tl.exp(z - m) / d, -1.0)
                    tile_best = tl.max(p, axis=0)
                    tile_arg = tl.argmax(p, axis=0).to(tl.int32) + start
                    h = tl.where(tile_best > best, tile_arg, h)
                    best = tl.maximum(best, tile_best)
            tsum = ysum * (1.0 - coef) + coef
        else:
            tsum = ysum
        # Last pass: loss (m and d are final now: sum(t * -log_softmax(z)), no cancellation) and gradient.
        loss = _scalar(0.0, BLOCK_K, ACC)
        for start in range(0, K, BLOCK_K):
            c = start + cols
            msk = c < K
            z = tl.load(zrow + c, mask=msk, other=0.0).to(ACC)
            y = tl.load(yrow + c, mask=msk, other=0.0).to(ACC)
            if MODE == 0:
                t = y
            else:
                t = y * (1.0 - coef) + tl.where(c == h, 1.0, 0.0) * coef
            t = tl.where(msk, t, 0.0)
            loss += tl.sum(t * (logd - (z - m)), axis=0)
            if WRITE_GRAD:
                p = tl.exp(z - m) / d
                g = (tsum * p - t) * grad_scale
                tl.store(grow + c, g.to(G.dtype.element_ty), mask=msk)
        tl.store(LOSS + row, loss * _hilo(ls_hi, ls_lo, ACC))


@triton.jit
def _scale_kernel(X, GO, APPLIED, NUMEL, BLOCK: tl.constexpr):
    """``X *= *GO`` in place; every program returns at once when ``*GO == 1`` (the usual ``backward()``).
    Program 0 also records the factor in ``APPLIED`` (float64), for a later backward through the same forward
    (no separate copy launch)."""
    g = tl.load(GO)
    if tl.program_id(0) == 0:
        tl.store(APPLIED, g.to(tl.float64))
    if g != 1.0:
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        msk = offs < NUMEL
        x = tl.load(X + offs, mask=msk, other=0.0).to(GO.dtype.element_ty)
        tl.store(X + offs, (x * g).to(X.dtype.element_ty), mask=msk)


def device_of(t: torch.Tensor):
    """Launch on ``t``'s GPU (Triton launches on the current device), a no-op for CPU tensors."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _split_f64(v: float) -> tuple[float, float]:
    """``v`` as float32 ``hi + lo`` (about 48 significant bits: exact enough for float64 kernels)."""
    hi = struct.unpack("f", struct.pack("f", v))[0]
    lo = struct.unpack("f", struct.pack("f", v - hi))[0]
    return hi, lo


def _check(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must be 2-D (N, k), got shape {tuple(logits.shape)}")
    if targets.shape != logits.shape:
        raise ValueError(f"targets shape {tuple(targets.shape)} != logits shape {tuple(logits.shape)}")
    if logits.shape[1] < 2:
        raise ValueError("need at least 2 classes")
    if logits.dtype not in LOGITS_DTYPES or targets.dtype not in TARGET_DTYPES:
        names = ", ".join(str(d).removeprefix("torch.") for d in LOGITS_DTYPES)
        raise TypeError(f"logits and targets must be one of {names}, got {logits.dtype} / {targets.dtype}")
    if targets.device != logits.device:
        raise ValueError(f"targets on {targets.device}, logits on {logits.device}")


def _small_config(n: int, k: int) -> tuple[int, int, int]:
    """(BLOCK_N, BLOCK_K, num_warps) for the single-tile kernel.

    Up to ``TILE_ELEMS`` elements per program (e.g. 1024 rows of k = 2), but at least 256, and fewer rows
    per program while that leaves fewer than ~1024 programs (small N: keep the SMs busy); about 8 elements
    per thread, so each thread issues 16-byte loads.
    """
    block_k = triton.next_power_of_2(k)
    block_n = max(1, TILE_ELEMS // block_k)
    min_n = max(1, 256 // block_k)
    while block_n > min_n and triton.cdiv(n, block_n) < 1024:
        block_n //= 2
    num_warps = max(1, min(16, block_n * block_k // 256))
    return block_n, block_k, num_warps


def tiled_config(acc_dtype: torch.dtype, block_k: int | None = None) -> tuple[int, int]:
    """(BLOCK_K, num_warps) for the tiled kernel: float32, 8,192 columns on 16 warps (16 elements per thread
    and tensor, 97-116 registers on sm_90, under the 128 a 512-thread program may have); float64, 2,048
    columns on 8 warps (8 per thread, up to 255 registers): at 16 warps the product mode needed more than 128
    and spilled (the compile check fails on spills). ``block_k`` (tests) forces the tile width."""
    f64 = acc_dtype == torch.float64
    if block_k is not None:
        bk = triton.next_power_of_2(block_k)
    else:
        bk = TILED_BLOCK_K // 4 if f64 and TILED_BLOCK_K > 4 else TILED_BLOCK_K  # (tests shrink the tile)
    return bk, max(1, min(8 if f64 else 16, bk // (32 * (8 if f64 else 16))))


def soft_ce_forward(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mode: int,
    *,
    hard: int = HARD_NONE,
    hard_ids: torch.Tensor | None = None,
    threshold: torch.Tensor | None = None,
    coef: float = 0.0,
    alpha: float = 1.0,
    beta: float = 1.0,
    grad_scale: float | None = None,
    loss_scale: float | None = None,
    need_grad: bool = True,
    grad_out: torch.Tensor | None = None,
    block_k: int | None = None,
    targets_normalized: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Launch the fused kernel: returns (loss partials in the compute dtype, grad (N, k) in the logits dtype or
    None). ``partials.sum()`` is ``loss_scale * sum(row losses)``: one value per program (a block of rows in
    the single-tile kernel, one row in the tiled one), summed by the caller in one deterministic reduction.

    ``grad_scale`` multiplies the gradient (default ``1 / N``: the gradient of the batch mean), ``loss_scale``
    the loss (default ``1 / N``: ``partials.sum()`` is the batch mean).
    ``grad_out`` may be ``logits`` itself (in-place, used by the linear head on its chunk buffer).
    ``block_k`` forces the tiled kernel with that tile width (tests use it to cover the large-k path).
    ``targets_normalized`` promises rows of ``targets`` summing to 1: the tiled kernel (xent / logconf) then
    skips its first-pass read of the targets (the single-tile kernel reads them once anyway).
    """
    _check(logits, targets)
    if hard not in HARD_BY_MODE.get(mode, ()):
        raise ValueError(f"mode {mode} takes hard in {HARD_BY_MODE.get(mode)}, got {hard}")
    logits = logits.contiguous()
    targets = targets.contiguous()
    n, k = logits.shape
    if grad_scale is None:
        grad_scale = 1.0 / max(n, 1)
    if loss_scale is None:
        loss_scale = 1.0 / max(n, 1)
    acc_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    single = hard == HARD_THRESHOLD or (block_k is None and k <= MAX_SINGLE_TILE_K)
    if single:
        block_n, bk, num_warps = _small_config(n, k)
        programs = triton.cdiv(n, block_n)
    else:
        programs = n
    loss = torch.empty(programs, dtype=acc_dtype, device=logits.device)
    grad = None
    if need_grad:
        grad = grad_out if grad_out is not None else torch.empty_like(logits)
    if n == 0:
        return loss, grad
    if mode == MODE_LOGCONF:
        if hard == HARD_IDS:
            if hard_ids is None or hard_ids.shape != (n,):
                raise ValueError("HARD_IDS needs hard_ids of shape (N,)")
            # int64 always: one kernel variant whatever integer dtype the caller's ids have.
            hard_ids = hard_ids.to(device=logits.device, dtype=torch.int64).contiguous()
        elif hard == HARD_THRESHOLD:
            if k != 2 or threshold is None:
                raise ValueError("HARD_THRESHOLD needs k == 2 and a threshold tensor")
            threshold = threshold.to(device=logits.device, dtype=acc_dtype).reshape(())
    # Unused pointer arguments still need a tensor; the loss buffer serves.
    hid = hard_ids if hard == HARD_IDS else loss
    thr = threshold if hard == HARD_THRESHOLD else loss
    g = grad if grad is not None else loss
    scalars = [half for v in (coef, alpha, beta, grad_scale, loss_scale) for half in _split_f64(float(v))]
    common = {
        "MODE": mode, "HARD": hard, "ACC": tl.float64 if acc_dtype == torch.float64 else tl.float32,
        "WRITE_GRAD": need_grad,
    }
    # HARD_THRESHOLD (k == 2) always takes the single-tile kernel: its p0 must be bit-identical to the one
    # triton_threshold._select_kernel selected the threshold from (same code path, same rounding).
    with device_of(logits):
        if single:
            _rows_kernel[(programs,)](
                logits, targets, g, loss, hid, thr,
                n, n * k, *scalars,
                K=k, BLOCK_N=block_n, BLOCK_K=bk, num_warps=num_warps, **common,
            )
        else:
            bk, warps = tiled_config(acc_dtype, block_k)
            _tiled_kernel[(n,)](
                logits, targets, g, loss, hid, thr,
                *scalars,
                K=k, BLOCK_K=bk, num_warps=warps,
                TSUM_ONE=bool(targets_normalized) and mode != MODE_PRODUCT, **common,
            )
    return loss, grad


def _scale_of(grad_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``grad_output`` as the 0-dim factor for gradient ``x``: on its device, float64 for float64 gradients
    and float32 (the accumulation dtype) otherwise."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return grad_output.detach().reshape(()).to(device=x.device, dtype=dtype)


def scale_by_(x: torch.Tensor, grad_output: torch.Tensor, applied: torch.Tensor | None = None) -> torch.Tensor:
    """In-place ``x *= grad_output`` (0-dim tensor), skipped on the device when ``grad_output == 1``; the
    factor is also stored in ``applied`` (a float64 scalar) when given."""
    go = _scale_of(grad_output, x)
    if applied is None:
        applied = torch.empty((), dtype=torch.float64, device=x.device)
    if x.numel() == 0:
        applied.copy_(go)
        return x
    assert x.is_contiguous()
    block = 4096
    with device_of(x):
        _scale_kernel[(triton.cdiv(x.numel(), block),)](x, go, applied, x.numel(), BLOCK=block, num_warps=8)
    return x


def scale_saved_grads(ctx, grads: list, grad_output: torch.Tensor) -> list:
    """``grad_output * g`` for each gradient ``g`` computed in forward (``None`` entries pass through).

    The first backward through a forward scales in place (no extra (N, k) buffer and no host sync, as in
    Liger-Kernel) and remembers the factor on the device. A later backward through the same forward
    (``retain_graph=True``, ``gradcheck``) divides that factor out again, out of place: exact when the first
    factor was 1 (a plain ``loss.backward()``) or a power of two (loss scaling). A first factor of 0 erased the
    stored gradient, which is a one-line error.
    """
    if ctx.applied is None:
        dev = next((g.device for g in grads if g is not None), grad_output.device)
        applied = torch.empty((), dtype=torch.float64, device=dev)
        out = [None if g is None else scale_by_(g, grad_output, applied) for g in grads]
        if all(g is None for g in grads):
            applied.copy_(grad_output.detach().reshape(()))
        ctx.applied = applied
        return out
    first = float(ctx.applied)  # host sync, on this rare path only
    if first == 0.0:
        raise RuntimeError(
            "fused w2s loss: a second backward through one forward after a backward with grad_output 0 (the "
            "stored gradient was zeroed in place); recompute the loss, or use backend='torch'"
        )
    out = []
    for g in grads:
        if g is None:
            out.append(None)
            continue
        factor = _scale_of(grad_output, g) / first
        out.append((g.to(factor.dtype) * factor).to(g.dtype))
    return out


class FusedSoftCE(torch.autograd.Function):
    """Mean soft-target CE; the target transform is chosen by ``mode`` (see the module docstring).

    Targets (and the hardened classes) are constants: no gradient flows to them.
    """

    @staticmethod
    def forward(ctx, logits, targets, mode, hard, hard_ids, threshold, coef, alpha, beta, need_grad, block_k):
        partials, grad = soft_ce_forward(
            logits, targets, mode, hard=hard, hard_ids=hard_ids, threshold=threshold, coef=coef,
            alpha=alpha, beta=beta, need_grad=need_grad, block_k=block_k,
        )
        if grad is not None:
            ctx.save_for_backward(grad)
        ctx.has_grad = grad is not None
        ctx.applied = None
        return partials.sum()

    @staticmethod
    def backward(ctx, grad_output):
        if not ctx.has_grad:
            return (None,) * 11
        (grad,) = ctx.saved_tensors
        return tuple(scale_saved_grads(ctx, [grad], grad_output)) + (None,) * 10


def fused_soft_ce(
    logits, targets, mode, *, hard=HARD_NONE, hard_ids=None, threshold=None, coef=0.0, alpha=1.0, beta=1.0,
    block_k=None,
):
    """Autograd entry point (the gradient is only materialised when ``logits`` needs one)."""
    need_grad = bool(torch.is_grad_enabled() and logits.requires_grad)
    return FusedSoftCE.apply(
        logits, targets, mode, hard, hard_ids, threshold, coef, alpha, beta, need_grad, block_k
    )
