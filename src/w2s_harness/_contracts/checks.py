"""Input checks shared by the built-in losses: one-line :class:`~w2s_harness._contracts.errors.InputError` naming shapes.

Also converts integer class ids ``(N,)`` into one-hot rows ``(N, k)``, so every loss sees ``(N, k)``
soft labels.
torch is imported lazily, so importing the plugin stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

BACKENDS = ("auto", "torch", "triton")


def _shape(t) -> str:
    dims = tuple(int(d) for d in t.shape)
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def row_sum_tolerance(dtype, k: int) -> float:
    """How far a soft-label row may sum from 1: 1e-4, or more for low-precision labels (fp16/bf16)."""
    import torch

    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    return max(1e-4, 2.0 * k * eps)


def check_loss_inputs(logits, targets, *, loss: str, values: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Check ``logits`` / ``targets`` and return ``(logits, soft_targets)`` with targets ``(N, k)`` float.

    Integer (or bool) ``(N,)`` targets become one-hot float32 rows. Float targets keep their dtype, and the
    losses upcast them. Targets are moved to the logits' device.

    ``values=False`` keeps only the checks that read no tensor data (types, shapes, dtypes): no class-id range,
    finiteness, sign or row-sum check. Those read the targets back to the host (one device sync, and a float64
    copy of the targets), which a caller that checked its target table once (``BaseLoss.prevalidate``) should
    not pay on every step. Valid inputs give the same values either way.
    """
    import torch

    where = f"loss {loss!r}: "
    if not isinstance(logits, torch.Tensor):
        raise InputError(f"{where}logits must be a torch.Tensor of shape (N, k), got {type(logits).__name__}")
    if not isinstance(targets, torch.Tensor):
        raise InputError(f"{where}targets must be a torch.Tensor, got {type(targets).__name__}")
    ls = _shape(logits)
    if logits.dim() != 2:
        raise InputError(
            f"{where}logits shape {ls} is not (N, k): pass one row of k >= 2 class logits per example"
        )
    n, k = logits.shape
    if k < 2:
        raise InputError(
            f"{where}logits shape {ls} has k={k} class: a classifier needs k >= 2 logits per example"
        )
    if n == 0:
        raise InputError(f"{where}logits shape {ls} is an empty batch: pass at least one example")
    if not logits.is_floating_point():
        raise InputError(f"{where}logits shape {ls} have dtype {logits.dtype}: logits must be floating point")

    ts = _shape(targets)
    targets = targets.to(logits.device)
    integral = not targets.is_floating_point() and not targets.is_complex()
    if targets.dim() == 1:
        if not integral:
            raise InputError(
                f"{where}targets shape {ts} are floats, not (N, k) soft labels, for logits shape {ls}: pass "
                f"({n}, {k}) probability rows or ({n},) integer class ids"
            )
        if targets.shape[0] != n:
            raise InputError(
                f"{where}targets shape {ts} does not match logits shape {ls}: pass one class id per example"
            )
        ids = targets.long()
        if not values:
            # one_hot reads min / max back to the host on CPU; the comparison is the same one-hot, sync-free
            classes = torch.arange(k, device=ids.device)
            return logits, (ids.unsqueeze(1) == classes).to(torch.float32)
        lo, hi = torch.stack([ids.min(), ids.max()]).tolist()
        if lo < 0 or hi >= k:
            bad = lo if lo < 0 else hi
            raise InputError(
                f"{where}targets shape {ts} contain class id {bad} outside [0, {k}) for logits shape {ls}"
            )
        return logits, torch.nn.functional.one_hot(ids, k).to(torch.float32)

    if targets.dim() != 2:
        raise InputError(
            f"{where}targets shape {ts} does not match logits shape {ls}: pass ({n}, {k}) soft labels or "
            f"({n},) class ids"
        )
    if targets.shape[0] != n:
        raise InputError(
            f"{where}targets shape {ts} does not match logits shape {ls}: pass one soft-label row per example"
        )
    if targets.shape[1] != k:
        raise InputError(
            f"{where}targets shape {ts} does not match logits shape {ls}: pass one soft-label row of "
            f"k={k} probabilities per example"
        )
    if integral:
        targets = targets.to(torch.float32)
    if targets.is_complex():
        raise InputError(f"{where}targets shape {ts} are complex: soft labels must be real probabilities")
    if not values:
        return logits, targets

    # One host sync for all value checks.
    t = targets.detach()
    t64 = t.to(torch.float64)
    finite = torch.isfinite(t).all()
    row_err = (t64.sum(dim=1) - 1.0).abs()
    stats = torch.stack(
        [
            finite.to(torch.float64),
            torch.nan_to_num(t64, nan=0.0).min(),
            torch.nan_to_num(row_err, nan=0.0).max(),
        ]
    )
    is_finite, tmin, max_err = stats.tolist()
    if not is_finite:
        raise InputError(
            f"{where}targets shape {ts} contain NaN or inf: soft labels must be finite probabilities"
        )
    if tmin < 0:
        raise InputError(
            f"{where}targets shape {ts} contain a negative probability ({tmin:.4g}): soft labels must be "
            f"probabilities in [0, 1]"
        )
    tol = row_sum_tolerance(t.dtype, k)
    if max_err > tol:
        row = int(row_err.argmax())
        total = float(t64[row].sum())
        raise InputError(
            f"{where}targets shape {ts} have row {row} summing to {total:.6g}, not 1 (tolerance {tol:.1g}): "
            f"soft-label rows must sum to 1, e.g. normalise with softmax"
        )
    return logits, targets


def check_step_frac(step_frac, *, loss: str) -> float:
    """``step_frac`` as a float in [0, 1] (the finished fraction of training steps)."""
    try:
        value = float(step_frac)
    except (TypeError, ValueError):
        raise InputError(f"loss {loss!r}: step_frac must be a number in [0, 1], got {step_frac!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise InputError(
            f"loss {loss!r}: step_frac {value!r} is outside [0, 1]; "
            "pass the finished fraction of training steps"
        )
    return value


# ------------------------------------------------------------------------------- factory parameters


def check_backend(backend, *, loss: str, torch_only: bool = False) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"loss {loss!r}: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if torch_only and backend == "triton":
        raise ConfigError(f"loss {loss!r} has no fused Triton kernel; use backend='auto' or 'torch'")
    return backend

