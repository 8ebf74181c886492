"""The rolling-buffer and k > 2 balanced hardening on the Triton path: every quantile is a device select.

``quantile_select(values, q, mask=...)`` is bit-identical to ``torch.quantile(values[mask], q)``;
``balanced_ids`` (the one-vs-rest peeling with device selects, no host sync) gives exactly the class ids of
``reference.hardened_targets`` (with and without a pool, ties, one-class batches, all-zero heads, the
early exit when no weak mass is left); the fused logconf loss with a pool equals the reference, and so does
the ``logconf`` plugin with ``buffer_size`` on ``backend="triton"``.
"""

from __future__ import annotations

import pytest
import torch
from _kernel_cases import F32, F64, assert_close_grad, assert_close_loss, make_inputs, value_and_grad

pytestmark = pytest.mark.kernels


def _same(a, b):
    """Same bits, NaN == NaN, -0.0 == +0.0 (see test_kernel_threshold._same)."""
    bits = torch.int64 if a.dtype == F64 else torch.int32
    return a.dtype == b.dtype and (bool(a.view(bits) == b.view(bits)) or bool(a.isnan() & b.isnan())
                                   or bool((a == 0) & (b == 0)))


@pytest.mark.parametrize("n,dtype", [(1, F32), (2, F32), (130, F32), (1100, F32), (2, F64), (130, F64)],
                         ids=["1-f32", "2-f32", "130-f32", "1100-f32", "2-f64", "130-f64"])
