"""Scoring classes with an ``hf:`` causal LM's own next-token probabilities: no head, no fine-tuning.

A row is a **context** (the prompt: optional demonstrations, then the row's text in a template) and one
**continuation** per class (its verbalisation, e.g. ``" negative"`` / ``" positive"``; for a choice task the row's
own candidates). The score of class ``j`` is the summed log-probability of the continuation's tokens after the
context::

    score[i, j] = sum_t log P(cont_j[t] | context_i, cont_j[:t])

and the class probabilities are ``softmax_j(score[i, :])``. Context and continuation are tokenized separately
(the context with the tokenizer's special tokens, e.g. a BOS, the continuation without) and their ids
concatenated, as lm-evaluation-harness does, so a class's tokens are the same for every row.

* **Batched and padding-aware**: sequences are sorted by length and padded on the tokenizer's side; position ids
  follow the attention mask (as the feature pass), so a left-padded row scores as it does alone.
* **One pass when it can**: a row whose every continuation is ONE token is scored from a single forward pass over
  its context (the next-token distribution); otherwise each (row, class) is its own sequence.
* **Context limit**: a sequence longer than the model's ``max_position_embeddings`` loses tokens from the LEFT of
  its context (the oldest demonstrations first), never from the row's end or its continuation.
* **Cached**: one ``.npz`` per call under ``cache_dir``, keyed by the checkpoint's content identity (the hash the
  ``hf:`` plugin computes), the dtype, :data:`SCORER_VERSION` and every context and continuation string, i.e. the
  template, the verbalisers, the demonstrations and the texts. A rerun (another strategy, another row) that asks
  for the same prompts reads them back instead of running the model.
"""

from __future__ import annotations

import hashlib
import json
import os
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from w2s_harness import ConfigError

from . import checkpoints
from .tensors import autocast, default_device, position_ids

#: Bumped when the scores for the same prompts would change (tokenization, truncation): keys the score cache.
SCORER_VERSION = 1
#: The prompt template of a dataset that names none: the row's text, then a cue for the answer.
DEFAULT_TEMPLATE = "{text}\nAnswer:"
#: Between two demonstrations, and between the last demonstration and the query.
DEMO_SEPARATOR = "\n\n"
#: Logits held at once per forward batch (elements, float32: 128 MB): a large vocabulary (SmolLM2's 49k) with
#: long k-shot prompts would otherwise need gigabytes per batch on CPU.
LOGIT_BUDGET = 2**25


def check_template(template: Any, owner: str) -> str:
    """``template`` if it is a string whose only field is ``{text}`` (once or more), else a one-line error."""
    if not isinstance(template, str) or not template:
        raise ConfigError(f"{owner}: template must be a non-empty string with a {{text}} field, got {template!r}")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ConfigError(f"{owner}: template {template!r} is not a format string ({exc}); write braces as "
                          "{{ and }}") from None
    if fields != {"text"}:
        raise ConfigError(f"{owner}: template must use exactly the field {{text}}, got {sorted(fields)} in "
                          f"{template!r}")
    return template


def check_verbalisers(verbalisers: Any, owner: str, n_classes: int | None = None) -> list[str] | None:
    """``verbalisers`` as a list of distinct non-empty strings (one per class), ``None`` if not given."""
    if verbalisers is None:
        return None
    if (not isinstance(verbalisers, (list, tuple)) or len(verbalisers) < 2
            or not all(isinstance(v, str) and v for v in verbalisers) or len(set(verbalisers)) != len(verbalisers)):
        raise ConfigError(f"{owner}: verbalisers must be a list of >= 2 distinct non-empty strings (one per class, "
                          f"e.g. [\" no\", \" yes\"]), got {verbalisers!r}")
    if n_classes is not None and len(verbalisers) != n_classes:
        raise ConfigError(f"{owner}: {len(verbalisers)} verbalisers for {n_classes} classes; give one per class")
    return list(verbalisers)


def default_verbalisers(class_names: Sequence[str]) -> list[str]:
    """One verbalisation per class: a space and the class name (``" negative"``), as a word follows ``Answer:``."""
    return [f" {name}" for name in class_names]


