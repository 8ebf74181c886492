"""``window``: confidence-window cross-entropy that drops or down-weights ambiguous examples."""

from __future__ import annotations

from w2s_harness import BaseLoss, check_backend, check_choice, check_number

MODES = ("drop", "weight")
ON = ("weak", "strong")


class WindowLoss(BaseLoss):
    """Cross-entropy to the weak labels, with per-row weights from a confidence window.

    A row's confidence is half its top-1 minus top-2 probability, ``d = (top1 - top2) / 2``. For k = 2 that
    is the distance from 0.5: ``|y_1 - 0.5|``.

    * ``on="weak"`` (default) looks at the weak label and drops ambiguous rows:
      ``mode="drop"``: weight ``1[d_weak >= radius]``, so a weak label within ``radius`` of 0.5 is ignored.
      ``mode="weight"``: weight ``min(1, d_weak / radius)``, a linear ramp from 0 at 0.5.
    * ``on="strong"`` looks at the (detached) strong prediction and keeps only the rows the strong model is
      still unsure about: weight ``1[d_strong < radius]``, i.e. ``max p < 0.5 + radius`` for k = 2. This is
      EleutherAI/w2s ``confidence_window_loss``. Only ``mode="drop"``.

    The loss is ``sum_i w_i CE(z_i, y_i) / N``: the mean over all N rows, as in EleutherAI/w2s. A batch in
    which every row is dropped gives loss 0 with zero gradient (never NaN).

    Sources: EleutherAI/w2s ``w2s/loss.py::confidence_window_loss`` (``on="strong"``); confidence filtering
    of weak labels as in Burns et al. (2023) and follow-ups (``on="weak"``).

    :param radius: half-width of the window around 0.5, in (0, 0.5].
    :param mode: ``"drop"`` or ``"weight"``.
    :param on: ``"weak"`` or ``"strong"``.
    :param backend: ``"auto"`` or ``"torch"`` (there is no Triton kernel for this loss).
    """

    name = "window"

    def __init__(
        self, radius: float = 0.15, mode: str = "drop", on: str = "weak", backend: str = "auto"
    ) -> None:
        owner = f"loss {self.name!r}"
        radius = check_number(radius, "radius", owner=owner, lo=0.0, hi=0.5, lo_open=True)
        mode = check_choice(mode, "mode", MODES, owner=owner)
        on = check_choice(on, "on", ON, owner=owner)
        from w2s_harness import ConfigError

        if on == "strong" and mode != "drop":
            raise ConfigError(f"loss {self.name!r}: on='strong' supports only mode='drop'")
        super().__init__(
            radius=radius, mode=mode, on=on, backend=check_backend(backend, loss=self.name, torch_only=True)
        )

    def weights(self, logits, targets):
        """Per-row weights ``(N,)`` in [0, 1] (detached)."""
        import torch
        from w2s_harness.kernels import reference

        z = reference.upcast(logits).detach()
        p = self.params
        src = targets.detach().to(z.dtype) if p["on"] == "weak" else torch.softmax(z, dim=-1)
        top = src.topk(2, dim=-1).values
        d = (top[:, 0] - top[:, 1]) / 2
        if p["on"] == "strong":
            return (d < p["radius"]).to(z.dtype)
        if p["mode"] == "drop":
            return (d >= p["radius"]).to(z.dtype)
        return (d / p["radius"]).clamp(max=1.0)

    def compute(self, logits, targets, step_frac):
        from w2s_harness.kernels import reference

        w = self.weights(logits, targets)
        ce = reference.soft_xent_rows(logits, targets)
        return (w * ce).sum() / ce.shape[0]
