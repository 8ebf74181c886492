"""Capture one fused loss step (forward + backward to the logits) in a CUDA graph and replay it.

The fused paths make no host synchronisation (the batch mean, the logconf threshold, the k > 2 balanced ids
and the gradient scaling all stay on the device; ``tests/kernels/test_sync_free.py`` checks it op by op), so
a whole step can be captured once and replayed with one launch, which removes the per-kernel launch cost
(~8 launches for balanced logconf at k = 2) that dominates at the ~10 us a step takes on an H100.

What a replay does and does not re-read:

* the logits and targets are copied into static buffers before each replay (``__call__`` does it);
* host scalars are frozen at capture: ``coef`` (logconf's warm-up schedule changes it every step until the
  warm-up ends), ``alpha`` / ``beta``, the batch size and the class count. Capture after the warm-up, or keep
  one ``CapturedLossStep`` per coefficient;
* the returned loss and gradient are the static output buffers, overwritten by the next replay: copy them
  if they must outlive it;
* the stateful rolling-buffer loss (``logconf`` with ``buffer_size``) keeps its buffer in Python and grows
  it with ``torch.cat``: it is sync-free but not capturable as it stands.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class CapturedLossStep:
    """``loss, grad = step(logits, targets)``: the value of ``loss_fn(logits, targets)`` and its gradient
    with respect to ``logits``, replayed from a CUDA graph captured on the first batch's shapes.

    :param loss_fn: ``(logits, targets) -> 0-dim loss``, e.g.
        ``functools.partial(dispatch.logconf_loss, coef=0.5, backend="triton")``.
    :param logits: an example batch: shape, dtype and device of every later batch.
    :param targets: the matching targets.
    :param warmup: eager steps on a side stream before the capture (Triton compiles its kernels there; a
        capture cannot compile).
    :param capture: ``True`` captures a CUDA graph (needs CUDA tensors), ``False`` runs the same step
        eagerly with the same static-buffer interface (CPU, debugging); default: ``logits.is_cuda``.
    """

    def __init__(self, loss_fn: Callable, logits: torch.Tensor, targets: torch.Tensor, *, warmup: int = 3,
                 capture: bool | None = None) -> None:
        self.loss_fn = loss_fn
        self.capture = logits.is_cuda if capture is None else bool(capture)
        if self.capture and not logits.is_cuda:
            raise ValueError("CUDA graph capture needs CUDA logits; pass capture=False to run the step eagerly")
        self.logits = logits.detach().clone().requires_grad_(True)
        self.targets = targets.detach().clone()
        self.graph = None
        self.loss: torch.Tensor | None = None
        self.grad: torch.Tensor | None = None
        if self.capture:
            self._capture(max(1, int(warmup)))

    def _step(self) -> None:
        self.logits.grad = None
        self.loss = self.loss_fn(self.logits, self.targets)
        self.loss.backward()
        self.grad = self.logits.grad

    def _capture(self, warmup: int) -> None:
        side = torch.cuda.Stream(device=self.logits.device)
        side.wait_stream(torch.cuda.current_stream(self.logits.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self._step()
        torch.cuda.current_stream(self.logits.device).wait_stream(side)
        self.logits.grad = None
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step()

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if logits.shape != self.logits.shape or targets.shape != self.targets.shape:
            raise ValueError(
                f"captured for logits {tuple(self.logits.shape)} / targets {tuple(self.targets.shape)}, got "
                f"{tuple(logits.shape)} / {tuple(targets.shape)}: make one CapturedLossStep per batch shape"
            )
        with torch.no_grad():
            self.logits.copy_(logits)
            self.targets.copy_(targets)
        if self.graph is not None:
            self.graph.replay()
        else:
            self._step()
        return self.loss.detach(), self.grad
