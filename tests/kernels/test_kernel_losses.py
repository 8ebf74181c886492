"""Fused xent / product / logconf kernels (``kernels/fused/triton_ops.py``) == ``kernels/fused/reference.py``.

Values and gradients over k in {2, 3, 8, 1000}, fp32 / bf16 / fp16 / fp64 logits, N not a multiple of the
row block, both kernels (single tile and tiled over k), edge cases (ties, extreme logits, one-class batches,
hard labels), ``grad_output != 1``, and gradcheck in float64. Tolerances: see ``_kernel_cases``.
"""

from __future__ import annotations

import pytest
import torch
from _kernel_cases import (
    BF16,
    F16,
    F32,
    F64,
    assert_close_grad,
    assert_close_loss,
    make_inputs,
    value_and_grad,
)

pytestmark = [pytest.mark.kernels, pytest.mark.usefixtures("one_thread")]

LOSSES = {
    "xent": ("soft_xent", {}),
    "product": ("product_loss", {}),
    "product_a0.5_b2": ("product_loss", {"alpha": 0.5, "beta": 2.0}),
    "logconf_balanced": ("logconf_loss", {"coef": 0.3, "balance": True}),
    "logconf_argmax": ("logconf_loss", {"coef": 0.3, "balance": False}),
}


def _pair(name):
    from w2s_harness.kernels import reference, triton_ops

    fn, kw = LOSSES[name]
    return (
        lambda z, y: getattr(triton_ops, fn)(z, y, **kw),
        lambda z, y: getattr(reference, fn)(z, y, **kw),
    )


def _check(name, z, y, dtype, grad_output=2.0):
    fused, ref = _pair(name)
    v, g = value_and_grad(fused, z, y, grad_output)
    rv, rg = value_and_grad(ref, z, y, grad_output)
    assert torch.isfinite(v) and torch.isfinite(g).all(), name
    assert_close_loss(v, rv, dtype, name)
    assert_close_grad(g, rg, dtype, name)




# N = 130 is not a multiple of any row block (the last program takes the masked branch); k = 1000 with few rows.
SHAPES = [(130, 2, F32), (130, 3, F32), (130, 8, F32), (5, 1000, F32), (130, 2, BF16), (67, 8, BF16),
          (67, 3, F16), (67, 2, F64), (33, 3, F64)]


def _with_losses(shapes, ids):
    """``(name, *shape)`` params. Balanced logconf at k = 1000 is ``slow``: its hardening is the reference's
    one-vs-rest peeling, k - 1 device selects, interpreted: about 2 minutes per test."""
    return [pytest.param(name, *shape, id=f"{i}-{name}",
                         marks=[pytest.mark.slow] if name == "logconf_balanced" and shape[1] >= 1000 else [])
            for shape, i in zip(shapes, ids) for name in LOSSES]


@pytest.mark.parametrize("name,n,k,dtype", _with_losses(SHAPES, [f"N{n}-k{k}-{str(d)[6:]}" for n, k, d in SHAPES]))
def test_matches_reference(name, n, k, dtype, device):
    z, y = make_inputs("random", n, k, dtype, device=device)
    _check(name, z, y, dtype)


TILED = [(3, 1000, 256, "random"), (9, 3, 2, "random"), (9, 3, 2, "extreme"), (9, 3, 2, "hard"),
         (9, 3, 2, "ties"), (5, 2, 2, "one_class1")]


@pytest.mark.parametrize("name,n,k,block,case", _with_losses(TILED, ["-".join(map(str, t)) for t in TILED]))
def test_tiled_kernel_matches_reference(name, n, k, block, case, device, monkeypatch):
    """The large-k kernel (online softmax over BLOCK_K tiles, last tile partial), forced on small shapes.
    (Balanced k == 2 keeps the single-tile kernel by design: its p0 must match the quantile's p0.)"""
    from w2s_harness.kernels import triton_softce

    monkeypatch.setattr(triton_softce, "MAX_SINGLE_TILE_K", 1)
    monkeypatch.setattr(triton_softce, "TILED_BLOCK_K", block)
    z, y = make_inputs(case, n, k, F32, device=device, seed=1)
    _check(name, z, y, F32)