def test_masked_select_is_torch_quantile_of_the_selection(n, dtype, device):
    """N = 1, N not a multiple of the 1024-value block, ties, one selected value, every value selected."""
    from w2s_harness.kernels.triton_threshold import quantile_select

    g = torch.Generator().manual_seed(n)
    for i, kind in enumerate(["ties", "random", "one", "all"]):
        v = torch.rand(n, generator=g, dtype=torch.float64)
        if kind == "ties":
            v = (v * 4).floor() / 4
        v = v.to(dtype)
        mask = torch.rand(n, generator=g) < 0.5
        if kind == "one" or not mask.any():
            mask = torch.zeros(n, dtype=torch.bool)
            mask[n // 2] = True
        elif kind == "all":
            mask = torch.ones(n, dtype=torch.bool)
        sel = int(mask.sum())
        qs = [0.0, 1.0, 0.37] + ([1 / (sel - 1)] if sel > 1 else [])  # an integer rank: no interpolation
        for q in qs[i % 2:]:
            q = torch.tensor(q, dtype=dtype)
            a = quantile_select(v.to(device), q.to(device), mask=mask.to(device)).cpu()
            assert _same(a, torch.quantile(v[mask], q)), (n, kind, float(q), a)


def test_masked_select_nan_and_empty_selection(device):
    from w2s_harness.kernels.triton_threshold import quantile_select

    v = torch.rand(40, generator=torch.Generator().manual_seed(1)).to(device)
    v[3] = float("nan")
    keep = torch.ones(40, dtype=torch.bool, device=device)
    assert quantile_select(v, torch.tensor(0.2), mask=keep).isnan()
    keep[3] = False  # the NaN not selected: the quantile of the rest
    assert _same(quantile_select(v, torch.tensor(0.2), mask=keep), torch.quantile(v[keep], torch.tensor(0.2)))
    # Nothing selected: NaN (torch.quantile raises on an empty tensor); so does a NaN level.
    assert quantile_select(v, torch.tensor(0.5), mask=torch.zeros(40, dtype=torch.bool, device=device)).isnan()
    assert quantile_select(v[4:], torch.tensor(float("nan"))).isnan()
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        quantile_select(v, torch.tensor(0.5), mask=torch.ones(39, dtype=torch.bool, device=device))


CASES = ["random", "ties", "zero_logits", "one_class0", "one_class1"]


def _pool(kind, k, dtype, g, device="cpu"):
    if kind is None:
        return None
    m = {"small": 7, "large": 90}[kind]
    return (torch.randn(m, k, generator=g, dtype=torch.float64) * 3).round().to(dtype).to(device)  # ties


@pytest.mark.parametrize("case,k,pool", [(c, 3, p) for c in CASES for p in (None, "small", "large")]
                         + [(c, 5, None) for c in CASES])
def test_balanced_ids_are_the_reference_ids(case, k, pool, device):
    """Exactly the reference's hardened classes, including its early exit (one_class*: no weak mass left
    after the first classes, so the rest are hardened by argmax)."""
    from w2s_harness.kernels import reference
    from w2s_harness.kernels.triton_threshold import balanced_ids

    g = torch.Generator().manual_seed(k)
    z, y = make_inputs(case, 37, k, F32, seed=k, device=device)
    z = z.detach()
    p = _pool(pool, k, F32, g, device)
    ids = balanced_ids(z, y, pool=p)
    expected = reference.hardened_targets(z, y, balance=True, pool=p)
    assert ids.dtype == torch.int64
    assert torch.equal(torch.nn.functional.one_hot(ids, k).to(expected.dtype), expected), (case, k, pool)


@pytest.mark.parametrize("dtype", [F64, torch.bfloat16], ids=["f64", "bf16"])
def test_balanced_ids_other_dtypes_and_one_row(dtype, device):
    from w2s_harness.kernels import reference
    from w2s_harness.kernels.triton_threshold import balanced_ids

    for n, case in [(1, "random"), (29, "ties")]:
        z, y = make_inputs(case, n, 4, dtype, seed=2, device=device)
        z = z.detach()
        expected = reference.hardened_targets(z, y, balance=True).argmax(dim=-1)
        assert torch.equal(balanced_ids(z, y), expected), (dtype, n)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("case", ["random", "ties", "one_class1"])
def test_fused_logconf_with_a_pool_matches_the_reference(case, k, device):
    """Loss and gradient of the fused path with a rolling-buffer pool (k = 2: the threshold select over the
    pool's p0; k = 3: the device peeling); coef = 1 makes the gradient (p - h) / N, so the hardened rows are
    compared exactly."""
    from w2s_harness.kernels import reference, triton_ops

    g = torch.Generator().manual_seed(7 + k)
    z, y = make_inputs(case, 45, k, F32, seed=k, device=device)
    pool = torch.cat([_pool("large", k, F32, g, device), z.detach()])  # the buffer holds the batch too
    for coef in (0.3, 1.0):
        fused = lambda a, b, c=coef: triton_ops.logconf_loss(a, b, coef=c, pool=pool)
        ref = lambda a, b, c=coef: reference.logconf_loss(a, b, coef=c, pool=pool)
        v, grad = value_and_grad(fused, z, y)
        rv, rgrad = value_and_grad(ref, z, y)
        assert_close_loss(v, rv, F32, case)
        assert_close_grad(grad, rgrad, F32, case)
        if coef == 1.0:
            p = torch.softmax(z.detach(), dim=-1)
            h = (p - grad * z.shape[0]).round()
            assert torch.equal(h, reference.hardened_targets(z, y, balance=True, pool=pool)), case


def test_pool_arguments_are_checked(device):
    from w2s_harness.kernels import dispatch

    z, y = make_inputs("random", 6, 3, F32, device=device)
    with pytest.raises(ValueError, match="balance=True"):
        dispatch.logconf_loss(z, y, coef=0.5, balance=False, pool=z.detach(), backend="triton")
    with pytest.raises(ValueError, match=r"pool must be \(M, 3\)"):
        dispatch.logconf_loss(z, y, coef=0.5, pool=z.detach()[:, :2], backend="triton")


@pytest.mark.parametrize("k", [2, 3])
def test_logconf_plugin_buffer_on_triton_equals_torch(k, device):
    """Three batches through the stateful ``logconf`` loss (buffer of 50 rows): the Triton backend's losses
    and gradients equal the torch backend's at every step."""
    from w2s_harness.plugins.losses.logconf import LogConfLoss

    fused = LogConfLoss(buffer_size=50, warmup_frac=0.0, backend="triton")
    ref = LogConfLoss(buffer_size=50, warmup_frac=0.0, backend="torch")
    for step in range(3):
        z, y = make_inputs("ties" if step == 1 else "random", 30, k, F32, seed=step, device=device)
        v, grad = value_and_grad(lambda a, b: fused.compute(a, b, 0.5), z, y)
        rv, rgrad = value_and_grad(lambda a, b: ref.compute(a, b, 0.5), z, y)
        assert_close_loss(v, rv, F32, f"step {step}")
        assert_close_grad(grad, rgrad, F32, f"step {step}")


def test_compiled_scan_width_in_the_interpreter(monkeypatch, device):
    """The interpreter scans the histogram in 8,192-bin chunks (fast); compiled code in 1,024-bin ones (few
    registers). The narrow chunks, as compiled, give the same bits: plain, masked, float64, ties across
    chunk boundaries."""
    from w2s_harness.kernels import triton_threshold

    monkeypatch.setattr(triton_threshold, "INTERPRETED_SCAN", 0)
    assert triton_threshold.scan_width(8) == 1024
    g = torch.Generator().manual_seed(3)
    for dtype in (F32, F64):
        v = ((torch.rand(700, generator=g, dtype=torch.float64) * 6).floor() / 5).to(dtype)
        mask = torch.rand(700, generator=g) < 0.6
        for q in (0.0, 0.41, 1.0):
            q = torch.tensor(q, dtype=dtype)
            a = triton_threshold.quantile_select(v.to(device), q.to(device)).cpu()
            assert _same(a, torch.quantile(v, q)), (dtype, float(q), a)
            a = triton_threshold.quantile_select(v.to(device), q.to(device), mask=mask.to(device)).cpu()
            assert _same(a, torch.quantile(v[mask], q)), (dtype, float(q), a)
