"""``logconf``: the auxiliary confidence loss of Burns et al. (2023), with k-class and buffer extensions."""

from __future__ import annotations

from w2s_harness import (
    BaseLoss,
    ConfigError,
    check_backend,
    check_bool,
    check_choice,
    check_int,
    check_number,
)

WARMUPS = ("linear", "openai")
#: Class proportions the balancing threshold matches: the current batch's weak labels (openai/weak-to-strong), or
#: uniform (EleutherAI/w2s with its per-device micro-batches of one row, where ``prior = 0.5``).
PRIORS = ("batch", "uniform")
#: ``warmup_frac``'s default, which ``warmup_steps`` replaces.
WARMUP_FRAC = 0.1


def check_warmup_steps(loss: str, warmup_steps, warmup_frac: float, warmup: str) -> int | None:
    """``warmup_steps`` checked against the fractional schedule it replaces (``None``: not given)."""
    if warmup_steps is None:
        return None
    steps = check_int(warmup_steps, "warmup_steps", owner=f"loss {loss!r}", lo=0)
    if warmup != "linear":
        raise ConfigError(f"loss {loss!r}: warmup_steps is a linear ramp; it does not combine with warmup={warmup!r}")
    if warmup_frac != WARMUP_FRAC:
        raise ConfigError(f"loss {loss!r}: give warmup_frac or warmup_steps, not both")
    return steps


def check_schedule(loss: str, aux_coef, warmup_frac, warmup, warmup_steps) -> dict:
    """The checked schedule parameters ``logconf`` and ``entropy`` share (see :class:`StepSchedule`)."""
    owner = f"loss {loss!r}"
    warmup_frac = check_number(warmup_frac, "warmup_frac", owner=owner, lo=0.0, hi=1.0)
    warmup = check_choice(warmup, "warmup", WARMUPS, owner=owner)
    return {"aux_coef": check_number(aux_coef, "aux_coef", owner=owner, lo=0.0, hi=1.0), "warmup_frac": warmup_frac,
            "warmup": warmup, "warmup_steps": check_warmup_steps(loss, warmup_steps, warmup_frac, warmup)}


class StepSchedule:
    """The ``coef`` schedule of ``logconf`` and ``entropy``: by training fraction (``warmup_frac``, ``warmup``) or,
    with ``warmup_steps``, by optimiser step, ``aux_coef * min(1, step / warmup_steps)`` as EleutherAI/w2s's
    ``log_confidence_loss`` (``step`` its Trainer's ``global_step``, the steps finished). The step is
    ``round(step_frac * total)``: the training loop reports ``total`` through :meth:`set_total_steps`."""

    params: dict
    name: str
    _total_steps: int | None = None

    def set_total_steps(self, total: int) -> None:
        """The optimiser steps of the training run about to start (called by the training loop)."""
        self._total_steps = int(total)

    def coef(self, step_frac: float) -> float:
        """The scheduled weight of the auxiliary term at ``step_frac``."""
        from w2s_harness.kernels.reference import logconf_coef

        p = self.params
        steps = p.get("warmup_steps")
        if steps is None:
            return logconf_coef(step_frac, p["aux_coef"], p["warmup_frac"], p["warmup"])
        if self._total_steps is None:
            raise ConfigError(
                f"loss {self.name!r}: warmup_steps counts optimiser steps, and this training loop did not report how "
                "many there are (set_total_steps): mini-batch training (solver = \"adamw\") does, an L-BFGS probe "
                "does not; use warmup_frac"
            )
        step = round(float(step_frac) * self._total_steps)
        return p["aux_coef"] * min(1.0, step / steps) if steps > 0 else float(p["aux_coef"])


