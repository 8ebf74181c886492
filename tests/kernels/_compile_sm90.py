"""Compile every kernel launch the dispatcher can make for sm_90 (Hopper), without a GPU: Triton AST ->
TTIR -> TTGIR -> LLVM -> PTX -> cubin (the wheel's ptxas). Run by ``test_kernel_compile.py`` in a
subprocess without ``TRITON_INTERPRET`` (the interpreter replaces ``triton.jit`` functions).

Nothing is listed by hand; the variants come from the code that launches the kernels:

1. ``JITFunction.run`` is replaced by a recorder, then the real entry points (``dispatch.soft_xent`` /
   ``product_loss`` / ``logconf_loss`` with ``backend="triton"``, both linear-head paths, and ``backward()``,
   which launches the gradient-scale kernel) run on small CPU tensors. Every launch (kernel, arguments,
   launch options) is recorded; no kernel runs.
2. The entry points are driven over the tables in ``kernels/triton_softce.py``: every logits dtype in
   ``LOGITS_DTYPES`` and target dtype in ``TARGET_DTYPES``, class counts that reach every code path
   (``k = 2``: flat single tile and the balanced threshold; ``k = 3``: masked single tile and the k > 2
   balanced ids; ``k = MAX_SINGLE_TILE_K``: the largest single tile; ``k = MAX_SINGLE_TILE_K + 1``: the tiled
   kernel), gradient on and off, ``N = 1`` (Triton turns an int argument equal to 1 into a constant).
3. Each distinct launch becomes exactly what Triton's JIT would compile on an sm_90 device (the JIT's own
   binder and ``_pack_args`` with the CUDA backend for sm_90: signature, constexprs, divisibility attributes,
   options), plus the same launch with 64-bit element counts (``N * k >= 2**31`` makes Triton pass ``NK`` /
   ``NUMEL`` as i64), and is compiled to a cubin, in parallel (``W2S_COMPILE_JOBS``, default: all CPUs).
4. Coverage is checked against the same tables: every ``*_kernel`` in the ``triton_*`` modules, every
   (MODE, HARD) pair of ``HARD_BY_MODE`` (``HARD_THRESHOLD`` in the single-tile kernel only), every logits
   dtype for each kernel, every target dtype for both loss kernels, ``WRITE_GRAD`` on and off for each mode.
   A gap exits 1, like a compile error.

The default run crosses every kernel x (MODE, HARD) x logits dtype (targets of the same dtype, gradient on;
the linear head with float32 targets) and adds, for float32 logits, gradient off, ``N = 1`` and the largest
single tile; bfloat16 logits with float32 targets in the tiled kernel; 64-bit counts for the first launch of
each kernel that takes a count (about 90 variants: ~30 s on 2 cores with an empty Triton cache, ~5 s with a
warm one). ``--full`` compiles the whole cross product: logits dtype x target dtype x gradient on/off x each
class count and ``N = 1``, 64-bit counts for every launch (about 1200 variants). Launches that differ only
in divisibility attributes (pointer alignment, counts divisible by 16) are compiled once, with the first
launch's attributes.

Output: one ``ok`` line per compiled variant, then ``SUMMARY <json>``. Exit 3: this Triton lacks an entry
point used here (``ASTSource``/``GPUTarget``, or the JIT's binder); the test then skips and names it.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import pkgutil
import sys
import traceback

import torch
import triton

try:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature

    if not hasattr(JITFunction, "_pack_args"):
        raise ImportError("JITFunction._pack_args")
except ImportError as exc:  # pragma: no cover - other triton layouts
    print(f"MISSING {exc}", file=sys.stderr)
    sys.exit(3)

import w2s_harness.kernels as kernels_pkg
from w2s_harness.kernels import dispatch, linear_head, triton_ops, triton_softce
from w2s_harness.kernels.triton_softce import HARD_BY_MODE, HARD_THRESHOLD, LOGITS_DTYPES, TARGET_DTYPES

TARGET = GPUTarget("cuda", 90, 32)
BACKEND = make_backend(TARGET)
I64_COUNT = 2**31 + 16  # an element count past int32 (divisible by 16, like a typical N * k)
COUNT_ARGS = ("NK", "NUMEL")  # the element counts that reach 2**31 first (N rows stays far below)
TY = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float64: "*fp64"}

#: (kernel, pointer argument) pairs that must be compiled for every dtype of the tables (Y: TARGET_DTYPES;
#: the others: LOGITS_DTYPES, which are also the gradient dtypes the scale kernel multiplies in place).
DTYPE_ARGS = [("_rows_kernel", "Z"), ("_rows_kernel", "Y"), ("_tiled_kernel", "Z"), ("_tiled_kernel", "Y"),
              ("_select_kernel", "SRC"), ("_scale_kernel", "X")]

LAUNCHES: list[tuple[JITFunction, tuple, dict]] = []


def _record(self, *args, grid, warmup, **kwargs):
    LAUNCHES.append((self, args, dict(kwargs)))


def _kernels() -> dict[str, JITFunction]:
    """Every ``*_kernel`` JIT function of the ``triton_*`` modules: what must be compiled at least once."""
    found = {}
    for info in pkgutil.iter_modules(kernels_pkg.__path__):
        if info.name.startswith("triton_"):
            mod = importlib.import_module(f"{kernels_pkg.__name__}.{info.name}")
            for name, obj in vars(mod).items():
                if isinstance(obj, JITFunction) and name.endswith("_kernel"):
                    found[f"{info.name}.{name}"] = obj
    return found


def _plan(full: bool):
    """``(n, k, logits dtype, target dtype, gradient)`` runs of every loss entry point."""
    ks = (2, 3, triton_softce.MAX_SINGLE_TILE_K, triton_softce.MAX_SINGLE_TILE_K + 1)
    f32 = torch.float32
    if full:
        for zd in LOGITS_DTYPES:
            for yd in TARGET_DTYPES:
                for grad in (True, False):
                    for k in ks:
                        yield 5, k, zd, yd, grad
                    yield 1, 2, zd, yd, grad
        return
    for zd in LOGITS_DTYPES:  # every kernel x (MODE, HARD) x dtype: flat and masked single tile, tiled
        for k in (ks[0], ks[1], ks[3]):
            yield 5, k, zd, zd, True
    for k in (ks[0], ks[1], ks[3]):
        yield 5, k, f32, f32, False  # no gradient requested
    yield 1, 2, f32, f32, True  # N == 1
    yield 5, ks[2], f32, f32, True  # the largest single tile
    yield 5, ks[3], torch.bfloat16, f32, True  # bf16 logits with float32 targets


def _drive(full: bool) -> None:
    """Run the dispatcher's entry points over the tables with the recorder in place of ``JITFunction.run``."""
    tri = {"backend": "triton"}
    losses = {
        "soft_xent": lambda z, y: dispatch.soft_xent(z, y, **tri),
        "product_loss": lambda z, y: dispatch.product_loss(z, y, alpha=0.5, beta=2.0, **tri),
        "logconf_balanced": lambda z, y: dispatch.logconf_loss(z, y, coef=0.3, balance=True, **tri),
        "logconf_argmax": lambda z, y: dispatch.logconf_loss(z, y, coef=0.3, balance=False, **tri),
    }
    for n, k, zd, yd, grad in _plan(full):
        for fn in losses.values():
            z = torch.randn(n, k, dtype=torch.float64).to(zd).requires_grad_(grad)
            y = torch.softmax(torch.randn(n, k, dtype=torch.float64), dim=-1).to(yd)
            with torch.set_grad_enabled(grad):
                v = fn(z, y)
            if grad:
                v.backward(torch.tensor(2.0, dtype=v.dtype))  # the gradient-scale kernel

    # The linear head: its chunks go through the same fused kernel (in place on the chunk's logits), and its
    # backward scales hidden / weight / bias gradients (weight in float32 with accumulate_fp32).
    for zd in LOGITS_DTYPES:
        for grad in (True, False) if full or zd == torch.float32 else (True,):
            for acc32 in (False, True):
                for k in (3, triton_softce.MAX_SINGLE_TILE_K + 1) if full or zd == torch.float32 else (3,):
                    x = torch.randn(5, 4, dtype=zd, requires_grad=grad)
                    w = torch.randn(k, 4, dtype=zd, requires_grad=grad)
                    b = torch.randn(k, dtype=zd, requires_grad=grad)
                    y = torch.softmax(torch.randn(5, k), dim=-1)
                    with torch.set_grad_enabled(grad):
                        if acc32:
                            v = linear_head.fused_linear_soft_xent(x, w, b, y, chunk_size=2,
                                                                   accumulate_fp32=True)
                        else:
                            v = linear_head.linear_head_soft_xent(x, w, b, y, chunk_size=2, **tri)
                    if grad:
                        v.backward(torch.tensor(0.5, dtype=v.dtype))
    # Targets known normalised: the tiled kernel's TSUM_ONE variant (no target row sums in its first pass).
    k = triton_softce.MAX_SINGLE_TILE_K + 1
    x = torch.randn(5, 4, requires_grad=True)
    w = torch.randn(k, 4, requires_grad=True)
    y = torch.softmax(torch.randn(5, k), dim=-1)
    linear_head.fused_linear_soft_xent(x, w, None, y, chunk_size=2, targets_normalized=True).backward()


