"""Training and inference loops shared by every model: :func:`fit`, :func:`predict_proba`, :func:`accuracy`.

Two kinds of ``inputs``:

* an ``(N, d)`` float32 numpy array: cached features of a frozen backbone, ``module`` is a linear head;
* a list of ``N`` strings: ``module.forward(list_of_str)`` returns logits (full fine-tuning).

Optimisation follows the reference (AdamW, cosine schedule, zero-initialised head) with an optional linear
warmup (``TrainConfig.warmup_frac`` or ``warmup_steps``). EleutherAI/w2s's recipe (Hugging Face's Trainer) is
available through the same config: AdamW betas, gradient-norm clipping, gradient accumulation over micro-batches
(``TrainConfig.minibatch_size``: the loss is called on every micro-batch) and checkpoint selection by validation
AUROC. Training is deterministic on CPU for a given ``seed``: batches are shuffled
with a ``torch.Generator`` seeded by it and the global torch RNG (dropout) is seeded inside a forked RNG state, so
the caller's RNG is untouched.

Denormal pitfall: a tiny linear head on CPU can run 20-70x slower when Adam's state and the logits underflow into
denormal floats. ``torch.set_flush_denormal(True)`` only affects the calling thread, so linear heads on CPU train
and predict with ONE intra-op thread (restored afterwards) with denormals flushed; the encoder keeps its threads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._contracts.components import TrainConfig
from .._contracts.errors import InputError, TrainingError
from .predict import (  # re-exported: callers use _training.predict_proba, _training.accuracy...
    CURVE_ROWS,  # noqa: F401
    _as_device,
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


def zero_linear_head(in_features: int, n_classes: int, device: Any = None):
    """``nn.Linear(in_features, n_classes)`` with zero weight and bias (the reference's head initialisation)."""
    import torch

    head = torch.nn.Linear(int(in_features), int(n_classes))
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    return head.to(_as_device(device))


def total_steps(n_examples: int, cfg: TrainConfig) -> int:
    """Optimiser steps :func:`fit` takes for ``n_examples`` (the last batch of an epoch may be smaller)."""
    return math.ceil(n_examples / cfg.batch_size) * cfg.epochs


def warmup_steps(total: int, cfg: TrainConfig) -> int:
    """Learning-rate warmup in optimiser steps: ``cfg.warmup_steps``, else ``round(cfg.warmup_frac * total)``."""
    steps = getattr(cfg, "warmup_steps", None)
    return int(steps) if steps is not None else round(cfg.warmup_frac * total)


def step_fracs(n_examples: int, cfg: TrainConfig) -> list[float]:
    """The ``step_frac`` :func:`fit` passes to the loss at each optimiser step: ``step / total`` for ``step = 0 ..
    total - 1``, ``total`` the optimiser steps of ALL epochs (openai/weak-to-strong ``train.py``'s
    ``step / nsteps``), the same for every micro-batch of a step."""
    total = total_steps(n_examples, cfg)
    return [step / total for step in range(total)]


def lr_multiplier(step: int, total: int, warmup_steps: int) -> float:
    """Linear warmup from 0 over ``warmup_steps``, then cosine decay to 0 at ``total`` (as HF's cosine schedule)."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def fit(
    module,
    inputs: np.ndarray | Sequence[str],
    targets: np.ndarray,
    loss: Callable[..., Any],
    cfg: TrainConfig,
    *,
    seed: int,
    device: Any,
    eval_inputs: np.ndarray | Sequence[str] | None = None,
    eval_labels: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
    where: str = "",
    section: str | None = None,
    val_inputs: np.ndarray | Sequence[str] | None = None,
    val_targets: np.ndarray | None = None,
) -> dict[str, Any]:
    """Train ``module`` in place on ``(inputs, targets)`` with AdamW + warmup/cosine schedule.

    :param module: a linear head (``inputs`` are features) or a text classifier (``inputs`` are strings).
    :param targets: ``(N, k)`` float32 soft labels (or ``(N,)`` integer class ids), passed batch-wise to ``loss``.
    :param loss: ``loss(logits, targets, step_frac=finished_steps / total_steps)`` -> scalar tensor, where the
        steps are optimiser steps over all epochs (:func:`step_fracs`). A loss with ``set_total_steps(n)`` is told
        the total first (a step-based schedule, e.g. ``logconf``'s ``warmup_steps``); a ``stateful`` one is
        ``reset()`` (a rolling buffer starts empty).
    :param cfg: lr, epochs, batch_size, weight_decay, warmup_frac / warmup_steps, betas, max_grad_norm,
        minibatch_size (gradient accumulation), eval_every_epoch, early stopping.
    :param seed: shuffling and dropout seed (the caller's global RNG state is restored afterwards).
    :param device: ``torch.device`` (or string) to train on; ``module`` must already live there.
    :param eval_inputs/eval_labels: evaluated after every epoch (or only the last if not ``cfg.eval_every_epoch``).
    :param progress: called with the number of examples of each step (a bar's total is ``epochs * N``).
    :param where: stage name for error messages; ``section`` the config section of the model (``weak``/``strong``,
        guessed from ``where``) for the suggested fix.
    :param val_inputs/val_targets: the held-out validation slice ``cfg.early_stop`` selects on (required unless
        it is ``"none"``): targets ``(M, k)`` or class ids; the score (``cfg.val_metric``) is the accuracy against
        their argmax, or the AUROC (:func:`auroc`) against it.
    :returns: ``{"epoch_test_acc": [...], "final_train_loss": mean loss of the last epoch, "steps": int, "curve":
        [point, ...]}`` and, with early stopping, ``"early_stop": {"policy", "selected_step", "selected_epoch",
        "val_acc", "n_val"}``. A curve point is recorded at the end of every epoch (``cfg.curve_every = 0``; only
        the last one if not ``cfg.eval_every_epoch``) or every ``cfg.curve_every`` steps and at the end:
        ``{"step", "epoch" (fractional), "train_loss" (mean since the last point), "agreement" (with the argmax of
        the training targets on up to :data:`CURVE_ROWS` fixed training rows), "test_acc" (with eval data),
        "val_acc" (with early stopping), "val_auroc" (with ``val_metric = "auroc"``)}``. Early stopping restores the
        weights of the point with the best ``val_acc`` (or ``val_auroc``; the earliest on ties); its record adds
        ``"val_metric"`` and, for AUROC, ``"val_auroc"``.
    :raises TrainingError: when the loss becomes NaN/inf (one line: stage, epoch, batch and the fix).
    """
    if getattr(cfg, "weak_labels", "soft") == "hard":  # train on the argmax of soft targets (_probe)
        from .probe import hard_targets

        targets = hard_targets(targets)
    if getattr(cfg, "solver", "adamw") == "lbfgs":  # full-batch L-BFGS linear probe (_probe)
        from .probe import fit_lbfgs

        return fit_lbfgs(module, inputs, targets, loss, cfg, seed=seed, device=device, eval_inputs=eval_inputs,
                         eval_labels=eval_labels, progress=progress, where=where, section=section,
                         val_inputs=val_inputs, val_targets=val_targets)
    import torch

    device = _as_device(device)
    n = _check_inputs(inputs, where or "fit")
    if n == 0:
        raise TrainingError(f"{where or 'training'}: no training examples")
    targets = np.asarray(targets)
    if targets.shape[0] != n:
        raise InputError(f"{where or 'fit'}: {n} inputs but {targets.shape[0]} targets")
    if eval_inputs is not None and eval_labels is None:
        raise InputError(f"{where or 'fit'}: eval_inputs given without eval_labels")
    if cfg.batch_size < 1 or cfg.epochs < 0:
        raise TrainingError(f"{where or 'training'}: batch_size must be >= 1 and epochs >= 0")
    micro = getattr(cfg, "minibatch_size", None) or cfg.batch_size  # rows per forward pass and loss call
    metric = getattr(cfg, "val_metric", "accuracy")

    features = _is_features(inputs)
    y_all = torch.as_tensor(targets, dtype=torch.float32 if targets.ndim == 2 else torch.long).to(device)
    if features:
        x_all = torch.as_tensor(inputs, dtype=torch.float32).to(device)
    else:
        texts = list(inputs)
    policy = getattr(cfg, "early_stop", "none")
    curve_every = int(getattr(cfg, "curve_every", 0) or 0)
    if policy != "none" and (val_inputs is None or val_targets is None):
        raise InputError(f"{where or 'fit'}: early_stop={policy!r} needs val_inputs and val_targets")
    # curve points: agreement with the training targets on a fixed (seeded) subset of the training rows
    agree_pos = curve_rows(n, seed)
    agree_inputs, agree_classes = _take(inputs, agree_pos), class_ids(targets)[agree_pos]
    val_classes = class_ids(np.asarray(val_targets)) if policy != "none" else None
    if val_classes is not None and metric == "auroc" and len(np.unique(val_classes)) < 2:
        raise InputError(f"{where or 'fit'}: val_metric = 'auroc' needs both classes in the validation slice, which "
                         f"has only class {int(val_classes[0]) if len(val_classes) else '-'}; use val_metric = "
                         "'accuracy' or a larger val_frac")

    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise TrainingError(f"{where or 'training'}: the model has no trainable parameters")
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = warmup_steps(total, cfg)
    max_norm = float(getattr(cfg, "max_grad_norm", 0.0) or 0.0)
    if getattr(loss, "stateful", False) and callable(getattr(loss, "reset", None)):
        loss.reset()  # a rolling buffer starts empty in every training run
    if callable(getattr(loss, "set_total_steps", None)):
        loss.set_total_steps(total)  # a step-based schedule (logconf's warmup_steps) needs the total
    optimizer = _adamw(params, cfg, device)
    optimizer_step = _stepper(optimizer)
    gen = torch.Generator().manual_seed(int(seed))
    # Per-step overhead dominates a linear head (~3k steps of a (32, d) x (d, k) matmul), so the loop avoids
    # everything that costs per step without changing the maths: the lr is set directly (no LRScheduler
    # wrappers), batches are contiguous slices of a once-per-epoch permuted copy, and a built-in loss checks the
    # whole target matrix once (``prevalidate``) and then runs ``compute`` per batch.
    call = loss
    # On the training device: writing a step's loss into a host tensor would copy it back and wait for the
    # device on every step; the losses are read at the finite-check / curve / epoch interval instead.
    step_losses = torch.empty(steps_per_epoch, dtype=torch.float32, device=device)
    # examples per batch (the last one of an epoch may be short): weights of the epoch's mean loss
    batch_sizes = torch.tensor([min(cfg.batch_size, n - b * cfg.batch_size) for b in range(steps_per_epoch)],
                               dtype=torch.float32).to(device)

    epoch_acc: list[float] = []
    epoch_losses: list[float] = []
    step = 0
    curve: list[dict[str, Any]] = []
    best: list = []  # [val_acc, step, snapshot] of the best curve point so far (early stopping)
    pending = [0.0, 0.0, 0]  # loss sum and examples of earlier epochs since the last point; first batch of this one

    def point(done: int, test_acc: float | None = None) -> None:
        """Record a curve point after ``done`` batches of the current epoch (``step`` steps in all)."""
        lo = pending[2]
        w = batch_sizes[lo:done]
        total_loss = float((step_losses[lo:done] * w).sum()) + pending[0]
        examples = float(w.sum()) + pending[1]
        pending[:] = [0.0, 0.0, done]
        pt: dict[str, Any] = {"step": step, "epoch": step / steps_per_epoch,
                              "train_loss": total_loss / examples if examples else float("nan")}
        if eval_inputs is not None:
            if test_acc is None:
                test_acc = accuracy(predict_proba(module, eval_inputs, device=device, _nested=True), eval_labels)
            pt["test_acc"] = test_acc
        agree = predict_proba(module, agree_inputs, device=device, _nested=True).argmax(axis=1)
        pt["agreement"] = float(np.mean(agree == agree_classes))
        if policy != "none":
            val_probs = predict_proba(module, val_inputs, device=device, _nested=True)
            pt["val_acc"] = float(np.mean(val_probs.argmax(axis=1) == val_classes))
            if metric == "auroc":
                pt["val_auroc"] = auroc(val_probs, val_classes)
            val = pt["val_auroc"] if metric == "auroc" else pt["val_acc"]
            if not best or val > best[0]:
                best[:] = [val, step, _snapshot(module), pt["val_acc"]]
        curve.append(pt)
        module.train()

    cuda_devices = [device] if device.type == "cuda" else []
    head_mode = cpu_head_mode(features and device.type == "cpu")
    with head_mode, torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(int(seed))
        module.train()
        for epoch in range(cfg.epochs):
            order = torch.randperm(n, generator=gen)
            on_device = order.to(device)  # one host -> device copy per epoch, not one per batch
            if features:
                x_epoch, y_epoch = x_all[on_device], y_all[on_device]
            else:
                rows = order.tolist()  # the texts' positions as Python ints, read once per epoch
            for b in range(steps_per_epoch):
                lo, hi = b * cfg.batch_size, min(n, (b + 1) * cfg.batch_size)
                for param in params:  # optimizer.zero_grad(set_to_none=True) without its per-call profiling hooks
                    param.grad = None
                # One forward and one loss over the batch; with gradient accumulation (micro < batch) one per
                # micro-batch, each loss weighted by its share of the batch's rows and its gradient accumulated,
                # so the step's gradient is the batch mean's for a per-row loss (Hugging Face's Trainer).
                value = None
                for mlo in range(lo, hi, micro):
                    mhi = min(hi, mlo + micro)
                    if features:
                        logits, yb = module(x_epoch[mlo:mhi]), y_epoch[mlo:mhi]
                    else:
                        logits, yb = module([texts[i] for i in rows[mlo:mhi]]), y_all[on_device[mlo:mhi]]
                    part = call(logits.float(), yb, step_frac=step / total)
                    if call is loss and step == 0:
                        call, y_all, y_epoch = _fast_path(loss, logits, y_all, y_epoch if features else None, order)
                    if mhi - mlo < hi - lo:
                        part = part * ((mhi - mlo) / (hi - lo))
                    part.backward()
                    value = part.detach() if value is None else value + part.detach()
                lr = cfg.lr * lr_multiplier(step, total, warmup)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if max_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, max_norm)
                step_losses[b] = value
                optimizer_step()
                step += 1
                if progress is not None:
                    progress(hi - lo)
                at_point = curve_every > 0 and (step % curve_every == 0 or step == total)
                if at_point or not features or b == steps_per_epoch - 1 or b % 64 == 63:
                    _check_finite(step_losses, b, epoch, cfg, steps_per_epoch, warmup, where, section)
                if at_point:
                    point(b + 1)
            epoch_losses.append(float((step_losses * batch_sizes).sum() / batch_sizes.sum()))
            last = epoch == cfg.epochs - 1
            if eval_inputs is not None and (cfg.eval_every_epoch or last):
                probs = predict_proba(module, eval_inputs, device=device, _nested=True)
                epoch_acc.append(accuracy(probs, eval_labels))
                module.train()
            if curve_every == 0 and (cfg.eval_every_epoch or last):
                point(steps_per_epoch, epoch_acc[-1] if eval_inputs is not None else None)
            # the rest of this epoch's losses count towards the next point
            tail = pending[2]
            pending[0] += float((step_losses[tail:] * batch_sizes[tail:]).sum())
            pending[1] += float(batch_sizes[tail:].sum())
            pending[2] = 0
    module.eval()
    out: dict[str, Any] = {
        "epoch_test_acc": epoch_acc,
        "final_train_loss": epoch_losses[-1] if epoch_losses else float("nan"),
        "steps": step,
        "curve": curve,
    }
    if policy != "none":
        if best and best[1] != step:
            module.load_state_dict(best[2], strict=False)
        chosen = best[1] if best else step
        out["early_stop"] = {"policy": policy, "selected_step": chosen, "selected_epoch": chosen / steps_per_epoch,
                             "val_acc": best[3] if best else None, "n_val": len(val_classes)}
        if metric != "accuracy":
            out["early_stop"].update(val_metric=metric, val_auroc=best[0] if best else None)
    return out


def validation_split(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train positions, validation positions)`` of ``n`` training rows: a seeded ``frac`` of them (at least one,
    leaving at least one) held out for early stopping; the same for every stage of a seed with the same rows."""
    if n < 2:
        raise InputError(f"early stopping needs at least 2 training rows to hold some out, got {n}")
    n_val = min(n - 1, max(1, round(frac * n)))
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 0xE5])).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _snapshot(module) -> dict[str, Any]:
    """A CPU copy of the module's trainable parameters and buffers (what training changes), for
    ``load_state_dict(strict=False)``."""
    import torch

    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict(keep_vars=True).items()
            if k in trainable or not isinstance(v, torch.nn.Parameter)}


