"""Fused linear head + soft-label CE (``kernels/fused/linear_head.py``) == its plain PyTorch reference:
loss and gradients for hidden, weight and bias, over row chunks (the last one partial)."""

from __future__ import annotations

import pytest
import torch
from _kernel_cases import BF16, F32, F64

pytestmark = pytest.mark.kernels

# (rtol, atol) for loss and for the three gradients
TOL = {F64: ((1e-12, 1e-12), (1e-10, 1e-12)), F32: ((1e-5, 1e-5), (1e-4, 1e-6)),
       BF16: ((1e-4, 1e-5), (2e-2, 2e-4))}


def _inputs(n, h, k, dtype, bias, device, seed=0, frozen_hidden=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, h, generator=g).to(dtype).to(device).requires_grad_(not frozen_hidden)
    w = (torch.randn(k, h, generator=g) * 0.3).to(dtype).to(device).requires_grad_()
    b = (torch.randn(k, generator=g) * 0.1).to(dtype).to(device).requires_grad_() if bias else None
    y = torch.softmax(torch.randn(n, k, generator=g) * 2, dim=-1).to(device)
    return x, w, b, y


def _run(fn, x, w, b, y, go):
    params = [t for t in (x, w, b) if t is not None and t.requires_grad]
    for t in params:
        t.grad = None
    v = fn(x, w, b, y)
    v.backward(torch.tensor(go, dtype=v.dtype, device=v.device))
    return v.detach(), [t.grad.clone() for t in params]


@pytest.mark.parametrize(
    "n,h,k,chunk,bias,dtype,frozen",
    [
        (40, 16, 300, 16, True, F32, False),   # 3 chunks, last partial; k tiled? no: single tile
        (37, 8, 50, None, False, F32, False),  # default chunk size
        (21, 8, 40, 8, True, F32, True),       # linear probe: hidden is frozen
        (24, 16, 64, 16, True, BF16, False),
        (9, 4, 12, 4, True, F64, False),
    ],
)
def test_fused_linear_head_matches_reference(n, h, k, chunk, bias, dtype, frozen, device):
    from w2s_harness.kernels.linear_head import fused_linear_soft_xent, linear_head_soft_xent_reference

    x, w, b, y = _inputs(n, h, k, dtype, bias, device, frozen_hidden=frozen)
    v, grads = _run(lambda *a: fused_linear_soft_xent(*a, chunk_size=chunk), x, w, b, y, 0.5)
    rv, rgrads = _run(linear_head_soft_xent_reference, x, w, b, y, 0.5)
    (lr, la), (gr, ga) = TOL[dtype]
    assert v.dtype == rv.dtype
    torch.testing.assert_close(v, rv, rtol=lr, atol=la)
    assert len(grads) == len(rgrads) == (2 if frozen else 3) - (0 if bias else 1)
    for g, rg in zip(grads, rgrads):
        assert g.dtype == rg.dtype == dtype and g.shape == rg.shape
        torch.testing.assert_close(g.double(), rg.double(), rtol=gr, atol=ga)


def test_large_k_chunk_uses_the_tiled_kernel(device, monkeypatch):
    """Vocabulary-sized k goes through the tiled kernel in place on the chunk's logits buffer."""
    from w2s_harness.kernels import triton_softce
    from w2s_harness.kernels.linear_head import fused_linear_soft_xent, linear_head_soft_xent_reference

    monkeypatch.setattr(triton_softce, "MAX_SINGLE_TILE_K", 64)
    monkeypatch.setattr(triton_softce, "TILED_BLOCK_K", 128)
    x, w, b, y = _inputs(6, 8, 300, F32, True, device, seed=1)
    v, grads = _run(lambda *a: fused_linear_soft_xent(*a, chunk_size=4, accumulate_fp32=True), x, w, b, y, 1.0)
    rv, rgrads = _run(linear_head_soft_xent_reference, x, w, b, y, 1.0)
    torch.testing.assert_close(v, rv, rtol=1e-5, atol=1e-5)
    for g, rg in zip(grads, rgrads):
        torch.testing.assert_close(g, rg, rtol=1e-4, atol=1e-6)


def test_gradcheck_float64(device):
    from w2s_harness.kernels.linear_head import fused_linear_soft_xent

    x, w, b, y = _inputs(5, 3, 6, F64, True, device, seed=2)
    y = y.to(F64)
    assert torch.autograd.gradcheck(
        lambda x_, w_, b_: fused_linear_soft_xent(x_, w_, b_, y, chunk_size=2), (x, w, b), fast_mode=True
    )


@pytest.mark.parametrize("tiled", [False, True])
def test_targets_normalized_and_fp32_accumulation(device, monkeypatch, tiled):
    """``targets_normalized=True`` (no target row sums in the tiled kernel) gives the same values and gradients
    for normalised targets; bf16 weights accumulate grad_weight in fp32 by default (no bf16 round trip per
    chunk), so it is at least as close to the float64 reference as the bf16-accumulated one."""
    from w2s_harness.kernels import triton_softce
    from w2s_harness.kernels.linear_head import fused_linear_soft_xent, linear_head_soft_xent_reference

    if tiled:
        monkeypatch.setattr(triton_softce, "MAX_SINGLE_TILE_K", 64)
        monkeypatch.setattr(triton_softce, "TILED_BLOCK_K", 128)
    x, w, b, y = _inputs(12, 8, 300, F32, True, device, seed=3)
    v, grads = _run(lambda *a: fused_linear_soft_xent(*a, chunk_size=4, targets_normalized=True), x, w, b, y, 1.0)
    rv, rgrads = _run(linear_head_soft_xent_reference, x, w, b, y, 1.0)
    torch.testing.assert_close(v, rv, rtol=1e-5, atol=1e-5)
    for g, rg in zip(grads, rgrads):
        torch.testing.assert_close(g, rg, rtol=1e-4, atol=1e-6)

    xb, wb, bb, yb = _inputs(32, 16, 64, BF16, True, device, seed=4)
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (xb, wb, bb))
    _, g64 = _run(linear_head_soft_xent_reference, x64, w64, b64, yb.double(), 1.0)
    _, g32acc = _run(lambda *a: fused_linear_soft_xent(*a, chunk_size=4), xb, wb, bb, yb, 1.0)
    _, g16acc = _run(lambda *a: fused_linear_soft_xent(*a, chunk_size=4, accumulate_fp32=False), xb, wb, bb, yb, 1.0)
    err32 = (g32acc[1].double() - g64[1]).abs().max()
    err16 = (g16acc[1].double() - g64[1]).abs().max()
    assert g32acc[1].dtype == BF16 and err32 <= err16, (err32, err16)


def test_chunk_size_follows_the_memory_budget():
    from w2s_harness.kernels.linear_head import default_chunk_size

    assert default_chunk_size(16384, 131072, 4096, 2, chunk_bytes=256 * 2**20) == 1024
    assert default_chunk_size(5, 300, 8, 4) == 8  # capped at next_pow2(N)
    assert default_chunk_size(10, 2**30, 8, 4, chunk_bytes=1) == 1
