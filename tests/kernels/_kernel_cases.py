"""Inputs, tolerances and comparison helpers shared by the kernel tests (small shapes: the interpreter is slow).

Tolerances (stated once, used everywhere):

* float64 logits: the kernels compute in float64 -> loss and gradient within 1e-12.
* float32 logits: loss atol/rtol 1e-5; gradient atol 1e-6 (entries are O(1/N)), rtol 1e-4.
* bf16 / fp16 logits: both sides compute in float32 from the same rounded logits, so the loss agrees to
  1e-5 (rtol 1e-4); the gradient is stored in the logits dtype (both sides round once, the kernel rounds
  a second time when ``grad_output != 1``), so it is compared with rtol 1.6e-2 (2 bf16 ulps) and atol 1e-5.
"""

from __future__ import annotations

import torch

F64, F32, BF16, F16 = torch.float64, torch.float32, torch.bfloat16, torch.float16

LOSS_TOL = {F64: (1e-12, 1e-12), F32: (1e-5, 1e-5), BF16: (1e-4, 1e-5), F16: (1e-4, 1e-5)}  # (rtol, atol)
GRAD_TOL = {F64: (1e-10, 1e-12), F32: (1e-4, 1e-6), BF16: (1.6e-2, 1e-5), F16: (1e-2, 1e-5)}

EXTREME = {F64: 1e4, F32: 1e4, BF16: 1e4, F16: 6e4}


def make_inputs(case: str, n: int, k: int, dtype=F32, *, device="cpu", seed: int = 0, target_dtype=F32):
    """(logits, targets) for a named case; logits are a leaf that requires grad."""
    g = torch.Generator().manual_seed(seed * 1000 + n * 31 + k)
    z = torch.randn(n, k, generator=g, dtype=torch.float64) * 3
    y = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64) * 2, dim=-1)
    if case == "random":
        pass
    elif case == "hard":  # one-hot weak labels, some on classes the model gives ~0 (product underflow case)
        cls = torch.randint(0, k, (n,), generator=g)
        y = torch.nn.functional.one_hot(cls, k).double()
        z[:, :] = -30.0
        z[torch.arange(n), (cls + 1) % k] = 30.0
    elif case == "extreme":
        big = EXTREME[dtype]
        z = torch.sign(z) * big
        z[::3, 0] = big  # ties at the maximum
    elif case == "ties":  # duplicated rows and an all-zero (zero-initialised head) block
        z[n // 2:] = z[0]
        z[: n // 4] = 0.0
        y[n // 2:] = y[0]
    elif case == "one_class0":
        y = torch.zeros(n, k, dtype=torch.float64)
        y[:, 0] = 1.0
    elif case == "one_class1":
        y = torch.zeros(n, k, dtype=torch.float64)
        y[:, 1] = 1.0
    elif case == "zero_logits":
        z.zero_()
    elif case == "soft_underflow":
        # Soft weak labels whose float product p**beta * y**alpha is 0 in EVERY class of the compute dtype
        # (for alpha > 0, beta >= 1): no weak mass on the predicted class c, and the model gives the other
        # classes ~exp(-gap), below the smallest subnormal.
        gap = 800.0 if dtype == F64 else 120.0
        cls = torch.arange(n) % k
        z = -gap - torch.rand(n, k, generator=g, dtype=torch.float64).mul(8).round()
        z[torch.arange(n), cls] = 0.0
        y = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64), dim=-1)
        y[torch.arange(n), cls] = 0.0
        y = y / y.sum(dim=-1, keepdim=True)
    else:
        raise ValueError(case)
    z = z.to(dtype).to(device).requires_grad_()
    return z, y.to(target_dtype).to(device)


def value_and_grad(fn, z, y, grad_output: float = 1.0):
    z = z.detach().clone().requires_grad_()
    v = fn(z, y)
    v.backward(torch.tensor(grad_output, dtype=v.dtype, device=v.device))
    return v.detach(), z.grad.detach()


def assert_close_loss(actual, expected, dtype, msg=""):
    rtol, atol = LOSS_TOL[dtype]
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype, msg)
    torch.testing.assert_close(actual.cpu(), expected.cpu(), rtol=rtol, atol=atol, msg=lambda m: f"{msg}: {m}")


def assert_close_grad(actual, expected, dtype, msg=""):
    rtol, atol = GRAD_TOL[dtype]
    assert actual.dtype == expected.dtype == dtype, (actual.dtype, expected.dtype, msg)
    torch.testing.assert_close(
        actual.double().cpu(), expected.double().cpu(), rtol=rtol, atol=atol, msg=lambda m: f"{msg}: {m}"
    )
