"""logconf's adaptive threshold ``torch.quantile(softmax(z)[:, 0], mean(y, 0)[1])`` on the device: an exact,
sort-free radix select, no host synchronisation.

``torch.quantile(v, q)`` (linear interpolation; torch 2.14's own op sequence, seen through a dispatch trace)
does, for float32 ``v``: ``rank = q.to(float64) * (n - 1)`` (``n - 1`` if ``v`` has a NaN), ``below =
int64(rank)``, ``above = int64(ceil(rank))``, ``weight = float32(rank - below)``, a full sort of ``v`` (with
int64 indices), two gathers and ``lerp(v[below], v[above], weight)`` in float32, which the CPU and CUDA
kernels evaluate with a fused multiply-add: ``fma(w, b - a, a)`` for ``|w| < 0.5``, else ``fma(-(b - a),
1 - w, b)``. For float64 ``v`` the same in float64.

Here the two order statistics are found without sorting (``_select_kernel``, one launch per 16-bit digit:
2 launches for float32, 4 for float64):

* each value is mapped to an order-preserving unsigned key (flip every bit of a negative float, set the
  sign bit of a non-negative one; -0.0 counts as +0.0 and every NaN as the largest key, as ``torch.sort``
  puts NaNs last);
* pass ``p`` histograms digit ``p`` (16 bits, most significant first) of the keys whose higher digits equal
  the prefix found so far, with atomics into a 65,536-bin histogram in device memory. ``below`` and
  ``above`` (equal, or adjacent ranks) follow their own prefix; while the prefixes agree one histogram
  serves both;
* the last program to finish a pass (an atomic counter: the "last block" pattern, no grid-wide sync)
  scans the histogram for the bin holding each rank and writes the new prefixes and in-bin ranks for the
  next pass. Pass 0's last program first computes the rank from the level it reads from device memory
  (``level`` is never on the host); the last pass's last program decodes the two keys and writes the
  threshold (float32: the lerp, with the fma evaluated exactly through float64 error-free transforms, so the
  interpreter and compiled code give the same bits; float64: ``torch.lerp`` on the three values the kernel
  writes, one more launch).

In the fused logconf path (``SOURCE == SOURCE_LOGITS_K2``) the values are ``p0 = softmax(z)[:, 0]`` computed
from the logits tile by the same helpers as the fused loss kernel, so the threshold is taken over exactly the
``p0`` values the loss kernel compares with it, and no ``p0`` vector is written. Launches for the k = 2
threshold: ``mean(y, 0)`` (torch, the reference's expression, so the level is bit-identical), one
``torch.zeros`` for the histograms and counters, and the two select passes. Bytes: the logits twice
(2 * 8 bytes per row at k = 2) and the histograms (512 KiB, zeroed once, mostly untouched).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_tiles import load_rows_tile, row_block, softmax_tile

#: Bits per radix digit (one pass each), bins per histogram, and the scan width of the last program.
_DIGIT_BITS = 16
_NBINS = 1 << _DIGIT_BITS
DIGIT_BITS = tl.constexpr(_DIGIT_BITS)
NBINS = tl.constexpr(_NBINS)
SCAN = tl.constexpr(8192)
#: Where the values come from: a 1-D vector, or ``softmax(z)[:, 0]`` of (N, 2) logits.
SOURCE_VALUES = 0
SOURCE_LOGITS_K2 = 1
#: Elements per program when selecting over a plain vector.
VALUES_BLOCK = 1024


@triton.jit
def _to_key(x, KEY_BITS: tl.constexpr):
    """Order-preserving unsigned key of ``x`` (-0.0 as +0.0, every NaN as the largest key)."""
    if KEY_BITS == 32:
        b = x.to(tl.uint32, bitcast=True)
    else:
        b = x.to(tl.uint64, bitcast=True)
    zero = b ^ b
    ones = zero - 1  # (not ~zero: the interpreter's ~ overflows on unsigned types)
    top = (zero + 1) << (KEY_BITS - 1)
    b = tl.where(x == 0, zero, b)
    key = tl.where((b & top) != zero, b ^ ones, b | top)
    return tl.where(x != x, ones, key)  # noqa: PLR0124 - x != x is the NaN test in Triton


@triton.jit
def _from_key(key, KEY_BITS: tl.constexpr):
    zero = key ^ key
    top = (zero + 1) << (KEY_BITS - 1)
    b = tl.where((key & top) != zero, key ^ top, key ^ (zero - 1))
    if KEY_BITS == 32:
        return b.to(tl.float32, bitcast=True)
    else:
        return b.to(tl.float64, bitcast=True)


@triton.jit
def _find_bin(HIST, rank):
    """``(bin, rank - count before bin)`` for the bin of ``HIST`` (``NBINS`` int32 counts) holding ``rank``
    (int32 counts: N < 2**31). Chunks before the one holding ``rank`` cost one sum each."""
    offs = tl.arange(0, SCAN)
    r32 = rank.to(tl.int32)
    before = tl.sum(tl.zeros([SCAN], tl.int32), axis=0)
    found = before - 1
    rest = before
    for start in range(0, NBINS, SCAN):
        h = tl.load(HIST + start + offs, volatile=True)
        tot = tl.sum(h, axis=0)
        if (found < 0) & (before + tot > r32):
            incl = tl.cumsum(h, 0) + before
            # incl is non-decreasing: the bins whose inclusive count is <= rank form a prefix of the chunk.
            first = tl.sum((incl <= r32).to(tl.int32), axis=0)
            found = start + first
            rest = r32 - (tl.sum(tl.where(offs < first, h, 0), axis=0) + before)
        before += tot
    return found, rest.to(tl.int64)


@triton.jit
def _find_bins(HIST_LO, HIST_HI, r_lo, r_hi, same):
    """``_find_bin`` for both ranks; when they share a histogram and land in one bin, a single scan."""
    b_lo, rest_lo = _find_bin(HIST_LO, r_lo)
    cnt = tl.load(HIST_LO + b_lo, volatile=True).to(tl.int64)
    rest_hi = r_hi - (r_lo - rest_lo)
    b_hi = b_lo
    if ~same | (rest_hi >= cnt):
        b_hi, rest_hi = _find_bin(tl.where(same, HIST_LO, HIST_HI), r_hi)
    return b_lo, rest_lo, b_hi, rest_hi


@triton.jit
def _next_f32(r, up):
    """The float32 neighbour of ``r`` above (``up``) or below it."""
    bits = r.to(tl.int32, bitcast=True)
    pos = bits >= 0
    step = tl.where(pos == up, 1, -1)
    nb = tl.where((bits == 0) & ~up, -2147483647, bits + step)  # below +0.0: -(smallest subnormal)
    return nb.to(tl.float32, bitcast=True)


@triton.jit
def _fma_f32(x, y, z):
    """``fma(x, y, z)`` for float32 scalars, correctly rounded: the product is exact in float64, the sum is
    an error-free TwoSum, and the one double-rounding case (the float64 sum lands on a float32 midpoint) is
    decided by the sign of the sum's error. No operation here depends on fp contraction."""
    p = x.to(tl.float64) * y.to(tl.float64)
    z64 = z.to(tl.float64)
    s = p + z64
    bb = s - p
    e = (p - (s - bb)) + (z64 - bb)
    r = s.to(tl.float32)
    rb = r.to(tl.float64)
    nb = _next_f32(r, s > rb)
    nbb = nb.to(tl.float64)
    mid = (s != rb) & ((s - rb) == (nbb - s))
    fix = mid & (e != 0) & ((e > 0) == (nbb > rb))
    exact = tl.where(fix, nb, r)
    naive = x * y + z
    return tl.where(tl.abs(s) < float("inf"), exact, naive)