def warm_up() -> None:
    """Do the lazy imports of the first optimiser construction now (``torch._dynamo``, ~2 s).

    Called before forking worker processes, so each worker inherits them instead of paying them again.
    """
    import torch

    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])


def _adamw(params, cfg: TrainConfig, device):
    """AdamW (betas ``cfg.adam_beta1``/``adam_beta2``), fused into one kernel per step where torch supports it (CPU
    and CUDA floating-point params).

    ``fused=True`` is free to ask for: the optimizer base class imports ``torch._dynamo`` either way.
    """
    import torch

    betas = (float(getattr(cfg, "adam_beta1", 0.9)), float(getattr(cfg, "adam_beta2", 0.999)))
    kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "betas": betas}
    if device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in params):
        try:
            return torch.optim.AdamW(params, fused=True, **kwargs)
        except (RuntimeError, ValueError):  # dtype/device combination without a fused kernel
            pass
    return torch.optim.AdamW(params, **kwargs)


def _stepper(optimizer) -> Callable[[], None]:
    """``optimizer.step`` for one AdamW param group; after the first step, the same fused update called through
    torch's functional ``torch.optim.adamw.adamw`` on the optimizer's own state.

    Why: ``Optimizer.step`` wraps the ~15 us fused kernel in hooks, profiler records and dynamo guards that cost
    ~300 us per call on a slow CPU, as much as the rest of a linear head's step. The update is the same kernel
    on the same tensors, so results are bitwise identical (tested); anything unusual keeps ``optimizer.step``.
    """
    import importlib

    group = optimizer.param_groups[0] if len(optimizer.param_groups) == 1 else {}
    functional = getattr(importlib.import_module("torch.optim.adamw"), "adamw", None)
    if not (group.get("fused") and functional is not None and not group.get("amsgrad")
            and not group.get("maximize") and not group.get("capturable") and not group.get("differentiable")):
        return optimizer.step
    params = group["params"]
    state: list = []

    def step() -> None:
        grads = [p.grad for p in params]
        if not state or any(g is None for g in grads):
            # The first step creates the state tensors; a param without a gradient (unused in a fine-tune's
            # forward) has no state yet: let the optimizer handle those steps itself.
            optimizer.step()
            found = [optimizer.state.get(p, {}) for p in params]
            state[:] = found if all("exp_avg" in s for s in found) else []
            return
        beta1, beta2 = group["betas"]
        functional(
            params, grads, [s["exp_avg"] for s in state], [s["exp_avg_sq"] for s in state],
            [], [s["step"] for s in state], fused=True, amsgrad=False, beta1=beta1, beta2=beta2,
            lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
        )

    return step


