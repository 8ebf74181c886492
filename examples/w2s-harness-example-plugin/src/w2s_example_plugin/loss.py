"""``example-smoothed-xent``: label-smoothed soft cross-entropy. torch is imported on first call only."""

from __future__ import annotations

from w2s_harness._errors import ConfigError


class SmoothedXent:
    """``mean_i  -sum_c ((1 - s) t_ic + s / k) log softmax(z_i)_c``.

    :param smoothing: ``s`` in ``[0, 1)``: weight of the uniform distribution mixed into the targets.
    """

    def __init__(self, smoothing: float = 0.1):
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0 <= smoothing < 1:
            raise ConfigError(f"loss 'example-smoothed-xent': smoothing must be in [0, 1), got {smoothing!r}")
        self.smoothing = float(smoothing)

    def __call__(self, logits, targets, step_frac: float = 0.0):
        import torch  # lazy: `w2s-harness list` must not import torch

        logp = torch.log_softmax(logits.float(), dim=-1)
        k = logits.shape[-1]
        if targets.dim() == 1:  # integer class ids
            targets = torch.nn.functional.one_hot(targets.long(), k)
        targets = targets.to(logp.dtype)
        smoothed = (1.0 - self.smoothing) * targets + self.smoothing / k
        return -(smoothed * logp).sum(dim=-1).mean()

    def __repr__(self) -> str:
        return f"SmoothedXent(smoothing={self.smoothing})"
