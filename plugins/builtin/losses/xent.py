"""``xent``: soft-label cross-entropy (openai/weak-to-strong ``xent_loss``)."""

from __future__ import annotations

from w2s_harness import BaseLoss, check_backend


class XentLoss(BaseLoss):
    """Soft-label cross-entropy ``mean_i -sum_j y_ij log softmax(z_i)_j``.

    Source: openai/weak-to-strong ``weak_to_strong/loss.py::xent_loss``
    (``torch.nn.functional.cross_entropy`` with probability targets).

    :param backend: ``"auto"`` (fused Triton kernel on CUDA when available, else PyTorch), ``"torch"`` or
        ``"triton"``.
    """

    name = "xent"

    def __init__(self, backend: str = "auto") -> None:
        super().__init__(backend=check_backend(backend, loss=self.name))

    def compute(self, logits, targets, step_frac):
        from w2s_harness.kernels import dispatch

        return dispatch.soft_xent(logits, targets, backend=self.backend)
