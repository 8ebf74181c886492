"""Tensor-level helpers the ``hf:`` feature pass and classifier share: padding, position ids, pooling, dtype and
autocast, the device, and the zero-initialised linear head."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from w2s_harness import zero_linear_head


def ensure_pad_token(tokenizer) -> None:
    """Give a tokenizer without a pad token one: its eos token, else bos, else unk, else token 0. Padded positions
    are masked out (attention and pooling), so which token pads does not change any result."""
    if tokenizer.pad_token_id is not None:
        return
    for name in ("eos_token", "bos_token", "unk_token"):
        token = getattr(tokenizer, name, None)
        if token is not None:
            tokenizer.pad_token = token
            return
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(0)


def position_ids(mask):
    """Positions that follow the attention mask (0 at each text's first real token), so a left-padded text gets
    the positions it would have unpadded; padded positions get 0."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def pool(hidden, mask, pooling: str):
    """Pool ``(B, T, H)`` hidden states to ``(B, H)`` float32: attention-masked mean, the first token (``cls``), or
    the last REAL token (``last``: the last position whose mask is 1, for left and right padding alike)."""
    hidden = hidden.float()
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        import torch

        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (mask.long() * positions).argmax(-1).to(hidden.device)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    keep = mask.to(hidden.device).bool().unsqueeze(-1)
    # masked_fill, not a product: a padded position's state may be non-finite (a fully masked attention row)
    total = hidden.masked_fill(~keep, 0.0).sum(1)
    return total / keep.sum(1).clamp(min=1).to(hidden.dtype)


def autocast(device, dtype: str):
    """bfloat16/float16 autocast on CUDA only; CPU runs float32 (reduced precision is slower there)."""
    import torch

    if device.type == "cuda" and dtype != "float32":
        return torch.autocast("cuda", dtype=getattr(torch, dtype))
    return nullcontext()


def weights_dtype(device, dtype: str):
    """The torch dtype the backbone's weights load in: ``dtype`` on CUDA (bfloat16 only where the GPU supports it,
    else float32, as the reference), float32 on CPU."""
    import torch

    if device.type != "cuda" or dtype == "float32":
        return torch.float32
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        return torch.float32
    return getattr(torch, dtype)


def default_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")



def zero_head(in_features: int, n_classes: int, device: Any = None, *, bias: bool = True):
    """A zero-initialised ``nn.Linear(in_features, n_classes)`` on ``device``; ``bias = False``: the reference's
    bias-free head for causal LMs (:attr:`Architecture.head_bias <.architectures.Architecture.head_bias>`)."""
    if bias:
        return zero_linear_head(in_features, n_classes, device)
    import torch

    head = torch.nn.Linear(int(in_features), int(n_classes), bias=False)
    torch.nn.init.zeros_(head.weight)
    return head.to(torch.device(device) if device is not None else torch.device("cpu"))
