"""Linear probes solved like a standard logistic regression: ``solver = "lbfgs"`` and hard weak labels.

:func:`fit_lbfgs` trains a linear head on cached features by minimising, over the whole training set at once,

    ``C * sum_i loss_i + 0.5 * ||W||^2``      (scikit-learn's convention; the bias is not penalised)

on features standardised with the training rows' mean and standard deviation (a constant column is left as is,
as ``StandardScaler`` does), with ``torch.optim.LBFGS`` (strong-Wolfe line search) in float64 on the CPU, from a
zero head, until the largest gradient entry of the mean objective ``mean_i loss_i + ||W||^2 / (2 C N)`` is at
most ``tol`` or ``max_iter`` iterations have run. The standardisation is folded into the head afterwards, so the
trained module applies to raw features like any other head.

* **Two classes** are parametrised as scikit-learn's binary logistic regression: one weight vector ``w`` and
  logits ``(-s / 2, s / 2)`` with ``s = w.x + b``, so ``C`` means exactly what it means there (a 2-row softmax
  with ``0.5 * ||W||^2`` would be the same model with twice the effective ``C``). ``k > 2`` classes: softmax
  with the penalty on every row (scikit-learn's multinomial logistic regression).
* **With the ``xent`` loss** this is the convex soft-label cross-entropy, i.e. L2 logistic regression on the
  (soft) targets: the same objective as scikit-learn's ``LogisticRegression(C=C)`` on ``StandardScaler``
  features with each row repeated once per class and weighted by its label's probability.
* **Any other loss** is the configured loss, called unchanged on the logits of the whole training set. A loss
  that reads ``step_frac`` (logconf's warmup) is minimised along its schedule by continuation: one L-BFGS solve
  at each of ``step_frac = 0, 1/P, ..., 1`` (:data:`PHASES` = P), each warm-started from the previous
  solution, so the head is a stationary point of the loss as it stands at the end of training, reached along
  the same path as mini-batch training takes. For a loss that ignores ``step_frac`` the later solves stop at
  their first gradient check. A statistic a loss takes over its batch (logconf's balancing quantile) is taken
  over the whole training set instead of a mini-batch of 32, and a stateful loss is reset before every
  evaluation so the objective is a function of the head alone. Targets built from the model's own detached
  predictions are fine when they are piecewise constant in the head (logconf's hardened targets: value and
  gradient agree almost everywhere); a smoothly detached target (``product``) makes the gradient differ from
  the value's, the line search stops early, and the history reports ``converged = False`` (use ``adamw``).

``weak_labels = "hard"`` (:func:`hard_targets`) replaces soft target rows by their argmax one-hot rows before
either solver runs; ground-truth targets are one-hot already and do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._components import TrainConfig
from ._errors import InputError, TrainingError

#: Continuation solves of a step_frac-dependent loss after the one at step_frac = 0 (see the module docstring).
PHASES = 10
#: L-BFGS history (pairs of curvature vectors kept).
HISTORY = 20
#: Line-search evaluations per iteration at most.
MAX_LINE_SEARCH = 25
#: A feature whose training standard deviation is below this is left unscaled (``StandardScaler``'s rule).
MIN_SCALE = 10 * np.finfo(np.float64).eps


def hard_targets(targets: np.ndarray) -> np.ndarray:
    """``(N, k)`` soft rows -> their argmax one-hot rows (same dtype, ties to the lowest class); class ids
    ``(N,)`` are returned unchanged."""
    targets = np.asarray(targets)
    if targets.ndim != 2:
        return targets
    out = np.zeros_like(targets)
    if targets.shape[0]:
        out[np.arange(targets.shape[0]), targets.argmax(axis=1)] = 1
    return out


def standardiser(x, min_scale: float = MIN_SCALE):
    """``(mean, scale)`` of the rows of ``x`` (float64 tensors, population standard deviation; 1 where below
    ``min_scale``)."""
    mean = x.mean(dim=0)
    scale = x.std(dim=0, unbiased=False)
    scale[scale < min_scale] = 1.0
    return mean, scale


def fit_lbfgs(
    module,
    inputs: np.ndarray | Sequence[str],
    targets: np.ndarray,
    loss: Callable[..., Any],
    cfg: TrainConfig,
    *,
    seed: int,
    device: Any,
    eval_inputs: np.ndarray | None = None,
    eval_labels: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
    where: str = "",
    section: str | None = None,
) -> dict[str, Any]:
    """Train the linear head ``module`` in place by full-batch L-BFGS (the ``solver = "lbfgs"`` branch of
    :func:`w2s_harness._training.fit`, same arguments and the same history keys).

    Deterministic without a seed (``seed`` is accepted for the common signature). ``progress`` is advanced by
    ``cfg.epochs * N`` once at the end (the caller's bar is sized for AdamW epochs).

    :returns: ``{"epoch_test_acc": [test accuracy] (one entry, when eval data is given), "final_train_loss":
        the mean loss (without the penalty) at the solution, "steps": L-BFGS iterations in all, "solver":
        "lbfgs", "converged": whether the final gradient met ``tol``, "grad_max": its largest entry}``.
    :raises TrainingError: the head is not a linear layer, the inputs are texts, or the loss is not finite (one
        line each, naming the stage and the fix).
    """
    import torch

    from ._training import _check_inputs, _is_features, accuracy, cpu_head_mode, predict_proba

    what = where or "training"
    sec = section or ("weak" if "weak" in where.lower() else "strong")
    if not _is_features(inputs):
        raise TrainingError(
            f'{what}: solver = "lbfgs" trains a linear head on cached features, but this model fine-tunes on '
            f'texts; set {sec}.solver = "adamw"'
        )
    n = _check_inputs(inputs, where or "fit")
    if n == 0:
        raise TrainingError(f"{what}: no training examples")
    targets = np.asarray(targets)
    if targets.shape[0] != n:
        raise InputError(f"{where or 'fit'}: {n} inputs but {targets.shape[0]} targets")
    if eval_inputs is not None and eval_labels is None:
        raise InputError(f"{where or 'fit'}: eval_inputs given without eval_labels")
    if not isinstance(module, torch.nn.Linear):
        raise TrainingError(
            f'{what}: solver = "lbfgs" needs a linear head (torch.nn.Linear), this model\'s head is '
            f'{type(module).__name__}; set {sec}.solver = "adamw"'
        )
    k, d = int(module.out_features), int(module.in_features)
    if int(inputs.shape[1]) != d:
        raise InputError(f"{where or 'fit'}: features have {int(inputs.shape[1])} columns, the head takes {d}")
    if k < 2:
        raise TrainingError(f"{what}: the head has {k} output; a classifier needs k >= 2")

    with cpu_head_mode(True):
        x = (inputs.detach().to("cpu", torch.float64) if isinstance(inputs, torch.Tensor)
             else torch.as_tensor(np.asarray(inputs), dtype=torch.float64))
        mean, scale = standardiser(x)
        xs = (x - mean) / scale
        has_bias = module.bias is not None
        if has_bias:
            xs = torch.cat([xs, torch.ones(n, 1, dtype=torch.float64)], dim=1)
        y = torch.as_tensor(targets, dtype=torch.float64 if targets.ndim == 2 else torch.long)
        solution = _Solve(xs, y, k, d, has_bias, loss, cfg, what, sec).run()
        weight, bias = _fold(solution.theta, k, d, has_bias, mean, scale)
        with torch.no_grad():
            module.weight.copy_(weight.to(module.weight.dtype))
            if has_bias:
                module.bias.copy_(bias.to(module.bias.dtype))
    module.eval()
    if progress is not None:
        progress(max(1, cfg.epochs) * n)
    history: dict[str, Any] = {"epoch_test_acc": []}
    if eval_inputs is not None:
        history["epoch_test_acc"].append(accuracy(predict_proba(module, eval_inputs, device=device), eval_labels))
    history.update(
        final_train_loss=solution.loss_value, steps=solution.iterations, solver="lbfgs",
        converged=solution.converged, grad_max=solution.grad_max,
    )
    return history


def _fold(theta, k: int, d: int, has_bias: bool, mean, scale):
    """Head ``(weight (k, d), bias (k,))`` on raw features from the solution on standardised ones."""
    import torch

    rows = theta[:, :d] / scale  # (m, d)
    inter = (theta[:, d] if has_bias else torch.zeros(theta.shape[0], dtype=theta.dtype)) - rows @ mean
    if k == 2:  # logits (-s/2, s/2)
        rows = torch.stack([-0.5 * rows[0], 0.5 * rows[0]])
        inter = torch.stack([-0.5 * inter[0], 0.5 * inter[0]])
    return rows, inter


class _Solve:
    """One L-BFGS fit (with continuation over ``step_frac``); :meth:`run` returns ``self`` with the results."""

    def __init__(self, xs, y, k, d, has_bias, loss, cfg: TrainConfig, what: str, section: str):
        import torch

        self.xs, self.y, self.k, self.d, self.loss, self.cfg = xs, y, k, d, loss, cfg
        self.what, self.section = what, section
        m = 1 if k == 2 else k
        self.theta = torch.zeros(m, xs.shape[1], dtype=torch.float64, requires_grad=True)
        self.pen_scale = 1.0 / (2.0 * cfg.C * xs.shape[0])
        self.sign = torch.tensor([-0.5, 0.5], dtype=torch.float64)
        self.call = loss
        self.stateful = bool(getattr(loss, "stateful", False)) and callable(getattr(loss, "reset", None))
        self.iterations = 0
        self.loss_value = float("nan")
        self.grad_max = float("nan")
        self.converged = False

    def logits(self):
        z = self.xs @ self.theta.T
        return z * self.sign if self.k == 2 else z

    def objective(self, step_frac: float):
        """``mean loss + ||W||^2 / (2 C N)`` and the mean loss (float64 scalars, differentiable)."""
        if self.stateful:
            self.loss.reset()
        logits = self.logits()
        value = self.call(logits, self.y, step_frac=step_frac)
        if self.call is self.loss:
            self._fast_path(logits)
        penalty = self.theta[:, : self.d].pow(2).sum() * self.pen_scale
        return value.double() + penalty, value

    def _fast_path(self, logits) -> None:
        """After the first (fully checked) call: ``loss.compute`` on targets checked once (as :func:`fit`)."""
        prevalidate = getattr(self.loss, "prevalidate", None)
        compute = getattr(self.loss, "compute", None)
        if callable(prevalidate) and callable(compute):
            self.y = prevalidate(self.y, int(logits.shape[1]))
            self.call = compute

    def _closure(self, opt, step_frac: float):
        import torch

        def closure():
            opt.zero_grad()
            total, value = self.objective(step_frac)
            if not torch.isfinite(total):
                done = self.iterations + int(opt.state[self.theta].get("n_iter", 0))
                raise TrainingError(
                    f"{self.what}: loss is {float(value.detach())} in the L-BFGS solve at step_frac {step_frac:g} "
                    f"(iteration {done + 1}); lower C (e.g. --set {self.section}.C={self.cfg.C / 10:g})"
                )
            total.backward()
            return total

        return closure

    def run(self) -> _Solve:
        import torch

        cfg = self.cfg
        for phase in range(PHASES + 1):
            opt = torch.optim.LBFGS(
                [self.theta], lr=1.0, max_iter=cfg.max_iter, max_eval=cfg.max_iter * MAX_LINE_SEARCH,
                tolerance_grad=cfg.tol, tolerance_change=1e-12, history_size=HISTORY,
                line_search_fn="strong_wolfe",
            )
            opt.step(self._closure(opt, phase / PHASES))
            self.iterations += int(opt.state[self.theta].get("n_iter", 0))
        self.theta.grad = None
        total, value = self.objective(1.0)
        total.backward()
        self.grad_max = float(self.theta.grad.abs().max())
        self.converged = self.grad_max <= cfg.tol
        self.loss_value = float(value.detach())
        self.theta = self.theta.detach()
        return self


__all__ = ["fit_lbfgs", "hard_targets", "standardiser"]
