"""``kl``: KL divergence between the weak labels and the strong predictions (EleutherAI/w2s)."""

from __future__ import annotations

from w2s_harness import BaseLoss, check_backend, check_choice, check_number

DIRECTIONS = ("forward", "reverse")


class KLLoss(BaseLoss):
    """KL divergence to the weak labels, averaged over the batch.

    * ``direction="forward"`` (default): ``KL(y || p) = sum_j y_j (log y_j - log p_j)``, with ``0 log 0 = 0``.
      Its gradient equals ``xent``'s; the value is ``xent`` minus the weak labels' entropy, so a perfect fit
      gives 0. It is computed as ``soft_xent`` through the backend (fusable) minus ``mean H(y)``.
      Source: EleutherAI/w2s ``w2s/loss.py::kl_divergence_loss`` (``F.kl_div(..., reduction="batchmean")``).
    * ``direction="reverse"``: ``KL(p || y~) = sum_j p_j (log p_j - log y~_j)``, mode-seeking. The weak labels
      are smoothed, ``y~ = (y + eps) / (1 + k * eps)``, so hard labels give a finite loss. PyTorch only.

    :param direction: ``"forward"`` or ``"reverse"``.
    :param eps: label smoothing for ``reverse`` (ignored by ``forward``), in (0, 1].
    :param backend: ``"auto"``, ``"torch"`` or ``"triton"`` (``triton`` only for ``forward``).
    """

    name = "kl"

    def __init__(self, direction: str = "forward", eps: float = 1e-6, backend: str = "auto") -> None:
        owner = f"loss {self.name!r}"
        direction = check_choice(direction, "direction", DIRECTIONS, owner=owner)
        eps = check_number(eps, "eps", owner=owner, lo=0.0, hi=1.0)
        if direction == "reverse" and eps <= 0:
            from w2s_harness import ConfigError

            raise ConfigError(
                f"loss {self.name!r}: direction='reverse' needs eps > 0 (hard labels have log 0)"
            )
        super().__init__(
            direction=direction,
            eps=eps,
            backend=check_backend(backend, loss=self.name, torch_only=direction == "reverse"),
        )

    def compute(self, logits, targets, step_frac):
        import torch
        from w2s_harness.kernels import dispatch, reference

        z = reference.upcast(logits)
        y = targets.detach().to(z.dtype)
        if self.params["direction"] == "forward":
            neg_entropy = torch.xlogy(y, y).sum(dim=-1).mean()
            return dispatch.soft_xent(logits, targets, backend=self.backend) + neg_entropy
        eps = self.params["eps"]
        k = z.shape[1]
        y_smooth = (y + eps) / (1 + k * eps)
        logp = torch.log_softmax(z, dim=-1)
        return (logp.exp() * (logp - torch.log(y_smooth))).sum(dim=-1).mean()
