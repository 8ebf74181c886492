"""PyTorch reference implementations of the w2s-harness losses.

These functions define the semantics. ``kernels/fused/triton_ops.py`` implements the same three entry points
with the same signatures, and its tests compare against this module. ``kernels/fused/dispatch.py`` chooses
between the two.

Contract (all functions here):

* ``logits``: an ``(N, k)`` floating tensor (N >= 1, k >= 2, any float dtype). ``targets``: ``(N, k)`` soft
  labels (entries >= 0, rows sum to 1). **Nothing is validated here.** The loss plugins
  (``w2s_harness.plugins.losses``) check inputs and turn integer class ids into one-hot rows first.
* **Precision**: fp16, bf16 and fp32 inputs are upcast to float32 (the reference's ``logits.float()``).
  float64 inputs stay float64, so exactness tests can run in double precision. The result is a 0-dim
  tensor of that compute dtype: the mean over the N rows.
* **Gradients** flow to ``logits`` only. ``targets`` are constants (detached), and so are the derived targets
  (the product target, the hardened predictions), exactly where the reference detaches them.

Entry points shared with the Triton kernels:

``soft_xent(logits, targets)``
    ``mean_i -sum_j t_ij * log_softmax(z_i)_j``. This is ``torch.nn.functional.cross_entropy`` with
    probability targets.
``product_loss(logits, targets, *, alpha=1.0, beta=1.0)``
    ``soft_xent(z, t)``, where ``t = normalise(softmax(z)**beta * y**alpha)`` is detached. It is computed in
    log space as ``t = softmax(beta * log_softmax(z) + xlogy(alpha, y))``. This equals the reference
    wherever the reference is defined. Where the reference's float product underflows to 0 in every class
    (which gives ``0/0 = NaN`` in the reference), it gives the exact value of the normalised product: the
    weak label's class for a hard label, and for a soft label the distribution proportional to
    ``p**beta * y**alpha`` over the classes the label supports (dominated by the largest
    ``beta * log p_j + alpha * log y_j``, not necessarily the weak label's argmax). A row is undefined only
    where ``log_softmax(z)`` is ``-inf`` or NaN on every class the weak label supports (non-finite logits,
    or finite logits further apart than the compute dtype's range); its target falls back to ``y``.
``logconf_loss(logits, targets, *, coef, balance=True)``
    ``soft_xent(z, (1 - coef) * y + coef * h)``, where ``h = hardened_targets(z, y, balance=balance)``
    (one-hot, detached).

Hardening (:func:`hardened_targets`):

* ``balance=False``: ``h = one_hot(argmax_j softmax(z)_ij)``. Ties go to the lowest class index.
* ``balance=True`` with k = 2 is exactly the reference. ``threshold = torch.quantile(p[:, 0], m[1])``,
  where ``m = y.mean(0)``; class 0 where ``p[:, 0] >= threshold``, class 1 otherwise.
* ``balance=True`` with k > 2 uses *one-vs-rest peeling*, which generalises that rule deterministically.
  All rows start unassigned. For ``c = 0, 1, ..., k - 2``:

  - the score of row i is ``s_i = softmax(z_i[c:])[0]``. This is the probability of class c given that
    the row is not in classes ``0..c-1``. For ``c = 0`` it is ``p[:, 0]`` itself.
  - the level is ``q_c = sum(m[c+1:]) / sum(m[c:])``: the weak labels' share of the classes after c, among
    classes ``c..k-1``. For ``c = 0`` it is ``sum(m[1:])``, which is ``m[1]`` when k = 2.
  - ``threshold_c = torch.quantile(s[unassigned], q_c)`` (linear interpolation). Every unassigned row with
    ``s_i >= threshold_c`` becomes class c.

  The rows still unassigned after that become class ``k - 1``. About ``m[c] * N`` rows go to class c
  (exactly so, up to quantile interpolation and ties), and the rows taken are the ones most confident in
  c. If no weak mass remains for classes ``c..k-1``, the remaining rows are hardened by argmax over
  those classes. For k = 2 only the ``c = 0`` step runs, and it is the reference's computation,
  operation for operation. Ties behave as in the reference: rows tied at the threshold all go to the
  class being peeled. So with an all-zero (zero-initialised) head, every row goes to class 0.
* ``pool`` (rolling-buffer variant): the thresholds are computed on the ``pool`` rows, which are peeled
  with the same thresholds. They are then applied to the batch rows. ``m`` always comes from the batch's
  weak labels. This is EleutherAI/w2s ``log_confidence_loss(buffer=...)`` for k = 2.
"""

