"""``confidence``: naive transfer with the auxiliary confidence loss (``logconf``, Burns et al. 2023)."""

from __future__ import annotations

from w2s_harness.plugins.losses.logconf import LogConfLoss

from w2s_harness._config import Component

from ._common import transfer_rows, weak_and_ceiling


class Confidence:
    """Weak -> strong with ``logconf``, its schedule set here, beside a naive baseline row.

    Options (``[strategy]`` keys; unset ones keep the value of a ``logconf`` entry in ``[loss]`` if there is one,
    else the loss's defaults):

    * ``aux_coef``: final weight of the hardened self-target (loss default 0.5).
    * ``warmup_frac``: fraction of training over which the weight ramps up (loss default 0.1).
    * ``warmup``: ``"linear"`` (smooth ramp, default) or ``"openai"`` (the reference's ramp-then-jump).
    * ``balance``: harden with the class-balanced adaptive threshold (default true, the reference).
    * ``buffer_size``: rows of recent predictions for the threshold; 0 = the current batch.
    * ``baseline``: loss of the ``naive/<loss>`` comparison row (default ``"xent"``; ``""`` for none).

    Rows: ``confidence/logconf(...)`` and ``naive/<baseline>`` (the naive stages, computed once), with the
    paired per-seed difference ``confidence - naive``.
    """

    name = "confidence"

    def __init__(self, aux_coef: float | None = None, warmup_frac: float | None = None, warmup: str | None = None,
                 balance: bool | None = None, buffer_size: int | None = None, baseline: str = "xent"):
        given = {"aux_coef": aux_coef, "warmup_frac": warmup_frac, "warmup": warmup, "balance": balance,
                 "buffer_size": buffer_size}
        self.options = {k: v for k, v in given.items() if v is not None}
        self.baseline = baseline

    def plan(self, b) -> None:
        configured = next((c.params for c in b.config.losses if c.name == "logconf"), {})
        loss = Component("logconf", {**configured, **self.options})
        LogConfLoss(**loss.params)  # bad values fail now (ConfigError), not after the weak model has trained
        weak, labels, ceiling = weak_and_ceiling(b)
        base_row = None
        if self.baseline:
            base = next((c for c in b.config.losses if c.name == self.baseline), Component(self.baseline))
            (base_row,) = transfer_rows(b, "naive", weak, ceiling, labels, losses=[base])
        transfer_rows(b, self.name, weak, ceiling, labels, losses=[loss], baseline=base_row)
