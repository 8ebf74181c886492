"""Triton implementations of the loss functions in ``kernels/fused/reference.py`` (same signatures, same semantics).

Every function returns the float32 mean over the batch and supports ``backward()``; the gradient wrt the
logits is produced by the same kernel pass that computes the loss (see ``triton_softce``). Targets are
treated as constants (no gradient to them), as in the training losses.

Dispatch (``kernels/fused/dispatch.py``) sends CUDA tensors here for ``backend="auto"``; CPU tensors work under
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
from .triton_threshold import balanced_ids, balanced_threshold


def soft_xent(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-sum(y * log_softmax(z))``: one fused pass for loss and gradient."""
    return fused_soft_ce(logits, targets, MODE_XENT)


def product_loss(logits: torch.Tensor, targets: torch.Tensor, *, alpha: float = 1.0, beta: float = 1.0):
    """CE against the detached ``normalise(softmax(z)**beta * y**alpha)``, computed in log space as
    ``softmax(beta * log_softmax(z) + xlogy(alpha, y))`` like the reference: the exact normalised product
    even where the float product underflows in every class (rows whose target is still non-finite fall back
    to ``y``). The target transform runs inside the fused kernel."""
    return fused_soft_ce(logits, targets, MODE_PRODUCT, alpha=alpha, beta=beta)


def logconf_loss(logits: torch.Tensor, targets: torch.Tensor, *, coef: float, balance: bool = True,
                 pool: torch.Tensor | None = None):
    """CE against ``(1 - coef) * y + coef * onehot(h)`` with ``h`` the detached hardened prediction.

    * k == 2 and ``balance``: the reference's adaptive threshold ``quantile(p0, mean(y)[1])`` computed on the
      device (``triton_threshold.balanced_threshold``, over the ``pool`` rows when given); the fused kernel
      re-derives ``p0`` and hardens in-kernel.
    * ``balance`` with k > 2: the reference's one-vs-rest peeling with each of its k - 1 quantiles a device
      select (``triton_threshold.balanced_ids``: no host sync), then the fused CE kernel consumes the class
      ids (``HARD_IDS``).
    * no ``balance``: ``h = argmax(p)`` (first index on ties) inside the fused kernel.

    ``pool``: (M, k) logits of the rolling buffer the balancing thresholds come from (``balance`` only).
    """
    from .reference import compute_dtype

    k = logits.shape[-1]
    if pool is not None:
        if not balance:
            raise ValueError("pool only feeds the balancing threshold: pass balance=True or no pool")
        if pool.dim() != 2 or pool.shape[1] != k:
            raise ValueError(f"pool must be (M, {k}) logits, got shape {tuple(pool.shape)}")
        pool = pool.detach()
        if compute_dtype(pool.dtype) != compute_dtype(logits.dtype):
            # Mixed precision between the buffer and the batch: the reference compares values of two dtypes;
            # take its ids (torch, host syncs) rather than a select in one dtype.
            from . import reference

            with torch.no_grad():
                ids = reference.hardened_targets(logits.detach(), targets.detach(), pool=pool).argmax(dim=-1)
            return fused_soft_ce(logits, targets, MODE_LOGCONF, hard=HARD_IDS, hard_ids=ids, coef=coef)
    if balance and k == 2:
        with torch.no_grad():
            thr = balanced_threshold(logits.detach(), targets.detach(), pool=pool)
        return fused_soft_ce(logits, targets, MODE_LOGCONF, hard=HARD_THRESHOLD, threshold=thr, coef=coef)
    if balance:
        with torch.no_grad():
            ids = balanced_ids(logits.detach(), targets.detach(), pool=pool)
        return fused_soft_ce(logits, targets, MODE_LOGCONF, hard=HARD_IDS, hard_ids=ids, coef=coef)
    return fused_soft_ce(logits, targets, MODE_LOGCONF, hard=HARD_ARGMAX, coef=coef)
