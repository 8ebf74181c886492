"""Pick the fused Triton kernel or the PyTorch reference for each loss.

``backend="auto"`` uses Triton for CUDA tensors when triton is importable, the reference otherwise;
``"triton"`` forces the kernel (CPU tensors work under ``TRITON_INTERPRET=1``, which must be set before
triton is imported); ``"torch"`` forces the reference. Every function returns a float32 scalar
(mean over the batch) that supports ``backward()``.
"""

from __future__ import annotations

import importlib
import os
from functools import cache

BACKENDS = ("auto", "torch", "triton")


class KernelUnavailableError(RuntimeError):
    """backend="triton" was requested but cannot run here."""


@cache
def triton_available() -> bool:
    try:
        importlib.import_module("triton")
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False
    return True


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def use_triton(tensor, backend: str) -> bool:
    """Decide the backend for a call on ``tensor``; raise a one-line error for impossible requests."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown loss backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return False
    if backend == "triton":
        if not triton_available():
            raise KernelUnavailableError(
                "backend='triton' needs triton: install the kernels extra with `pip install 'w2s-harness[kernels]'`"
            )
        if not tensor.is_cuda and not interpreting():
            raise KernelUnavailableError(
                "backend='triton' needs a CUDA tensor, or TRITON_INTERPRET=1 set before import to run on CPU"
            )
        return True
    return bool(tensor.is_cuda and triton_available())


def _impl(backend_triton: bool):
    if backend_triton:
        from . import triton_ops

        return triton_ops
    from . import reference

    return reference


def soft_xent(logits, targets, *, backend: str = "auto"):
    """Mean soft-label cross-entropy ``-sum(t * log_softmax(z))``."""
    return _impl(use_triton(logits, backend)).soft_xent(logits, targets)


def product_loss(logits, targets, *, alpha: float = 1.0, beta: float = 1.0, backend: str = "auto"):
    """Product loss: CE against the detached target ``normalise(softmax(z)**beta * y**alpha)``."""
    return _impl(use_triton(logits, backend)).product_loss(logits, targets, alpha=alpha, beta=beta)


def logconf_loss(logits, targets, *, coef: float, balance: bool = True, pool=None, backend: str = "auto"):
    """Confidence loss: CE against ``(1 - coef) * y + coef * hardened(softmax(z))`` (hardening detached).

    ``pool``: (M, k) logits of a rolling buffer the balancing thresholds are taken over (``balance=True``);
    on the Triton path every threshold is a device select, so the step has no host sync."""
    return _impl(use_triton(logits, backend)).logconf_loss(logits, targets, coef=coef, balance=balance, pool=pool)
