"""Generative fine-tuning (Burns et al. 2023, section 5.2.2): the strong ``hf:`` causal LM is first trained as a
language model (next-token loss) on the task's UNLABELLED train1 + train2 texts, then fine-tuned on labels as
usual. The stage op ``generative-train`` (``output = "model"``), which the ``generative`` strategy declares by name
for its ceiling and its transfers (docs/elicitation.md):

1. **LM step**: the LM-adapted weights come from a content-keyed cache under
   ``<output_dir>/lm-adapted/<key>/`` (key: the checkpoint's content identity, the texts, the LM parameters, the
   seed and :data:`LM_VERSION`), computed once under a file lock and published by renaming a finished temporary
   directory, so the ceiling and every transfer of a seed share one LM pass, and a crash leaves no half checkpoint.
2. **Fine-tune step**: the run's ``hf:`` model with the same parameters, its checkpoint the LM-adapted one, trained
   on the ``labels`` input (none: ground truth) exactly as the built-in ``train`` op trains (``OpContext.train``).

Stages store arrays, not weights, and a model's identity hashes its checkpoint when the plan is built (before the
LM-adapted checkpoint exists), so the LM step is part of this op rather than a stage of its own: the stage id hashes
the base model's identity, the loss, the LM parameters and the inputs, which determine the LM-adapted weights.

numpy, torch and transformers load inside functions only: ``w2s-harness list ops`` imports this module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from w2s_harness import (
    ConfigError,
    OpInput,
    StageKind,
    StageOp,
    Subset,
    TrainingError,
    check_choice,
    check_int,
    check_number,
    ref_dict,
)

#: Bumped when the LM step computes something else for the same inputs: the cache key holds it.
LM_VERSION = 1
#: Salt of the LM step's shuffling (independent of every other seeded draw of a run).
LM_SALT = 0x6C6D6164
#: The file in an LM-adapted checkpoint that says what the LM step did (and that it finished).
LM_INFO = "lm_adapt.json"
#: ``progress(description, total, unit) -> advance(n)``: an op's ``ctx.progress``.
Progress = Callable[[str, int, str], Callable[[int], None]]
#: Parameters of the fine-tune model that describe the BASE checkpoint's files, not the model built on them.
BASE_ONLY = ("gguf_file",)


def check_lm_params(owner: str, *, lm_epochs, lm_lr, lm_max_length, lm_batch_size) -> None:
    """The LM step's parameters (the ``generative`` strategy repeats these checks for its own options)."""
    check_int(lm_epochs, "lm_epochs", owner=owner, lo=1)
    check_number(lm_lr, "lm_lr", owner=owner, lo=0.0, lo_open=True, hi=1.0)
    check_int(lm_max_length, "lm_max_length", owner=owner, lo=2, optional=True)
    check_int(lm_batch_size, "lm_batch_size", owner=owner, lo=1)


def check_causal(owner: str, ref: dict) -> None:
    """A one-line error when the plan is built unless ``ref`` is an ``hf:`` causal LM (config read only)."""
    from .elicit import check_causal as check

    check(owner, ref, why="generative fine-tuning trains the LM's next-token head")


