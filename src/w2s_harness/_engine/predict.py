"""Inference and what both solvers share: :func:`predict_proba`, :func:`accuracy`, input checks, the CPU head mode.

The AdamW loop (:mod:`w2s_harness._engine.training`) and the L-BFGS probe (:mod:`w2s_harness._engine.probe`) both check their inputs, run tiny heads on
CPU in :func:`cpu_head_mode`, score curve points on the same :func:`curve_rows` and predict with
:func:`predict_proba`. These pieces live here, below both, so that the probe never imports the training loop
(``_training.fit`` dispatches to ``_probe.fit_lbfgs``; an import back would be a cycle). ``_training`` re-exports
every name, so ``_training.predict_proba`` and friends are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .._contracts.errors import InputError


@contextmanager
def cpu_head_mode(enabled: bool = True) -> Iterator[None]:
    """One intra-op thread with denormals flushed (for tiny heads on CPU); restores both to what they were before
    (torch has no getter for flushing: :func:`~w2s_harness._engine.torch_settings.flush_denormal_enabled` probes it), so
    a nested use, e.g. an evaluation inside a training loop, leaves the loop's flushing on."""
    if not enabled:
        yield
        return
    import torch

    from .torch_settings import flush_denormal_enabled

    prev = torch.get_num_threads()
    prev_flush = flush_denormal_enabled()
    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)
        torch.set_flush_denormal(prev_flush)


def _is_features(inputs: Any) -> bool:
    import torch

    return isinstance(inputs, (np.ndarray, torch.Tensor))


def _as_device(device: Any):
    import torch

    if device is None:
        return torch.device("cpu")
    return device if isinstance(device, torch.device) else torch.device(device)


def _check_inputs(inputs: Any, what: str) -> int:
    if _is_features(inputs):
        if inputs.ndim not in (2, 3):  # (N, n, d): the n candidates of a choice task (_choice)
            raise InputError(f"{what}: features must be (N, d) (or (N, n, d) for a choice task), got shape "
                             f"{tuple(inputs.shape)}")
        return int(inputs.shape[0])
    if isinstance(inputs, (list, tuple)) and all(
            isinstance(t, str) or (isinstance(t, tuple) and all(isinstance(c, str) for c in t)) for t in inputs):
        return len(inputs)  # strings, or a choice task's tuples of candidate texts
    raise InputError(
        f"{what}: inputs must be an (N, d) float32 array or a list of strings, got {type(inputs).__name__}"
    )


def _section(where: str) -> str:
    return "weak" if "weak" in where.lower() else "strong"


#: At most this many training rows (a fixed seeded subset) score a curve point's agreement with the targets.
CURVE_ROWS = 1000


def curve_rows(n: int, seed: int) -> np.ndarray:
    """Sorted positions of the training rows a curve point's agreement is measured on: all of them up to
    :data:`CURVE_ROWS`, else a seeded subset of that size (independent of the training RNG)."""
    if n <= CURVE_ROWS:
        return np.arange(n)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xC0C0]))
    return np.sort(rng.choice(n, CURVE_ROWS, replace=False))


def class_ids(targets: np.ndarray) -> np.ndarray:
    """Class ids of targets given as ``(N, k)`` rows (their argmax) or ``(N,)`` ids."""
    targets = np.asarray(targets)
    return targets.argmax(axis=1) if targets.ndim == 2 else targets.astype(np.int64)


def _take(inputs: Any, positions: np.ndarray) -> Any:
    """The rows ``positions`` of features (array or tensor) or texts."""
    if isinstance(inputs, np.ndarray):
        return inputs[positions]
    if _is_features(inputs):
        import torch

        return inputs[torch.as_tensor(positions, device=inputs.device)]
    return [inputs[int(i)] for i in positions]


def predict_proba(
    module, inputs: np.ndarray | Sequence[str], *, device: Any, batch_size: int = 512, _nested: bool = False
) -> np.ndarray:
    """Softmax probabilities ``(N, k)`` float32 of ``module`` on ``inputs`` (eval mode, no grad).

    Text inputs are batched by length (longest first) and returned in the original order. The module's
    train/eval mode is restored afterwards. ``_nested``: called inside :func:`fit`'s :func:`cpu_head_mode`, whose
    thread count and denormal flushing stay as they are (a curve point must not change how training continues).
    """
    import torch

    device = _as_device(device)
    n = _check_inputs(inputs, "predict_proba")
    features = _is_features(inputs)
    was_training = module.training
    module.eval()
    out: list[torch.Tensor] = []
    try:
        with cpu_head_mode(features and device.type == "cpu" and not _nested), torch.inference_mode():
            if features:
                x_all = torch.as_tensor(inputs, dtype=torch.float32)
                for s in range(0, n, batch_size):
                    logits = module(x_all[s : s + batch_size].to(device))
                    out.append(torch.softmax(logits.float(), dim=-1).cpu())
                order = None
            else:
                texts = list(inputs)
                order = sorted(range(n), key=lambda i: -len(texts[i]))
                for s in range(0, n, batch_size):
                    logits = module([texts[i] for i in order[s : s + batch_size]])
                    out.append(torch.softmax(logits.float(), dim=-1).cpu())
    finally:
        module.train(was_training)
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    probs = torch.cat(out).numpy().astype(np.float32, copy=False)
    if order is not None:
        unsorted = np.empty_like(probs)
        unsorted[np.asarray(order)] = probs
        probs = unsorted
    return probs


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose argmax matches ``labels`` (class ids ``(N,)``, or soft/one-hot ``(N, k)``)."""
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    if probs.shape[0] != labels.shape[0]:
        raise InputError(f"accuracy: {probs.shape[0]} predictions but {labels.shape[0]} labels")
    if probs.shape[0] == 0:
        raise InputError("accuracy: no examples")
    return float(np.mean(probs.argmax(axis=1) == labels))


__all__ = ["CURVE_ROWS", "accuracy", "class_ids", "cpu_head_mode", "curve_rows", "predict_proba"]
