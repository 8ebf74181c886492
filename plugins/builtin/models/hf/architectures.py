"""The ``hf:`` architecture table: how the harness runs each transformers ``model_type``, one row per type.

Every choice the ``hf:`` models make per architecture reads the row of the checkpoint's ``model_type``
(:func:`architecture`): where the transformer blocks live (truncation to ``layers``, gradient checkpointing, LoRA's
default targets), which token is pooled, whether the head has a bias, whether position ids follow the attention
mask (and so whether left padding is allowed), and whether fine-tuning keeps dropout on. Adding an architecture is
adding one :class:`Architecture` row to :data:`ARCHITECTURES`.

A ``model_type`` without a row still runs: its row is inferred (:func:`inferred_architecture`) from transformers'
auto mappings and the config's ``architectures`` class names, and its blocks are searched for; where that search
finds none and a feature needs them, the error names the known types.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from w2s_harness import ConfigError

POOLINGS = ("mean", "cls", "last")
#: Where the blocks are looked for in a model whose type has no row (or whose row's path does not match), in order;
#: then any ``nn.ModuleList`` with one entry per layer.
SEARCHED_BLOCKS = ("encoder.layer", "encoder.layers", "layers", "h", "transformer.h", "model.layers", "block",
                   "gpt_neox.layers", "bert.encoder.layer")
#: Config keys that may hold the layer count (set on truncation).
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers")


@dataclass(frozen=True)
class Architecture:
    """One row of :data:`ARCHITECTURES`. Only ``model_type``, ``causal`` and ``blocks`` are required; the others
    default from ``causal``.

    :param model_type: the config's ``model_type``.
    :param causal: a decoder-only causal LM (GPT-2, Llama, ...): no KV cache while running, and
        ``sequence_classification`` scores the last real token with the model's own ``score`` head. An encoder
        row whose config sets ``is_decoder`` (``BertLMHeadModel`` & co.) is run as a causal LM.
    :param blocks: where the transformer blocks (an ``nn.ModuleList``, one per layer) live in the base model
        (``AutoModel``; in ``AutoModelForSequenceClassification`` under its ``base_model_prefix``). ``None``: the
        model has no such list (ALBERT shares one layer), so ``layers = N`` reads ``hidden_states[N]`` instead of
        truncating, and LoRA needs ``lora_target_modules``.
    :param pooling: the default pooling: ``"last"`` (the last real token) for causal LMs, ``"mean"`` for encoders.
    :param head_bias: whether the zero-initialised linear head has a bias: yes for encoders, no for causal LMs (the
        reference's head).
    :param mask_positions: whether the harness passes position ids that follow the attention mask, so a
        left-padded text gets the positions it has unpadded: causal LMs and encoders whose absolute position
        embeddings start at 0 (BERT-style). Other encoders (RoBERTa-style offsets past the pad index, relative
        positions) keep their own and are padded on the right.
    :param train_dropout: whether fine-tuning keeps the backbone's dropout on by default (``train_with_dropout``
        unset): on for encoders, off for causal LMs (the reference's ``train_with_dropout = False``).
    """

    model_type: str
    causal: bool
    blocks: str | None
    # None: from ``causal`` (filled in by __post_init__, so a row's values are never None)
    pooling: str | None = None
    head_bias: bool | None = None
    mask_positions: bool | None = None
    train_dropout: bool | None = None
    #: True for a row inferred for a type the table does not know (then its blocks are searched for)
    inferred: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self):
        defaults = {"pooling": "last" if self.causal else "mean", "head_bias": not self.causal,
                    "mask_positions": self.causal, "train_dropout": not self.causal}
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.pooling not in POOLINGS:
            raise ValueError(f"architecture {self.model_type!r}: pooling must be one of {', '.join(POOLINGS)}")

    def as_decoder(self) -> Architecture:
        """This encoder family configured as a decoder (``is_decoder = true``): run as a causal LM."""
        return replace(self, causal=True, pooling="last", head_bias=False, mask_positions=True, train_dropout=False)


def _causal(model_type: str, blocks: str) -> Architecture:
    return Architecture(model_type, causal=True, blocks=blocks)


def _encoder(model_type: str, blocks: str | None, mask_positions: bool = False) -> Architecture:
    return Architecture(model_type, causal=False, blocks=blocks, mask_positions=mask_positions)


#: The known architectures, by ``model_type``. A new architecture is one row.
ARCHITECTURES: dict[str, Architecture] = {row.model_type: row for row in (
    # decoder-only causal LMs: last-token pooling, bias-free head, positions follow the mask, dropout off
    _causal("gpt2", "h"),
    _causal("gpt_neo", "h"),
    _causal("gptj", "h"),
    _causal("bloom", "h"),
    _causal("falcon", "h"),
    _causal("qwen", "h"),  # Qwen-1 (remote code)
    _causal("gpt_neox", "layers"),  # Pythia
    _causal("opt", "decoder.layers"),
    _causal("llama", "layers"),
    _causal("mistral", "layers"),
    _causal("mixtral", "layers"),
    _causal("qwen2", "layers"),  # Qwen1.5, Qwen2, Qwen2.5
    _causal("qwen2_moe", "layers"),
    _causal("qwen3", "layers"),
    _causal("gemma", "layers"),
    _causal("gemma2", "layers"),
    _causal("gemma3_text", "layers"),
    _causal("phi", "layers"),
    _causal("phi3", "layers"),
    _causal("olmo", "layers"),
    _causal("stablelm", "layers"),
    _causal("starcoder2", "layers"),
    _causal("smollm3", "layers"),
    # BERT-style encoders (absolute positions from 0): mean pooling, head with bias, positions follow the mask
    _encoder("bert", "encoder.layer", mask_positions=True),
    _encoder("electra", "encoder.layer", mask_positions=True),
    _encoder("albert", None, mask_positions=True),  # one shared layer: no block list
    _encoder("mobilebert", "encoder.layer", mask_positions=True),
    _encoder("convbert", "encoder.layer", mask_positions=True),
    _encoder("ernie", "encoder.layer", mask_positions=True),
    _encoder("megatron-bert", "encoder.layer", mask_positions=True),
    _encoder("nezha", "encoder.layer", mask_positions=True),
    _encoder("roformer", "encoder.layer", mask_positions=True),
    # other encoders (their own position ids: padded on the right)
    _encoder("roberta", "encoder.layer"),
    _encoder("xlm-roberta", "encoder.layer"),
    _encoder("camembert", "encoder.layer"),
    _encoder("deberta", "encoder.layer"),
    _encoder("deberta-v2", "encoder.layer"),
    _encoder("mpnet", "encoder.layer"),
    _encoder("distilbert", "transformer.layer"),
)}


def known_types() -> str:
    """The known ``model_type`` values, comma-separated (for error messages)."""
    return ", ".join(sorted(ARCHITECTURES))


def inferred_architecture(config: dict[str, Any]) -> Architecture:
    """The row of a ``model_type`` the table does not know: a causal LM if transformers maps the type to a causal
    LM and not to a masked LM (a masked-LM family is causal only with ``is_decoder``), or, for a type transformers
    does not know either, if a class in the config's ``architectures`` ends in ``ForCausalLM`` / ``LMHeadModel``.
    Encoder-decoder models are not causal LMs. Its blocks are searched for (:data:`SEARCHED_BLOCKS`)."""
    model_type = config.get("model_type")
    if config.get("is_encoder_decoder"):
        causal = False
    else:
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        )

        if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
            causal = bool(config.get("is_decoder"))
        elif model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            causal = True
        else:
            causal = any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in config.get("architectures") or ())
    return Architecture(str(model_type), causal=causal, blocks=None, inferred=True)


def architecture(config: dict[str, Any]) -> Architecture:
    """The row for a model config (as a dict): its ``model_type``'s in :data:`ARCHITECTURES` (as a causal LM if an
    encoder's config sets ``is_decoder``), else :func:`inferred_architecture`."""
    row = ARCHITECTURES.get(config.get("model_type"))
    if row is None:
        return inferred_architecture(config)
    if not row.causal and config.get("is_decoder"):
        return row.as_decoder()
    return row


def is_causal_lm(config: dict[str, Any]) -> bool:
    """Whether a model config (as a dict) describes a decoder-only causal LM (GPT-2, Llama, Qwen2, Pythia, ...)."""
    return architecture(config).causal


def uses_mask_positions(config: dict[str, Any]) -> bool:
    """Whether the harness passes position ids that follow the attention mask (causal LMs, BERT-style encoders)."""
    return architecture(config).mask_positions


def unknown_blocks(owner: str, arch: Architecture, what: str) -> ConfigError:
    """The one-line error for a feature that needs the transformer blocks where none were found."""
    if arch.inferred:
        why = (f"model_type {arch.model_type!r} is not in the hf: architecture table (known: {known_types()}); "
               "add a row to ARCHITECTURES (docs/plugins/models.md#adding-an-architecture)")
    else:
        why = f"model_type {arch.model_type!r} has no per-layer block list"
    return ConfigError(f"{owner}: {what}: cannot find the model's transformer blocks ({why})")


def _module_at(root, path: str):
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def find_blocks(model, n_layers: int, arch: Architecture | None = None):
    """``(ModuleList, dotted name)`` of the model's transformer blocks (``n_layers`` of them), or ``(None, None)``.

    With a table row: its ``blocks`` path in the base model (under ``base_model_prefix`` in a wrapper such as
    ``AutoModelForSequenceClassification``); a row without blocks has none. Otherwise (or if the row's path does not
    hold ``n_layers`` blocks) the paths of :data:`SEARCHED_BLOCKS`, then any ``nn.ModuleList`` of that length."""
    import torch

    if arch is not None and not arch.inferred:
        if arch.blocks is None:
            return None, None
        base = getattr(model, "base_model", model)
        prefix = getattr(model, "base_model_prefix", "")
        name = arch.blocks if base is model or not prefix else f"{prefix}.{arch.blocks}"
        obj = _module_at(model, name)
        if isinstance(obj, torch.nn.ModuleList) and len(obj) == n_layers:
            return obj, name
    for name in SEARCHED_BLOCKS:
        obj = _module_at(model, name)
        if isinstance(obj, torch.nn.ModuleList) and len(obj) == n_layers:
            return obj, name
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n_layers:
            return mod, name
    return None, None


def truncate(backbone, layers: int, n_layers: int, arch: Architecture | None = None) -> bool:
    """Keep only the first ``layers`` blocks in place; False if the block list could not be found."""
    if layers >= n_layers:
        return True
    blocks, name = find_blocks(backbone, n_layers, arch)
    if blocks is None:
        return False
    parent = backbone
    *path, last = name.split(".")
    for part in path:
        parent = getattr(parent, part)
    import torch

    setattr(parent, last, torch.nn.ModuleList(list(blocks)[:layers]))
    for config in {id(c): c for c in (backbone.config, getattr(parent, "config", None)) if c is not None}.values():
        for attr in LAYER_COUNT_KEYS:
            if hasattr(config, attr):
                setattr(config, attr, layers)
        if isinstance(getattr(config, "layer_types", None), list):  # Qwen2 & co. list one type per layer
            config.layer_types = config.layer_types[:layers]
    return True


def checkpoint_blocks(blocks) -> None:
    """Gradient checkpointing of each transformer block: its activations are recomputed in the backward pass
    instead of stored. Done here rather than with ``gradient_checkpointing_enable()``, which transformers applies
    only in train mode, while the reference fine-tunes in eval mode (dropout off)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    for block in blocks:
        inner = block.forward

        def forward(*args, _inner=inner, **kwargs):
            if torch.is_grad_enabled():
                return checkpoint(_inner, *args, use_reentrant=False, **kwargs)
            return _inner(*args, **kwargs)

        block.forward = forward
