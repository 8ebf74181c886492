"""Compile every kernel launch the dispatcher can make for a CUDA target without a GPU, and report the
registers and spills of each: Triton AST -> TTIR -> TTGIR -> LLVM -> PTX -> cubin (the wheel's ptxas).

``python tests/kernels/_compile_kernels.py [--arch 90] [--arch 80] [--full] [--table FILE|-]``. Run by
``test_kernel_compile.py`` in a subprocess without ``TRITON_INTERPRET`` (the interpreter replaces
``triton.jit`` functions) and by ``benchmarks/gpu_check.sh`` for the lent GPU's own architecture.

Nothing is listed by hand; the variants come from the code that launches the kernels:

1. ``JITFunction.run`` is replaced by a recorder, then the real entry points (``dispatch.soft_xent`` /
   ``product_loss`` / ``logconf_loss`` balanced, balanced over a rolling-buffer pool and argmax, both
   linear-head paths, and ``backward()``, which launches the gradient-scale kernel) run on CPU tensors.
   Every launch (kernel, arguments, launch options) is recorded; no kernel runs.
2. **Runtime specialisation.** The entry points run at representative shapes, so each launch carries the
   block configuration (``BLOCK_N``, ``BLOCK_K``, ``num_warps``) the dispatcher picks for that shape at
   runtime: a large batch (``n_steady``: the steady-state row block of ``triton_softce._small_config``, at
   least 1,024 programs) and a small odd one (``N = 5``: the smallest block). Each recorded launch becomes
   exactly what Triton's JIT compiles for it on the target device: the JIT's own binder and ``_pack_args``
   with the CUDA backend (signature, constexprs, options, and the divisibility attributes it derives from
   the arguments: 16-byte aligned pointers, integers divisible by 16, an integer equal to 1 made a
   constant). The large shapes have counts divisible by 16 and aligned tensors, so they compile with the
   hints a real batch gets; ``N = 5`` compiles without them. The same launch with 64-bit element counts
   (``N * k >= 2**31``: Triton passes ``NK`` / ``NUMEL`` as i64) is added for the first launch of each kernel
   that takes a count.
3. Each distinct (kernel, signature, constexprs, attributes, options) is compiled to a cubin, in parallel
   (``W2S_COMPILE_JOBS``, default: all CPUs). ptxas runs with ``-v`` inside Triton; its log is captured
   (or, when the cubin came from Triton's cache, ptxas is re-run on the cached PTX through the backend's
   own ``make_cubin``, so the options are the runtime's) and parsed for registers, stack frame and spill
   stores / loads. **Any spill fails the check.**
4. Coverage is checked against the tables of ``kernels/fused/triton_softce.py``: every ``*_kernel`` in the
   ``triton_*`` modules, every (MODE, HARD) pair of ``HARD_BY_MODE`` (``HARD_THRESHOLD`` in the single-tile
   kernel only), every logits dtype for each kernel, every target dtype for both loss kernels,
   ``WRITE_GRAD`` on and off for each mode, the select kernel with and without a mask, 32- and 64-bit
   counts. A gap exits 1, like a compile error or a spill.

The default run compiles, for sm_90, every kernel x (MODE, HARD) x logits dtype at the steady-state block
of a large batch, plus (float32) the small-batch block, gradient off, ``N = 1``, the largest single tile,
bf16 logits with float32 targets in the tiled kernel and the linear head. ``--full`` compiles the whole cross
product: logits dtype x target dtype x gradient on/off x class count x every block configuration
``_small_config`` can return (each at a power-of-two N) and ``N = 1``, 64-bit counts for every launch.

Output: one ``ok`` line per compiled variant with its registers, the table (``--table``), then
``SUMMARY <json>``. Exit 3: this Triton lacks an entry point used here (``ASTSource``/``GPUTarget``, or the
JIT's binder); the test then skips and names it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import os
import pkgutil
import re
import subprocess
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
from w2s_harness.kernels import dispatch, linear_head, triton_softce
from w2s_harness.kernels.triton_softce import HARD_BY_MODE, HARD_THRESHOLD, LOGITS_DTYPES, TARGET_DTYPES

I64_COUNT = 2**31 + 16  # an element count past int32 (divisible by 16, like a typical N * k)
COUNT_ARGS = ("NK", "NUMEL")  # the element counts that reach 2**31 first (N rows stays far below)
TY = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float64: "*fp64"}

#: (kernel, pointer argument) pairs that must be compiled for every dtype of the tables (Y: TARGET_DTYPES;
#: the others: LOGITS_DTYPES, which are also the gradient dtypes the scale kernel multiplies in place).
DTYPE_ARGS = [("_rows_kernel", "Z"), ("_rows_kernel", "Y"), ("_tiled_kernel", "Z"), ("_tiled_kernel", "Y"),
              ("_select_kernel", "SRC"), ("_scale_kernel", "X")]
#: The launch parameters a table row shows (when the kernel has them).
SHOWN = ("MODE", "HARD", "WRITE_GRAD", "K", "SOURCE", "PASS", "HAS_MASK", "BLOCK_N", "BLOCK_K", "BLOCK")

LAUNCHES: list[tuple[JITFunction, tuple, dict]] = []
VARIANTS: list[dict] = []
TARGETS: dict[int, tuple] = {}  # arch -> (GPUTarget, backend)
PTXAS_LOGS: list[str] = []


def _record(self, *args, grid, warmup, **kwargs):
    LAUNCHES.append((self, args, dict(kwargs)))


def _capture_ptxas(run):
    """``subprocess.run`` that keeps the log of a ``ptxas -v`` call (Triton sends its stderr to a temp file
    and deletes it afterwards; the log has the register and spill counts)."""

    def wrapped(cmd, *args, **kwargs):
        result = run(cmd, *args, **kwargs)
        if isinstance(cmd, (list, tuple)) and cmd and "ptxas" in os.path.basename(str(cmd[0])) and "-v" in cmd:
            name = getattr(kwargs.get("stderr"), "name", None)
            if isinstance(name, str) and os.path.exists(name):
                with open(name) as fh:
                    PTXAS_LOGS.append(fh.read())
        return result

    return wrapped


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


def n_steady(k: int) -> int:
    """The smallest power-of-two batch (>= 16) for which ``_small_config`` (the dispatcher's choice) gives the
    row block of an unboundedly large batch: the block every large batch of ``k`` classes runs with."""
    steady = triton_softce._small_config(1 << 40, k)
    n = 16
    while triton_softce._small_config(n, k) != steady:
        n *= 2
    return n


def block_batches(k: int) -> list[int]:
    """One power-of-two batch size (>= 16, so counts keep their divisibility) per block configuration
    ``_small_config`` returns for ``k`` classes, up to the steady state."""
    seen, out = set(), []
    n = 16
    while n <= n_steady(k):
        c = triton_softce._small_config(n, k)
        if c not in seen:
            seen.add(c)
            out.append(n)
        n *= 2
    return out


def _plan(level: str):
    """``(n, k, logits dtype, target dtype, gradient)`` runs of every loss entry point."""
    big_k = triton_softce.MAX_SINGLE_TILE_K
    tiled = big_k + 1
    f32 = torch.float32
    if level == "quick":  # every kernel x (MODE, HARD) in float32 and bfloat16 at a large batch's block
        for zd in (f32, torch.bfloat16):
            for k in (2, 3):
                yield n_steady(k), k, zd, zd, True
            yield 16, tiled, zd, zd, True
        yield 5, 2, f32, f32, True  # a small odd batch: the smallest block, no divisibility hints
        yield 16, tiled, torch.float64, torch.float64, True  # float64 tiles are narrower (tiled_config)
        return
    if level == "full":
        for zd in LOGITS_DTYPES:
            for yd in TARGET_DTYPES:
                for grad in (True, False):
                    for k in (2, 3):
                        for n in [5, *block_batches(k)]:
                            yield n, k, zd, yd, grad
                    yield 16, big_k, zd, yd, grad
                    yield 16, tiled, zd, yd, grad
                    yield 1, 2, zd, yd, grad
        return
    for zd in LOGITS_DTYPES:  # every kernel x (MODE, HARD) x dtype, at a large batch's block (and hints)
        for k in (2, 3):
            yield n_steady(k), k, zd, zd, True
        yield 16, tiled, zd, zd, True
    for k in (2, 3):
        yield 5, k, f32, f32, True  # a small odd batch: the smallest block, no divisibility hints
        yield n_steady(k), k, f32, f32, False  # no gradient requested
    yield 16, tiled, f32, f32, False
    yield 1, 2, f32, f32, True  # N == 1
    yield 16, big_k, f32, f32, True  # the largest single tile
    yield 16, tiled, torch.bfloat16, f32, True  # bf16 logits with float32 targets


def _inputs(n, k, zd, yd, grad, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=torch.float32).to(zd).requires_grad_(grad)
    y = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float32), dim=-1).to(yd)
    return z, y


def _drive(level: str) -> None:
    """Run the dispatcher's entry points over the tables with the recorder in place of ``JITFunction.run``."""
    tri = {"backend": "triton"}
    losses = {
        "soft_xent": lambda z, y: dispatch.soft_xent(z, y, **tri),
        "product_loss": lambda z, y: dispatch.product_loss(z, y, alpha=0.5, beta=2.0, **tri),
        "logconf_balanced": lambda z, y: dispatch.logconf_loss(z, y, coef=0.3, balance=True, **tri),
        "logconf_argmax": lambda z, y: dispatch.logconf_loss(z, y, coef=0.3, balance=False, **tri),
    }
    full = level == "full"
    for n, k, zd, yd, grad in _plan(level):
        # The balanced k > 2 peeling is k - 1 selects, the same launches as at k = 3: not driven k - 1 times.
        losses_k = losses if k <= 64 else {**losses, "logconf_balanced": _tiled_ids}
        z, y = _inputs(n, k, zd, yd, grad)
        for fn in losses_k.values():
            with torch.set_grad_enabled(grad):
                v = fn(z, y)
            if grad:
                v.backward(torch.tensor(2.0, dtype=v.dtype))  # the gradient-scale kernel
            z.grad = None
        if k <= 3 and yd == zd and grad:
            # The rolling buffer: the thresholds are selected over a pool of earlier rows (a masked select
            # for k > 2, the p0 select over the pool's logits for k = 2).
            pool = torch.cat([_inputs(n, k, zd, yd, False, seed=1)[0], z.detach()])
            dispatch.logconf_loss(z, y, coef=0.3, pool=pool, **tri).backward()

    # The linear head: its chunks go through the same fused kernel (in place on the chunk's logits), and its
    # backward scales hidden / weight / bias gradients (weight in float32 with accumulate_fp32).
    for zd in LOGITS_DTYPES if level != "quick" else (torch.float32,):
        for grad in (True, False) if full or (zd == torch.float32 and level != "quick") else (True,):
            for acc32 in (False, True) if level != "quick" else (False,):
                for k in (3, triton_softce.MAX_SINGLE_TILE_K + 1) if full or level == "standard" else (3,):
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


def _tiled_ids(z, y):
    """Balanced logconf at a vocabulary-sized k: the fused kernel's ``HARD_IDS`` launch. The peeling's
    selects are the k = 3 ones (recorded there), k - 1 = 8192 times over, so they are not driven here."""
    ids = torch.zeros(z.shape[0], dtype=torch.int64)
    return triton_softce.fused_soft_ce(z, y, triton_softce.MODE_LOGCONF, hard=triton_softce.HARD_IDS,
                                       hard_ids=ids, coef=0.3)


def _variant(fn: JITFunction, args: tuple, kwargs: dict, arch: int) -> dict:
    """What Triton's JIT compiles for this launch on a device of ``arch`` (its own binder and packing)."""
    _target, backend = TARGETS[arch]
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound_args, specialization, options = binder(*args, **kwargs)
    packed = fn._pack_args(backend, kwargs, bound_args, specialization, options)
    _options, signature, constexprs, attrs = packed
    names = [p.name for p in fn.params]
    opts = {k: v for k, v in kwargs.items() if k not in names}
    hints = sorted({names[path[0]] for path, vals in attrs.items()
                    if any("divisibility" in str(a) for a in vals)})
    key = repr((arch, fn.fn.__qualname__, sorted(signature.items()), sorted(constexprs.items()),
                sorted((k, repr(v)) for k, v in attrs.items()), sorted(opts.items())))
    values = dict(zip(names, args))
    values.update({k: v for k, v in kwargs.items() if k in names})
    return {"fn": fn, "arch": arch, "signature": signature, "constexprs": constexprs, "attrs": attrs,
            "options": opts, "key": key, "values": values, "hints": hints}


def _widen(fn, args, kwargs):
    """The same launch with 64-bit element counts, or None when the kernel takes none."""
    names = [p.name for p in fn.params]
    if not any(n in COUNT_ARGS for n in names[: len(args)]):
        return None
    return tuple(I64_COUNT if n in COUNT_ARGS else a for n, a in zip(names, args)), kwargs


def _dtypes(v: dict) -> str:
    ptrs = [t for k, t in v["signature"].items() if t.startswith("*") and k in ("Z", "Y", "SRC", "X")]
    return "/".join(t[1:] for t in ptrs)


def _params(v: dict) -> str:
    vals = v["values"]
    out = []
    for k in SHOWN:
        if k in vals:
            x = vals[k]
            out.append(f"{k}={int(x) if isinstance(x, bool) else x}")
    ints = [f"{k}:{t}" for k, t in v["signature"].items() if t in ("i32", "i64") and k in COUNT_ARGS]
    return " ".join(out + ints)


def _describe(v: dict) -> str:
    return (f"sm_{v['arch']} {v['fn'].fn.__name__} {_params(v)} {_dtypes(v)} warps={v['options'].get('num_warps')}"
            f" hints={','.join(v['hints']) or '-'}")


def _parse_ptxas(log: str) -> dict | None:
    regs = re.search(r"Used (\d+) registers", log)
    frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if not regs or not frame:
        return None
    return {"regs": int(regs.group(1)), "stack": int(frame.group(1)), "spill_stores": int(frame.group(2)),
            "spill_loads": int(frame.group(3))}


def _compile(i: int):
    v = VARIANTS[i]
    target, backend = TARGETS[v["arch"]]
    try:
        del PTXAS_LOGS[:]
        src = ASTSource(fn=v["fn"], signature=v["signature"], constexprs=v["constexprs"], attrs=v["attrs"])
        kernel = triton.compile(src, target=target, options=v["options"])
        if not kernel.asm.get("cubin"):
            return i, "no cubin produced", None
        if not PTXAS_LOGS:  # a cache hit: ptxas again on the cached PTX, with the runtime's options
            opts = backend.parse_options(dict(v["options"]))
            backend.make_cubin(kernel.asm["ptx"], {}, opts, target.arch)
        stats = _parse_ptxas(PTXAS_LOGS[-1]) if PTXAS_LOGS else None
        if stats is None:
            return i, "no register report from ptxas -v", None
        return i, None, stats
    except Exception:  # noqa: BLE001 - reported with the variant
        return i, traceback.format_exc(limit=3)[-2000:], None


def table(rows: list[tuple[dict, dict]]) -> str:
    """Markdown table: one row per compiled variant, sorted by architecture, kernel and parameters."""
    head = ("| arch | kernel | launch parameters | dtypes | warps | divisibility hints | registers | "
            "spill stores / loads (bytes) | stack (bytes) |\n|---|---|---|---|---:|---|---:|---|---:|")
    lines = [head]
    for v, s in sorted(rows, key=lambda r: (r[0]["arch"], r[0]["fn"].fn.__name__, _params(r[0]), _dtypes(r[0]))):
        lines.append(f"| sm_{v['arch']} | {v['fn'].fn.__name__} | {_params(v)} | {_dtypes(v)} | "
                     f"{v['options'].get('num_warps')} | {', '.join(v['hints']) or '-'} | {s['regs']} | "
                     f"{s['spill_stores']} / {s['spill_loads']} | {s['stack']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", type=int, action="append", help="CUDA compute capability x 10 (default: 90)")
    ap.add_argument("--level", choices=("quick", "standard", "full"), default="standard",
                    help="quick: float32 / bfloat16 subset; standard: every kernel x mode x dtype; full: the "
                         "whole cross product")
    ap.add_argument("--full", action="store_true", help="same as --level full")
    ap.add_argument("--table", help="write the registers / spills table (Markdown) here; '-' for stdout")
    a = ap.parse_args(argv)
    level = "full" if a.full else a.level
    archs = a.arch or [90]
    for arch in archs:
        target = GPUTarget("cuda", arch, 32)
        TARGETS[arch] = (target, make_backend(target))
    dispatch.interpreting = lambda: True  # let backend="triton" accept CPU tensors; nothing runs (recorder)
    JITFunction.run = _record
    _drive(level)
    subprocess.run = _capture_ptxas(subprocess.run)

    seen = set()
    widened = set()
    for fn, args, kwargs in LAUNCHES:
        launches = [(args, kwargs)]
        # 64-bit counts: every launch with --full, else the first launch of each kernel that takes a count
        if (wide := _widen(fn, args, kwargs)) and (level == "full" or fn not in widened):
            widened.add(fn)
            launches.append(wide)
        for arch in archs:
            for launch in launches:
                v = _variant(fn, *launch, arch)
                if v["key"] not in seen:
                    seen.add(v["key"])
                    VARIANTS.append(v)

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs = int(os.environ.get("W2S_COMPILE_JOBS", "0")) or cpus
    failures, spills, rows = [], [], []
    with multiprocessing.get_context("fork").Pool(max(1, min(jobs, len(VARIANTS)))) as pool:
        for i, err, stats in pool.imap_unordered(_compile, range(len(VARIANTS))):
            v = VARIANTS[i]
            if err:
                failures.append(f"{_describe(v)}\n{err}")
                continue
            rows.append((v, stats))
            if stats["spill_stores"] or stats["spill_loads"]:
                spills.append(f"{_describe(v)}: {stats}")
            print(f"{_describe(v)}: ok regs={stats['regs']} spills={stats['spill_stores']}/"
                  f"{stats['spill_loads']} stack={stats['stack']}", flush=True)

    # Coverage against the tables (per architecture).
    gaps = []
    for arch in archs:
        compiled: dict[str, list] = {}
        for v in VARIANTS:
            if v["arch"] == arch:
                compiled.setdefault(v["fn"].fn.__name__, []).append(v)
        gaps += [f"sm_{arch}: {g}" for g in _gaps(compiled, level)]
    compiled_all: dict[str, list] = {}
    for v in VARIANTS:
        compiled_all.setdefault(v["fn"].fn.__name__, []).append(v)

    text = table(rows)
    if a.table == "-":
        print(text)
    elif a.table:
        with open(a.table, "w") as fh:
            fh.write(text + "\n")
    by_kernel = {}
    for v, s in rows:
        name = f"sm_{v['arch']}.{v['fn'].fn.__name__}"
        cur = by_kernel.setdefault(name, {"variants": 0, "max_regs": 0, "spills": 0})
        cur["variants"] += 1
        cur["max_regs"] = max(cur["max_regs"], s["regs"])
        cur["spills"] += s["spill_stores"] + s["spill_loads"]
    summary = {
        "triton": triton.__version__,
        "archs": archs,
        "level": level,
        "launches": len(LAUNCHES),
        "variants": len(VARIANTS),
        "compiled": len(VARIANTS) - len(failures),
        "failures": len(failures),
        "spills": spills,
        "per_kernel": {k: len(v) for k, v in sorted(compiled_all.items())},
        "registers": by_kernel,
        "kernels": sorted(_kernels()),
        "dtypes": {f"{k}.{p}": sorted({v["signature"][p] for v in compiled_all.get(k, [])}) for k, p in DTYPE_ARGS},
        "configs": sorted({f"{v['fn'].fn.__name__} {_params(v)} warps={v['options'].get('num_warps')}"
                           for v in VARIANTS}),
        "gaps": gaps,
    }
    for f in failures:
        print(f"FAILED {f}", file=sys.stderr)
    for s in spills:
        print(f"SPILL {s}", file=sys.stderr)
    for g in gaps:
        print(f"GAP {g}", file=sys.stderr)
    print("SUMMARY " + json.dumps(summary), flush=True)
    return 1 if failures or gaps or spills else 0


def _gaps(compiled: dict[str, list], level: str) -> list[str]:
    """What the dispatcher can launch and was not compiled (the quick level checks kernels, (MODE, HARD)
    pairs, masks and count widths, not every dtype and gradient setting)."""
    gaps = []
    for name, fn in _kernels().items():
        if fn.fn.__name__ not in compiled:
            gaps.append(f"{name}: never launched by the dispatcher's entry points")

    def dtypes(kernel, ptr):
        return {v["signature"][ptr] for v in compiled.get(kernel, [])}

    quick = level == "quick"
    want_z = {TY[d] for d in LOGITS_DTYPES}
    want_y = {TY[d] for d in TARGET_DTYPES}
    for kernel, ptr in DTYPE_ARGS:
        want = want_y if ptr == "Y" else want_z
        if kernel == "_select_kernel":  # it selects over the compute dtype's values, or over the logits
            want = want_z
        if not quick and (missing := want - dtypes(kernel, ptr)):
            gaps.append(f"{kernel}: {ptr} dtypes {sorted(missing)} not compiled")
    pairs = {(m, h) for m, hs in HARD_BY_MODE.items() for h in hs}
    tiled_pairs = {p for p in pairs if p[1] != HARD_THRESHOLD}  # the threshold always takes a single tile
    for kernel, want in [("_rows_kernel", pairs), ("_tiled_kernel", tiled_pairs)]:
        got = {(v["values"]["MODE"], v["values"]["HARD"]) for v in compiled.get(kernel, [])}
        if got != want:
            gaps.append(f"{kernel}: (MODE, HARD) compiled {sorted(got)}, launchable {sorted(want)}")
        for mode in HARD_BY_MODE:
            wg = {v["values"]["WRITE_GRAD"] for v in compiled.get(kernel, []) if v["values"]["MODE"] == mode}
            if not quick and wg != {True, False}:
                gaps.append(f"{kernel}: MODE {mode} compiled with WRITE_GRAD in {sorted(wg)} only")
    masks = {bool(v["values"]["HAS_MASK"]) for v in compiled.get("_select_kernel", [])}
    if masks != {True, False}:
        gaps.append(f"_select_kernel: HAS_MASK compiled as {sorted(masks)} only")
    for kernel in ("_rows_kernel", "_select_kernel", "_scale_kernel"):
        ints = {t for v in compiled.get(kernel, []) for k, t in v["signature"].items() if k in COUNT_ARGS}
        if ints != {"i32", "i64"}:
            gaps.append(f"{kernel}: element counts compiled as {sorted(ints)} only")
        hinted = {bool(v["hints"]) for v in compiled.get(kernel, [])}
        if True not in hinted:
            gaps.append(f"{kernel}: never compiled with the divisibility hints of an aligned, large batch")
    return gaps


if __name__ == "__main__":
    sys.exit(main())
