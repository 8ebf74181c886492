"""``confidence``: naive transfer with the auxiliary confidence loss (``logconf``, Burns et al. 2023)."""

from __future__ import annotations


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
        # checked through the registry now: a bad value fails before the weak model trains
        loss = b.loss_ref({"name": "logconf", **configured, **self.options}, "strategy (confidence options)")
        ref = b.reference()
        base_row = None
        if self.baseline:
            base = next((c for c in b.config.losses if c.name == self.baseline), None)
            base = base or b.loss_ref(self.baseline, "strategy.baseline")
            (base_row,) = b.transfers("naive", ref, losses=[base])
        b.transfers(self.name, ref, losses=[loss], baseline=base_row)
