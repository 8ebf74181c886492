"""Common behaviour of the built-in losses: input checks, ``step_frac`` checks, repr, parameters."""

from __future__ import annotations

from typing import Any

from .checks import check_loss_inputs, check_step_frac


class BaseLoss:
    """Callable ``loss(logits, targets, step_frac=0.0) -> scalar tensor``.

    Subclasses set :attr:`name`, store their parameters in :attr:`params` (JSON-able), and implement
    :meth:`compute` on validated inputs: ``logits`` ``(N, k)`` and ``targets`` ``(N, k)`` soft labels.
    """

    name = "loss"
    #: Whether the loss keeps state between calls (see :meth:`reset`).
    stateful = False

    def __init__(self, **params: Any) -> None:
        self.params = dict(params)

    def __call__(self, logits, targets, step_frac: float = 0.0, *, validate: bool = True):
        """The mean loss over the batch; ``validate=False`` skips the checks that read the targets' values.

        By default every call checks the targets' values (finite, non-negative, rows summing to 1, class ids in
        range): one device -> host read and a float64 copy of the targets per call. A caller that feeds batches
        of a target table it has checked already (once, with :meth:`prevalidate`) passes ``validate=False``: the
        shape and dtype checks (no device read) still run, and the step has no host sync. The result is the
        same for valid targets.
        """
        logits, targets = check_loss_inputs(logits, targets, loss=self.name, values=validate)
        step_frac = check_step_frac(step_frac, loss=self.name)
        return self.compute(logits, targets, step_frac)

    def prevalidate(self, targets, n_classes: int):
        """Check a whole ``(N, k)`` soft-label (or ``(N,)`` class-id) matrix once; return it as ``(N, k)`` floats.

        A training loop that feeds row slices of one target matrix calls this once and then :meth:`compute` per
        batch, instead of paying the value checks (finite, non-negative, rows sum to 1) on every step.
        """
        import torch

        shape_only = torch.empty((int(targets.shape[0]), int(n_classes)), device=targets.device)
        return check_loss_inputs(shape_only, targets, loss=self.name)[1]

    def compute(self, logits, targets, step_frac: float):  # pragma: no cover - abstract
        raise NotImplementedError

    def reset(self) -> None:
        """Forget any state kept between calls (no-op for stateless losses)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"

    @property
    def backend(self) -> str:
        return self.params.get("backend", "auto")
