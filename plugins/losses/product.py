"""``product``: cross-entropy against the product of strong and weak predictions (openai/weak-to-strong)."""

from __future__ import annotations

from w2s_harness import BaseLoss, check_backend, check_number


class ProductLoss(BaseLoss):
    """``mean CE(z, t)`` with the detached target ``t = normalise(softmax(z)**beta * y**alpha)``.

    Source: openai/weak-to-strong ``weak_to_strong/loss.py::product_loss_fn`` (its ``warmup_frac`` is unused
    there, so it is not a parameter here).

    Zero-row policy: the target is computed in log space as
    ``softmax(beta * log_softmax(z) + xlogy(alpha, y))``. Where the reference's float product underflows to
    an all-zero row (for example, a hard weak label on a class the model gives ~0), the reference gives NaN.
    Here the target is the exact limit, which is the weak label's class. No NaN reaches the optimiser. A
    row that is still undefined (only possible with non-finite logits) falls back to ``y``.

    :param alpha: exponent of the weak labels (how much to weigh the weak model), >= 0.
    :param beta: exponent of the strong predictions (how much to weigh the strong model), >= 0.
    :param backend: ``"auto"``, ``"torch"`` or ``"triton"``.
    """

    name = "product"

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, backend: str = "auto") -> None:
        super().__init__(
            alpha=check_number(alpha, "alpha", loss=self.name, lo=0.0),
            beta=check_number(beta, "beta", loss=self.name, lo=0.0),
            backend=check_backend(backend, loss=self.name),
        )

    def compute(self, logits, targets, step_frac):
        from w2s_harness.kernels import dispatch

        p = self.params
        return dispatch.product_loss(logits, targets, alpha=p["alpha"], beta=p["beta"], backend=self.backend)
