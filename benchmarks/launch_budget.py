"""Launch and byte budget of one forward + backward, measured on a CPU (no GPU needed).

``python benchmarks/launch_budget.py [--n 1048576] [--k 2] [--markdown]`` traces one ``loss.backward()`` of each
fused path (xent, product, logconf balanced), of the eager reference and of the public loss
(``create_loss(name, backend="triton")``, called as training calls it, ``validate=False``, and as a direct caller
does by default, with the value checks), and prints for each: the number of device launches (torch ops that run
a kernel + Triton kernel launches), the bytes they move, whether a sort ran, the host syncs, and the ideal time
at the H100 (3.35 TB/s) and H200 (4.8 TB/s) HBM bandwidth (bytes / bandwidth). :func:`trace_fit` traces the
real training loops (``fit``) step by step.

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
import itertools
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


#: aten ops that copy a device value to the host or size an output by data (a host sync on CUDA).
SYNC_OPS = {"_local_scalar_dense", "item", "nonzero", "masked_select", "unique", "_unique", "_unique2",
            "unique_dim", "unique_consecutive", "repeat_interleave", "equal", "is_nonzero", "allclose",
            "masked_scatter", "bincount", "histc", "_assert_async"}
#: Tensor methods that read a tensor back to the host; on CPU tensors they dispatch no aten op, so
#: :func:`traced` (``host_reads=True``) records them when the project's own code calls them.
HOST_READS = ("cpu", "tolist", "numpy", "item")


def sync_op(func, args, kwargs) -> str | None:
    """The name a host sync is recorded under, if the aten op ``func`` waits for the device; else None.

    Beyond :data:`SYNC_OPS`: a boolean-mask index sizes its output by the data, and a blocking copy between
    two devices (``copy_`` / ``_to_copy`` across cpu and cuda without ``non_blocking``) waits for the stream.
    On a CPU-only run every tensor is on the CPU, so that last rule only fires on a GPU."""
    name = func.overloadpacket.__name__
    if name in SYNC_OPS:
        return name
    if name.startswith("index") and any(
        isinstance(t, torch.Tensor) and t.dtype == torch.bool
        for a in args if isinstance(a, (list, tuple)) for t in a
    ):
        return f"{name}[bool mask]"
    if name == "copy_":
        devices = {t.device.type for t in args[:2] if isinstance(t, torch.Tensor)}
        blocking = not (args[2] if len(args) > 2 else kwargs.get("non_blocking", False))
    elif name == "_to_copy":
        target = kwargs.get("device")
        devices = {args[0].device.type, torch.device(target).type if target is not None else args[0].device.type}
        blocking = not kwargs.get("non_blocking", False)
    else:
        return None
    return f"{name}[{'<->'.join(sorted(devices))}]" if len(devices) > 1 and blocking else None


def project_dirs() -> tuple[str, ...]:
    """Source folders of the project's own code: the engine, the kernels, the built-in plugins."""
    import w2s_harness
    from w2s_harness import kernels, plugins

    return tuple(str(os.path.dirname(m.__file__)) for m in (w2s_harness, kernels, plugins))


@dataclasses.dataclass
class Trace:
    torch_ops: list = dataclasses.field(default_factory=list)  # (name, bytes)
    triton: list = dataclasses.field(default_factory=list)  # (kernel name, bytes)
    syncs: list = dataclasses.field(default_factory=list)  # names of the ops / host reads that wait for the device

    def mark(self) -> tuple[int, int, int]:
        """Where the trace is now: a position in each list (for :meth:`span`)."""
        return len(self.torch_ops), len(self.triton), len(self.syncs)

    def span(self, start: tuple, end: tuple) -> Trace:
        """The part of the trace between two :meth:`mark` positions."""
        return Trace(self.torch_ops[start[0]:end[0]], self.triton[start[1]:end[1]], self.syncs[start[2]:end[2]])

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
        sync = sync_op(func, args, kwargs)
        if sync is not None:
            self.trace.syncs.append(sync)
        if name not in NO_LAUNCH:
            nbytes = _bytes((args, kwargs), out)
            if name.endswith("_") and name not in ("fill_", "zero_"):
                nbytes += sum(t.numel() * t.element_size() for t in _tensors(out))  # in place: read + write
            if name in ("fill_", "zero_", "ones_like", "zeros_like", "full_like", "zeros", "ones", "full"):
                nbytes = sum(t.numel() * t.element_size() for t in _tensors(out))
            self.trace.torch_ops.append((name, nbytes))
        return out