def render_prompt(template: str, text: str, demos: Sequence[tuple[str, str]] = ()) -> str:
    """The prompt of one row: each demonstration ``(text, its verbalised label)`` in the template followed by its
    label, a blank line between, then the row's own text in the template (the model continues from there)::

        render_prompt("{text}\\nAnswer:", "so sad", [("great day", " positive"), ("awful", " negative")])
        == "great day\\nAnswer: positive\\n\\nawful\\nAnswer: negative\\n\\nso sad\\nAnswer:"
    """
    parts = [template.format(text=t) + answer for t, answer in demos]
    parts.append(template.format(text=text))
    return DEMO_SEPARATOR.join(parts)


def _key(parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()[:32]


class CausalLMScorer:
    """Class log-probabilities from an ``hf:`` causal LM (see the module docstring).

    :param model: an ``hf:`` model (:class:`~.model.HFModel`) whose checkpoint is a causal LM; its ``layers``
        (truncation) does not apply: scoring reads the full LM's own head. Its ``embed_batch_size`` bounds the
        sequences per forward pass, its ``dtype`` / ``device_map`` / ``padding_side`` apply as for features.
    :param device: a torch device (default CUDA if available).
    :param cache_dir: where scores are cached (one ``.npz`` per call); ``None``: no cache.
    """

    def __init__(self, model, device: Any = None, cache_dir: str | Path | None = None):
        from .model import HFModel

        if not isinstance(model, HFModel):
            raise ConfigError(f"prompt scoring needs an hf: causal LM, got {getattr(model, 'name', model)!r}")
        if not model.is_causal():
            raise ConfigError(f"model {model.name!r} is not a causal LM (an encoder has no next-token head to score "
                              "verbalisers with); use a decoder such as hf:HuggingFaceTB/SmolLM2-135M")
        self.model = model
        self._device = device
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._lm = None
        self._tokenizer = None
        self._input_device = None
        self.forward_passes = 0  # sequences run through the model (cache hits run none): for tests and logs

    # ------------------------------------------------------------------------------------- identity

    def identity(self) -> str:
        """What the scores depend on besides the prompts: the checkpoint's content, dtype, scorer version."""
        return f"{self.model.checkpoint.identity}|dtype={self.model.dtype}|scorer=v{SCORER_VERSION}"

    # ---------------------------------------------------------------------------------------- model

    @property
    def device(self):
        import torch

        if self._device is None:
            self._device = default_device()
        return torch.device(self._device)

    def _load(self):
        if self._lm is None:
            from transformers import AutoModelForCausalLM

            tokenizer = self.model.load_tokenizer()
            lm = checkpoints.load_pretrained(AutoModelForCausalLM, self.model.checkpoint, "model",
                                             **self.model.model_kwargs(self.device))
            if hasattr(lm.config, "use_cache"):
                lm.config.use_cache = False
            self._input_device = self.model._place(lm, self.device)
            lm.eval()
            self._lm, self._tokenizer = lm, tokenizer
        return self._lm, self._tokenizer

    @property
    def tokenizer(self):
        return self._load()[1]

    def context_limit(self) -> int | None:
        """The most tokens the model takes (its config's ``max_position_embeddings`` / ``n_positions``)."""
        cfg = self.model.config_dict()
        for key in ("max_position_embeddings", "n_positions", "n_ctx"):
            if isinstance(cfg.get(key), int) and cfg[key] > 0:
                return int(cfg[key])
        return None

    # -------------------------------------------------------------------------------------- scoring

    def logprobs(self, contexts: Sequence[str], continuations: Sequence[Sequence[str]],
                 cache: bool = True, progress: Any = None) -> np.ndarray:
        """``(N, k)`` float64: the summed log-probability of each row's ``k`` continuations after its context.
        ``cache=False`` skips the disk cache (a search that memoises its many small calls itself). ``progress``:
        ``progress(description, total, unit) -> advance(n)`` (an op's ``ctx.progress``), advanced per sequence
        run."""
        contexts, continuations = list(contexts), [list(c) for c in continuations]
        if len(contexts) != len(continuations):
            raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuation lists")
        if not contexts:
            return np.zeros((0, 0))
        k = len(continuations[0])
        if any(len(c) != k for c in continuations):
            raise ValueError("every row needs the same number of continuations")
        path = None
        if self.cache_dir is not None and cache:
            path = self.cache_dir / f"{_key([self.identity(), contexts, continuations])}.npz"
            if path.is_file():
                with np.load(path) as npz:
                    return npz["logprobs"]
        out = self._score(contexts, continuations, progress)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # two workers writing one entry never share a file
            np.savez(tmp, logprobs=out)
            tmp.replace(path)  # atomic: a concurrent reader sees the whole file or none
        return out

    def probs(self, contexts: Sequence[str], continuations: Sequence[Sequence[str]],
              progress: Any = None) -> np.ndarray:
        """``(N, k)`` float32 class probabilities: the softmax of :meth:`logprobs` over each row's classes."""
        return softmax(self.logprobs(contexts, continuations, progress=progress)).astype(np.float32)

    def _jobs(self, contexts, continuations):
        """Token sequences to run and what to read from each: ``(ids, start, [(row, class, cont ids)])``."""
        tok = self.tokenizer
        limit = self.context_limit()
        cont_ids: dict[str, list[int]] = {}
        for conts in continuations:
            for c in conts:
                if c not in cont_ids:
                    cont_ids[c] = tok(c, add_special_tokens=False)["input_ids"]
                    if not cont_ids[c]:
                        raise ConfigError(f"the verbalisation {c!r} has no tokens")
        jobs = []
        for i, (ctx, conts) in enumerate(zip(contexts, continuations)):
            ids = tok(ctx, add_special_tokens=True)["input_ids"]
            conts_ids = [cont_ids[c] for c in conts]
            single = all(len(c) == 1 for c in conts_ids)
            longest = 1 if single else max(len(c) for c in conts_ids)
            if limit is not None and len(ids) + longest > limit:
                ids = ids[len(ids) + longest - limit:]  # keep the end: the row's own text and the answer cue
            if single:
                jobs.append((ids, len(ids), [(i, j, c) for j, c in enumerate(conts_ids)]))
            else:
                for j, c in enumerate(conts_ids):
                    jobs.append((ids + c, len(ids), [(i, j, c)]))
        return jobs

    def _score(self, contexts, continuations, progress=None) -> np.ndarray:
        import torch

        lm, tok = self._load()
        jobs = self._jobs(contexts, continuations)
        advance = (progress(f"scoring {len(contexts)} prompts with {self.model.name}", len(jobs), "sequences")
                   if progress else None)
        out = np.zeros((len(contexts), len(continuations[0])), dtype=np.float64)
        order = sorted(range(len(jobs)), key=lambda j: -len(jobs[j][0]))
        vocab = int(lm.get_output_embeddings().weight.shape[0])
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        left = tok.padding_side == "left"
        batch_cap = max(1, int(self.model.embed_batch_size))
        s = 0
        with torch.inference_mode(), autocast(self.device, self.model.dtype):
            while s < len(order):
                longest = len(jobs[order[s]][0])  # sorted longest first: the batch's width
                size = max(1, min(batch_cap, LOGIT_BUDGET // max(1, longest * vocab), len(order) - s))
                batch = [jobs[j] for j in order[s:s + size]]
                s += size
                ids = torch.full((len(batch), longest), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), longest), dtype=torch.long)
                offsets = []
                for b, (seq, _, _) in enumerate(batch):
                    off = longest - len(seq) if left else 0
                    ids[b, off:off + len(seq)] = torch.tensor(seq)
                    mask[b, off:off + len(seq)] = 1
                    offsets.append(off)
                mask_dev = mask.to(self._input_device)
                logits = lm(input_ids=ids.to(self._input_device), attention_mask=mask_dev,
                            position_ids=position_ids(mask_dev)).logits
                self.forward_passes += len(batch)
                if advance is not None:
                    advance(len(batch))
                for b, (_, start, reads) in enumerate(batch):
                    for i, j, cont in reads:
                        # the token at (real) position start + t is predicted by the logits at start + t - 1
                        pos = torch.arange(len(cont)) + offsets[b] + start - 1
                        rows = logits[b, pos.to(logits.device)].float().log_softmax(-1)
                        target = torch.tensor(cont, device=rows.device)
                        out[i, j] = float(rows.gather(1, target[:, None]).sum())
        return out


def softmax(logp: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, k)`` log-scores, in float64."""
    z = np.asarray(logp, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


__all__ = ["DEFAULT_TEMPLATE", "DEMO_SEPARATOR", "SCORER_VERSION", "CausalLMScorer", "check_template",
           "check_verbalisers", "default_verbalisers", "render_prompt", "softmax"]