def _variant(fn: JITFunction, args: tuple, kwargs: dict) -> dict:
    """What Triton's JIT compiles for this launch on an sm_90 device (its own binder and argument packing)."""
    binder = create_function_from_signature(fn.signature, fn.params, BACKEND)
    bound_args, specialization, options = binder(*args, **kwargs)
    packed = fn._pack_args(BACKEND, kwargs, bound_args, specialization, options)
    _options, signature, constexprs, attrs = packed
    names = [p.name for p in fn.params]
    opts = {k: v for k, v in kwargs.items() if k not in names}
    key = repr((fn.fn.__qualname__, sorted(signature.items()), sorted(constexprs.items()),
                sorted(opts.items())))
    values = dict(zip(names, args))
    values.update({k: v for k, v in kwargs.items() if k in names})
    return {"fn": fn, "signature": signature, "constexprs": constexprs, "attrs": attrs, "options": opts,
            "key": key, "values": values}


def _widen(fn, args, kwargs):
    """The same launch with 64-bit element counts, or None when the kernel takes none."""
    names = [p.name for p in fn.params]
    if not any(n in COUNT_ARGS for n in names[: len(args)]):
        return None
    return tuple(I64_COUNT if n in COUNT_ARGS else a for n, a in zip(names, args)), kwargs


