"""``product``: cross-entropy against the product of strong and weak predictions (openai/weak-to-strong)."""

from __future__ import annotations

from w2s_harness import BaseLoss, check_backend, check_number


class ProductLoss(BaseLoss):
    """``mean CE(z, t)`` with the detached target ``t = normalise(softmax(z)**beta * y**alpha)``.

    Source: openai/weak-to-strong ``weak_to_strong/loss.py::product_loss_fn`` (its ``warmup_frac`` is unused
    there, so it is not a parameter here).

    Zero-row policy: the target is computed in log space as
    ``softmax(beta * log_softmax(z) + xlogy(alpha, y))``, so the product is never formed. Where the
    reference's float product underflows to 0 in every class, the reference computes ``0/0 = NaN``. Here the
    target is the exact value of the normalised product (what the reference would give in infinite
    precision), rounded to the compute dtype; loss and gradient are finite and no NaN reaches the optimiser.

    * Hard weak label (for example on a class the model gives ~0): the target is that class, i.e. ``y``.
    * Soft weak label (for example no weak mass on the class the model predicts, and ~0 model probability
      everywhere else): the target is *not* the weak label's class. It is ``normalise(p**beta * y**alpha)``
      over the classes the weak label supports, which is dominated by the largest
      ``beta * log p_j + alpha * log y_j``. Example: ``y = [0, 0.2, 0.8]`` with logits ``[0, -120, -123]``
      gives ``t ~ [0, 0.83, 0.17]`` (the model's factor ``e**3`` outweighs the weak label's factor 4).

    A row that is undefined even in exact arithmetic falls back to ``y``. That needs ``log_softmax(z)`` to be
    ``-inf`` or NaN on every class the weak label supports: non-finite logits, or finite logits further apart
    than the compute dtype's range (about 3.4e38 in float32).

    :param alpha: exponent of the weak labels (how much to weigh the weak model), >= 0.
    :param beta: exponent of the strong predictions (how much to weigh the strong model), >= 0.
    :param backend: ``"auto"``, ``"torch"`` or ``"triton"``.
    """

    name = "product"

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, backend: str = "auto") -> None:
        super().__init__(
            alpha=check_number(alpha, "alpha", owner=f"loss {self.name!r}", lo=0.0),
            beta=check_number(beta, "beta", owner=f"loss {self.name!r}", lo=0.0),
            backend=check_backend(backend, loss=self.name),
        )

    def compute(self, logits, targets, step_frac):
        from w2s_harness.kernels import dispatch

        p = self.params
        return dispatch.product_loss(logits, targets, alpha=p["alpha"], beta=p["beta"], backend=self.backend)
