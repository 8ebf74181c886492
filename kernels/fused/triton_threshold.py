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

#: Bits per radix digit (one pass each) and bins per histogram.
_DIGIT_BITS = 16
_NBINS = 1 << _DIGIT_BITS
DIGIT_BITS = tl.constexpr(_DIGIT_BITS)
NBINS = tl.constexpr(_NBINS)
#: Warps of every select launch, and histogram bins each thread of the last program holds per scan step
#: (the scan width is ``SCAN_PER_THREAD * 32 * SELECT_WARPS``). The last program's scan lives in the same
#: kernel as the bulk histogram pass, so its width sets the register budget of every program: 8,192 bins
#: at 4 warps took ~250 registers on sm_90 and spilled at 1 warp; 16 bins per thread spilled with triton
#: 3.9's ptxas, 8 with 3.6's; 4 take <= 48 registers and spill nothing (the compile check fails on spills).
SELECT_WARPS = 8
SCAN_PER_THREAD = 4
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
def _find_bin(HIST, rank, SCAN: tl.constexpr):
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
    # Not found (an empty selection: every rank is out of range): bin 0, so no read leaves the histogram; the
    # caller has already made the result NaN.
    return tl.maximum(found, 0), rest.to(tl.int64)


@triton.jit
def _hist_total(HIST, SCAN: tl.constexpr):
    """The number of keys counted in ``HIST`` (``NBINS`` int32 counts)."""
    offs = tl.arange(0, SCAN)
    total = tl.sum(tl.zeros([SCAN], tl.int32), axis=0)
    for start in range(0, NBINS, SCAN):
        total += tl.sum(tl.load(HIST + start + offs, volatile=True), axis=0)
    return total


@triton.jit
def _find_bins(HIST_LO, HIST_HI, r_lo, r_hi, same, SCAN: tl.constexpr):
    """``_find_bin`` for both ranks; when they share a histogram and land in one bin, a single scan."""
    b_lo, rest_lo = _find_bin(HIST_LO, r_lo, SCAN)
    cnt = tl.load(HIST_LO + b_lo, volatile=True).to(tl.int64)
    rest_hi = r_hi - (r_lo - rest_lo)
    b_hi = b_lo
    if ~same | (rest_hi >= cnt):
        b_hi, rest_hi = _find_bin(tl.where(same, HIST_LO, HIST_HI), r_hi, SCAN)
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
    finite = tl.abs(s) < float("inf")
    # (a non-finite sum takes the naive result below; 0 here keeps NaN payloads out of the neighbour search)
    r = tl.where(finite, s, 0.0).to(tl.float32)
    rb = r.to(tl.float64)
    nb = _next_f32(r, s > rb)
    nbb = nb.to(tl.float64)
    mid = (s != rb) & ((s - rb) == (nbb - s))
    fix = mid & (e != 0) & ((e > 0) == (nbb > rb))
    exact = tl.where(fix, nb, r)
    naive = x * y + z
    return tl.where(finite, exact, naive)


@triton.jit
def _lerp_f32(a, b, w):
    """``torch.lerp(a, b, w)`` for float32 (fused multiply-add, as in ATen's CPU and CUDA kernels)."""
    d = b - a
    return tl.where(tl.abs(w) < 0.5, _fma_f32(w, d, a), _fma_f32(-d, 1.0 - w, b))