@triton.jit
def _lerp_f32(a, b, w):
    """``torch.lerp(a, b, w)`` for float32 (fused multiply-add, as in ATen's CPU and CUDA kernels)."""
    d = b - a
    return tl.where(tl.abs(w) < 0.5, _fma_f32(w, d, a), _fma_f32(-d, 1.0 - w, b))


@triton.jit
def _select_kernel(
    SRC, Q, HIST, CNT, STATE, OUT, N, NK,
    PASS: tl.constexpr, NPASS: tl.constexpr, KEY_BITS: tl.constexpr, SOURCE: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, ACC: tl.constexpr,
):
    """Pass ``PASS`` of the radix select of ``torch.quantile(values, clamp(Q, 0, 1))`` (see the module doc).

    ``HIST``: ``NPASS * 2 * NBINS`` zeroed int32 (per pass: ``below`` and ``above`` histograms), ``CNT``:
    ``NPASS`` zeroed int32 counters, ``STATE``: ``(NPASS + 1) * 4`` int64 (per pass: prefix of ``below``,
    prefix of ``above``, their in-bucket ranks), ``OUT``: the threshold (float32) or ``(v_below, v_above,
    weight)`` (float64, lerped by the caller).
    """
    SHIFT: tl.constexpr = KEY_BITS - DIGIT_BITS * (PASS + 1)
    pid = tl.program_id(0)
    if SOURCE == 1:
        _pid, rows, cols, rmask, mask = row_block(N, 2, BLOCK_N, BLOCK_K)
        z = load_rows_tile(SRC, pid, rows, cols, mask, N, NK, 2, BLOCK_N, BLOCK_K, ACC)
        # The same helpers and expression as triton_softce._rows_kernel: p0 is bit-identical there.
        _zm, _m, e, d = softmax_tile(z, mask, rmask)
        p = e / d[:, None]
        x = tl.sum(tl.where(cols[None, :] == 0, p, 0.0), axis=1)
        valid = rmask
    else:
        offs = pid.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
        valid = offs < N
        x = tl.load(SRC + offs, mask=valid, other=0.0).to(ACC)
    key = _to_key(x, KEY_BITS).to(tl.uint64)
    digit = ((key >> SHIFT) & (NBINS - 1)).to(tl.int32)
    hist_lo = HIST + PASS * 2 * NBINS
    hist_hi = hist_lo + NBINS
    if PASS == 0:
        tl.atomic_add(hist_lo + digit, 1, mask=valid, sem="relaxed")
    else:
        pref_lo = tl.load(STATE + PASS * 4).to(tl.uint64, bitcast=True)
        pref_hi = tl.load(STATE + PASS * 4 + 1).to(tl.uint64, bitcast=True)
        high = key >> (SHIFT + DIGIT_BITS)
        tl.atomic_add(hist_lo + digit, 1, mask=valid & (high == pref_lo), sem="relaxed")
        if pref_hi != pref_lo:
            tl.atomic_add(hist_hi + digit, 1, mask=valid & (high == pref_hi), sem="relaxed")
    # Last program of this pass: every other program's histogram updates are visible after the counter.
    tl.debug_barrier()
    done = tl.atomic_add(CNT + PASS, 1, sem="acq_rel", scope="gpu")
    if done == tl.num_programs(0) - 1:
        tl.debug_barrier()
        if PASS == 0:
            q = tl.load(Q).to(ACC)
            q = tl.where(q < 0.0, 0.0, tl.where(q > 1.0, 1.0, q))  # torch's clamp (NaN stays NaN)
            last = (tl.zeros([1], tl.int64).sum(axis=0) + (N - 1)).to(tl.float64)
            rank = q.to(tl.float64) * last
            any_nan = tl.load(hist_lo + (NBINS - 1), volatile=True) > 0  # only NaN keys reach the top bin
            rank = tl.where(any_nan, last, rank)
            r_lo = rank.to(tl.int64)
            r_hi = tl.math.ceil(rank).to(tl.int64)
            w = rank - r_lo.to(tl.float64)
            tl.store(STATE + NPASS * 4 + 2, w.to(tl.int64, bitcast=True))  # kept for the last pass
            pref_lo = tl.zeros([1], tl.uint64).sum(axis=0)
            pref_hi = pref_lo
        else:
            r_lo = tl.load(STATE + PASS * 4 + 2)
            r_hi = tl.load(STATE + PASS * 4 + 3)
        b_lo, r_lo, b_hi, r_hi = _find_bins(hist_lo, hist_hi, r_lo, r_hi, pref_lo == pref_hi)
        pref_lo = (pref_lo << DIGIT_BITS) | b_lo.to(tl.uint64)
        pref_hi = (pref_hi << DIGIT_BITS) | b_hi.to(tl.uint64)
        if PASS < NPASS - 1:
            tl.store(STATE + (PASS + 1) * 4, pref_lo.to(tl.int64, bitcast=True))
            tl.store(STATE + (PASS + 1) * 4 + 1, pref_hi.to(tl.int64, bitcast=True))
            tl.store(STATE + (PASS + 1) * 4 + 2, r_lo)
            tl.store(STATE + (PASS + 1) * 4 + 3, r_hi)
        else:
            w = tl.load(STATE + NPASS * 4 + 2).to(tl.float64, bitcast=True)
            if KEY_BITS == 32:
                v_lo = _from_key(pref_lo.to(tl.uint32), 32)
                v_hi = _from_key(pref_hi.to(tl.uint32), 32)
                tl.store(OUT, _lerp_f32(v_lo, v_hi, w.to(tl.float32)))
            else:
                tl.store(OUT, _from_key(pref_lo, 64))
                tl.store(OUT + 1, _from_key(pref_hi, 64))
                tl.store(OUT + 2, w)