def _fast_path(loss, logits, y_all, y_epoch, order):
    """After the first (fully checked) batch: ``loss.compute`` on targets checked once, if the loss offers it.

    Returns ``(callable, y_all, y_epoch)``; the targets come back converted (class ids -> one-hot rows) so the
    per-batch slices match what the checked call would have produced.
    """
    prevalidate = getattr(loss, "prevalidate", None)
    compute = getattr(loss, "compute", None)
    if not (callable(prevalidate) and callable(compute)):
        return loss, y_all, y_epoch
    y_all = prevalidate(y_all, int(logits.shape[1]))
    if y_epoch is not None:
        y_epoch = y_all[order.to(y_all.device)]
    return compute, y_all, y_epoch


def _check_finite(step_losses, b: int, epoch: int, cfg: TrainConfig, steps_per_epoch: int, warmup: int,
                  where: str, section: str | None) -> None:
    """Raise a one-line :class:`TrainingError` naming the first non-finite batch loss up to batch ``b``.

    Losses are stored per step and checked every few steps (one host read instead of one per step).
    """
    import torch

    seen = step_losses[: b + 1]
    bad = (~torch.isfinite(seen)).nonzero()
    if len(bad) == 0:
        return
    first = int(bad[0, 0])
    lr = cfg.lr * lr_multiplier(epoch * steps_per_epoch + first, steps_per_epoch * cfg.epochs, warmup)
    sec = section or _section(where)
    raise TrainingError(
        f"{where or 'training'}: loss is {float(seen[first])} at epoch {epoch + 1}/{cfg.epochs}, batch "
        f"{first + 1}/{steps_per_epoch} (lr {lr:.3g}); lower the learning rate "
        f'(e.g. --set {sec}.lr={cfg.lr / 10:g}) or train in float32 (--set {sec}.dtype="float32")'
    )


