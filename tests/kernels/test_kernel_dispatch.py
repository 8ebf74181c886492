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
    from w2s_harness.pluginmanager import create_plugin_manager

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
def test_second_backward_through_one_forward_is_refused_not_silently_wrong(device):
    """The fused kernels scale their stored gradient in place; a retained graph must not reuse it."""
    from w2s_harness.kernels import dispatch
    from w2s_harness.kernels.linear_head import linear_head_soft_xent

    z, y = make_inputs("random", 8, 3, F32, device=device)
    z = z.clone().requires_grad_(True)
    loss = dispatch.soft_xent(z, y, backend="triton") * 2.0
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice through one forward"):
        loss.backward()
    h = torch.randn(4, 3, device=device, requires_grad=True)
    w = torch.randn(2, 3, device=device, requires_grad=True)
    head = linear_head_soft_xent(h, w, None, y[:4, :2] / y[:4, :2].sum(1, keepdim=True), backend="triton")
    head.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice through one forward"):
        head.backward()