@pytest.mark.parametrize("name", ["product", "product_a0.5_b2"])
@pytest.mark.parametrize("dtype", [F32, BF16, F16, F64], ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("tiled", [False, True], ids=["single_tile", "tiled"])
def test_product_all_underflow_soft_labels(name, dtype, tiled, device, monkeypatch):
    """Soft labels whose float product underflows to 0 in every class (the literal reference gives 0/0 = NaN):
    both kernels give the exact limit, as ``reference.product_targets`` does: finite loss and gradient, equal
    to the reference's, with a target that is a proper distribution and not the ``t = y`` fallback."""
    from w2s_harness.kernels import reference, triton_softce

    if tiled:
        monkeypatch.setattr(triton_softce, "MAX_SINGLE_TILE_K", 1)
        monkeypatch.setattr(triton_softce, "TILED_BLOCK_K", 2)
    kw = LOSSES[name][1]
    alpha, beta = kw.get("alpha", 1.0), kw.get("beta", 1.0)
    yd = F64 if dtype == F64 else F32
    z, y = make_inputs("soft_underflow", 9, 3, dtype, device=device, seed=8, target_dtype=yd)
    zc = z.detach().to(y.dtype)
    with torch.no_grad():
        assert (torch.softmax(zc, -1) ** beta * y**alpha == 0).all()
        t = reference.product_targets(zc, y, alpha=alpha, beta=beta)
    assert torch.isfinite(t).all()
    torch.testing.assert_close(t.sum(-1), torch.ones_like(t[:, 0]))
    assert not torch.allclose(t, y)  # the exact limit, not the fallback to y
    _check(name, z, y, dtype)


CASES = ["hard", "extreme", "ties", "one_class0", "one_class1", "zero_logits"]


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("k", [2, 3])
def test_edge_cases(name, case, k, device):
    n = 37 if k == 2 else 11
    z, y = make_inputs(case, n, k, F32, device=device, seed=2)
    _check(name, z, y, F32)


@pytest.mark.parametrize("case", ["extreme", "hard"])
def test_edge_cases_half(case, device):
    z, y = make_inputs(case, 21, 3, F16, device=device, seed=3)
    for name in ("xent", "product", "logconf_balanced"):
        _check(name, z, y, F16)


def test_one_row_batch(device):
    z, y = make_inputs("random", 1, 2, F32, device=device, seed=4)
    for name in LOSSES:
        _check(name, z, y, F32)


def test_grad_output_one_no_grad_and_strided_inputs(device):
    from w2s_harness.kernels import reference, triton_ops

    z, y = make_inputs("random", 19, 8, F32, device=device, seed=5)
    # grad_output == 1: the in-place scaling kernel exits early; the gradient must be the unscaled one.
    v, g = value_and_grad(triton_ops.soft_xent, z, y, 1.0)
    rv, rg = value_and_grad(reference.soft_xent, z, y, 1.0)
    assert_close_loss(v, rv, F32)
    assert_close_grad(g, rg, F32)
    # No gradient requested: value only (no gradient buffer is written).
    with torch.no_grad():
        assert_close_loss(triton_ops.logconf_loss(z, y, coef=0.5), reference.logconf_loss(z, y, coef=0.5), F32)
    # Strided logits (a column slice of a wider tensor) and bf16 targets.
    wide = torch.randn(19, 12, dtype=F32, device=device)
    zs = wide[:, 2:10]
    yb = y.to(BF16)
    _check("product_a0.5_b2", zs, yb, F32, grad_output=0.5)


def test_loss_is_differentiable_inside_a_larger_graph(device):
    """The fused loss composes with other ops (grad_output is a tensor produced by autograd)."""
    from w2s_harness.kernels import reference, triton_ops

    z, y = make_inputs("random", 23, 3, F32, device=device, seed=6)
    w = torch.linspace(0.5, 1.5, 3, device=device)

    def total(fn):
        zz = z.detach().clone().requires_grad_()
        (fn(zz * w, y) * 3.0 + fn(zz, y) ** 2).backward()
        return zz.grad

    fused = total(lambda a, b: triton_ops.logconf_loss(a, b, coef=0.4))
    assert_close_grad(fused, total(lambda a, b: reference.logconf_loss(a, b, coef=0.4)), F32)


@pytest.mark.parametrize(
    "name,n,k,fast",
    [("xent", 3, 3, False), ("logconf_balanced", 6, 2, True), ("logconf_argmax", 4, 3, True)],
)
def test_gradcheck_float64(name, n, k, fast, device):
    """Finite differences in float64 (the kernels compute in float64 for float64 logits). Only losses whose
    target does not depend smoothly on z: product's target is detached by definition, so its analytic
    gradient intentionally differs from finite differences (it is checked against the reference instead)."""
    fused, _ = _pair(name)
    z, y = make_inputs("random", n, k, F64, device=device, seed=7)
    y = y.to(F64)
    assert torch.autograd.gradcheck(lambda t: fused(t, y), (z.detach().requires_grad_(),), fast_mode=fast)


def test_launch_tables_are_enforced(device):
    """``soft_ce_forward`` launches only what ``LOGITS_DTYPES`` / ``TARGET_DTYPES`` / ``HARD_BY_MODE`` list
    (the tables the sm_90 compile check covers); anything else is a one-line error before any launch."""
    from w2s_harness.kernels import triton_softce as ts

    z, y = make_inputs("random", 6, 3, F32, device=device)
    with pytest.raises(TypeError, match="must be one of"):
        ts.soft_ce_forward(z.detach(), y.to(torch.int64), ts.MODE_XENT)
    if hasattr(torch, "float8_e5m2"):
        with pytest.raises(TypeError, match="must be one of"):
            ts.soft_ce_forward(z.detach().to(torch.float8_e5m2), y, ts.MODE_XENT)
    with pytest.raises(ValueError, match="takes hard in"):
        ts.soft_ce_forward(z.detach(), y, ts.MODE_XENT, hard=ts.HARD_ARGMAX)
    # Class ids of any integer dtype take the one (int64) kernel variant and give the same result.
    ids = torch.tensor([0, 1, 2, 2, 1, 0], device=device)
    a = ts.soft_ce_forward(z.detach(), y, ts.MODE_LOGCONF, hard=ts.HARD_IDS, hard_ids=ids, coef=0.5)
    b = ts.soft_ce_forward(z.detach(), y, ts.MODE_LOGCONF, hard=ts.HARD_IDS, hard_ids=ids.int(), coef=0.5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
