"""``example-smoothed-xent``: label-smoothed soft cross-entropy, a ``BaseLoss``. torch is imported on first use.

Subclassing :class:`w2s_harness.BaseLoss` gives the built-ins' input checks (shapes, class ids in range, rows
that sum to 1, ``step_frac`` in [0, 1]; one-line ``InputError``s), integer class ids turned into one-hot rows,
a ``repr`` with the parameters, and the training loop's fast path (the whole target matrix is checked once per
stage, then :meth:`SmoothedXent.compute` runs on every batch without re-checking it).
"""

from __future__ import annotations

from w2s_harness import BaseLoss, check_number


class SmoothedXent(BaseLoss):
    """``mean_i  -sum_c ((1 - s) y_ic + s / k) log softmax(z_i)_c``.

    :param smoothing: ``s`` in ``[0, 1]``: weight of the uniform distribution mixed into the targets.
    """

    name = "example-smoothed-xent"

    def __init__(self, smoothing: float = 0.1):
        # the parameters go to BaseLoss: they are self.params, and they show in repr()
        owner = f"loss {self.name!r}"  # the component as users see it, in every error message
        super().__init__(smoothing=check_number(smoothing, "smoothing", owner=owner, lo=0.0, hi=1.0))

    @property
    def smoothing(self) -> float:
        return self.params["smoothing"]

    def compute(self, logits, targets, step_frac):
        # logits (N, k) float; targets already checked (N, k) soft labels, on the logits' device
        import torch  # lazy: `w2s-harness list` must not import torch

        k = logits.shape[1]
        logp = torch.log_softmax(logits.float(), dim=-1)
        smoothed = (1.0 - self.smoothing) * targets.to(logp.dtype) + self.smoothing / k
        return -(smoothed * logp).sum(dim=-1).mean()