@triton.jit
def _select_kernel(
    SRC, MASK, Q, HIST, CNT, STATE, OUT, N, NK,
    PASS: tl.constexpr, NPASS: tl.constexpr, KEY_BITS: tl.constexpr, SOURCE: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, ACC: tl.constexpr, HAS_MASK: tl.constexpr,
    SCAN: tl.constexpr,
):
    """Pass ``PASS`` of the radix select of ``torch.quantile(values, clamp(Q, 0, 1))`` (see the module doc).

    ``HIST``: ``NPASS * 2 * NBINS`` zeroed int32 (per pass: ``below`` and ``above`` histograms), ``CNT``:
    ``NPASS`` zeroed int32 counters, ``STATE``: ``(NPASS + 1) * 4`` int64 (per pass: prefix of ``below``,
    prefix of ``above``, their in-bucket ranks), ``OUT``: the threshold (float32) or ``(v_below, v_above,
    weight)`` (float64, lerped by the caller). ``HAS_MASK``: only the values where the bool vector ``MASK`` is
    true take part (``torch.quantile(values[mask], q)`` without the compaction); their count is the total of
    pass 0's histogram, read by the last program, so it never reaches the host. An empty selection gives NaN.
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
        if HAS_MASK:
            valid = valid & (tl.load(MASK + offs, mask=valid, other=0) != 0)
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
            if HAS_MASK:
                last = (_hist_total(hist_lo, SCAN).to(tl.int64) - 1).to(tl.float64)
            else:
                last = (tl.zeros([1], tl.int64).sum(axis=0) + (N - 1)).to(tl.float64)
            rank = q.to(tl.float64) * last
            any_nan = tl.load(hist_lo + (NBINS - 1), volatile=True) > 0  # only NaN keys reach the top bin
            rank = tl.where(any_nan, last, rank)
            # An empty selection or a NaN level: no rank; a NaN weight makes the lerp NaN.
            bad = (last < 0) | (rank != rank)  # noqa: PLR0124 - the NaN test
            rank = tl.where(bad, 0.0, rank)
            r_lo = rank.to(tl.int64)
            r_hi = tl.math.ceil(rank).to(tl.int64)
            w = tl.where(bad, float("nan"), rank - r_lo.to(tl.float64))
            tl.store(STATE + NPASS * 4 + 2, w.to(tl.int64, bitcast=True))  # kept for the last pass
            pref_lo = tl.zeros([1], tl.uint64).sum(axis=0)
            pref_hi = pref_lo
        else:
            r_lo = tl.load(STATE + PASS * 4 + 2)
            r_hi = tl.load(STATE + PASS * 4 + 3)
        b_lo, r_lo, b_hi, r_hi = _find_bins(hist_lo, hist_hi, r_lo, r_hi, pref_lo == pref_hi, SCAN)
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


def _launch_select(src: torch.Tensor, level: torch.Tensor, n: int, source: int, acc_dtype,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """The select passes; returns the 0-dim threshold in ``acc_dtype`` (device tensor, no host sync)."""
    from .triton_softce import device_of

    dev = src.device
    key_bits = 64 if acc_dtype == torch.float64 else 32
    npass = key_bits // _DIGIT_BITS
    work = torch.zeros(npass * (2 * _NBINS + 1), dtype=torch.int32, device=dev)
    hist, cnt = work[: npass * 2 * _NBINS], work[npass * 2 * _NBINS:]
    state = torch.empty((npass + 1) * 4, dtype=torch.int64, device=dev)
    out = torch.empty(1 if key_bits == 32 else 3, dtype=acc_dtype, device=dev)
    block_n, block_k, num_warps = select_config(n, source)
    acc = tl.float64 if acc_dtype == torch.float64 else tl.float32
    with device_of(src):
        for p in range(npass):
            _select_kernel[(triton.cdiv(n, block_n),)](
                src, src if mask is None else mask, level, hist, cnt, state, out, n, n * 2,
                PASS=p, NPASS=npass, KEY_BITS=key_bits, SOURCE=source, BLOCK_N=block_n, BLOCK_K=block_k,
                ACC=acc, HAS_MASK=mask is not None, SCAN=scan_width(num_warps), num_warps=num_warps,
            )
    if key_bits == 32:
        return out.reshape(())
    return torch.lerp(out[0:1], out[1:2], out[2:3]).reshape(())


#: Scan width under the interpreter: registers do not matter there, and each chunk is a handful of
#: interpreted NumPy operations, so 8 wide chunks instead of 64 narrow ones (``tests/kernels`` checks the
#: compiled width in the interpreter too, on fewer cases).
INTERPRETED_SCAN = 8192


def scan_width(num_warps: int) -> int:
    """Histogram bins per step of the last program's scan (a power of two dividing ``NBINS``)."""
    import os

    if os.environ.get("TRITON_INTERPRET") == "1" and INTERPRETED_SCAN:
        return INTERPRETED_SCAN
    return SCAN_PER_THREAD * 32 * num_warps


def select_config(n: int, source: int) -> tuple[int, int, int]:
    """``(BLOCK_N, BLOCK_K, num_warps)`` of the select passes over ``n`` values: the loss kernel's row block
    for ``SOURCE_LOGITS_K2`` (the same rows per program; ``p0`` is a per-row expression, so the warp count
    does not change its bits), ``VALUES_BLOCK`` elements otherwise; ``SELECT_WARPS`` warps."""
    if source == SOURCE_LOGITS_K2:
        from .triton_softce import _small_config

        block_n, block_k, _warps = _small_config(n, 2)
        return block_n, block_k, SELECT_WARPS
    return VALUES_BLOCK, 1, SELECT_WARPS


