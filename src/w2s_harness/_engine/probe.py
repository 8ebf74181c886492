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
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._contracts.components import TrainConfig
from .._contracts.errors import InputError, TrainingError
from .predict import (
    _check_inputs,
    _is_features,
    _section,
    _take,
    accuracy,
    class_ids,
    cpu_head_mode,
    curve_rows,
    predict_proba,
)

#: Continuation solves of a step_frac-dependent loss after the one at step_frac = 0 (see the module docstring).
PHASES = 10
#: L-BFGS history (pairs of curvature vectors kept).
HISTORY = 20
#: Line-search evaluations per iteration at most.
MAX_LINE_SEARCH = 25
#: ``LBFGS``'s ``tolerance_change`` (lack-of-progress rules on the step and the objective).
TOLERANCE_CHANGE = 1e-12
#: L-BFGS iterations between curve points when ``curve_every`` is 0 (points also end every continuation phase).
CURVE_EVERY = 10
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
    val_inputs: np.ndarray | None = None,
    val_targets: np.ndarray | None = None,
) -> dict[str, Any]:
    """Train the linear head ``module`` in place by full-batch L-BFGS (the ``solver = "lbfgs"`` branch of
    :func:`w2s_harness._engine.training.fit`, same arguments and the same history keys).

    Deterministic (the solve does not use ``seed``; it only picks the rows a curve point's agreement is measured
    on, as in :func:`~w2s_harness._engine.training.fit`). ``progress`` is advanced by ``cfg.epochs * N`` once at the end
    (the caller's bar is sized for AdamW epochs).

    **Curve.** A point is recorded every ``cfg.curve_every`` L-BFGS iterations (0: every :data:`CURVE_EVERY`),
    counted over the whole solve (all continuation phases), and at the end of every phase that moved the head:
    ``{"step": iterations so far, "step_frac": the phase's schedule position, "train_loss": the mean loss (without
    the penalty) at the iterate, "agreement", "test_acc" (with eval data), "val_acc" (with early stopping)}``,
    the same keys as an AdamW point except ``epoch``. Recording splits each phase's ``LBFGS.step`` into segments
    that carry the optimiser's state over and re-check its stopping rules at the cut (:meth:`_Solve.run`), so the
    solution is bit-for-bit the one of an uninterrupted solve whatever the interval (tested).

    **Early stopping** (``cfg.early_stop`` ``"weak_val"`` / ``"gt_val"``, with ``val_inputs`` / ``val_targets``
    as for :func:`~w2s_harness._engine.training.fit`): every point is scored on the validation slice and the head ends
    at the iterate of the best point (the earliest on ties).

    :returns: ``{"epoch_test_acc": [test accuracy of the returned head] (with eval data), "final_train_loss":
        the mean loss (without the penalty) at the solution, "steps": L-BFGS iterations in all, "solver":
        "lbfgs", "converged": whether the final gradient met ``tol``, "grad_max": its largest entry, "curve":
        [point, ...]}`` and, with early stopping, ``"early_stop": {"policy", "selected_step",
        "selected_step_frac", "val_acc", "n_val"}`` (``converged`` and ``grad_max`` describe the end of the
        solve, not the selected iterate).
    :raises TrainingError: the head is not a linear layer, the inputs are texts, or the loss is not finite (one
        line each, naming the stage and the fix).
    """
    import torch

    if eval_inputs is not None and eval_labels is None:
        raise InputError(f"{where or 'fit'}: eval_inputs given without eval_labels")
    policy = getattr(cfg, "early_stop", "none")
    if policy != "none" and (val_inputs is None or val_targets is None):
        raise InputError(f"{where or 'fit'}: early_stop={policy!r} needs val_inputs and val_targets")
    fit = LbfgsFit(loss, cfg, seed, device, eval_inputs, eval_labels, val_inputs, val_targets, progress,
                   where or "fit", where or "training", section or _section(where),
                   policy, int(getattr(cfg, "curve_every", 0) or 0) or CURVE_EVERY)
    what, sec = fit.what, fit.section
    if getattr(module, "choice_head", False):  # one scorer shared by a choice task's candidates (_choice)
        return fit_lbfgs_choice(module, inputs, targets, fit)
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

        def load(theta) -> None:
            weight, bias = _fold(theta, k, d, has_bias, mean, scale)
            with torch.no_grad():
                module.weight.copy_(weight.to(module.weight.dtype))
                if has_bias:
                    module.bias.copy_(bias.to(module.bias.dtype))

        solution, curve = solve_with_curve(_Solve(xs, y, k, d, has_bias, loss, cfg, what, sec), load, module,
                                           inputs, targets, fit)
    return lbfgs_history(module, solution, curve, n, fit)


