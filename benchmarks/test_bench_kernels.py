"""Forward + backward time and peak memory: fused Triton losses vs eager PyTorch vs ``torch.compile``.

Run: ``tox -e bench`` or ``pytest benchmarks --benchmark-only`` (add ``-k logconf``, ``--benchmark-json=out.json``;
``W2S_BENCH_TABLE=table.md`` writes the summary table). See ``benchmarks/README.md``.

* small k (the w2s classification losses): xent / product / logconf (balanced, coef 0.5), fp32 logits,
  N in {4k, 64k, 1M} x k in {2, 8}. Bandwidth is counted on the compulsory traffic of a fused loss + grad
  (read logits and targets once, write the gradient once), for every implementation alike.
* large k (soft-label distillation over a vocabulary): linear head + soft CE, bf16, hidden 4096,
  N in {4k, 16k} x k in {32k, 128k}; FLOP/s counted on the three matmuls (6 N k H). Liger-Kernel's fused linear
  JSD with beta = 0 (forward KL against a teacher head: the same gradient for the student as soft CE against
  the teacher's probabilities, plus the teacher matmul) and its fused linear CE with hard labels (same matmuls,
  no (N, k) targets) are added when ``liger_kernel`` is installed.

On a CPU only the reference paths run, at reduced sizes (N in {4k, 64k} x k in {2, 8}; N 512, H 256, k 32k).
"""

from __future__ import annotations

import gc

import pytest
import torch
from _bench_env import CPU_THREADS, ENV

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

if ENV.gpu:
    SMALL = [(4096, 2), (4096, 8), (65536, 2), (65536, 8), (1 << 20, 2), (1 << 20, 8)]
    LARGE = [(4096, 32768), (4096, 131072), (16384, 32768), (16384, 131072)]
    HIDDEN, LARGE_DTYPE = 4096, torch.bfloat16
else:
    SMALL = [(4096, 2), (4096, 8), (65536, 2), (65536, 8)]
    LARGE = [(512, 32768)]
    HIDDEN, LARGE_DTYPE = 256, torch.float32

LOSSES = {
    "xent": ("soft_xent", {}),
    "product": ("product_loss", {}),
    "logconf": ("logconf_loss", {"coef": 0.5, "balance": True}),
}
_COMPILED: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _cpu_threads():
    if ENV.gpu:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(CPU_THREADS)
    yield
    torch.set_num_threads(before)


def _fn(impl: str, loss: str):
    from w2s_harness.kernels import reference

    name, kw = LOSSES[loss]
    if impl == "fused":
        from w2s_harness.kernels import triton_ops

        return lambda z, y: getattr(triton_ops, name)(z, y, **kw)
    ref = getattr(reference, name)
    if impl == "eager":
        return lambda z, y: ref(z, y, **kw)
    if (impl, loss) not in _COMPILED:
        _COMPILED[impl, loss] = torch.compile(lambda z, y: ref(z, y, **kw))
    return _COMPILED[impl, loss]


def _skip_impl(impl: str):
    if impl == "fused" and not ENV.gpu:
        pytest.skip("fused Triton kernels need a CUDA GPU here (interpreter timings are meaningless)")
    if impl == "compile" and not ENV.compile_ok:
        pytest.skip(ENV.compile_reason)


def _measure(benchmark, step, rounds: int, warmup: int = 2) -> int | None:
    """Warm up (compiles / autotunes), take the peak memory of one step, then time ``rounds`` steps."""
    for _ in range(warmup):
        step()
    peak = None
    if ENV.gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        peak = torch.cuda.max_memory_allocated() - base
    benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=0)
    return peak