def quantile_select(values: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.quantile(values, q)`` (1-D float32 / float64 ``values``, 0-dim ``q`` of the same dtype, linear
    interpolation), bit for bit, by radix select on the device: no sort, no host sync, any length.
    ``q`` is clamped to [0, 1] on the device (torch.quantile raises on the CPU and does not check on a GPU).

    ``mask`` (bool, same length): ``torch.quantile(values[mask], q)`` without the compaction, whose size
    would be a host sync; the count of selected values stays on the device. No value selected (or a NaN
    ``q``): NaN, where ``torch.quantile`` raises."""
    if values.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"values must be float32 or float64, got {values.dtype}")
    values = values.reshape(-1).contiguous()
    n = values.numel()
    if n == 0:
        return torch.full((), float("nan"), dtype=values.dtype, device=values.device)
    if mask is not None:
        if mask.dtype != torch.bool or mask.numel() != n:
            raise ValueError(f"mask must be a bool tensor of {n} elements, got {mask.dtype} {tuple(mask.shape)}")
        mask = mask.reshape(-1).to(values.device).contiguous()
    q = q.to(device=values.device, dtype=values.dtype).reshape(1)
    return _launch_select(values, q, n, SOURCE_VALUES, values.dtype, mask)


def balanced_threshold(logits: torch.Tensor, targets: torch.Tensor, pool: torch.Tensor | None = None):
    """The reference's binary threshold ``quantile(softmax(z)[:, 0], mean(y, 0)[1])`` (0-dim, compute dtype)
    for (N, 2) logits; with ``pool`` (M, 2) logits (the rolling buffer), the quantile is taken over the
    pool's ``p0`` at the batch's level, as ``reference.hardened_targets(..., pool=pool)`` does.

    The level is the reference's own expression ``y.to(dtype).mean(dim=0)`` (column 1 read by the kernel;
    ``m[1:].sum()`` of one element is that element), so it is bit-identical to the one the reference passes
    to ``torch.quantile``; the clamp to [0, 1] happens in the kernel.
    """
    from .triton_softce import LOGITS_DTYPES

    src = logits if pool is None else pool
    if logits.dtype not in LOGITS_DTYPES or src.dtype not in LOGITS_DTYPES:
        raise TypeError(f"logits must be one of {LOGITS_DTYPES}, got {logits.dtype} / {src.dtype}")
    n, k = src.shape
    if k != 2 or logits.shape[1] != 2:
        raise ValueError("balanced_threshold takes k == 2 logits")
    acc_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    if n == 0:
        return torch.full((), float("nan"), dtype=acc_dtype, device=logits.device)
    level = targets.detach().to(acc_dtype).mean(dim=0)[1:]
    return _launch_select(src.detach().to(logits.device).contiguous(), level, n, SOURCE_LOGITS_K2, acc_dtype)


def balanced_ids(logits: torch.Tensor, targets: torch.Tensor, pool: torch.Tensor | None = None) -> torch.Tensor:
    """The reference's class-balanced hardened class ids for any k (``reference.hardened_targets(z, y,
    balance=True, pool=pool).argmax(-1)``), computed on the device without a host sync.

    The one-vs-rest peeling runs as in the reference, operation for operation: the scores
    ``softmax(z[:, c:])[:, 0]`` and levels ``m[c+1:].sum() / m[c:].sum()`` are the same torch expressions, and
    each ``torch.quantile(s[free], q)`` is ``quantile_select(s, q, mask=free)`` (bit-identical, and the
    number of free rows never leaves the device). The reference's early exit (no pool rows or no weak mass
    left for classes c..k-1: argmax among them) becomes a device-side ``where``: the rows still free take
    that argmax and are no longer free, so the later steps change nothing. Returns int64 ids (N,).

    Cost: per class, a softmax over the remaining classes, a few elementwise ops and the select's 3
    launches (zeros and 2 passes): O(k) launches, as the reference's O(k) sorts, without its k - 1 syncs.
    """
    from .reference import upcast

    z = upcast(logits).detach()
    n, k = z.shape
    m = targets.detach().to(z.dtype).mean(dim=0)
    ref = None if pool is None else upcast(pool).detach().to(z.device)
    ids = torch.full((n,), k - 1, dtype=torch.int64, device=z.device)
    free = torch.ones(n, dtype=torch.bool, device=z.device)
    free_ref = None if ref is None else torch.ones(ref.shape[0], dtype=torch.bool, device=z.device)
    for c in range(k - 1):
        pc = torch.softmax(z[:, c:], dim=-1)  # the reference's s (column 0) and its early-exit argmax
        s = pc[:, 0]
        s_ref = s if ref is None else torch.softmax(ref[:, c:], dim=-1)[:, 0]
        if c == 0:
            q = m[1:].sum()
            sel = None
        else:
            mass = m[c:].sum()
            sel = free if ref is None else free_ref
            stop = ~sel.any() | ~(mass > 0)
            rest = pc.argmax(dim=-1) + c
            ids = torch.where(free & stop, rest, ids)
            free = free & ~stop
            q = m[c + 1:].sum() / mass
        threshold = quantile_select(s_ref, q.clamp(0.0, 1.0), mask=sel)
        take = free & (s >= threshold)
        ids = torch.where(take, c, ids)
        free = free & ~take
        if ref is not None:
            free_ref = free_ref & ~(s_ref >= threshold)
    return ids
