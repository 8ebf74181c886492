"""Dispatch: ``backend="triton"`` without triton is a one-line error naming the ``kernels`` extra (runs even
where triton is missing); under the interpreter, ``backend="triton"`` runs the kernels on CPU tensors and the
loss plugins reach them through ``dispatch``."""

from __future__ import annotations

import pytest
import torch
from _kernel_cases import F32, make_inputs

pytestmark = pytest.mark.kernels

#: The error tests below simulate a missing triton; the conftest skips other modules when it is really missing.
NEEDS_TRITON = False

needs_triton = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("triton") is None, reason="triton is not installed"
)


def _calls():
    from w2s_harness.kernels import dispatch
    from w2s_harness.kernels.linear_head import linear_head_soft_xent

    z, y = make_inputs("random", 4, 2, F32)
    w = torch.zeros(2, 3)
    return {
        "soft_xent": lambda: dispatch.soft_xent(z, y, backend="triton"),
        "product_loss": lambda: dispatch.product_loss(z, y, backend="triton"),
        "logconf_loss": lambda: dispatch.logconf_loss(z, y, coef=0.5, backend="triton"),
        "linear_head": lambda: linear_head_soft_xent(torch.zeros(4, 3), w, None, y, backend="triton"),
    }


@pytest.mark.parametrize("which", ["soft_xent", "product_loss", "logconf_loss", "linear_head"])
def test_backend_triton_without_triton_is_a_one_line_error(which, monkeypatch):
    from w2s_harness.kernels import dispatch

    monkeypatch.setattr(dispatch, "triton_available", lambda: False)
    with pytest.raises(dispatch.KernelUnavailableError) as err:
        _calls()[which]()
    msg = str(err.value)
    assert "\n" not in msg and "pip install" in msg and "kernels" in msg, msg


def test_backend_auto_on_cpu_uses_the_reference(monkeypatch):
    from w2s_harness.kernels import dispatch, reference

    monkeypatch.setattr(dispatch, "triton_available", lambda: False)
    z, y = make_inputs("random", 6, 3, F32)
    assert torch.equal(dispatch.logconf_loss(z, y, coef=0.2), reference.logconf_loss(z, y, coef=0.2))


@needs_triton
def test_backend_triton_runs_the_kernels(device):
    from w2s_harness.kernels import dispatch, reference

    z, y = make_inputs("random", 10, 3, F32, device=device)
    assert dispatch._impl(dispatch.use_triton(z, "triton")).__name__.endswith("triton_ops")
    for fn, kw in [("soft_xent", {}), ("product_loss", {"alpha": 0.5}), ("logconf_loss", {"coef": 0.3})]:
        got = getattr(dispatch, fn)(z, y, backend="triton", **kw)
        torch.testing.assert_close(got, getattr(reference, fn)(z, y, **kw), rtol=1e-5, atol=1e-5)


@needs_triton
@pytest.mark.parametrize("name,params", [("xent", {}), ("product", {"beta": 0.5}), ("logconf", {}),
                                         ("logconf", {"balance": False}), ("kl", {})])
def test_loss_plugins_reach_the_kernels(name, params, device):
    """The losses from the losses issue, with backend="triton", equal backend="torch" (values and grads)."""
    from w2s_harness._plugin_system.manager import create_plugin_manager

    pm = create_plugin_manager(entry_points=False)
    fused = pm.create("loss", name, backend="triton", **params)
    plain = pm.create("loss", name, backend="torch", **params)
    z, y = make_inputs("random", 17, 2, F32, device=device, seed=9)
    out = []
    for loss in (fused, plain):
        zz = z.detach().clone().requires_grad_()
        v = loss(zz, y, 0.5)
        v.backward()
        out.append((v.detach(), zz.grad))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[0][1], out[1][1], rtol=1e-4, atol=1e-6)


def test_backend_triton_on_cpu_without_interpreter_is_refused(monkeypatch):
    """CPU tensors need TRITON_INTERPRET=1; without it ``backend="triton"`` says so in one line."""
    from w2s_harness.kernels import dispatch

    monkeypatch.setattr(dispatch, "triton_available", lambda: True)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    z, y = make_inputs("random", 4, 2, F32)
    with pytest.raises(dispatch.KernelUnavailableError, match="CUDA") as err:
        dispatch.soft_xent(z, y, backend="triton")
    assert "\n" not in str(err.value)


@needs_triton
@pytest.mark.parametrize("first", [1.0, 2.0, 0.3])
def test_backward_twice_through_one_forward_gives_the_reference_gradient(device, first):
    """The fused kernels scale their stored gradient in place; a retained graph (or gradcheck) must still get
    grad_output * gradient on every backward, not the gradient scaled twice."""
    from w2s_harness.kernels import dispatch, reference
    from w2s_harness.kernels.linear_head import linear_head_soft_xent

    z0, y = make_inputs("random", 8, 3, F32, device=device)
    zr = z0.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(reference.soft_xent(zr, y), zr)
    z = z0.clone().requires_grad_(True)
    loss = dispatch.soft_xent(z, y, backend="triton")
    for factor in (first, 3.0, 1.0):
        (g,) = torch.autograd.grad(loss * factor, z, retain_graph=True)
        torch.testing.assert_close(g, g_ref * factor, rtol=1e-5, atol=1e-6)
    h = torch.randn(4, 3, device=device, requires_grad=True)
    w = torch.randn(2, 3, device=device, requires_grad=True)
    t = y[:4, :2] / y[:4, :2].sum(1, keepdim=True)
    refs = torch.autograd.grad(linear_head_soft_xent(h, w, None, t, backend="torch"), [h, w])
    head = linear_head_soft_xent(h, w, None, t, backend="triton")
    for factor in (first, 3.0):
        got = torch.autograd.grad(head * factor, [h, w], retain_graph=True)
        for a, b in zip(got, refs):
            torch.testing.assert_close(a, b * factor, rtol=1e-5, atol=1e-6)


@needs_triton
def test_backward_after_a_zero_scaled_backward_is_a_clear_error(device):
    from w2s_harness.kernels import dispatch

    z, y = make_inputs("random", 8, 3, F32, device=device)
    z = z.clone().requires_grad_(True)
    loss = dispatch.soft_xent(z, y, backend="triton")
    torch.autograd.grad(loss * 0.0, z, retain_graph=True)
    with pytest.raises(RuntimeError, match="grad_output 0"):
        torch.autograd.grad(loss, z)
