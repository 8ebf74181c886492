"""The ``hf:`` models: :class:`HFModel` (parameters, checkpoint, layers, pooling, identity) and its two kinds,
:class:`HFFeatureModel` (a frozen backbone whose pooled features of every layer are cached) and
:class:`HFFineTuneModel` (an :class:`HFClassifier <.classifier.classifier_class>` trained end to end or through
LoRA adapters). What differs per architecture comes from its row in :data:`.architectures.ARCHITECTURES`."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from w2s_harness import (
    ConfigError,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_str,
    head_train_config,
    takes_head_parameters,
)

from . import checkpoints
from .architectures import (
    POOLINGS,
    Architecture,
    architecture,
    checkpoint_blocks,
    find_blocks,
    truncate,
    unknown_blocks,
)
from .checkpoints import Checkpoint, resolve_checkpoint
from .classifier import classifier_class
from .lora import LORA_ALPHA, LORA_DROPOUT, LORA_R, PEFT_INSTALL, add_lora
from .tensors import autocast, default_device, ensure_pad_token, pool, position_ids, weights_dtype, zero_head

#: Default learning rates. Linear probe: 1e-2 (measured on tweets-sentiment, MiniLM mean-pooled layers, 10 epochs,
#: batch 32: 1e-3 underfits by ~1 point, e.g. L3 0.844 vs 0.855; 3e-2 is no better). Full fine-tune: the
#: reference's 5e-5.
PROBE_LR = 1e-2
FINETUNE_LR = 5e-5
#: Default L2 strength of the ``lbfgs`` linear probe (scikit-learn's ``C``, on standardised features). Measured with
#: MiniLM-L6 (384-d) on tweets-sentiment and Rotten Tomatoes snippets, 10 seeds: the ceiling's test accuracy peaks
#: at C = 0.01 on both (0.874 / 0.754; 0.869 / 0.751 at C = 1, 0.870 / 0.753 at 0.001); see docs/probes.md.
PROBE_C = 0.01

#: ``max_length`` value for "truncate at the tokenizer's own maximum" (``model_max_length``), as EleutherAI/w2s's
#: ``tokenizer(txt, truncation=True)``; for a tokenizer without a maximum that is no truncation at all.
TOKENIZER_MAX = "tokenizer"
DTYPES = ("float32", "bfloat16", "float16")
PADDING_SIDES = ("left", "right")
#: Parameters that only apply to fine-tuning (``linear_probe = false``).
FINETUNE_ONLY = (
    "minibatch_size",
    "grad_accumulation",
    "gradient_checkpointing",
    "sequence_classification",
    "train_with_dropout",
    "lora",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
)


class HFModel:
    """What both kinds of ``hf:`` model share: checkpoint resolution, layer choice, pooling, identity.

    :func:`hf_model` (the registered factory) returns an :class:`HFFeatureModel` (``linear_probe = true``, a
    :class:`~w2s_harness.FeatureModel`) or an :class:`HFFineTuneModel` (a :class:`~w2s_harness.FineTuneModel`).

    :param target: checkpoint directory, ``.gguf`` file or hub id (given by the ``hf:`` prefix).
    :param layers: truncate to the first N layers (``hidden_states[N]``); ``None`` = all layers.
    :param pooling: ``"mean"`` (attention-masked), ``"cls"`` (first token) or ``"last"`` (last real token);
        ``None``: ``"last"`` for causal LMs, ``"mean"`` otherwise.
    :param max_length: tokens per text (longer texts are truncated); ``"tokenizer"``: the tokenizer's own maximum
        (``model_max_length``, EleutherAI/w2s's truncation; none for a tokenizer that sets no maximum).
    :param linear_probe: freeze the backbone and train only the head on cached features.
    :param lr/epochs/batch_size/weight_decay/warmup_frac: AdamW + cosine; defaults 1e-2 / 10 epochs for a linear
        probe with ``solver = "adamw"``, the reference's 5e-5 / 2 epochs for fine-tuning; batch size 32 (examples
        per optimiser step).
    :param warmup_steps/adam_beta1/adam_beta2/max_grad_norm: learning-rate warmup in optimiser steps (instead of
        ``warmup_frac``), AdamW's betas (0.9, 0.999) and gradient-norm clipping (0: none); EleutherAI/w2s: 40
        steps, beta2 0.95, clipping at 1.0 (Hugging Face's Trainer default).
    :param solver: linear probe: ``"lbfgs"`` (the default: full-batch L-BFGS on standardised features, L2
        strength ``C`` (default :data:`PROBE_C`) in scikit-learn's convention, up to ``max_iter`` iterations,
        gradient tolerance ``tol``) or ``"adamw"`` (mini-batch AdamW), also the default for a probe that sets any
        AdamW parameter (lr, epochs, batch_size, weight_decay, warmup_frac, early stopping); fine-tuning always
        uses AdamW.
    :param early_stop/val_frac/val_metric/curve_every: checkpoint selection (``"none"``, ``"weak_val"``,
        ``"gt_val"``) on a held-out ``val_frac`` of the training rows by ``val_metric`` (``"accuracy"``, or
        ``"auroc"`` as EleutherAI/w2s), and the training-curve interval in optimiser steps (AdamW: 0 is every
        epoch, e.g. 25 for fine-tuning, EleutherAI/w2s's ``eval_steps``; L-BFGS probe: iterations, 0 is every 10).
    :param weak_labels: ``"soft"`` (train on the weak model's probabilities, the reference) or ``"hard"`` (on
        their argmax).
    :param embed_batch_size: texts per forward pass without gradients (embedding features; predicting with a
        fine-tuned model; the reference's eval batch size). Does not change the results.
    :param dtype: ``float32`` | ``bfloat16`` | ``float16``: on CUDA the backbone's weights load in this dtype and
        run under autocast (bfloat16 falls back to float32 on a GPU without it); CPU runs float32. The head and
        LoRA adapters stay float32.
    :param gguf_file: a GGUF file in the checkpoint directory or hub repo (needs the ``gguf`` package).
    :param padding_side: ``"left"`` | ``"right"``; ``None`` keeps the tokenizer's. Pooling is right either way.
    :param device_map: passed to ``from_pretrained`` on CUDA (``"auto"`` spreads a model too large for one GPU over
        all visible GPUs, with accelerate); ignored on CPU.
    :param minibatch_size: fine-tuning: texts per forward/backward micro-batch; ``None`` = the whole batch.
    :param grad_accumulation: fine-tuning, with ``minibatch_size``: call the loss on every micro-batch and accumulate
        the gradients (Hugging Face's Trainer, EleutherAI/w2s) instead of one loss over the whole batch.
    :param gradient_checkpointing: fine-tuning: recompute each block's activations in the backward pass.
    :param sequence_classification: fine-tuning: ``AutoModelForSequenceClassification`` and its own head.
    :param train_with_dropout: fine-tuning: keep the backbone's dropout on while training; ``None``: off for
        causal LMs (the reference), on for encoders.
    :param lora: fine-tuning: train LoRA adapters (``peft``) and the head instead of every weight.
    :param lora_r/lora_alpha/lora_dropout: LoRA rank (8), scaling alpha (8) and dropout (0.0).
    :param lora_target_modules: module names (or name suffixes) to adapt; ``None``: every linear layer of the
        transformer blocks (attention and MLP projections).
    """

    linear_probe: bool = True

    @takes_head_parameters
    def __init__(
        self,
        target: str,
        layers: int | None = None,
        pooling: str | None = None,
        max_length: int = 64,
        linear_probe: bool = True,
        embed_batch_size: int = 128,
        dtype: str = "float32",
        gguf_file: str | None = None,
        padding_side: str | None = None,
        device_map: str | dict | None = None,
        minibatch_size: int | None = None,
        grad_accumulation: bool = False,
        gradient_checkpointing: bool = False,
        sequence_classification: bool = False,
        train_with_dropout: bool | None = None,
        lora: bool = False,
        lora_r: int | None = None,
        lora_alpha: float | None = None,
        lora_dropout: float | None = None,
        lora_target_modules: list[str] | str | None = None,
        **head: Any,
    ):
        self.target = target
        self.name = f"hf:{target}"
        owner = f"model {self.name!r}"
        check_int(layers, "layers", owner=owner, lo=1, optional=True)
        check_choice(pooling, "pooling", POOLINGS, owner=owner, optional=True)
        if max_length != TOKENIZER_MAX:
            if isinstance(max_length, str):
                raise ConfigError(f"{owner}: max_length must be a positive integer or \"{TOKENIZER_MAX}\" (the "
                                  f"tokenizer's own maximum), got {max_length!r}")
            check_int(max_length, "max_length", owner=owner, lo=1)
        check_int(embed_batch_size, "embed_batch_size", owner=owner, lo=1)
        check_bool(linear_probe, "linear_probe", owner=owner)
        check_choice(dtype, "dtype", DTYPES, owner=owner)
        check_str(gguf_file, "gguf_file", owner=owner, optional=True, what="a file name")
        check_choice(padding_side, "padding_side", PADDING_SIDES, owner=owner, optional=True)
        if device_map is not None and not isinstance(device_map, (str, dict)):
            raise ConfigError(f"{owner}: device_map must be a string (e.g. \"auto\") or a table, got {device_map!r}")
        check_int(minibatch_size, "minibatch_size", owner=owner, lo=1, optional=True)
        check_bool(grad_accumulation, "grad_accumulation", owner=owner)
        if grad_accumulation and minibatch_size is None:
            raise ConfigError(f"{owner}: grad_accumulation needs minibatch_size (the rows of each micro-batch)")
        check_bool(gradient_checkpointing, "gradient_checkpointing", owner=owner)
        check_bool(sequence_classification, "sequence_classification", owner=owner)
        check_bool(train_with_dropout, "train_with_dropout", owner=owner, optional=True)
        check_bool(lora, "lora", owner=owner)
        # checked, not converted: an integer lora_alpha stays an integer in the model's identity
        check_int(lora_r, "lora_r", owner=owner, lo=1, optional=True)
        check_number(lora_alpha, "lora_alpha", owner=owner, lo=0, lo_open=True, optional=True)
        check_number(lora_dropout, "lora_dropout", owner=owner, lo=0, hi=1, hi_open=True, optional=True)
        if lora_target_modules is not None and not (
            (isinstance(lora_target_modules, str) and lora_target_modules)
            or (isinstance(lora_target_modules, list) and lora_target_modules
                and all(isinstance(m, str) and m for m in lora_target_modules))
        ):
            raise ConfigError(
                f"{owner}: lora_target_modules must be a list of module names, got {lora_target_modules!r}"
            )
        given = {
            "minibatch_size": minibatch_size is not None,
            "grad_accumulation": grad_accumulation,
            "gradient_checkpointing": gradient_checkpointing,
            "sequence_classification": sequence_classification,
            "train_with_dropout": train_with_dropout is not None,
            "lora": lora,
            "lora_r": lora_r is not None,
            "lora_alpha": lora_alpha is not None,
            "lora_dropout": lora_dropout is not None,
            "lora_target_modules": lora_target_modules is not None,
        }
        if linear_probe:
            bad = [k for k in FINETUNE_ONLY if given[k]]
            if bad:
                raise ConfigError(
                    f"{owner}: {', '.join(bad)} only apply to fine-tuning; set linear_probe = false "
                    "(a linear probe trains only a head on cached features)"
                )
        if not lora:
            bad = [k for k in ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules") if given[k]]
            if bad:
                raise ConfigError(f"{owner}: {', '.join(bad)} given but lora is false; set lora = true")
        elif importlib.util.find_spec("peft") is None:
            raise ConfigError(f"{owner}: lora = true needs the peft package: {PEFT_INSTALL}")
        solver = head.get("solver")
        if not linear_probe and solver not in (None, "adamw"):
            raise ConfigError(
                f"{owner}: solver = {solver!r} applies to linear probes only (fine-tuning trains with AdamW); "
                "set linear_probe = true or remove solver"
            )
        if sequence_classification and pooling is not None:
            raise ConfigError(
                f"{owner}: pooling does not apply with sequence_classification = true (the model's own head pools)"
            )
        self.layers = layers
        self.pooling = pooling
        self.max_length = max_length
        self.linear_probe = linear_probe
        self.embed_batch_size = embed_batch_size
        self.dtype = dtype
        self.gguf_file = gguf_file
        self.padding_side = padding_side
        self.device_map = device_map
        self.minibatch_size = minibatch_size
        self.grad_accumulation = grad_accumulation
        self.gradient_checkpointing = gradient_checkpointing
        self.sequence_classification = sequence_classification
        self.train_with_dropout = train_with_dropout
        self.lora = lora
        self.lora_r = lora_r if lora_r is not None else LORA_R
        self.lora_alpha = float(lora_alpha) if lora_alpha is not None else LORA_ALPHA
        self.lora_dropout = float(lora_dropout) if lora_dropout is not None else LORA_DROPOUT
        self.lora_target_modules = lora_target_modules
        self.train_config = head_train_config(
            owner, head, lr=PROBE_LR if linear_probe else FINETUNE_LR, epochs=10 if linear_probe else 2,
            batch_size=32, solver=None if linear_probe else "adamw", default_C=PROBE_C,
        )
        if grad_accumulation:  # the training loop runs the micro-batches (one loss call each)
            self.train_config = replace(self.train_config, minibatch_size=minibatch_size)
        self._ckpt: Checkpoint | None = None
        self._config: dict[str, Any] | None = None
        self._n_layers: int | None = None
        self._scorers: dict[tuple[str, str], Any] = {}

    # ------------------------------------------------------------------------------------ resolution

    @property
    def checkpoint(self) -> Checkpoint:
        if self._ckpt is None:
            self._ckpt = resolve_checkpoint(self.target, self.gguf_file)
        return self._ckpt

    def config_dict(self) -> dict[str, Any]:
        """The checkpoint's model config as a dict (``config.json``, or the GGUF metadata, or the hub's)."""
        if self._config is None:
            self._config = checkpoints.load_config(self.checkpoint)
        return self._config

    def architecture(self) -> Architecture:
        """The checkpoint's row of the architecture table (:func:`.architectures.architecture`)."""
        return architecture(self.config_dict())

    def is_causal(self) -> bool:
        """Whether the checkpoint is a decoder-only causal LM (last-token pooling, the reference's head)."""
        return self.architecture().causal

    def scorer(self, device: Any = None, cache_dir: str | Path | None = None):
        """The :class:`~.scorer.CausalLMScorer` of this model on ``device``, caching under ``cache_dir``: one per
        (device, cache) for the model's life, so that a run's prompt stages and ICM search (which get this model
        from the run, created once) share one loaded LM instead of loading it per stage."""
        from .scorer import CausalLMScorer

        key = (str(device), str(cache_dir))
        if key not in self._scorers:
            self._scorers[key] = CausalLMScorer(self, device=device, cache_dir=cache_dir)
        return self._scorers[key]

    def mask_positions(self) -> bool:
        """Whether position ids follow the attention mask (causal LMs and BERT-style encoders): then left and
        right padding give the same results."""
        return self.architecture().mask_positions

    def pooling_name(self) -> str:
        """The pooling in effect: ``pooling``, else the architecture's (``last`` for causal LMs, ``mean`` for
        encoders)."""
        if self.pooling is not None:
            return self.pooling
        return self.architecture().pooling

    def dropout_in_training(self) -> bool:
        if self.train_with_dropout is not None:
            return self.train_with_dropout
        return self.architecture().train_dropout

    def n_layers(self) -> int:
        """Number of layers of the full checkpoint (from its config)."""
        if self._n_layers is None:
            cfg = self.config_dict()
            n = next(
                (
                    cfg[k]
                    for k in ("num_hidden_layers", "n_layer", "num_layers")
                    if isinstance(cfg.get(k), int)
                ),
                None,
            )
            if n is None:
                raise ConfigError(f"model {self.name!r}: its config names no layer count (num_hidden_layers)")
            self._n_layers = int(n)
        return self._n_layers

    def layer(self) -> int:
        """The hidden state this model reads (``layers`` or the last layer), validated against the checkpoint."""
        n = self.n_layers()
        if self.layers is None:
            return n
        if self.layers > n:
            raise ConfigError(
                f"model {self.name!r}: layers={self.layers} but the checkpoint has only {n} layers"
            )
        return self.layers

    # ---------------------------------------------------------------------------------------- protocol

    def identity(self) -> dict[str, Any]:
        ident = {
            "name": "hf:",
            "target": self.target,
            "checkpoint": self.checkpoint.identity,
            "layer": self.layer(),
            "pooling": "model-head" if self.sequence_classification else self.pooling_name(),
            "max_length": self.max_length,
            "linear_probe": self.linear_probe,
            "dtype": self.dtype,
            "train": asdict(self.train_config),
        }
        if not self.linear_probe:
            ident["finetune"] = {
                "head": "sequence-classification" if self.sequence_classification else (
                    "linear" if self.architecture().head_bias else "linear-no-bias"
                ),
                "dropout": self.dropout_in_training(),
                "lora": {
                    "r": self.lora_r,
                    "alpha": self.lora_alpha,
                    "dropout": self.lora_dropout,
                    "target_modules": self.lora_target_modules,
                } if self.lora else None,
            }
        return ident

    @property
    def token_limit(self) -> int | None:
        """``max_length`` for the tokenizer: the number, or None (its own ``model_max_length``) for ``"tokenizer"``."""
        return None if self.max_length == TOKENIZER_MAX else self.max_length

    def load_tokenizer(self):
        """The checkpoint's tokenizer, with a pad token (:func:`ensure_pad_token`) and ``padding_side`` applied."""
        from transformers import AutoTokenizer

        tokenizer = checkpoints.load_pretrained(AutoTokenizer, self.checkpoint, "tokenizer")
        ensure_pad_token(tokenizer)
        if self.padding_side is not None:
            tokenizer.padding_side = self.padding_side
        if tokenizer.padding_side == "left" and not self.mask_positions():
            if self.padding_side == "left":
                raise ConfigError(
                    f"model {self.name!r}: padding_side = left needs position ids that follow the padding, which "
                    "this harness passes to causal LMs and BERT-style encoders only; use padding_side = right"
                )
            tokenizer.padding_side = "right"  # this encoder's positions are only right when padded on the right
        return tokenizer

    def model_kwargs(self, device) -> dict[str, Any]:
        """``from_pretrained`` keywords for ``device``: the weights' dtype, and ``device_map`` on CUDA."""
        kwargs: dict[str, Any] = {checkpoints.dtype_kwarg(): weights_dtype(device, self.dtype)}
        if self.device_map is not None and device.type == "cuda":
            kwargs["device_map"] = self.device_map
        return kwargs

    def load_backbone(self, device: Any = None):
        """``(AutoModel, tokenizer)`` freshly loaded from the resolved checkpoint (weights on CPU in float32 unless
        ``device`` is CUDA: see ``dtype`` and ``device_map``)."""
        import torch
        from transformers import AutoModel

        device = torch.device(device) if device is not None else torch.device("cpu")
        tokenizer = self.load_tokenizer()
        model = checkpoints.load_pretrained(AutoModel, self.checkpoint, "model", **self.model_kwargs(device))
        if self.is_causal() and hasattr(model.config, "use_cache"):
            model.config.use_cache = False  # no KV cache: one forward pass per batch
        return model, tokenizer

    def _place(self, model, device):
        """Move ``model`` to ``device`` unless ``device_map`` placed it; returns the device inputs go to."""
        if "device_map" in self.model_kwargs(device):
            return model.get_input_embeddings().weight.device
        model.to(device)
        return device

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.target!r}, layers={self.layers}, pooling={self.pooling!r}, "
            f"linear_probe={self.linear_probe})"
        )


class HFFeatureModel(HFModel):
    """A frozen ``hf:`` model: pooled hidden states are cached once, a zero-initialised linear head trains."""

    linear_probe = True

    def _key(self, layer: int) -> str:
        key = (
            f"hf|{self.checkpoint.identity}|pool={self.pooling_name()}|max_length={self.max_length}"
            f"|dtype={self.dtype}|layer={layer}"
        )
        if self.dtype != "float32":  # reduced-precision weights on CUDA (before: autocast only)
            key += f"|weights={self.dtype}"
        return key

    def feature_key(self) -> str:
        return self._key(self.layer())

    def features(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None, device: Any = None
    ) -> dict[str, np.ndarray]:
        """Pooled features of EVERY layer 1..L from one forward pass, keyed like truncated models' features."""
        import torch

        device = torch.device(device) if device is not None else default_device()
        n_layers = self.n_layers()
        self.layer()  # validate
        pooling = self.pooling_name()
        mask_positions = self.mask_positions()
        model, tokenizer = self.load_backbone(device)
        input_device = self._place(model, device)
        model.eval()
        n = len(texts)
        hidden = model.config.hidden_size
        out = {layer: np.zeros((n, hidden), dtype=np.float32) for layer in range(1, n_layers + 1)}
        if n:
            lengths = tokenizer(
                list(texts), truncation=True, max_length=self.token_limit, add_special_tokens=True
            )["input_ids"]
            order = np.argsort([-len(ids) for ids in lengths], kind="stable")
            with torch.inference_mode(), autocast(device, self.dtype):
                for s in range(0, n, self.embed_batch_size):
                    idx = order[s : s + self.embed_batch_size]
                    enc = tokenizer(
                        [texts[i] for i in idx],
                        padding=True,
                        truncation=True,
                        max_length=self.token_limit,
                        return_tensors="pt",
                    ).to(input_device)
                    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
                    if mask_positions:
                        inputs["position_ids"] = position_ids(enc["attention_mask"])
                    states = model(**inputs, output_hidden_states=True).hidden_states
                    if len(states) != n_layers + 1:
                        raise ConfigError(
                            f"model {self.name!r}: expected {n_layers + 1} hidden states, got {len(states)}"
                        )
                    for layer in range(1, n_layers + 1):
                        out[layer][idx] = pool(states[layer], enc["attention_mask"], pooling).cpu().numpy()
                    if progress is not None:
                        progress(len(idx))
        return {self._key(layer): arr for layer, arr in out.items()}

    def head(self, n_classes: int, in_features: int, device: Any):
        """A zero-initialised linear head, bias-free for causal LMs (the reference's): the architecture's
        ``head_bias``."""
        return zero_head(in_features, n_classes, device, bias=self.architecture().head_bias)


class HFFineTuneModel(HFModel):
    """An ``hf:`` model trained end to end (or through LoRA adapters) with a zero-initialised head."""

    linear_probe = False

    def _load_sequence_classifier(self, n_classes: int, device, tokenizer):
        """``AutoModelForSequenceClassification`` with ``n_classes`` labels; a head the checkpoint does not ship
        (or ships with another label count) is zero-initialised, a matching one is kept."""
        from transformers import AutoModelForSequenceClassification

        model, info = checkpoints.load_pretrained(
            AutoModelForSequenceClassification,
            self.checkpoint,
            "model",
            num_labels=n_classes,
            ignore_mismatched_sizes=True,
            output_loading_info=True,
            **self.model_kwargs(device),
        )
        model.config.pad_token_id = tokenizer.pad_token_id
        fresh = set(info.get("missing_keys") or ())
        fresh |= {k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or ()}
        prefix = model.base_model_prefix
        heads = [name for name, _ in model.named_children() if name != prefix]
        import torch

        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.startswith(tuple(f"{h}." for h in heads)) and name in fresh:
                    param.zero_()
        return model, heads

    def classifier(self, n_classes: int, device: Any):
        import torch

        device = torch.device(device) if device is not None else default_device()
        owner = f"model {self.name!r}"
        layer = self.layer()
        n_layers = self.n_layers()
        arch = self.architecture()
        causal = arch.causal
        tokenizer = self.load_tokenizer()
        heads: list[str] = []
        if self.sequence_classification:
            model, heads = self._load_sequence_classifier(n_classes, device, tokenizer)
        else:
            from transformers import AutoModel

            model = checkpoints.load_pretrained(AutoModel, self.checkpoint, "model", **self.model_kwargs(device))
        if causal and hasattr(model.config, "use_cache"):
            model.config.use_cache = False
        truncated = truncate(model, layer, n_layers, arch)
        if not truncated and self.sequence_classification:
            raise unknown_blocks(owner, arch, f"cannot truncate to layers={layer}")
        blocks, blocks_name = find_blocks(model, layer if truncated else n_layers, arch)
        if self.gradient_checkpointing:
            if blocks is None:
                raise unknown_blocks(owner, arch, "gradient_checkpointing")
            checkpoint_blocks(blocks)
        if self.lora:
            targets = self.lora_target_modules
            if targets is None and blocks_name is None:
                raise unknown_blocks(owner, arch, "LoRA (or set lora_target_modules)")
            add_lora(
                model,
                owner=owner,
                blocks_name=blocks_name or "",
                r=self.lora_r,
                alpha=self.lora_alpha,
                dropout=self.lora_dropout,
                targets=[targets] if isinstance(targets, str) else targets,
                trainable=heads,
            )
        module = classifier_class()(
            model,
            tokenizer,
            n_classes,
            pooling="last" if self.sequence_classification else self.pooling_name(),
            max_length=self.token_limit,
            dtype=self.dtype,
            hidden_state=None if truncated else layer,
            causal=causal,
            head_bias=arch.head_bias,
            mask_positions=arch.mask_positions,
            seq_cls=self.sequence_classification,
            minibatch_size=self.minibatch_size,
            eval_batch_size=self.embed_batch_size,
            train_dropout=self.dropout_in_training(),
        )
        if "device_map" in self.model_kwargs(device):  # placed by accelerate: move only the head
            module._input_device = model.get_input_embeddings().weight.device
            if module.head is not None:
                module.head.to(device)
            return module
        return module.to(device)