@contextlib.contextmanager
def traced(trace: Trace, *, execute: bool = False, host_reads: bool = False):
    """Record torch ops, Triton launches and host syncs of the enclosed code into ``trace``.

    ``host_reads``: also record :data:`HOST_READS` calls made from the project's own code (``trace.syncs``)."""
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
    methods = {name: getattr(torch.Tensor, name) for name in HOST_READS} if host_reads else {}
    mine = project_dirs() if host_reads else ()

    def guard(name, orig):
        def method(self, *args, **kwargs):
            if sys._getframe(1).f_code.co_filename.startswith(mine):
                trace.syncs.append(f"Tensor.{name}")
            return orig(self, *args, **kwargs)

        return method

    for name, orig in methods.items():
        setattr(torch.Tensor, name, guard(name, orig))
    try:
        with _Mode(trace):
            yield trace
    finally:
        for cls, orig in originals.items():
            cls.run = orig
        for name, orig in methods.items():
            setattr(torch.Tensor, name, orig)


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


#: ``create_loss`` parameters of the public-path trace: logconf at its full weight (``coef = aux_coef = 0.5``
#: from the first step, as the dispatch-layer trace), the others at their defaults.
PUBLIC = {"xent": {}, "product": {}, "logconf": {"aux_coef": 0.5, "warmup_frac": 0.0}}


def public_loss(loss: str, backend: str = "triton"):
    """The loss as training builds it: ``w2s_harness.create_loss(loss, backend="triton", ...)``."""
    import w2s_harness

    return w2s_harness.create_loss(loss, backend=backend, **PUBLIC[loss])


def trace_public_step(loss: str, n: int, k: int, *, validate: bool = True, execute: bool = False,
                      dtype=torch.float32) -> Trace:
    """Trace one forward + ``backward()`` of ``create_loss(loss, backend="triton")(z, y, 0.5, validate=...)``
    after one warm-up call (lazy imports), as a user calls it; ``trace.syncs`` holds its host syncs."""
    from w2s_harness.kernels import dispatch

    fn = public_loss(loss)
    z, y = inputs(n, k, dtype)
    old = dispatch.interpreting
    dispatch.interpreting = lambda: True
    try:
        with traced(Trace(), execute=execute):  # the warm-up call (not recorded)
            fn(z, y, 0.5, validate=validate).backward()
        z.grad = None
        trace = Trace()
        with traced(trace, execute=execute, host_reads=True):
            fn(z, y, 0.5, validate=validate).backward()
    finally:
        dispatch.interpreting = old
    return trace


@dataclasses.dataclass
class FitTrace:
    """One :func:`w2s_harness._engine.training.fit` traced: the whole run, each optimiser step, and the loss's part."""

    trace: Trace
    steps: list  # [Trace of step s]: from step s - 1's progress call to step s's (step 0: from the start)
    loss: list  # [Trace of the loss in step s]: from the loss call to its gradient w.r.t. the logits
    tail: Trace  # after the last step's progress call: its interval checks and the end of training
    result: dict
    module: torch.nn.Module  # the trained model


class _TextHead(torch.nn.Module):
    """A stand-in text model for the fine-tuning loop: ``forward(list_of_str) -> (B, k)`` logits from per-text
    features built on the host and copied to the head's device (as a tokenizer's ids are)."""

    def __init__(self, k: int, d: int = 8):
        super().__init__()
        self.head = torch.nn.Linear(d, k)
        with torch.no_grad():  # zero-initialised, as the harness's heads: runs are reproducible
            self.head.weight.zero_()
            self.head.bias.zero_()
        self.d = d

    def forward(self, texts):
        import zlib

        rows = [[((zlib.crc32(t.encode()) >> (3 * j)) % 17) / 17.0 - 0.5 for j in range(self.d)] for t in texts]
        return self.head(torch.tensor(rows, dtype=torch.float32).to(self.head.weight.device))


