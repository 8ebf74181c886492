"""Triton implementations of the loss functions in ``kernels/reference.py`` (same signatures, same semantics).

Every function returns the float32 mean over the batch and supports ``backward()``; the gradient wrt the
logits is produced by the same kernel pass that computes the loss (see ``triton_softce``). Targets are
treated as constants (no gradient to them), as in the training losses.

Dispatch (``kernels/dispatch.py``) sends CUDA tensors here for ``backend="auto"``; CPU tensors work under
``TRITON_INTERPRET=1`` (the interpreter), which is how CI checks these kernels against the reference.
"""

from __future__ import annotations

import torch

from .triton_softce import (
    HARD_ARGMAX,
    HARD_IDS,
    HARD_THRESHOLD,
    MODE_LOGCONF,
    MODE_PRODUCT,
    MODE_XENT,
    fused_soft_ce,
)
from .triton_threshold import balanced_threshold


def soft_xent(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-sum(y * log_softmax(z))``: one fused pass for loss and gradient."""
    return fused_soft_ce(logits, targets, MODE_XENT)


def product_loss(logits: torch.Tensor, targets: torch.Tensor, *, alpha: float = 1.0, beta: float = 1.0):
    """CE against the detached ``normalise(softmax(z)**beta * y**alpha)``, computed in log space as
    ``softmax(beta * log_softmax(z) + xlogy(alpha, y))`` like the reference: the exact normalised product
    even where the float product underflows in every class (rows whose target is still non-finite fall back
    to ``y``). The target transform runs inside the fused kernel."""
    return fused_soft_ce(logits, targets, MODE_PRODUCT, alpha=alpha, beta=beta)


def logconf_loss(logits: torch.Tensor, targets: torch.Tensor, *, coef: float, balance: bool = True):
    """CE against ``(1 - coef) * y + coef * onehot(h)`` with ``h`` the detached hardened prediction.

    * k == 2 and ``balance``: the reference's adaptive threshold ``quantile(p0, mean(y)[1])`` computed on the
      device (``triton_threshold``); the fused kernel re-derives ``p0`` and hardens in-kernel.
    * ``balance`` with k > 2: the hardened ids come from ``reference.hardened_targets`` (one-vs-rest
      peeling: k - 1 batch quantiles with data-dependent control flow, computed in torch), then the fused
      CE kernel consumes them (``HARD_IDS``).
    * no ``balance``: ``h = argmax(p)`` (first index on ties) inside the fused kernel.
    """
    k = logits.shape[-1]
    if balance and k == 2:
        with torch.no_grad():
            thr = balanced_threshold(logits.detach(), targets.detach())
        return fused_soft_ce(logits, targets, MODE_LOGCONF, hard=HARD_THRESHOLD, threshold=thr, coef=coef)
    if balance:
        with torch.no_grad():
            ids = _balanced_ids(logits.detach(), targets.detach())
        return fused_soft_ce(logits, targets, MODE_LOGCONF, hard=HARD_IDS, hard_ids=ids, coef=coef)
    return fused_soft_ce(logits, targets, MODE_LOGCONF, hard=HARD_ARGMAX, coef=coef)


def _balanced_ids(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Class-balanced hardened ids for k > 2 (the reference's one-vs-rest peeling, a sequence of batch
    quantiles with data-dependent control flow), taken from the reference so both backends agree."""
    from . import reference

    return reference.hardened_targets(logits, targets, balance=True).argmax(dim=-1)