def _launch_select(src: torch.Tensor, level: torch.Tensor, n: int, source: int, acc_dtype) -> torch.Tensor:
    """The select passes; returns the 0-dim threshold in ``acc_dtype`` (device tensor, no host sync)."""
    from .triton_softce import _small_config, device_of

    dev = src.device
    key_bits = 64 if acc_dtype == torch.float64 else 32
    npass = key_bits // _DIGIT_BITS
    work = torch.zeros(npass * (2 * _NBINS + 1), dtype=torch.int32, device=dev)
    hist, cnt = work[: npass * 2 * _NBINS], work[npass * 2 * _NBINS:]
    state = torch.empty((npass + 1) * 4, dtype=torch.int64, device=dev)
    out = torch.empty(1 if key_bits == 32 else 3, dtype=acc_dtype, device=dev)
    if source == SOURCE_LOGITS_K2:
        block_n, block_k, num_warps = _small_config(n, 2)
    else:
        block_n, block_k, num_warps = VALUES_BLOCK, 1, 4
    acc = tl.float64 if acc_dtype == torch.float64 else tl.float32
    with device_of(src):
        for p in range(npass):
            _select_kernel[(triton.cdiv(n, block_n),)](
                src, level, hist, cnt, state, out, n, n * 2,
                PASS=p, NPASS=npass, KEY_BITS=key_bits, SOURCE=source, BLOCK_N=block_n, BLOCK_K=block_k,
                ACC=acc, num_warps=num_warps,
            )
    if key_bits == 32:
        return out.reshape(())
    return torch.lerp(out[0:1], out[1:2], out[2:3]).reshape(())