from __future__ import annotations

import torch

__all__ = [
    "WARMUPS",
    "compute_dtype",
    "entropy_rows",
    "hardened_targets",
    "logconf_coef",
    "logconf_loss",
    "logconf_targets",
    "product_loss",
    "product_targets",
    "soft_xent",
    "soft_xent_rows",
    "upcast",
]

#: Warm-up schedules understood by :func:`logconf_coef`.
WARMUPS = ("linear", "openai")


# ------------------------------------------------------------------------------------------- helpers


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the maths runs in for inputs of ``dtype``: float64 stays float64, everything else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def upcast(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` in the compute dtype (differentiable; a no-op for float32/float64)."""
    return logits.to(compute_dtype(logits.dtype))


def _const(targets: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return targets.detach().to(dtype)


# ---------------------------------------------------------------------------------------------- xent


def soft_xent_rows(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row soft-label cross-entropy ``-sum_j t_ij log_softmax(z_i)_j``, shape ``(N,)``."""
    z = upcast(logits)
    t = _const(targets, z.dtype)
    return -(t * torch.log_softmax(z, dim=-1)).sum(dim=-1)


def soft_xent(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean soft-label cross-entropy (the reference ``xent``): ``mean_i -sum_j t_ij log_softmax(z_i)_j``."""
    return soft_xent_rows(logits, targets).mean()


def entropy_rows(logits: torch.Tensor) -> torch.Tensor:
    """Per-row entropy of ``softmax(z)``, ``-sum_j p_ij log p_ij``, shape ``(N,)``; finite, differentiable."""
    z = upcast(logits)
    logp = torch.log_softmax(z, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


# ------------------------------------------------------------------------------------------- product


def product_targets(
    logits: torch.Tensor, targets: torch.Tensor, *, alpha: float = 1.0, beta: float = 1.0
) -> torch.Tensor:
    """The detached product target ``normalise(softmax(z)**beta * y**alpha)``, shape ``(N, k)``.

    It is computed as ``softmax(beta * log_softmax(z) + xlogy(alpha, y))``, with ``0**0 = 1`` as in
    ``torch.pow``: the exact normalised product even where the float product underflows to 0 in every class
    (see the module docstring). Rows that are still undefined (``log_softmax(z)`` not finite on any class
    the weak label supports) fall back to ``y``.
    """
    z = upcast(logits).detach()
    y = _const(targets, z.dtype)
    logp = torch.log_softmax(z, dim=-1)
    strong = logp * beta if beta != 0 else torch.zeros_like(logp)  # p**0 == 1, even where p underflows
    log_t = strong + torch.xlogy(float(alpha), y)
    t = torch.softmax(log_t, dim=-1)
    undefined = ~torch.isfinite(t).all(dim=-1, keepdim=True)
    return torch.where(undefined, y, t)


def product_loss(
    logits: torch.Tensor, targets: torch.Tensor, *, alpha: float = 1.0, beta: float = 1.0
) -> torch.Tensor:
    """Reference ``product`` loss: ``soft_xent(z, product_targets(z, y, alpha, beta))`` (target detached)."""
    return soft_xent(logits, product_targets(logits, targets, alpha=alpha, beta=beta))


# ------------------------------------------------------------------------------------------- logconf


def logconf_coef(
    step_frac: float, aux_coef: float = 0.5, warmup_frac: float = 0.1, warmup: str = "linear"
) -> float:
    """Weight of the hardened self-target at training progress ``step_frac`` in [0, 1].

    * ``"openai"``: the reference, ``(step_frac if step_frac <= warmup_frac else 1.0) * aux_coef``. It ramps
      from 0 to ``warmup_frac * aux_coef`` during warm-up and then jumps to ``aux_coef``.
    * ``"linear"``: ``min(1, step_frac / warmup_frac) * aux_coef``, a smooth ramp to ``aux_coef``. With
      ``warmup_frac == 0`` the coefficient is ``aux_coef`` from the first step.
    """
    step_frac = float(step_frac)
    if warmup == "openai":
        coef = step_frac if step_frac <= warmup_frac else 1.0
        return coef * aux_coef
    if warmup == "linear":
        if warmup_frac <= 0:
            return float(aux_coef)
        return min(1.0, step_frac / warmup_frac) * aux_coef
    raise ValueError(f"unknown warmup {warmup!r}; choose one of {', '.join(WARMUPS)}")


def _cond_first(z: torch.Tensor, c: int) -> torch.Tensor:
    """``softmax(z[:, c:])[:, 0]``: probability of class ``c`` given the row is not in classes ``< c``."""
    return torch.softmax(z[:, c:], dim=-1)[:, 0]


def hardened_targets(
    logits: torch.Tensor,
    weak: torch.Tensor,
    *,
    balance: bool = True,
    pool: torch.Tensor | None = None,
) -> torch.Tensor:
    """One-hot hardened strong predictions ``(N, k)``, detached, in the compute dtype (see module docstring).

    :param logits: ``(N, k)`` strong logits (detached here).
    :param weak: ``(N, k)`` weak soft labels. Only their batch mean ``m`` is used, and only if ``balance``.
    :param balance: match the weak labels' class proportions (the reference's adaptive threshold) instead of
        plain argmax.
    :param pool: optional ``(M, k)`` logits the thresholds are computed on (rolling buffer); default: the
        batch itself.
    """
    z = upcast(logits).detach()
    n, k = z.shape
    out = torch.zeros_like(z)
    if not balance:
        idx = torch.softmax(z, dim=-1).argmax(dim=-1)
        return out.scatter_(1, idx[:, None], 1.0)

    m = _const(weak, z.dtype).mean(dim=0)
    ref = None if pool is None else upcast(pool).detach().to(z.device)
    free = torch.ones(n, dtype=torch.bool, device=z.device)
    free_ref = None if ref is None else torch.ones(ref.shape[0], dtype=torch.bool, device=z.device)
    for c in range(k - 1):
        s = _cond_first(z, c)
        s_ref = s if ref is None else _cond_first(ref, c)
        if c == 0:
            # Exactly the reference: threshold = torch.quantile(p[:, 0], mean_weak[1]) over the whole batch.
            q = m[1:].sum()
            cand = s_ref
        else:
            mass = m[c:].sum()
            cand = s_ref[free] if ref is None else s_ref[free_ref]
            if cand.numel() == 0 or not bool(mass > 0):
                # No weak mass (or no pool rows) left for classes c..k-1: argmax among them.
                idx = torch.softmax(z[:, c:], dim=-1).argmax(dim=-1) + c
                rest = torch.zeros_like(out).scatter_(1, idx[:, None], 1.0)
                out = torch.where(free[:, None], rest, out)
                return out
            q = m[c + 1 :].sum() / mass
        threshold = torch.quantile(cand, q.clamp(0.0, 1.0))
        take = free & (s >= threshold)
        out[:, c] = take.to(out.dtype)
        free = free & ~take
        if ref is not None:
            free_ref = free_ref & ~(s_ref >= threshold)
    out[:, k - 1] = free.to(out.dtype)
    return out


def logconf_targets(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    coef: float,
    balance: bool = True,
    pool: torch.Tensor | None = None,
) -> torch.Tensor:
    """The detached logconf target ``(1 - coef) * y + coef * hardened_targets(z, y)``, shape ``(N, k)``."""
    z = upcast(logits).detach()
    y = _const(targets, z.dtype)
    h = hardened_targets(z, y, balance=balance, pool=pool)
    return y * (1 - coef) + h * coef


def logconf_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    coef: float,
    balance: bool = True,
    pool: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reference ``logconf`` (auxiliary confidence loss): ``soft_xent(z, (1 - coef) * y + coef * h)``.

    ``coef`` is the already-scheduled coefficient (see :func:`logconf_coef`). k = 2 with ``balance=True``
    reproduces ``openai/weak-to-strong`` ``logconf_loss_fn`` exactly. ``pool``: the rolling buffer's logits
    the balancing thresholds are computed on (see :func:`hardened_targets`).
    """
    return soft_xent(logits, logconf_targets(logits, targets, coef=coef, balance=balance, pool=pool))