@dataclass(frozen=True)
class LbfgsFit:
    """One L-BFGS fit's settings, checked once by :func:`fit_lbfgs` and shared by the class and the choice heads
    (the arguments of :func:`fit_lbfgs`, plus what it derives: the names for messages, the early-stopping policy
    and the curve interval in iterations)."""

    loss: Callable[..., Any]
    cfg: TrainConfig
    seed: int
    device: Any
    eval_inputs: Any
    eval_labels: Any
    val_inputs: Any
    val_targets: Any
    progress: Callable[[int], None] | None
    where: str  # the caller, for input errors
    what: str  # the stage, for training errors
    section: str  # the config section a fix goes in
    policy: str
    every: int


def solve_with_curve(solve: _Solve, load, module, inputs, targets, fit: LbfgsFit) -> tuple[_Solve, _Curve]:
    """Run ``solve`` recording a curve point every ``fit.every`` iterations, and leave the head (through ``load``)
    at the solution, or at the best point by validation accuracy under early stopping. Call inside
    :func:`~w2s_harness._engine.predict.cpu_head_mode`."""
    agree_pos = curve_rows(int(np.asarray(targets).shape[0]), fit.seed)
    curve = _Curve(load, module, fit.device, _take(inputs, agree_pos), class_ids(targets)[agree_pos],
                   fit.eval_inputs, fit.eval_labels, fit.val_inputs,
                   class_ids(fit.val_targets) if fit.policy != "none" else None)
    solution = solve.run(fit.every, curve.point)
    if not curve.points:  # the zero head met the tolerance: one point for it
        curve.point(solution, 1.0)
    load(curve.best[1] if fit.policy != "none" else solution.theta)
    return solution, curve


def lbfgs_history(module, solution: _Solve, curve: _Curve, n: int, fit: LbfgsFit) -> dict[str, Any]:
    """The history of an L-BFGS fit of ``n`` examples (keys as documented in :func:`fit_lbfgs`); puts the head in
    eval mode."""
    module.eval()
    if fit.progress is not None:
        fit.progress(max(1, fit.cfg.epochs) * n)
    history: dict[str, Any] = {"epoch_test_acc": []}
    if fit.eval_inputs is not None:
        probs = predict_proba(module, fit.eval_inputs, device=fit.device)
        history["epoch_test_acc"].append(accuracy(probs, fit.eval_labels))
    history.update(
        final_train_loss=solution.loss_value, steps=solution.iterations, solver="lbfgs",
        converged=solution.converged, grad_max=solution.grad_max, curve=curve.points,
    )
    if fit.policy != "none":
        chosen = curve.best[0]
        history["early_stop"] = {"policy": fit.policy, "selected_step": chosen["step"],
                                 "selected_step_frac": chosen["step_frac"], "val_acc": chosen["val_acc"],
                                 "n_val": len(curve.val_classes)}
    return history


