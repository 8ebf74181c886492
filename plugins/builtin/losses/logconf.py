"""``logconf``: the auxiliary confidence loss of Burns et al. (2023), with k-class and buffer extensions."""

from __future__ import annotations

from w2s_harness import BaseLoss, check_backend, check_bool, check_choice, check_int, check_number

WARMUPS = ("linear", "openai")


class LogConfLoss(BaseLoss):
    """``mean CE(z, (1 - coef) * y + coef * h)``, where ``h`` is the hardened (one-hot, detached) prediction.

    ``coef`` is scheduled by training progress ``step_frac``:

    * ``warmup="openai"`` is the reference schedule ``(step_frac if step_frac <= warmup_frac else 1) *
      aux_coef``. It ramps to ``warmup_frac * aux_coef`` and then jumps to ``aux_coef`` (a known quirk).
    * ``warmup="linear"`` (default) is ``min(1, step_frac / warmup_frac) * aux_coef``, a smooth ramp.

    Hardening (see ``w2s_harness.kernels.reference.hardened_targets``):

    * ``balance=True``, k = 2: the reference's adaptive threshold ``torch.quantile(p[:, 0], mean(y)[1])``, so
      the hardened predictions match the weak labels' class balance in the batch.
    * ``balance=True``, k > 2: one-vs-rest peeling. This is the same quantile rule applied class by class
      (0, 1, ..., k-2) to the rows not yet assigned. It matches the weak labels' class proportions and
      equals the reference for k = 2.
    * ``balance=False``: argmax of ``softmax(z)``, ties to the lowest class.

    All maths is float32, even for fp16/bf16 logits.

    **Stateful when** ``buffer_size > 0``: the loss keeps the detached logits of the last ``buffer_size``
    rows it has seen (the current batch included). The balancing thresholds come from that rolling buffer
    instead of the single batch; the class proportions still come from the batch's weak labels (as
    EleutherAI/w2s ``log_confidence_loss(buffer=...)``). Create one loss per training run, or call
    :meth:`reset` between runs. The buffer is not checkpointed, so a resumed run starts with an empty one.
    The buffer variant goes through the same backend as the batch variant (on the Triton path every
    threshold is a device select: no host sync).

    Sources: openai/weak-to-strong ``weak_to_strong/loss.py::logconf_loss_fn`` (k = 2, ``warmup="openai"``,
    ``buffer_size=0``); the paper's "auxiliary confidence loss"; EleutherAI/w2s ``w2s/loss.py`` (linear
    warm-up, rolling buffer).

    :param aux_coef: final weight of the hardened self-target, in [0, 1].
    :param warmup_frac: fraction of training over which the weight ramps up, in [0, 1].
    :param warmup: ``"linear"`` or ``"openai"`` (reference-exact).
    :param balance: match the weak labels' class proportions (True, the reference) or plain argmax.
    :param buffer_size: rows of recent predictions used for the threshold; 0 = the current batch only.
    :param backend: ``"auto"``, ``"torch"`` or ``"triton"``.
    """

    name = "logconf"

    def __init__(
        self,
        aux_coef: float = 0.5,
        warmup_frac: float = 0.1,
        warmup: str = "linear",
        balance: bool = True,
        buffer_size: int = 0,
        backend: str = "auto",
    ) -> None:
        super().__init__(
            aux_coef=check_number(aux_coef, "aux_coef", loss=self.name, lo=0.0, hi=1.0),
            warmup_frac=check_number(warmup_frac, "warmup_frac", loss=self.name, lo=0.0, hi=1.0),
            warmup=check_choice(warmup, "warmup", WARMUPS, loss=self.name),
            balance=check_bool(balance, "balance", loss=self.name),
            buffer_size=check_int(buffer_size, "buffer_size", loss=self.name),
            backend=check_backend(backend, loss=self.name),
        )
        if self.params["buffer_size"] and not self.params["balance"]:
            from w2s_harness import ConfigError

            raise ConfigError(
                f"loss {self.name!r}: buffer_size only feeds the balancing threshold; "
                "set balance=true or buffer_size=0"
            )
        self.stateful = self.params["buffer_size"] > 0
        self._buffer = None

    def coef(self, step_frac: float) -> float:
        """The scheduled weight of the hardened target at ``step_frac``."""
        from w2s_harness.kernels.reference import logconf_coef

        p = self.params
        return logconf_coef(step_frac, p["aux_coef"], p["warmup_frac"], p["warmup"])

    def reset(self) -> None:
        self._buffer = None

    def compute(self, logits, targets, step_frac):
        from w2s_harness.kernels import dispatch

        coef = self.coef(step_frac)
        if not self.stateful:
            return dispatch.logconf_loss(
                logits, targets, coef=coef, balance=self.params["balance"], backend=self.backend
            )
        pool = self._push(logits)
        return dispatch.logconf_loss(logits, targets, coef=coef, balance=True, pool=pool, backend=self.backend)

    def _push(self, logits):
        import torch
        from w2s_harness.kernels.reference import upcast

        rows = upcast(logits).detach()
        old = self._buffer
        if old is not None and (
            old.shape[1] != rows.shape[1] or old.device != rows.device or old.dtype != rows.dtype
        ):
            old = None  # a different head / device / precision: start over
        pool = rows if old is None else torch.cat([old, rows], dim=0)
        pool = pool[-self.params["buffer_size"] :]
        self._buffer = pool
        return pool
