"""``entropy``: cross-entropy to the weak labels plus entropy minimisation of the strong predictions."""

from __future__ import annotations

from w2s_harness import BaseLoss, check_backend

from .logconf import StepSchedule, check_schedule


class EntropyLoss(StepSchedule, BaseLoss):
    """``mean[(1 - coef) * CE(z, y) + coef * H(softmax(z))]``: entropy minimisation of the strong predictions.

    This is ``logconf`` with the hardened self-target ``CE(z, h)`` replaced by the entropy ``H(p)``
    (differentiable, no threshold). ``coef`` uses the same schedule as ``logconf`` (``aux_coef``,
    ``warmup_frac``, ``warmup``, or ``warmup_steps``). All maths is float32.

    Sources: Grandvalet & Bengio, "Semi-supervised learning by entropy minimization" (NeurIPS 2004);
    EleutherAI/w2s ``log_entropy_loss`` (an entropy term instead of the hardened quasi-entropy).

    :param aux_coef: final weight of the entropy term, in [0, 1].
    :param warmup_frac: fraction of training over which the weight ramps up, in [0, 1].
    :param warmup: ``"linear"`` or ``"openai"`` (same schedules as ``logconf``).
    :param warmup_steps: ramp over this many optimiser steps instead of ``warmup_frac`` (``"linear"`` only).
    :param backend: ``"auto"`` or ``"torch"`` (there is no Triton kernel for this loss).
    """

    name = "entropy"

    def __init__(
        self, aux_coef: float = 0.5, warmup_frac: float = 0.1, warmup: str = "linear", backend: str = "auto",
        warmup_steps: int | None = None,
    ) -> None:
        super().__init__(
            **check_schedule(self.name, aux_coef, warmup_frac, warmup, warmup_steps),
            backend=check_backend(backend, loss=self.name, torch_only=True),
        )

    def compute(self, logits, targets, step_frac):
        from w2s_harness.kernels import reference

        coef = self.coef(step_frac)
        z = reference.upcast(logits)  # one cast, so fp16/bf16 gradients are rounded once
        ce = reference.soft_xent_rows(z, targets)
        ent = reference.entropy_rows(z)
        return ((1 - coef) * ce + coef * ent).mean()