class _Curve:
    """The curve points of one L-BFGS fit and the best of them by validation accuracy (early stopping).

    :meth:`point` loads the current iterate into the head and scores it as a point of an AdamW head's curve is
    scored (the same rows and helpers, inside the caller's :func:`~w2s_harness._engine.predict.cpu_head_mode`)."""

    def __init__(self, load, module, device, agree_inputs, agree_classes, eval_inputs, eval_labels, val_inputs,
                 val_classes):
        self.load, self.module, self.device = load, module, device
        self.agree_inputs, self.agree_classes = agree_inputs, agree_classes
        self.eval_inputs, self.eval_labels = eval_inputs, eval_labels
        self.val_inputs, self.val_classes = val_inputs, val_classes
        self.points: list[dict[str, Any]] = []
        self.best: list = []  # [point, theta copy] of the best validation accuracy so far

    def point(self, solve: _Solve, step_frac: float, train_loss: float | None = None) -> None:
        import torch

        if train_loss is None:
            with torch.no_grad():
                train_loss = float(solve.objective(step_frac)[1])
        theta = solve.theta.detach()
        self.load(theta)
        pt: dict[str, Any] = {"step": solve.iterations, "step_frac": step_frac, "train_loss": train_loss}
        if self.eval_inputs is not None:
            probs = predict_proba(self.module, self.eval_inputs, device=self.device, _nested=True)
            pt["test_acc"] = accuracy(probs, self.eval_labels)
        agree = predict_proba(self.module, self.agree_inputs, device=self.device, _nested=True).argmax(axis=1)
        pt["agreement"] = float(np.mean(agree == self.agree_classes))
        if self.val_classes is not None:
            val_probs = predict_proba(self.module, self.val_inputs, device=self.device, _nested=True)
            pt["val_acc"] = float(np.mean(val_probs.argmax(axis=1) == self.val_classes))
            if not self.best or pt["val_acc"] > self.best[0]["val_acc"]:
                self.best = [pt, theta.clone()]
        self.points.append(pt)


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
        self.phase_start = 0  # iterations before the current continuation phase
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
                done = self.phase_start + int(opt.state[self.theta].get("n_iter", 0))
                raise TrainingError(
                    f"{self.what}: loss is {float(value.detach())} in the L-BFGS solve at step_frac {step_frac:g} "
                    f"(iteration {done + 1}); lower C (e.g. --set {self.section}.C={self.cfg.C / 10:g})"
                )
            total.backward()
            return total

        return closure

    def run(self, every: int = 0, on_point: Callable[..., None] | None = None) -> _Solve:
        """Solve every continuation phase; with ``on_point``, call ``on_point(self, step_frac, train_loss)`` every
        ``every`` iterations (counted over the whole solve) and at the end of each phase that moved the head.

        A phase's ``LBFGS.step`` is then run in segments of at most ``every`` iterations. The optimiser's state
        (direction, step, curvature pairs, iteration count) carries over, and a new ``step`` call re-evaluates
        the objective at the same point (the same value and gradient the line search ended with), so a segment
        continues exactly where the previous one stopped. What a cut must reproduce is the end-of-iteration
        stopping rules ``LBFGS.step`` checks after its iteration cap: the evaluation budget (each segment gets
        what is left of the phase's), the lack-of-progress rules (checked here on the optimiser's state and the
        objective at the cut) and the gradient tolerance (the next segment's first check returns at once)."""
        import torch

        cfg = self.cfg
        max_eval = cfg.max_iter * MAX_LINE_SEARCH
        for phase in range(PHASES + 1):
            step_frac = phase / PHASES
            opt = torch.optim.LBFGS(
                [self.theta], lr=1.0, max_iter=cfg.max_iter, max_eval=max_eval,
                tolerance_grad=cfg.tol, tolerance_change=TOLERANCE_CHANGE, history_size=HISTORY,
                line_search_fn="strong_wolfe",
            )
            closure = self._closure(opt, step_frac)
            self.phase_start = self.iterations
            group, state = opt.param_groups[0], opt.state[self.theta]
            done = calls = 0  # iterations and step() calls of this phase
            while True:
                seg = cfg.max_iter - done
                if on_point is not None:
                    seg = min(seg, every - self.iterations % every)
                group["max_iter"] = seg
                group["max_eval"] = max_eval - state.get("func_evals", 0) + calls
                opt.step(closure)
                calls += 1
                ran = int(state["n_iter"]) - done
                done += ran
                self.iterations += ran
                if ran == 0:  # the gradient met the tolerance at the segment's first check
                    break
                if ran < seg or done >= cfg.max_iter:  # LBFGS.step stopped by a rule of its own, or the cap
                    self._emit(on_point, step_frac)
                    break
                with torch.no_grad():
                    total, value = self.objective(step_frac)
                self._emit(on_point, step_frac, float(value))
                spent = 1 + int(state["func_evals"]) - calls  # evaluations an uninterrupted step() would count
                if (spent >= max_eval or float(state["d"].mul(state["t"]).abs().max()) <= TOLERANCE_CHANGE
                        or abs(float(total) - state["prev_loss"]) < TOLERANCE_CHANGE):
                    break
        self.theta.grad = None
        total, value = self.objective(1.0)
        total.backward()
        self.grad_max = float(self.theta.grad.abs().max())
        self.converged = self.grad_max <= cfg.tol
        self.loss_value = float(value.detach())
        self.theta = self.theta.detach()
        return self

    def _emit(self, on_point, step_frac: float, train_loss: float | None = None) -> None:
        if on_point is not None:
            on_point(self, step_frac, train_loss)