def trace_fit(loss: str, k: int = 2, *, loop: str = "head", n: int = 64, batch_size: int = 16,
              execute: bool = True, device: str = "cpu", backend: str = "triton", **cfg) -> FitTrace:
    """Run the real training loop (``fit``: the linear-head AdamW loop, ``loop="head"``, or the fine-tuning
    loop on a stand-in text model, ``loop="finetune"``) with ``create_loss(loss, backend="triton")``, traced.

    Steps are delimited by ``fit``'s ``progress`` callback (called once per optimiser step, before the step's
    interval checks), so ``steps[s]`` holds step s's body plus the interval work after step s - 1. The loss's
    part of a step runs from its call (``compute``, which ``fit`` calls once the table is checked) to the hook
    on its logits' gradient: its forward, the start of ``backward()`` and its own backward launches, not the
    model's backward or the optimiser."""
    import numpy as np
    from w2s_harness.kernels import dispatch

    from w2s_harness._contracts.components import check_train_config
    from w2s_harness._engine.training import fit, zero_linear_head

    fn = public_loss(loss, backend)
    g = np.random.default_rng(0)
    targets = g.dirichlet(np.ones(k), size=n).astype(np.float32)
    if loop == "head":
        inputs = g.normal(size=(n, 8)).astype(np.float32)
        module = zero_linear_head(8, k, device)
    else:
        inputs = [f"text {i} " * (1 + i % 3) for i in range(n)]
        module = _TextHead(k).to(device)
    settings = {"lr": 1e-2, "epochs": 1, "batch_size": batch_size, "weight_decay": 0.0, "warmup_frac": 0.0}
    settings.update(cfg)
    train_cfg = check_train_config("trace", **settings)

    trace = Trace()
    marks = [None]
    spans: list = []
    orig = fn.compute

    def compute(logits, targets, step_frac):
        start = trace.mark()
        out = orig(logits, targets, step_frac)
        if logits.requires_grad:
            logits.register_hook(lambda grad: spans.append((start, trace.mark())))
        return out

    fn.compute = compute  # what fit's fast path calls on every step after the first
    old = dispatch.interpreting
    dispatch.interpreting = lambda: True
    try:
        with traced(trace, execute=execute, host_reads=True):
            marks[0] = trace.mark()
            result = fit(module, inputs, targets, fn, train_cfg, seed=0, device=device,
                         progress=lambda rows: marks.append(trace.mark()))
    finally:
        dispatch.interpreting = old
    steps = [trace.span(a, b) for a, b in itertools.pairwise(marks)]
    # one loss call per step (no micro-batches here); step 0's span also holds the one-off table check
    return FitTrace(trace, steps, [trace.span(a, b) for a, b in spans], trace.span(marks[-1], trace.mark()), result,
                    module)


#: The rows of :func:`table`: the dispatch layer (fused, eager) and the public loss (``create_loss(...,
#: backend="triton")``) as training calls it (``validate=False``: targets checked once) and as a direct caller
#: does by default (``checked``: the value checks and their host read on every call).
IMPLS = ("fused", "eager", "public", "public checked")


def _trace(impl: str, loss: str, n: int, k: int, execute: bool) -> Trace:
    if impl.startswith("public"):
        return trace_public_step(loss, n, k, validate=impl == "public checked", execute=execute)
    return trace_step(impl, loss, n, k, execute=execute)


def table(n: int, k: int, *, execute: bool = False, markdown: bool = False) -> str:
    rows = []
    for loss in LOSSES:
        for impl in IMPLS:
            t = _trace(impl, loss, n, k, execute)
            mib = t.nbytes / 2**20
            rows.append((f"{loss} k={k}", impl, t.launches, len(t.triton), mib, t.sorts, len(t.syncs),
                         t.nbytes / H100_BPS * 1e6, t.nbytes / H200_BPS * 1e6, " ".join(t.names())))
    head = ("| loss | impl | launches | of which Triton | MiB moved | sorts | host syncs | ideal H100 us | "
            "ideal H200 us | ops |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    lines = [f"N = {n:,}, k = {k}, fp32 logits and targets; one forward + backward()", "", head] if markdown \
        else [f"N={n} k={k}"]
    for r in rows:
        if markdown:
            lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.1f} | {r[5]} | {r[6]} | {r[7]:.1f} | "
                         f"{r[8]:.1f} | {r[9]} |")
        else:
            lines.append(f"{r[0]:12s} {r[1]:14s} launches={r[2]:3d} (triton {r[3]}) MiB={r[4]:8.1f} sorts={r[5]} "
                         f"syncs={r[6]} H100={r[7]:7.1f}us H200={r[8]:7.1f}us  {r[9]}")
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