@pytest.mark.parametrize("impl", ["fused", "eager", "compile"])
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("n,k", SMALL, ids=[f"N{n}-k{k}" for n, k in SMALL])
def test_small_k_loss(benchmark, record, env, loss, n, k, impl):
    _skip_impl(impl)
    g = torch.Generator(device="cpu").manual_seed(0)
    z = (torch.randn(n, k, generator=g) * 2).to(env.device).requires_grad_()
    y = torch.softmax(torch.randn(n, k, generator=g), dim=-1).to(env.device)
    fn = _fn(impl, loss)

    def step():
        z.grad = None
        fn(z, y).backward()
        env.sync()

    benchmark.group = f"{loss} N={n} k={k} fp32"
    rounds = 20 if env.gpu else (10 if n * k <= 1 << 16 else 5)
    peak = _measure(benchmark, step, rounds)
    record(benchmark.group, impl, nbytes=n * k * (4 + 4 + 4), peak_mem=peak)


def _free():
    gc.collect()
    if ENV.gpu:
        torch.cuda.empty_cache()


def _large_inputs(n, k, env):
    g = torch.Generator(device="cpu").manual_seed(1)
    dev, dt = env.device, LARGE_DTYPE
    x = (torch.randn(n, HIDDEN, generator=g) * 0.5).to(dev, dt).requires_grad_()
    w = (torch.randn(k, HIDDEN, generator=g) * HIDDEN**-0.5).to(dev, dt).requires_grad_()
    # Soft targets: a sharpened random teacher, stored in the compute dtype of the logits (bf16 on GPU).
    y = torch.softmax(torch.randn(n, k, device=dev) * 3, dim=-1).to(dt)
    return x, w, y


@pytest.mark.parametrize("impl", ["fused", "eager", "compile", "liger_jsd_fwd_kl", "liger_flce_hard"])
@pytest.mark.parametrize("n,k", LARGE, ids=[f"N{n}-k{k}" for n, k in LARGE])
def test_large_k_linear_head(benchmark, record, env, n, k, impl):
    from w2s_harness.kernels.linear_head import fused_linear_soft_xent, linear_head_soft_xent_reference

    note = ""
    if impl.startswith("liger"):
        if not env.gpu:
            pytest.skip("Liger-Kernel needs a CUDA GPU")
        if not env.liger:
            pytest.skip("liger_kernel is not installed (pip install liger-kernel)")
    else:
        _skip_impl(impl)
    try:
        x, w, y = _large_inputs(n, k, env)
    except torch.cuda.OutOfMemoryError:
        x = None
    if x is None:
        _free()
        pytest.skip("inputs do not fit")
    if impl == "fused":
        fn = lambda: fused_linear_soft_xent(x, w, None, y)
    elif impl == "eager":
        fn = lambda: linear_head_soft_xent_reference(x, w, None, y)
    elif impl == "compile":
        comp = _COMPILED.setdefault(("compile", "linear"), torch.compile(linear_head_soft_xent_reference))
        fn = lambda: comp(x, w, None, y)
    elif impl == "liger_jsd_fwd_kl":
        from liger_kernel.transformers import LigerFusedLinearJSD

        jsd = LigerFusedLinearJSD(jsd_beta=0.0)
        xt = x.detach().clone()
        wt = w.detach().clone()
        fn = lambda: jsd(x, w, xt, wt, None)
        note = "KL vs a teacher head (includes the teacher matmul)"
    else:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        flce = LigerFusedLinearCrossEntropyLoss()
        labels = torch.randint(0, k, (n,), device=env.device)
        fn = lambda: flce(w, x, labels)
        note = "hard labels: same matmuls, no (N, k) targets"

    def step():
        x.grad = None
        w.grad = None
        fn().backward()
        env.sync()

    benchmark.group = f"linear head N={n} k={k} H={HIDDEN} {str(LARGE_DTYPE)[6:]}"
    try:
        peak = _measure(benchmark, step, rounds=5 if env.gpu else 3, warmup=1)
    except torch.cuda.OutOfMemoryError:
        peak = "oom"
    if peak == "oom":  # skip outside the except block so the traceback does not pin the tensors
        del x, w, y, fn
        _free()
        pytest.skip(f"{impl}: out of memory at N={n}, k={k}")
    record(benchmark.group, impl, flops=6.0 * n * k * HIDDEN, peak_mem=peak, note=note)