VARIANTS: list[dict] = []


def _describe(v: dict) -> str:
    shown = ("K", "BLOCK_N", "BLOCK_K", "MODE", "HARD", "WRITE_GRAD")
    c = {k: v["values"][k] for k in shown if k in v["values"]}
    ptrs = {k: t for k, t in v["signature"].items() if t.startswith("*")}
    ints = {k: t for k, t in v["signature"].items() if t in ("i32", "i64") or (t == "constexpr" and k == "N")}
    acc = v["values"].get("ACC")
    return (f"{v['fn'].fn.__name__} {' '.join(f'{k}={x}' for k, x in c.items())} ACC={acc} ptrs={ptrs} "
            f"ints={ints} warps={v['options'].get('num_warps')}")


def _compile(i: int):
    v = VARIANTS[i]
    try:
        src = ASTSource(fn=v["fn"], signature=v["signature"], constexprs=v["constexprs"], attrs=v["attrs"])
        kernel = triton.compile(src, target=TARGET, options=v["options"])
        if not kernel.asm.get("cubin"):
            return i, "no cubin produced"
        return i, None
    except Exception:  # noqa: BLE001 - reported with the variant
        return i, traceback.format_exc(limit=3)[-2000:]


def main() -> int:
    full = "--full" in sys.argv[1:]
    dispatch.interpreting = lambda: True  # let backend="triton" accept CPU tensors; nothing runs (recorder)
    real_ids = triton_ops._balanced_ids
    # The k > 2 balanced ids are computed in torch (k - 1 quantiles); only their dtype reaches the kernel
    # (soft_ce_forward makes them int64), so skip the O(k**2) peeling for the vocabulary-sized k.
    triton_ops._balanced_ids = lambda z, y: (real_ids(z, y) if z.shape[1] <= 64
                                             else torch.zeros(z.shape[0], dtype=torch.int64))
    JITFunction.run = _record
    _drive(full)

    seen = set()
    widened = set()
    for fn, args, kwargs in LAUNCHES:
        launches = [(args, kwargs)]
        # 64-bit counts: every launch with --full, else the first launch of each kernel that takes a count
        if (wide := _widen(fn, args, kwargs)) and (full or fn not in widened):
            widened.add(fn)
            launches.append(wide)
        for launch in launches:
            v = _variant(fn, *launch)
            if v["key"] not in seen:
                seen.add(v["key"])
                VARIANTS.append(v)

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs = int(os.environ.get("W2S_COMPILE_JOBS", "0")) or cpus
    failures = []
    with multiprocessing.get_context("fork").Pool(max(1, min(jobs, len(VARIANTS)))) as pool:
        for i, err in pool.imap_unordered(_compile, range(len(VARIANTS))):
            if err:
                failures.append(f"{_describe(VARIANTS[i])}\n{err}")
            else:
                print(f"{_describe(VARIANTS[i])}: ok", flush=True)

    # Coverage against the tables.
    gaps = []
    compiled = {}
    for v in VARIANTS:
        compiled.setdefault(v["fn"].fn.__name__, []).append(v)
    for name, fn in _kernels().items():
        if fn.fn.__name__ not in compiled:
            gaps.append(f"{name}: never launched by the dispatcher's entry points")

    def dtypes(kernel, ptr):
        return {v["signature"][ptr] for v in compiled.get(kernel, [])}

    want_z = {TY[d] for d in LOGITS_DTYPES}
    want_y = {TY[d] for d in TARGET_DTYPES}
    for kernel, ptr in DTYPE_ARGS:
        want = want_y if ptr == "Y" else want_z
        if missing := want - dtypes(kernel, ptr):
            gaps.append(f"{kernel}: {ptr} dtypes {sorted(missing)} not compiled")
    pairs = {(m, h) for m, hs in HARD_BY_MODE.items() for h in hs}
    tiled_pairs = {p for p in pairs if p[1] != HARD_THRESHOLD}  # the threshold always takes a single tile
    for kernel, want in [("_rows_kernel", pairs), ("_tiled_kernel", tiled_pairs)]:
        got = {(v["values"]["MODE"], v["values"]["HARD"]) for v in compiled.get(kernel, [])}
        if got != want:
            gaps.append(f"{kernel}: (MODE, HARD) compiled {sorted(got)}, launchable {sorted(want)}")
        for mode in HARD_BY_MODE:
            wg = {v["values"]["WRITE_GRAD"] for v in compiled.get(kernel, []) if v["values"]["MODE"] == mode}
            if wg != {True, False}:
                gaps.append(f"{kernel}: MODE {mode} compiled with WRITE_GRAD in {sorted(wg)} only")
    for kernel in ("_rows_kernel", "_select_kernel", "_scale_kernel"):
        ints = {t for v in compiled.get(kernel, []) for k, t in v["signature"].items() if k in COUNT_ARGS}
        if ints != {"i32", "i64"}:
            gaps.append(f"{kernel}: element counts compiled as {sorted(ints)} only")

    summary = {
        "triton": triton.__version__,
        "full": full,
        "launches": len(LAUNCHES),
        "variants": len(VARIANTS),
        "compiled": len(VARIANTS) - len(failures),
        "failures": len(failures),
        "per_kernel": {k: len(v) for k, v in sorted(compiled.items())},
        "kernels": sorted(_kernels()),
        "dtypes": {f"{k}.{p}": sorted(dtypes(k, p)) for k, p in DTYPE_ARGS},
        "gaps": gaps,
    }
    for f in failures:
        print(f"FAILED {f}", file=sys.stderr)
    for g in gaps:
        print(f"GAP {g}", file=sys.stderr)
    print("SUMMARY " + json.dumps(summary), flush=True)
    return 1 if failures or gaps else 0


if __name__ == "__main__":
    sys.exit(main())