def quantile_select(values: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``torch.quantile(values, q)`` (1-D float32 / float64 ``values``, 0-dim ``q`` of the same dtype, linear
    interpolation), bit for bit, by radix select on the device: no sort, no host sync, any length.
    ``q`` is clamped to [0, 1] on the device (torch.quantile raises on the CPU and does not check on a GPU)."""
    if values.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"values must be float32 or float64, got {values.dtype}")
    values = values.reshape(-1).contiguous()
    n = values.numel()
    if n == 0:
        return torch.full((), float("nan"), dtype=values.dtype, device=values.device)
    q = q.to(device=values.device, dtype=values.dtype).reshape(1)
    return _launch_select(values, q, n, SOURCE_VALUES, values.dtype)


def balanced_threshold(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The reference's binary threshold ``quantile(softmax(z)[:, 0], mean(y, 0)[1])`` (0-dim, compute dtype)
    for (N, 2) logits.

    The level is the reference's own expression ``y.to(dtype).mean(dim=0)`` (column 1 read by the kernel;
    ``m[1:].sum()`` of one element is that element), so it is bit-identical to the one the reference passes
    to ``torch.quantile``; the clamp to [0, 1] happens in the kernel.
    """
    from .triton_softce import LOGITS_DTYPES

    if logits.dtype not in LOGITS_DTYPES:
        raise TypeError(f"logits must be one of {LOGITS_DTYPES}, got {logits.dtype}")
    n, k = logits.shape
    if k != 2:
        raise ValueError("balanced_threshold takes k == 2 logits")
    acc_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    if n == 0:
        return torch.full((), float("nan"), dtype=acc_dtype, device=logits.device)
    level = targets.detach().to(acc_dtype).mean(dim=0)[1:]
    return _launch_select(logits.contiguous(), level, n, SOURCE_LOGITS_K2, acc_dtype)