class LogConfLoss(StepSchedule, BaseLoss):
    """``mean CE(z, (1 - coef) * y + coef * h)``, where ``h`` is the hardened (one-hot, detached) prediction.

    ``coef`` is scheduled by training progress ``step_frac``:

    * ``warmup="openai"`` is the reference schedule ``(step_frac if step_frac <= warmup_frac else 1) *
      aux_coef``. It ramps to ``warmup_frac * aux_coef`` and then jumps to ``aux_coef`` (a known quirk).
    * ``warmup="linear"`` (default) is ``min(1, step_frac / warmup_frac) * aux_coef``, a smooth ramp.
    * ``warmup_steps=S`` (instead of ``warmup_frac``) is ``min(1, step / S) * aux_coef`` by optimiser step, as
      EleutherAI/w2s (``logconf_warmup_steps = 100``); the training loop reports the total steps.

    ``step_frac`` is the finished fraction of ALL optimiser steps (over every epoch), as openai/weak-to-strong's
    ``step / nsteps``.

    Hardening (see ``w2s_harness.kernels.reference.hardened_targets``):

    * ``balance=True``, k = 2: the reference's adaptive threshold ``torch.quantile(p[:, 0], mean(y)[1])``, so
      the hardened predictions match the weak labels' class balance in the batch.
    * ``balance=True``, k > 2: one-vs-rest peeling. This is the same quantile rule applied class by class
      (0, 1, ..., k-2) to the rows not yet assigned. It matches the weak labels' class proportions and
      equals the reference for k = 2.
    * ``balance=False``: argmax of ``softmax(z)``, ties to the lowest class.
    * ``prior="uniform"`` balances to uniform class proportions instead of the batch's weak labels: what
      EleutherAI/w2s does with its micro-batches of one row (``prior = 0.5``: the threshold is the median of the
      rolling buffer). It runs the PyTorch reference maths on any device (no fused kernel).

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
    :param warmup_steps: ramp over this many optimiser steps instead of ``warmup_frac`` (``"linear"`` only).
    :param balance: match the weak labels' class proportions (True, the reference) or plain argmax.
    :param buffer_size: rows of recent predictions used for the threshold; 0 = the current batch only.
    :param prior: the proportions balanced to: ``"batch"`` (the weak labels' batch mean) or ``"uniform"``.
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
        warmup_steps: int | None = None,
        prior: str = "batch",
    ) -> None:
        super().__init__(
            **check_schedule(self.name, aux_coef, warmup_frac, warmup, warmup_steps),
            balance=check_bool(balance, "balance", owner=f"loss {self.name!r}"),
            buffer_size=check_int(buffer_size, "buffer_size", owner=f"loss {self.name!r}", lo=0),
            backend=check_backend(backend, loss=self.name),
            prior=check_choice(prior, "prior", PRIORS, owner=f"loss {self.name!r}"),
        )
        if self.params["prior"] != "batch" and not self.params["balance"]:
            raise ConfigError(f"loss {self.name!r}: prior only sets what balance=true balances to; set balance=true")
        if self.params["buffer_size"] and not self.params["balance"]:
            raise ConfigError(
                f"loss {self.name!r}: buffer_size only feeds the balancing threshold; "
                "set balance=true or buffer_size=0"
            )
        self.stateful = self.params["buffer_size"] > 0
        self._buffer = None

    def reset(self) -> None:
        self._buffer = None

    def compute(self, logits, targets, step_frac):
        from w2s_harness.kernels import dispatch

        coef = self.coef(step_frac)
        pool = self._push(logits) if self.stateful else None
        if self.params["prior"] == "uniform":
            return self._uniform(logits, targets, coef, pool)
        if pool is None:
            return dispatch.logconf_loss(
                logits, targets, coef=coef, balance=self.params["balance"], backend=self.backend
            )
        return dispatch.logconf_loss(logits, targets, coef=coef, balance=True, pool=pool, backend=self.backend)

    @staticmethod
    def _uniform(logits, targets, coef, pool):
        """``CE(z, (1 - coef) * y + coef * h)`` with ``h`` balanced to uniform proportions (PyTorch reference)."""
        import torch
        from w2s_harness.kernels import reference

        z = reference.upcast(logits).detach()
        uniform = torch.full_like(z, 1.0 / z.shape[1])  # only its mean, the proportions, is read
        h = reference.hardened_targets(z, uniform, balance=True, pool=pool)
        target = targets.detach().to(z.dtype) * (1 - coef) + h * coef
        return reference.soft_xent(logits, target)

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