def binary_auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """AUROC of ``scores`` for the boolean ``positive``: the Mann-Whitney U statistic over ``n_pos * n_neg``, ties
    counting one half (average ranks); ``None`` when either class is empty."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ordered = scores[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]  # first position of every group of tied scores
    ends = np.r_[starts[1:], scores.size]
    ranks = np.empty(scores.size, dtype=np.float64)
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)  # average 1-based rank of the group
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auroc(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """AUROC of probabilities ``(N, k)`` against class ids ``(N,)`` (or ``(N, k)`` rows): binary (k = 2) on the
    class-1 probability, else the macro mean of the one-vs-rest AUROCs of the classes that have positive and
    negative rows. ``None`` when undefined (one class in ``labels``)."""
    probs = np.asarray(probs, dtype=np.float64)
    y = class_ids(labels)
    if probs.ndim != 2 or probs.shape[0] != y.shape[0]:
        raise InputError(f"auroc: {probs.shape[0]} predictions but {y.shape[0]} labels")
    if probs.shape[1] == 2:
        return binary_auroc(probs[:, 1], y == 1)
    per_class = [binary_auroc(probs[:, c], y == c) for c in range(probs.shape[1])]
    defined = [a for a in per_class if a is not None]
    return float(np.mean(defined)) if defined else None


__all__ = [
    "accuracy",
    "auroc",
    "cpu_head_mode",
    "fit",
    "lr_multiplier",
    "predict_proba",
    "step_fracs",
    "total_steps",
    "validation_split",
    "warm_up",
    "warmup_steps",
    "zero_linear_head",
]
