"""logconf's adaptive threshold on the Triton path: the radix select (``quantile_select``) is bit-identical to
``torch.quantile``; ``balanced_threshold`` equals the reference's threshold; the hardened rows equal
``reference.hardened_targets``."""

from __future__ import annotations

import pytest
import torch
from _kernel_cases import F32, F64, make_inputs

pytestmark = pytest.mark.kernels


def _bits(t):
    return t.view(torch.int64 if t.dtype == F64 else torch.int32)


def _same(a, b):
    """Same bits; NaN == NaN; and -0.0 == +0.0 (the select keys both as +0.0: which of tied zeros of opposite
    sign torch's sort puts at a rank depends on positions, and the two compare equal as thresholds)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return bool(_bits(a) == _bits(b)) or bool(a.isnan() & b.isnan()) or bool((a == 0) & (b == 0))


def _batch(g, n, dtype, kind):
    v = torch.rand(n, generator=g, dtype=torch.float64)
    if kind == "ties":  # a handful of distinct values
        v = (v * 5).floor() / 4
    elif kind == "wide":
        v = torch.randn(n, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(-30, 30, (n,), generator=g)
    elif kind == "edge":  # infinities, signed zeros, subnormals, the largest finite values
        fi = torch.finfo(dtype)
        pool = torch.tensor([float("inf"), -float("inf"), 0.0, -0.0, fi.tiny / 4, -fi.tiny / 4, fi.max, -fi.max,
                             1.0, 0.5], dtype=torch.float64)
        v = pool[torch.randint(0, len(pool), (n,), generator=g)]
    elif kind == "close":  # neighbours: lerps between adjacent floats (rounding of the fma)
        base = torch.rand((), generator=g, dtype=torch.float64).to(dtype)
        v = torch.stack([base + i * torch.finfo(dtype).eps * base for i in range(4)])[
            torch.randint(0, 4, (n,), generator=g)].double()
    return v.to(dtype)


def _levels(g, n, dtype):
    qs = [0.0, 1.0, 0.5, 1 / 3] + torch.rand(3, generator=g).tolist()
    if n > 1:
        qs += [i / (n - 1) for i in (0, n // 3, n - 1)]  # integer ranks: no interpolation
    return [torch.tensor(q, dtype=dtype) for q in qs]


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("n", [1, 2, 130, 2049])
def test_quantile_select_is_bit_identical_to_torch_quantile(n, dtype):
    """N = 1, N not a multiple of the block, ties, infinities, signed zeros, subnormals, integer ranks."""
    from w2s_harness.kernels.triton_threshold import quantile_select

    g = torch.Generator().manual_seed(n)
    kinds = ["ties", "edge"] if dtype == F64 else ["random", "ties", "wide", "edge", "close"]
    for i, kind in enumerate(kinds):
        v = _batch(g, n, dtype, kind)
        levels = _levels(g, n, dtype)
        for q in levels[i % 2::2] if n > 2 else levels[:3]:
            a, b = quantile_select(v, q), torch.quantile(v, q)
            assert _same(a, b), (n, dtype, kind, float(q), a, b)


def test_quantile_select_nan_and_clamped_levels():
    from w2s_harness.kernels.triton_threshold import quantile_select

    g = torch.Generator().manual_seed(5)
    v = torch.rand(9, generator=g)
    v[4] = float("nan")
    assert quantile_select(v, torch.tensor(0.3)).isnan() and torch.quantile(v, torch.tensor(0.3)).isnan()
    # Out-of-range levels are clamped (torch.quantile would raise on the CPU and read out of bounds on a GPU).
    assert quantile_select(v[:4], torch.tensor(1.0 + 1e-6)) == v[:4].max()
    assert quantile_select(v[:4], torch.tensor(-1e-6)) == v[:4].min()


def _random_batches(count, seed):
    from w2s_harness.kernels.triton_threshold import quantile_select

    g = torch.Generator().manual_seed(seed)
    for i in range(count):
        n = int(torch.randint(1, 300, (), generator=g))
        kind = ["ties", "random", "close"][i % 3]
        v = _batch(g, n, F32, kind)
        q = torch.rand((), generator=g)
        if i % 4 == 0 and n > 1:
            q = torch.tensor(int(torch.randint(0, n, (), generator=g)) / (n - 1))
        a, b = quantile_select(v, q), torch.quantile(v, q)
        assert _same(a, b), (i, n, kind, float(q), a, b)


def test_quantile_select_random_batches_with_ties():
    _random_batches(24, seed=11)


@pytest.mark.slow
def test_quantile_select_ten_thousand_random_batches():
    _random_batches(10_000, seed=12)


@pytest.mark.parametrize("dtype", [F32, F64, torch.bfloat16])
@pytest.mark.parametrize("case", ["random", "ties", "one_class1"])
def test_balanced_threshold_is_the_reference_threshold(dtype, case, device):
    from w2s_harness.kernels import reference
    from w2s_harness.kernels.triton_threshold import balanced_threshold

    z, y = make_inputs(case, 45, 2, dtype, device=device, seed=3)
    z = z.detach()
    cd = reference.compute_dtype(dtype)
    p_ref = torch.softmax(z.to(cd), dim=-1)[:, 0]
    thr = balanced_threshold(z, y)
    thr_ref = torch.quantile(p_ref, y.to(cd).mean(0)[1:].sum().clamp(0.0, 1.0))
    assert thr.dtype == cd
    # p0 comes from the kernel's softmax (exp may differ from torch's by an ulp), hence a tolerance here; the
    # select itself is bit-exact (above), and the hardened rows are exact (below).
    torch.testing.assert_close(thr, thr_ref, rtol=1e-6 if cd == F32 else 1e-14, atol=0)


@pytest.mark.parametrize("case", ["random", "ties", "zero_logits", "one_class0", "one_class1"])
@pytest.mark.parametrize("n", [1, 2, 37, 130])
def test_hardened_rows_match_the_reference(case, n, device):
    """The rows the fused kernel hardens to class 0 are exactly the reference's: the gradient of the
    logconf loss with coef = 1 is (p - h) / N, so h is recovered from it exactly."""
    from w2s_harness.kernels import reference, triton_ops

    z, y = make_inputs(case, n, 2, F32, device=device, seed=n)
    zz = z.detach().clone().requires_grad_()
    triton_ops.logconf_loss(zz, y, coef=1.0, balance=True).backward()
    p = torch.softmax(z.detach(), dim=-1)
    h = (p - zz.grad * n).round()
    expected = reference.hardened_targets(z, y, balance=True)
    assert torch.equal(h.cpu(), expected.cpu()), (case, n)
