"""Fused linear head + soft-label cross-entropy for large class counts (vocabulary-sized k).

``loss = mean_i sum_j -y_ij * log_softmax(hidden @ weight.T + bias)_ij`` with hidden (N, H), weight (k, H),
bias (k,) or None and soft targets y (N, k). The plain version materialises the (N, k) logits, their
log-softmax and their gradient (for N = 16k, k = 128k in fp32 that is 8 GiB each). The fused version
(the FLCE idea of Liger-Kernel) walks over row chunks of ``C`` rows:

1. ``logits_c = hidden_c @ weight.T + bias``  (C, k) in the input dtype (cuBLAS, fp32 accumulation)
2. the fused soft-CE kernel (``triton_softce``, xent mode) computes the fp32 row losses and overwrites
   ``logits_c`` **in place** with ``(sum(y) * softmax - y) / N``: loss and gradient in one kernel
3. ``grad_hidden_c = grad_c @ weight``; ``grad_weight += grad_c.T @ hidden_c``; ``grad_bias += sum(grad_c)``

so only one (C, k) buffer exists at a time. The default ``C`` makes that buffer about the size of ``hidden``
(``C = next_pow2(ceil(N / ceil(k / H)))``, Liger's rule). Everything happens in forward; backward only scales
the stored gradients by ``grad_output`` (in place, skipped on the device when it is 1).
``grad_weight`` / ``grad_bias`` are accumulated in the parameter dtype (as Liger does: each chunk's
matmul accumulates in fp32 inside cuBLAS, the running sum is rounded once per chunk); pass
``accumulate_fp32=True`` to keep fp32 accumulators instead (costs k * H * 4 bytes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def linear_head_soft_xent_reference(hidden, weight, bias, targets):
    """Plain PyTorch: materialise the logits, log-softmax in float32 (float64 for float64), mean soft CE."""
    logits = F.linear(hidden, weight, bias)
    logits = logits.to(torch.float64 if logits.dtype == torch.float64 else torch.float32)
    return -(targets.detach().to(logits.dtype) * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def default_chunk_size(n: int, k: int, h: int) -> int:
    inc = max(1, math.ceil(k / max(h, 1)))
    c = max(1, math.ceil(n / inc))
    return 1 << (c - 1).bit_length()


class FusedLinearSoftXent(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size, need_h, need_w, need_b, accumulate_fp32):
        from .triton_softce import MODE_XENT, soft_ce_forward

        n, h = hidden.shape
        k = weight.shape[0]
        if targets.shape != (n, k):
            raise ValueError(f"targets shape {tuple(targets.shape)} != (N, k) = {(n, k)}")
        hidden = hidden.contiguous()
        targets = targets.contiguous()
        chunk = int(chunk_size) if chunk_size else default_chunk_size(n, k, h)
        need_any = need_h or need_w or need_b
        acc_dtype = torch.promote_types(weight.dtype, torch.float32) if accumulate_fp32 else weight.dtype
        compute = torch.float64 if hidden.dtype == torch.float64 else torch.float32
        loss_rows = torch.empty(n, dtype=compute, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=acc_dtype, device=weight.device) if need_w else None
        grad_b = torch.zeros(k, dtype=compute, device=weight.device) if need_b else None
        for start in range(0, n, chunk):
            end = min(n, start + chunk)
            h_c = hidden[start:end]
            logits_c = F.linear(h_c, weight, bias)
            rows, g = soft_ce_forward(
                logits_c, targets[start:end], MODE_XENT, grad_scale=1.0 / n, need_grad=need_any,
                grad_out=logits_c,
            )
            loss_rows[start:end] = rows
            if need_h:
                torch.mm(g, weight, out=grad_h[start:end])
            if need_w:
                if acc_dtype == g.dtype:
                    grad_w.addmm_(g.t(), h_c)
                else:
                    grad_w += torch.mm(g.t(), h_c).to(acc_dtype)
            if need_b:
                grad_b += g.sum(dim=0, dtype=compute)
        saved = [t for t in (grad_h, grad_w, grad_b) if t is not None]
        ctx.save_for_backward(*saved)
        ctx.flags = (need_h, need_w, need_b)
        ctx.applied = None
        ctx.param_dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return loss_rows.mean()

    @staticmethod
    def backward(ctx, grad_output):
        from .triton_softce import scale_saved_grads

        saved = list(ctx.saved_tensors)
        grads = [saved.pop(0) if flag else None for flag in ctx.flags]
        out = scale_saved_grads(ctx, grads, grad_output)
        gh, gw, gb = out
        if gw is not None and gw.dtype != ctx.param_dtypes[0]:
            gw = gw.to(ctx.param_dtypes[0])
        if gb is not None and ctx.param_dtypes[1] is not None:
            gb = gb.to(ctx.param_dtypes[1])
        return gh, gw, gb, None, None, None, None, None, None


def fused_linear_soft_xent(hidden, weight, bias, targets, *, chunk_size=None, accumulate_fp32=False):
    """Triton path (CUDA, or CPU under ``TRITON_INTERPRET=1``); same value and gradients as the reference."""
    grad_on = torch.is_grad_enabled()
    need_h = bool(grad_on and hidden.requires_grad)
    need_w = bool(grad_on and weight.requires_grad)
    need_b = bool(grad_on and bias is not None and bias.requires_grad)
    return FusedLinearSoftXent.apply(
        hidden, weight, bias, targets, chunk_size, need_h, need_w, need_b, accumulate_fp32
    )


def linear_head_soft_xent(hidden, weight, bias, targets, *, chunk_size=None, backend: str = "auto"):
    """Dispatching entry point, same backend rules as ``kernels.dispatch``."""
    from .dispatch import use_triton

    if use_triton(hidden, backend):
        return fused_linear_soft_xent(hidden, weight, bias, targets, chunk_size=chunk_size)
    return linear_head_soft_xent_reference(hidden, weight, bias, targets)
