"""logconf's adaptive threshold on the Triton path: ``quantile_linear`` / ``torch.quantile`` bit-equality,
``prob0`` (pass 1) and the hardened rows compared with ``reference.hardened_targets``."""

from __future__ import annotations

import pytest
import torch
from _kernel_cases import F32, F64, make_inputs

pytestmark = pytest.mark.kernels


@pytest.mark.parametrize("n", [1, 2, 7, 101, 1000])
def test_quantile_linear_is_bit_identical_to_torch_quantile(n):
    from w2s_harness.kernels.triton_threshold import quantile_linear

    g = torch.Generator().manual_seed(n)
    for dtype in (F32, F64):
        v = torch.rand(n, generator=g).to(dtype)
        if n > 3:
            v[1] = v[2] = v[3]  # ties
        levels = [0.0, 1.0, 0.5, 1 / 3, 0.25] + torch.rand(20, generator=g).tolist()
        if n > 1:
            levels += [i / (n - 1) for i in range(0, n, max(1, n // 7))]  # integer ranks: no interpolation
        for q in levels:
            q = torch.tensor(q, dtype=dtype)
            a, b = quantile_linear(v, q), torch.quantile(v, q)
            assert a.dtype == b.dtype and (a == b or (a.isnan() and b.isnan())), (n, dtype, float(q), a, b)
    v = torch.rand(9, generator=g)
    v[4] = float("nan")
    assert quantile_linear(v, torch.tensor(0.3)).isnan() and torch.quantile(v, torch.tensor(0.3)).isnan()
    # Out-of-range levels are clamped (torch.quantile would raise on the CPU and read out of bounds on a GPU).
    assert quantile_linear(v[:4], torch.tensor(1.0 + 1e-6)) == v[:4].max()


@pytest.mark.parametrize("dtype", [F32, F64, torch.bfloat16])
def test_prob0_and_threshold_match_the_reference(dtype, device):
    from w2s_harness.kernels import reference
    from w2s_harness.kernels.triton_threshold import balanced_threshold, prob0

    z, y = make_inputs("random", 45, 2, dtype, device=device, seed=3)
    z = z.detach()
    cd = reference.compute_dtype(dtype)
    p_ref = torch.softmax(z.to(cd), dim=-1)[:, 0]
    p0 = prob0(z)
    assert p0.dtype == cd
    torch.testing.assert_close(p0, p_ref, rtol=1e-6 if cd == F32 else 1e-14, atol=0)
    thr = balanced_threshold(z, y)
    thr_ref = torch.quantile(p_ref, y.to(cd).mean(0)[1])
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