def forget_gguf(lm) -> None:
    """Drop the GGUF marker of a model loaded from a GGUF file, so it saves as a plain checkpoint. transformers
    dequantizes GGUF weights into ordinary float tensors when it loads them (those are what the LM step trained),
    but keeps the model marked as GGUF-quantized and refuses ``save_pretrained``; reloading the saved directory
    must not look for a GGUF file either, hence the config's ``quantization_config`` goes too."""
    quantizer = getattr(lm, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if quantizer is None or str(getattr(method, "value", method)).lower() != "gguf":
        return
    import torch

    # the flag on the config is not reliable (transformers' legacy GGUF loader dequantizes without setting it):
    # look at the weights themselves; packed quantized blocks are not plain floating-point tensors
    if any(type(p) not in (torch.Tensor, torch.nn.Parameter) or not p.is_floating_point() for p in lm.parameters()):
        raise ConfigError("generative: the GGUF model holds quantized weights; the LM step's weights cannot be saved "
                          "from them: load the model dequantized or use a safetensors checkpoint")
    lm.hf_quantizer = None
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config


def text_fingerprint(texts: list[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in texts:  # length-prefixed: ["ab", "c"] and ["a", "bc"] differ
        b = t.encode()
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()


def lm_texts(data, rows) -> list[str]:
    """The unlabelled texts of ``rows`` for the LM step: each row's text; for a choice task each of the row's pair
    texts (its prompt with each candidate, in the order shown: what the fine-tune reads; which one is right is the
    label, which the LM step never sees)."""
    from w2s_harness import ChoiceData

    if isinstance(data, ChoiceData):
        return [t for r in rows for t in data.pairs[int(r)]]
    return [data.texts[int(r)] for r in rows]


def lm_key(model, texts: list[str], params: dict[str, Any], seed: int) -> str:
    """The cache key of an LM pass: what determines the LM-adapted weights, nothing else (not the fine-tune
    parameters: a ceiling and a transfer with different losses share the pass)."""
    import hashlib
    import json

    lora = ({"r": model.lora_r, "alpha": model.lora_alpha, "dropout": model.lora_dropout,
             "targets": model.lora_target_modules} if model.lora else None)
    ident = {"version": LM_VERSION, "checkpoint": model.checkpoint.identity, "lora": lora,
             "texts": text_fingerprint(texts), "n_texts": len(texts), "seed": int(seed),
             **{k: params[k] for k in ("lm_epochs", "lm_lr", "lm_max_length", "lm_batch_size")}}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def load_lm(model, device):
    """``(AutoModelForCausalLM in float32, tokenizer padding on the right)`` of an ``hf:`` model's checkpoint. The
    LM step trains in float32 whatever ``dtype`` the fine-tune uses (full fine-tuning in half precision diverges)."""
    import torch
    from transformers import AutoModelForCausalLM

    from . import checkpoints

    lm = checkpoints.load_pretrained(AutoModelForCausalLM, model.checkpoint, "model",
                                     **{checkpoints.dtype_kwarg(): torch.float32})
    tok = model.load_tokenizer()
    return lm.to(device), tok


def _batches(tok, texts: list[str], max_length: int | None, batch_size: int, device):
    for start in range(0, len(texts), batch_size):
        enc = tok(texts[start:start + batch_size], padding=True, truncation=max_length is not None,
                  max_length=max_length, return_tensors="pt")
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        yield ids, mask, ids.masked_fill(mask == 0, -100)  # padded positions predict nothing


def lm_loss(lm, tok, texts: list[str], *, max_length: int | None = None, batch_size: int = 8, device="cpu") -> float:
    """The mean next-token loss (nats per predicted token) of ``lm`` on ``texts``, dropout off."""
    import torch

    side, tok.padding_side = tok.padding_side, "right"  # default positions are right for right padding only
    was_training = lm.training
    lm.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for ids, mask, labels in _batches(tok, texts, max_length, batch_size, device):
                n = int((labels[:, 1:] != -100).sum())
                if n:
                    total += float(lm(input_ids=ids, attention_mask=mask, labels=labels).loss) * n
                    count += n
    finally:
        tok.padding_side = side
        lm.train(was_training)
    return total / max(count, 1)


def check_lm_loss(loss, name: str, *, epoch: int, epochs: int, batch: int, n_batches: int, lr: float) -> None:
    """A one-line :class:`TrainingError` naming the batch and the fix when an LM step's ``loss`` (a tensor) is
    NaN/inf: one host read per step, which an LM step is heavy enough to afford."""
    import torch

    if not torch.isfinite(loss):
        raise TrainingError(f"generative LM step of {name}: loss is {float(loss)} at epoch {epoch + 1}/{epochs}, "
                            f"batch {batch + 1}/{n_batches} (lm_lr {lr:g}); lower the learning rate "
                            f"(e.g. --set strategy.lm_lr={lr / 10:g})")


def lm_train(model, texts: list[str], *, epochs: int, lr: float, max_length: int | None, batch_size: int,
             seed: int, device="cpu", progress: Progress | None = None):
    """Train the causal LM of the ``hf:`` model ``model`` on ``texts`` (next-token loss, AdamW, shuffled batches,
    seeded): every weight, or LoRA adapters merged back into the weights afterwards when ``model.lora``. Returns
    ``(lm, tokenizer, info)`` with the loss on the texts before and after. ``progress``: an op's
    ``ctx.progress``, advanced once per batch (and a point where a stop request ends the step)."""
    import math
    import time

    import numpy as np
    import torch

    from .model import HFModel

    if not isinstance(model, HFModel) or not model.is_causal():
        raise ConfigError(f"model {getattr(model, 'name', model)!r} is not an hf: causal LM: generative "
                          "fine-tuning needs one (set [strong] or strategy.model to a causal LM)")
    max_length = max_length if max_length is not None else model.token_limit
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # dropout and LoRA init seeded without moving the caller's RNG
        torch.manual_seed(int(seed))
        lm, tok = load_lm(model, device)
        before = lm_loss(lm, tok, texts, max_length=max_length, batch_size=batch_size, device=device)
        if not math.isfinite(before):
            raise TrainingError(f"generative LM step of {model.name}: the next-token loss on the texts is {before} "
                                "before any training: the checkpoint's weights hold NaN/inf; use another checkpoint")
        if model.lora:
            from peft import LoraConfig, get_peft_model

            targets = model.lora_target_modules or "all-linear"  # peft's all-linear leaves the LM head out
            lm = get_peft_model(lm, LoraConfig(r=model.lora_r, lora_alpha=model.lora_alpha,
                                               lora_dropout=model.lora_dropout, target_modules=targets,
                                               bias="none", task_type="CAUSAL_LM"))
        params = [p for p in lm.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), LM_SALT]))
        side, tok.padding_side = tok.padding_side, "right"
        lm.train()
        steps = 0
        n_batches = math.ceil(len(texts) / batch_size)
        advance = (progress(f"LM step of {model.name} on {len(texts)} texts", epochs * n_batches, "batches")
                   if progress is not None else None)
        for epoch in range(epochs):
            order = rng.permutation(len(texts))
            shuffled = [texts[i] for i in order]
            for batch, (ids, mask, labels) in enumerate(_batches(tok, shuffled, max_length, batch_size, device)):
                if advance is not None:
                    advance(1)
                if not (labels[:, 1:] != -100).any():
                    continue
                loss = lm(input_ids=ids, attention_mask=mask, labels=labels).loss
                check_lm_loss(loss, model.name, epoch=epoch, epochs=epochs, batch=batch, n_batches=n_batches, lr=lr)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                steps += 1
        tok.padding_side = side  # saved with the checkpoint: the fine-tune pads as the base model does
        if model.lora:
            lm = lm.merge_and_unload()  # plain weights: the fine-tune model loads them like any checkpoint
        lm.eval()
        after = lm_loss(lm, tok, texts, max_length=max_length, batch_size=batch_size, device=device)
    info = {"lm_loss_before": before, "lm_loss_after": after, "n_texts": len(texts), "steps": steps,
            "lora": bool(model.lora), "seconds": time.perf_counter() - start}
    return lm, tok, info


