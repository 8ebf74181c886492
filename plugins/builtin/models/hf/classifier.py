"""``HFClassifier``: the module a fine-tuned ``hf:`` model trains (tokenizer + backbone + pooling + head)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from .tensors import autocast, pool, position_ids, zero_head


@functools.cache
def classifier_class():
    import torch
    from torch.utils.checkpoint import checkpoint

    class HFClassifier(torch.nn.Module):
        """``forward(list_of_texts) -> (B, k) logits``: tokenizer + (truncated) backbone + pooling + linear head.

        With ``seq_cls``, ``backbone`` is an ``AutoModelForSequenceClassification`` and its own head gives the
        logits (``head`` is None). Under autograd the batch runs in micro-batches of ``minibatch_size`` texts, each
        checkpointed (recomputed in backward); without autograd in chunks of ``eval_batch_size``.
        """

        def __init__(
            self,
            backbone,
            tokenizer,
            n_classes: int,
            *,
            pooling: str,
            max_length: int | None,
            dtype: str,
            hidden_state: int | None,
            causal: bool = False,
            head_bias: bool | None = None,
            mask_positions: bool | None = None,
            seq_cls: bool = False,
            minibatch_size: int | None = None,
            eval_batch_size: int | None = None,
            train_dropout: bool = True,
            input_device=None,
        ):
            super().__init__()
            self.backbone = backbone
            self.tokenizer = tokenizer
            self.pooling = pooling
            self.max_length = max_length
            self.dtype_name = dtype
            #: index into hidden_states when the block list could not be truncated in place (else None)
            self.hidden_state = hidden_state
            self.causal = causal
            self.mask_positions = causal if mask_positions is None else mask_positions
            self.seq_cls = seq_cls
            self.minibatch_size = minibatch_size
            self.eval_batch_size = eval_batch_size
            self.train_dropout = train_dropout
            self._input_device = input_device
            bias = not causal if head_bias is None else head_bias
            self.head = None if seq_cls else zero_head(backbone.config.hidden_size, n_classes, bias=bias)

        @property
        def device(self):
            if self.head is not None:
                return self.head.weight.device
            return next(self.backbone.parameters()).device

        @property
        def input_device(self):
            return self._input_device if self._input_device is not None else self.device

        def train(self, mode: bool = True):
            super().train(mode)
            if mode and not self.train_dropout:
                self.backbone.eval()  # the reference fine-tunes with dropout off
                for name, sub in self.backbone.named_modules():  # but an asked-for LoRA dropout stays on
                    if name.endswith(".lora_dropout"):
                        sub.train()
            return self

        def encode(self, texts: Sequence[str]):
            enc = self.tokenizer(
                list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            return enc["input_ids"].to(self.input_device), enc["attention_mask"].to(self.input_device)

        def _inputs(self, input_ids, attention_mask) -> dict[str, Any]:
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if self.mask_positions:
                kwargs["position_ids"] = position_ids(attention_mask)
            return kwargs

        def hidden(self, input_ids, attention_mask):
            """``(B, T, H)`` hidden states of the (truncated) backbone."""
            with autocast(self.input_device, self.dtype_name):
                if self.hidden_state is None:
                    return self.backbone(**self._inputs(input_ids, attention_mask)).last_hidden_state
                out = self.backbone(**self._inputs(input_ids, attention_mask), output_hidden_states=True)
                return out.hidden_states[self.hidden_state]

        def pooled(self, texts: Sequence[str]):
            """``(B, H)`` float32 pooled features of ``texts`` (one pass, no micro-batches)."""
            input_ids, attention_mask = self.encode(texts)
            return pool(self.hidden(input_ids, attention_mask), attention_mask, self.pooling)

        def logits(self, input_ids, attention_mask):
            if not self.seq_cls:
                pooled = pool(self.hidden(input_ids, attention_mask), attention_mask, self.pooling)
                return self.head(pooled.to(self.device))
            model = self.backbone
            with autocast(self.input_device, self.dtype_name):
                score = getattr(model, "score", None)
                if self.causal and isinstance(score, torch.nn.Module):
                    # the model's own head at the last REAL token (transformers finds it from pad_token_id,
                    # which is wrong when the pad token also occurs in the text)
                    states = model.base_model(**self._inputs(input_ids, attention_mask)).last_hidden_state
                    last = pool(states, attention_mask, "last").to(states.dtype)
                    out = score(last.to(score.weight.device))
                else:
                    out = model(**self._inputs(input_ids, attention_mask)).logits
            return out.float().to(self.device)

        def forward(self, texts: Sequence[str]):
            texts = list(texts)
            grad = torch.is_grad_enabled()
            size = (self.minibatch_size if grad else self.eval_batch_size) or len(texts)
            if len(texts) <= size:
                return self.logits(*self.encode(texts))
            parts = []
            for s in range(0, len(texts), size):
                input_ids, attention_mask = self.encode(texts[s : s + size])
                if grad:  # activations of one micro-batch at a time: recomputed in backward
                    parts.append(checkpoint(self.logits, input_ids, attention_mask, use_reentrant=False))
                else:
                    parts.append(self.logits(input_ids, attention_mask))
            return torch.cat(parts)

    return HFClassifier