# ------------------------------------------------------------------------------- L-BFGS solve of a choice head


def fit_lbfgs_choice(module, inputs: np.ndarray, targets: np.ndarray, fit: LbfgsFit) -> dict[str, Any]:
    """The :func:`fit_lbfgs` branch for a :func:`~w2s_harness._data.choice.choice_module` head on ``(N, n, d)`` features
    (``fit``: its checked settings): one weight vector shared by the candidates, no bias (it cancels), the penalty
    ``||w||^2 / 2`` in ``C``'s convention, the configured loss on the ``(N, n)`` scores (with the same continuation
    over ``step_frac``), the same curve points, early stopping and history keys."""
    import torch

    where, what, sec = fit.where, fit.what, fit.section
    scorer = getattr(module, "scorer", None)
    if not isinstance(scorer, torch.nn.Linear) or scorer.out_features != 1:
        raise TrainingError(f'{what}: solver = "lbfgs" needs a linear scorer with one output for a choice task; '
                            f'set {sec}.solver = "adamw"')
    x = inputs.detach().to("cpu", torch.float64) if isinstance(inputs, torch.Tensor) else torch.as_tensor(
        np.asarray(inputs), dtype=torch.float64)
    if x.ndim != 3:
        raise InputError(f"{where}: choice features must be (N, n, d), got shape {tuple(x.shape)}")
    n_ex, n, d = (int(s) for s in x.shape)
    if n_ex == 0:
        raise TrainingError(f"{what}: no training examples")
    if d != int(scorer.in_features):
        raise InputError(f"{where}: features have {d} columns, the head takes {int(scorer.in_features)}")
    targets = np.asarray(targets)
    if targets.shape[0] != n_ex:
        raise InputError(f"{where}: {n_ex} inputs but {targets.shape[0]} targets")

    class Shared(_Solve):
        def __init__(self, *args):
            super().__init__(*args)
            self.theta = torch.zeros(1, d, dtype=torch.float64, requires_grad=True)

        def logits(self):
            return self.xs @ self.theta[0]

    with cpu_head_mode(True):
        mean, scale = standardiser(x.reshape(-1, d))
        xs = (x - mean) / scale
        y = torch.as_tensor(targets, dtype=torch.float64 if targets.ndim == 2 else torch.long)

        def load(theta) -> None:
            w = theta[0] / scale
            with torch.no_grad():
                scorer.weight.copy_(w.reshape(1, d).to(scorer.weight.dtype))
                if scorer.bias is not None:  # the standardised scores exactly (a constant shift: cancels anyway)
                    scorer.bias.copy_((-(w @ mean)).reshape(1).to(scorer.bias.dtype))

        solution, curve = solve_with_curve(Shared(xs, y, n, d, False, fit.loss, fit.cfg, what, sec), load, module,
                                           inputs, targets, fit)
    return lbfgs_history(module, solution, curve, n_ex, fit)


__all__ = ["fit_lbfgs", "hard_targets", "standardiser"]
