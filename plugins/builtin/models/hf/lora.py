"""LoRA adapters for fine-tuned ``hf:`` models, through ``peft`` (``lora = true``)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from w2s_harness import ConfigError

from .checkpoints import quiet_transformers

#: LoRA defaults (EleutherAI/w2s uses peft's LoraConfig defaults: r=8, alpha=8, no dropout).
LORA_R = 8
LORA_ALPHA = 8.0
LORA_DROPOUT = 0.0
#: The install command a missing ``peft`` names.
PEFT_INSTALL = "pip install 'w2s-harness[lora]' (or: pip install 'peft>=0.10')"


def _is_projection(module) -> bool:
    import torch

    if isinstance(module, torch.nn.Linear):
        return True
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        return False
    return isinstance(module, Conv1D)


def default_lora_targets(model, blocks_name: str) -> list[str]:
    """Every linear layer inside the transformer blocks: the attention and MLP projections (q/k/v/o and
    gate/up/down for Llama and Qwen2, as EleutherAI/w2s's defaults; c_attn/c_proj/c_fc for GPT-2;
    query_key_value/dense/dense_h_to_4h/dense_4h_to_h for Pythia), as full module names."""
    prefix = blocks_name + "."
    return [name for name, mod in model.named_modules() if name.startswith(prefix) and _is_projection(mod)]


def require_peft(owner: str):
    try:
        return importlib.import_module("peft")
    except ImportError:
        raise ConfigError(f"{owner}: lora = true needs the peft package: {PEFT_INSTALL}") from None


def add_lora(model, *, owner: str, blocks_name: str, r: int, alpha: float, dropout: float,
             targets: list[str] | None, trainable: Sequence[str] = ()) -> list[str]:
    """Inject LoRA adapters (``peft``) into ``model`` in place and freeze everything else but the modules named in
    ``trainable`` (a sequence-classification head). Adapters are float32. Returns the adapted module names."""
    import torch

    peft = require_peft(owner)
    names = targets if targets is not None else default_lora_targets(model, blocks_name)
    if not names:
        raise ConfigError(f"{owner}: found no linear layers for LoRA; set lora_target_modules")
    wanted = [names] if isinstance(names, str) else list(names)
    chosen = [m for full, m in model.named_modules() if any(full == n or full.endswith(f".{n}") for n in wanted)]
    conv1d = bool(chosen) and all(not isinstance(m, torch.nn.Linear) for m in chosen)  # GPT-2's Conv1D
    config = peft.LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(names), bias="none", fan_in_fan_out=conv1d
    )
    try:
        with quiet_transformers():
            peft.inject_adapter_in_model(config, model)
    except ValueError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{owner}: cannot add LoRA adapters: {first}") from None
    heads = tuple(f"{t}." for t in trainable)
    adapted = set()
    for name, param in model.named_parameters():
        is_lora = ".lora_" in f".{name}"
        train = is_lora or name.startswith(heads)
        param.requires_grad_(train)
        if train:  # what trains is float32 (as EleutherAI/w2s), whatever dtype the frozen weights have
            param.data = param.data.float()
        if is_lora:
            adapted.add(name.split(".lora_")[0])
    return sorted(adapted)
