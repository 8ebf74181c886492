"""Launch and byte budget of one forward + backward, measured on a CPU (no GPU needed).

``python benchmarks/launch_budget.py [--n 1048576] [--k 2] [--markdown]`` traces one ``loss.backward()`` of each
fused path (xent, product, logconf balanced) and of the eager reference, and prints for each: the number of
device launches (torch ops that run a kernel + Triton kernel launches), the bytes they move, whether a sort
ran, and the ideal time at the H100 (3.35 TB/s) and H200 (4.8 TB/s) HBM bandwidth (bytes / bandwidth).

How it counts:

* torch ops: a ``TorchDispatchMode`` sees every aten op. Ops that launch nothing (``empty*``, views,
  ``detach``, ``lift_fresh``, ...) are not counted; every other op is one launch. Its bytes are the sizes
  of its distinct tensor inputs and outputs (an in-place op's tensor counts twice: read and written).
* Triton launches: ``JITFunction.run`` (and the interpreter's ``InterpretedFunction.run``) are wrapped. By
  default (``execute=False``) a launch is only recorded: no kernel runs, so the trace is fast at any N and the
  numbers are the same as on a GPU (the fused paths have no data-dependent host control flow). With
  ``execute=True`` (under ``TRITON_INTERPRET=1``) the kernels run in the interpreter with the dispatch mode
  paused, so the interpreter's own copies are not counted. A launch's bytes are the sizes of its distinct
  tensor arguments (pointer arguments that only stand in for an unused pointer included): an upper bound
  for kernels that touch a buffer only partly (the select kernel's histogram workspace). The gradient-scale
  kernel counts 0 bytes: with ``grad_output == 1`` (a plain ``backward()``, what is traced) it exits at once.

This is a model of the traffic (every op reads its inputs once and writes its outputs once, no cache reuse),
not a measurement; ``tests/kernels/test_launch_budget.py`` asserts its launch counts as a budget.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

H100_BPS = 3.35e12
H200_BPS = 4.8e12

#: aten ops that launch no kernel (allocation, views, metadata).
NO_LAUNCH = {
    "empty", "empty_like", "empty_strided", "view", "_unsafe_view", "reshape", "expand", "select", "slice",
    "t", "transpose", "permute", "as_strided", "detach", "alias", "unsqueeze", "squeeze", "lift_fresh",
    "squeeze_", "unsqueeze_", "_reshape_alias", "unbind", "split", "chunk", "set_", "resize_",
}


@dataclasses.dataclass
class Trace:
    torch_ops: list = dataclasses.field(default_factory=list)  # (name, bytes)
    triton: list = dataclasses.field(default_factory=list)  # (kernel name, bytes)

    @property
    def launches(self) -> int:
        return len(self.torch_ops) + len(self.triton)

    @property
    def nbytes(self) -> int:
        return sum(b for _, b in self.torch_ops) + sum(b for _, b in self.triton)

    @property
    def sorts(self) -> int:
        return sum(1 for name, _ in self.torch_ops if "sort" in name or "topk" in name or "kthvalue" in name)

    def names(self) -> list[str]:
        return [n for n, _ in self.torch_ops] + [n for n, _ in self.triton]


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def _bytes(inputs, outputs) -> int:
    seen: dict[tuple, int] = {}
    for t in list(_tensors(inputs)) + list(_tensors(outputs)):
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.dtype, tuple(t.shape), tuple(t.stride()))
        # an expanded (broadcast) view reads its storage once
        n = min(t.numel() * t.element_size(), t.untyped_storage().nbytes())
        seen[key] = seen.get(key, 0) + n
    return sum(seen.values())


class _Mode(TorchDispatchMode):
    def __init__(self, trace: Trace):
        super().__init__()
        self.trace = trace

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if name not in NO_LAUNCH:
            nbytes = _bytes((args, kwargs), out)
            if name.endswith("_") and name not in ("fill_", "zero_"):
                nbytes += sum(t.numel() * t.element_size() for t in _tensors(out))  # in place: read + write
            if name in ("fill_", "zero_", "ones_like", "zeros_like", "full_like", "zeros", "ones", "full"):
                nbytes = sum(t.numel() * t.element_size() for t in _tensors(out))
            self.trace.torch_ops.append((name, nbytes))
        return out


@contextlib.contextmanager
def traced(trace: Trace, *, execute: bool = False):
    """Record torch ops and Triton launches of the enclosed code into ``trace``."""
    from triton.runtime.jit import JITFunction

    classes = [JITFunction]
    try:
        from triton.runtime.interpreter import InterpretedFunction

        classes.append(InterpretedFunction)
    except ImportError:  # pragma: no cover
        pass
    originals = {cls: cls.run for cls in classes}

    def wrap(cls):
        orig = originals[cls]

        def run(self, *args, **kwargs):
            fn = getattr(self, "fn", None)
            name = getattr(fn, "__name__", type(self).__name__)
            params = [p for p in _tensors(list(args) + [v for k, v in kwargs.items() if k != "grid"])]
            seen = {}
            for t in params:
                seen[t.untyped_storage().data_ptr()] = max(seen.get(t.untyped_storage().data_ptr(), 0),
                                                           t.untyped_storage().nbytes())
            # The trace calls backward() with grad_output == 1: every program of the gradient-scale kernel
            # reads that one scalar and exits, so it moves no (N, k) bytes.
            trace.triton.append((name, 0 if name == "_scale_kernel" else sum(seen.values())))
            if not execute:
                return None
            with _disable_current_modes():
                return orig(self, *args, **kwargs)

        return run

    for cls in classes:
        cls.run = wrap(cls)
    try:
        with _Mode(trace):
            yield trace
    finally:
        for cls, orig in originals.items():
            cls.run = orig


LOSSES = {
    "xent": ("soft_xent", {}),
    "product": ("product_loss", {}),
    "logconf": ("logconf_loss", {"coef": 0.5, "balance": True}),
}


def inputs(n: int, k: int, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, k, generator=g) * 2).to(dtype).requires_grad_()
    y = torch.softmax(torch.randn(n, k, generator=g), dim=-1)
    return z, y


def trace_step(impl: str, loss: str, n: int, k: int, *, execute: bool = False, dtype=torch.float32) -> Trace:
    """Trace one forward + ``backward()`` of ``loss`` with ``impl`` in {"fused", "eager"} (CPU tensors)."""
    from w2s_harness.kernels import dispatch, reference, triton_ops

    name, kw = LOSSES[loss]
    z, y = inputs(n, k, dtype)
    if impl == "fused":
        fn = getattr(triton_ops, name)
    else:
        fn = getattr(reference, name)
    trace = Trace()
    old = dispatch.interpreting
    dispatch.interpreting = lambda: True
    try:
        with traced(trace, execute=execute):
            fn(z, y, **kw).backward()
    finally:
        dispatch.interpreting = old
    return trace


def table(n: int, k: int, *, execute: bool = False, markdown: bool = False) -> str:
    rows = []
    for loss in LOSSES:
        for impl in ("fused", "eager"):
            t = trace_step(impl, loss, n, k, execute=execute)
            mib = t.nbytes / 2**20
            rows.append((f"{loss} k={k}", impl, t.launches, len(t.triton), mib, t.sorts,
                         t.nbytes / H100_BPS * 1e6, t.nbytes / H200_BPS * 1e6, " ".join(t.names())))
    head = ("| loss | impl | launches | of which Triton | MiB moved | sorts | ideal H100 us | ideal H200 us | ops |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---|")
    lines = [f"N = {n:,}, k = {k}, fp32 logits and targets; one forward + backward()", "", head] if markdown \
        else [f"N={n} k={k}"]
    for r in rows:
        if markdown:
            lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.1f} | {r[5]} | {r[6]:.1f} | {r[7]:.1f} | "
                         f"{r[8]} |")
        else:
            lines.append(f"{r[0]:12s} {r[1]:6s} launches={r[2]:3d} (triton {r[3]}) MiB={r[4]:8.1f} sorts={r[5]} "
                         f"H100={r[6]:7.1f}us H200={r[7]:7.1f}us  {r[8]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1 << 20)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--execute", action="store_true", help="run the kernels in the interpreter (slow for big N)")
    p.add_argument("--markdown", action="store_true")
    a = p.parse_args(argv)
    if a.execute:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    print(table(a.n, a.k, execute=a.execute, markdown=a.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