def lm_adapted(model, texts: list[str], params: dict[str, Any], *, seed: int, device, root: Path,
               progress: Progress | None = None) -> tuple[Path, dict[str, Any]]:
    """The LM-adapted checkpoint of ``model`` for ``texts``: ``root/<key>`` (:func:`lm_key`), trained now unless
    another stage (or process) already did. Returns its directory and its info (``cached``: read back)."""
    import json
    import os
    import shutil
    import tempfile

    from filelock import FileLock

    from . import checkpoints

    key = lm_key(model, texts, params, seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    with FileLock(str(root / f"{key}.lock")):  # two workers wanting the same pass: one trains, one waits
        if (final / LM_INFO).is_file():
            return final, {**json.loads((final / LM_INFO).read_text()), "cached": True}
        lm, tok, info = lm_train(model, texts, epochs=params["lm_epochs"], lr=params["lm_lr"],
                                 max_length=params["lm_max_length"], batch_size=params["lm_batch_size"],
                                 seed=seed, device=device, progress=progress)
        info["key"] = key
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
        try:
            forget_gguf(lm)
            with checkpoints.quiet_transformers():  # its "Writing model shards" bar would break the progress lines
                lm.save_pretrained(str(tmp))
                tok.save_pretrained(str(tmp))
            (tmp / LM_INFO).write_text(json.dumps(info, indent=1, sort_keys=True))  # written last: the pass finished
            if final.exists():  # left by a crash before the info was written (never after a rename)
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final, {**info, "cached": False}


def adapted_ref(ref: dict[str, Any], path: Path) -> dict[str, Any]:
    """The fine-tune model: the reference's parameters on the LM-adapted checkpoint (a plain directory: a GGUF
    base's ``gguf_file`` no longer applies). A ``preset:`` reference keeps only its explicit parameters."""
    return {"name": f"hf:{path}", **{k: v for k, v in ref.items() if k != "name" and k not in BASE_ONLY}}


class GenerativeTrain(StageOp):
    """LM-adapt an ``hf:`` causal LM on the seed's unlabelled train1 + train2 texts, then train it on labels as the
    ``train`` op does (module docstring); predicts every split, ``test_acc`` / ``test_auroc`` on test.

    :param model: the ``hf:`` causal LM (a model reference; its ``lora`` setting applies to the LM step too).
    :param loss: the fine-tune's loss (default ``xent``).
    :param on: the rows fine-tuned on: ``"train2"`` (default) or ``"train1"``.
    :param lm_epochs: passes of the LM step over the texts.
    :param lm_lr: the LM step's AdamW learning rate.
    :param lm_max_length: tokens per text in the LM step; ``None``: the model's ``max_length``.
    :param lm_batch_size: texts per LM step.

    :param labels: set by the op itself (``"gt"`` or ``"soft"``: whether a label stage is its input), as the
        ``train`` op's spec: the results read it.

    Input ``labels`` (at most one label stage): what the fine-tune trains on; none: ground truth of ``on``.
    """

    inputs = (OpInput("labels", artifact="labels", min=0, max=1),)
    output = "model"
    kinds = (StageKind.TRAIN_TRANSFER, StageKind.TRAIN_CEILING, StageKind.OP)

    def __init__(self, model, loss="xent", on: str | dict = "train2", lm_epochs: int = 2, lm_lr: float = 1e-4,
                 lm_max_length: int | None = None, lm_batch_size: int = 8, labels: str | None = None):
        owner = "op 'generative-train'"
        check_choice(labels, "labels", ("gt", "soft"), owner=owner, optional=True)
        # a stage's spec stores ``on`` as a Subset table (as the train op's: the results read a model stage's rows
        # from it), and the op is created again from that spec when the stage runs
        self.on = check_choice(on.get("split") if isinstance(on, dict) else on, "on", ("train1", "train2"),
                               owner=owner)
        check_lm_params(owner, lm_epochs=lm_epochs, lm_lr=lm_lr, lm_max_length=lm_max_length,
                        lm_batch_size=lm_batch_size)

    def spec(self, params, inputs):
        return {**params, "model": ref_dict(params["model"]), "loss": ref_dict(params["loss"] or "xent"),
                "on": Subset(self.on).as_dict(),
                # as the train op's spec: the results read which rows and labels a transfer trained on from it
                "labels": "soft" if inputs.get("labels") else "gt"}

    def identity(self, spec, builder):
        check_causal("op 'generative-train'", spec["model"])
        # the base checkpoint's content (not its path) and the loss's code: with the LM parameters in the spec,
        # everything that determines the LM-adapted weights and the fine-tune
        return {"model": builder.identify(spec["model"]), "loss": builder.identify_loss(spec["loss"])}

    def run(self, ctx, inputs):
        import numpy as np

        p = ctx.params
        model = ctx.model(p["model"])
        splits = ctx.splits
        rows = np.union1d(splits.train1, splits.train2)  # texts only: no label, no test row reaches the LM step
        texts = lm_texts(ctx.data, rows)
        path, info = lm_adapted(model, texts, p, seed=ctx.seed, device=ctx.device,
                                root=ctx.output_dir / "lm-adapted", progress=ctx.progress)
        metrics, arrays = ctx.train(adapted_ref(p["model"], path), on=p["on"], labels=inputs["labels"],
                                    loss=p["loss"])
        return {**metrics, "lm": info}, arrays
