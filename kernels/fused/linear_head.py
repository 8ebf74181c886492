"""Fused linear head + soft-label cross-entropy for large class counts (vocabulary-sized k).

``loss = mean_i sum_j -y_ij * log_softmax(hidden @ weight.T + bias)_ij`` with hidden (N, H), weight (k, H),
bias (k,) or None and soft targets y (N, k). The plain version materialises the (N, k) logits, their
log-softmax and their gradient (for N = 16k, k = 128k in fp32 that is 8 GiB each). The fused version
(the FLCE idea of Liger-Kernel) walks over row chunks of ``C`` rows:

1. ``logits_c = hidden_c @ weight.T + bias``  (C, k) in the input dtype (cuBLAS, fp32 accumulation)
2. the fused soft-CE kernel (``triton_softce``, xent mode) computes the loss (per-program partial sums) and
   overwrites ``logits_c`` **in place** with ``(sum(y) * softmax - y) / N``: loss and gradient in one kernel.
   For k > 8192 (the tiled kernel) each row is read twice (online softmax, then loss + gradient). The second
   read comes from L2 only while the rows in flight fit: at k = 131,072 a row is 256 KiB in fp32 (128 KiB in
   bf16), and a few programs per SM on 132 SMs exceed the 50 MB L2 of an H100, so it is mostly an HBM re-read.
   With ``targets_normalized=True`` (rows of ``y`` known to sum to 1) the first pass does not read ``y`` at
   all (no target row-sum pass).
3. ``grad_hidden_c = grad_c @ weight``; ``grad_weight += grad_c.T @ hidden_c``; ``grad_bias += sum(grad_c)``

so only one (C, k) buffer exists at a time. ``C`` comes from a memory budget: the largest power of two with
``C * k * itemsize <= chunk_bytes`` (default ``DEFAULT_CHUNK_BYTES`` = 256 MiB, and at least the size of
``hidden``, which was Liger's rule), capped at ``next_pow2(N)``. Everything happens in forward; backward only
scales the stored gradients by ``grad_output`` (in place, skipped on the device when it is 1).

``grad_weight`` accumulation (``accumulate_fp32``; default: on for bf16 / fp16 weights):

* on: an fp32 accumulator (k * H * 4 bytes). On CUDA each chunk's ``g.T @ hidden_c`` is accumulated straight
  into it by ``torch.addmm(..., out_dtype=torch.float32)`` (cuBLAS, fp32 accumulate and fp32 output: no bf16
  round trip of the chunk product) where the installed torch has it; otherwise (CPU, older torch) one
  ``addmm_`` per chunk on the fp32 buffer with the chunk operands upcast. ``grad_bias`` is always summed in
  the compute dtype.
* off: accumulated in the parameter dtype as Liger does (each chunk's matmul accumulates in fp32 inside
  cuBLAS, the running sum is rounded to bf16 once per chunk).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def linear_head_soft_xent_reference(hidden, weight, bias, targets):
    """Plain PyTorch: materialise the logits, log-softmax in float32 (float64 for float64), mean soft CE."""
    logits = F.linear(hidden, weight, bias)
    logits = logits.to(torch.float64 if logits.dtype == torch.float64 else torch.float32)
    return -(targets.detach().to(logits.dtype) * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


#: Default memory budget of the (C, k) chunk buffer.
DEFAULT_CHUNK_BYTES = 256 * 2**20


def default_chunk_size(n: int, k: int, h: int, itemsize: int = 4, chunk_bytes: int | None = None) -> int:
    """Rows per chunk: the largest power of two whose (C, k) buffer fits ``chunk_bytes`` (default
    ``max(DEFAULT_CHUNK_BYTES, N * H * itemsize)``), at least 1 and at most ``next_pow2(N)``."""
    budget = chunk_bytes if chunk_bytes else max(DEFAULT_CHUNK_BYTES, n * h * itemsize)
    rows = max(1, budget // max(1, k * itemsize))
    c = 1 << (rows.bit_length() - 1)
    return max(1, min(c, 1 << (max(n, 1) - 1).bit_length()))


_ADDMM_OUT_DTYPE: dict = {}


def _addmm_fp32_(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """``acc += a @ b`` with ``acc`` float32 and ``a``, ``b`` half precision: cuBLAS with fp32 output
    (``torch.addmm(..., out_dtype=torch.float32)``) where this torch supports it on ``acc``'s device, else one
    ``addmm_`` on upcast operands. Either way one matmul per chunk and no rounding of the product to bf16."""
    key = (acc.device.type, a.dtype)
    if _ADDMM_OUT_DTYPE.get(key, acc.is_cuda):
        try:
            torch.addmm(acc, a, b, out_dtype=torch.float32, out=acc)
            _ADDMM_OUT_DTYPE[key] = True
            return
        except (TypeError, RuntimeError, NotImplementedError):
            _ADDMM_OUT_DTYPE[key] = False
    acc.addmm_(a.to(acc.dtype), b.to(acc.dtype))


class FusedLinearSoftXent(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size, need_h, need_w, need_b, accumulate_fp32,
                targets_normalized=False):
        from .triton_softce import MODE_XENT, soft_ce_forward

        n, h = hidden.shape
        k = weight.shape[0]
        if targets.shape != (n, k):
            raise ValueError(f"targets shape {tuple(targets.shape)} != (N, k) = {(n, k)}")
        hidden = hidden.contiguous()
        targets = targets.contiguous()
        chunk = int(chunk_size) if chunk_size else default_chunk_size(n, k, h, hidden.element_size())
        need_any = need_h or need_w or need_b
        acc_dtype = torch.promote_types(weight.dtype, torch.float32) if accumulate_fp32 else weight.dtype
        compute = torch.float64 if hidden.dtype == torch.float64 else torch.float32
        loss_parts = []
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=acc_dtype, device=weight.device) if need_w else None
        grad_b = torch.zeros(k, dtype=compute, device=weight.device) if need_b else None
        for start in range(0, n, chunk):
            end = min(n, start + chunk)
            h_c = hidden[start:end]
            logits_c = F.linear(h_c, weight, bias)
            parts, g = soft_ce_forward(
                logits_c, targets[start:end], MODE_XENT, grad_scale=1.0 / n, loss_scale=1.0 / n,
                need_grad=need_any, grad_out=logits_c, targets_normalized=targets_normalized,
            )
            loss_parts.append(parts)
            if need_h:
                torch.mm(g, weight, out=grad_h[start:end])
            if need_w:
                if acc_dtype == g.dtype:
                    grad_w.addmm_(g.t(), h_c)
                else:
                    _addmm_fp32_(grad_w, g.t(), h_c)
            if need_b:
                grad_b += g.sum(dim=0, dtype=compute)
        saved = [t for t in (grad_h, grad_w, grad_b) if t is not None]
        ctx.save_for_backward(*saved)
        ctx.flags = (need_h, need_w, need_b)
        ctx.applied = None
        ctx.param_dtypes = (weight.dtype, None if bias is None else bias.dtype)
        if not loss_parts:
            return torch.full((), float("nan"), dtype=compute, device=hidden.device)
        return torch.cat(loss_parts).sum() if len(loss_parts) > 1 else loss_parts[0].sum()

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
        return gh, gw, gb, None, None, None, None, None, None, None


def fused_linear_soft_xent(hidden, weight, bias, targets, *, chunk_size=None, accumulate_fp32=None,
                           targets_normalized=False):
    """Triton path (CUDA, or CPU under ``TRITON_INTERPRET=1``); same value and gradients as the reference.

    ``accumulate_fp32`` (default: True for bf16 / fp16 weights) keeps ``grad_weight`` in an fp32 accumulator.
    ``targets_normalized=True`` promises that every row of ``targets`` sums to 1 (the large-k kernel then skips
    its target row sums; with rows that do not, the gradient is wrong)."""
    if accumulate_fp32 is None:
        accumulate_fp32 = weight.dtype in (torch.bfloat16, torch.float16)
    grad_on = torch.is_grad_enabled()
    need_h = bool(grad_on and hidden.requires_grad)
    need_w = bool(grad_on and weight.requires_grad)
    need_b = bool(grad_on and bias is not None and bias.requires_grad)
    return FusedLinearSoftXent.apply(
        hidden, weight, bias, targets, chunk_size, need_h, need_w, need_b, accumulate_fp32,
        bool(targets_normalized),
    )


def linear_head_soft_xent(hidden, weight, bias, targets, *, chunk_size=None, backend: str = "auto"):
    """Dispatching entry point, same backend rules as ``kernels.dispatch``."""
    from .dispatch import use_triton

    if use_triton(hidden, backend):
        return fused_linear_soft_xent(hidden, weight, bias, targets, chunk_size=chunk_size)
    return linear_head_soft_xent_reference(hidden, weight, bias, targets)
