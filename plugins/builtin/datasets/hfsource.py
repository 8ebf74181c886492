"""Where a recipe's raw rows come from: the Hugging Face hub, local data files, or a local copy of a hub repository.

Everything goes through HF ``datasets`` and fails with a one-line :class:`~w2s_harness.DataError`, never a
traceback or a retry loop:

* **local files** (``data_files``): each split's files are read with the packaged ``parquet`` / ``json`` / ``csv``
  builder (no network);
* **a local directory** (``path``): a copy of the hub repository, either its ``main`` branch (data files and the
  dataset card) or its ``refs/convert/parquet`` branch: each split's parquet files are picked from the files there
  (:func:`pick_parquet`), else ``datasets`` reads the directory;
* **the hub**: ``load_dataset(hub_id, name=config, revision=revision)``; on the parquet branch
  (``revision="refs/convert/parquet"``, for datasets that were loading scripts, which ``datasets`` >= 4 no longer
  runs) the repository is listed at the revision, each split's parquet files are picked from the listing
  (:func:`pick_parquet`: the branch's layouts differ between datasets), downloaded with ``huggingface_hub`` and read
  as local files. Without network (``HF_DATASETS_OFFLINE`` / ``HF_HUB_OFFLINE`` set, or the hub not accepting a TCP
  connection within 2.5 s, see ``w2s_harness.utils.hub_reachable``) only the caches are tried (the ``datasets`` cache;
  for the parquet branch the ``huggingface_hub`` cache, listing included), with the hub switched off for the call.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from w2s_harness import ConfigError, DataError
from w2s_harness.utils import hub_endpoint, hub_reachable

#: The branch where the hub publishes every dataset as parquet (``<config>/<split>/NNNN.parquet`` for most; see
#: :data:`CONFIG_LAYOUTS` for the others).
PARQUET_BRANCH = "refs/convert/parquet"
#: Environment variables that forbid the network.
OFFLINE_VARS = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")

#: file suffix (after a compression suffix is stripped) -> (packaged builder, builder kwargs)
BUILDERS: dict[str, tuple[str, dict[str, Any]]] = {
    ".parquet": ("parquet", {}),
    ".pq": ("parquet", {}),
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".ndjson": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
}
COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")

#: Tables loaded in this process, by source and (for local files) their sizes and mtimes: the planner and the run
#: each create the dataset, and a big local file should be parsed once. The most recent :data:`_MEMO_SIZE` kept.
_TABLES: dict[tuple, dict[str, Any]] = {}
_MEMO_SIZE = 4


def _memo(key: tuple, load) -> dict[str, Any]:
    if key in _TABLES:
        _TABLES[key] = _TABLES.pop(key)  # most recent last
        return dict(_TABLES[key])
    tables = load()
    _TABLES[key] = tables
    while len(_TABLES) > _MEMO_SIZE:
        _TABLES.pop(next(iter(_TABLES)))
    return dict(tables)


def _stamp(paths: list[str]) -> tuple:
    out = []
    for p in paths:
        st = os.stat(p)
        out.append((p, st.st_size, st.st_mtime_ns))
    return tuple(out)


# ------------------------------------------------------------------------------------------ environment


def env_offline() -> str | None:
    """The variable that forbids the network (``HF_DATASETS_OFFLINE``, ``HF_HUB_OFFLINE``, ...), or None."""
    for key in OFFLINE_VARS:
        if os.environ.get(key, "").strip().lower() in ("1", "true", "yes", "on"):
            return key
    return None


@contextmanager
def hub_switched_off() -> Iterator[None]:
    """No HTTP request from ``datasets`` / ``huggingface_hub`` for the duration (they read the offline variables
    at import, so setting them later would not be seen): only local caches answer."""
    import datasets
    import huggingface_hub.constants as hub_constants

    saved = (datasets.config.HF_HUB_OFFLINE, getattr(datasets.config, "HF_DATASETS_OFFLINE", None),
             hub_constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = True
    if saved[1] is not None:
        datasets.config.HF_DATASETS_OFFLINE = True
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = saved[0]
        if saved[1] is not None:
            datasets.config.HF_DATASETS_OFFLINE = saved[1]
        hub_constants.HF_HUB_OFFLINE = saved[2]


@contextmanager
def quiet_datasets(progress: bool) -> Iterator[None]:
    """HF ``datasets`` logging at error level; progress bars only if ``progress``."""
    import datasets

    bars_were_on = not datasets.are_progress_bars_disabled()
    if not progress:
        datasets.disable_progress_bars()
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity_error()
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars_were_on:
            datasets.enable_progress_bars()


def first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0].strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -------------------------------------------------------------------------------------------- local files


def normalise_data_files(value: Any, owner: str, splits: list[str], default_split: str) -> dict[str, list[str]] | None:
    """``data_files`` as ``{split: [path or glob, ...]}``; a string or list means ``default_split``."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        value = {default_split: [value]}
    elif isinstance(value, (list, tuple)):
        value = {default_split: list(value)}
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"dataset {owner!r}: data_files must be a path, a list of paths or a table "
                          f"{{split = path}}, got {value!r}")
    out: dict[str, list[str]] = {}
    for split, files in value.items():
        if split not in splits:
            raise ConfigError(f"dataset {owner!r}: data_files has a split {split!r}; its splits are "
                              f"{', '.join(splits)}")
        if isinstance(files, (str, os.PathLike)):
            files = [files]
        if not isinstance(files, (list, tuple)) or not files or not all(
                isinstance(f, (str, os.PathLike)) and str(f) for f in files):
            raise ConfigError(f"dataset {owner!r}: data_files[{split!r}] must be a path or a list of paths, "
                              f"got {files!r}")
        out[split] = [str(f) for f in files]
    return out


def _builder(path: str, owner: str) -> tuple[str, dict[str, Any]]:
    name = path.lower()
    for suffix in COMPRESSION:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    suffix = os.path.splitext(name)[1]
    if suffix not in BUILDERS:
        raise ConfigError(f"dataset {owner!r}: cannot read {path!r}: unsupported file type {suffix or '(none)'!r}; "
                          f"use one of {', '.join(sorted(BUILDERS))} (optionally compressed)")
    return BUILDERS[suffix]


def _expand(pattern: str, owner: str) -> list[str]:
    p = os.path.expanduser(pattern)
    if any(ch in p for ch in "*?["):
        found = sorted(glob.glob(p, recursive=True))
        if not found:
            raise DataError(f"dataset {owner!r}: no data file matches {pattern!r} "
                            f"(relative paths are resolved from {os.getcwd()!r})")
        return [os.path.abspath(f) for f in found]
    if not os.path.isfile(p):
        raise DataError(f"dataset {owner!r}: data file not found: {pattern!r} "
                        f"(relative paths are resolved from {os.getcwd()!r})")
    return [os.path.abspath(p)]


@contextmanager
def _cache(cache_dir: str | None) -> Iterator[tuple[str, bool]]:
    """``(cache_dir, keep_in_memory)`` for a local load: the given cache, else a temporary one kept in memory."""
    if cache_dir is not None:
        yield str(cache_dir), False
        return
    with tempfile.TemporaryDirectory(prefix="w2s-hfds-") as tmp:
        yield tmp, True


def load_data_files(files: dict[str, list[str]], owner: str, cache_dir: str | None) -> dict[str, Any]:
    """Each split of ``files`` read with the packaged builder of its suffix: ``{split: datasets.Dataset}``."""
    expanded = {split: [p for pattern in patterns for p in _expand(pattern, owner)] for split, patterns in files.items()}
    return _load_exact(expanded, owner, cache_dir)


def _load_exact(files: dict[str, list[str]], owner: str, cache_dir: str | None) -> dict[str, Any]:
    """:func:`_read_files` memoised by the files' paths, sizes and mtimes (no glob expansion: names are exact)."""
    key = ("files", tuple((split, _stamp(paths)) for split, paths in files.items()), cache_dir)
    return _memo(key, lambda: _read_files(files, owner, cache_dir))


def _read_files(files: dict[str, list[str]], owner: str, cache_dir: str | None) -> dict[str, Any]:
    import datasets

    out = {}
    with quiet_datasets(progress=False), _cache(cache_dir) as (cache, in_memory):
        for split, paths in files.items():
            kinds = [_builder(p, owner) for p in paths]
            builder, kwargs = kinds[0]
            if any(k != kinds[0] for k in kinds):
                raise ConfigError(f"dataset {owner!r}: data_files[{split!r}] mixes file types; use one type per split")
            try:
                out[split] = datasets.load_dataset(builder, data_files={split: paths}, split=split, cache_dir=cache,
                                                   keep_in_memory=in_memory, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any parse error: one line, no traceback
                raise DataError(f"dataset {owner!r}: cannot read data_files[{split!r}] as {builder}: "
                                f"{first_line(exc)}") from None
    return out


def load_directory(path: str, splits: list[str], config: str | None, owner: str,
                   cache_dir: str | None) -> dict[str, Any]:
    """The splits found in a local copy of a hub repository: the parquet files :func:`pick_parquet` finds for them
    (any split without one is left out), else, when no split has one, the directory read by ``datasets``."""
    import datasets

    root = Path(os.path.expanduser(path))
    if not root.is_dir():
        raise DataError(f"dataset {owner!r}: path {path!r} is not a directory (relative paths are resolved from "
                        f"{os.getcwd()!r})")
    files = sorted(str(p) for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts)
    listing = [Path(f).relative_to(root).as_posix() for f in files]
    picked: dict[str, list[str]] = {}
    try:
        for split in splits:
            if found := pick_parquet(listing, config, split):
                picked[split] = found
    except AmbiguousConfig:  # several config folders and no config named: the dataset card decides (datasets)
        picked = {}
    if picked:
        return _load_exact({s: [str(root / f) for f in found] for s, found in picked.items()}, owner, cache_dir)

    def read():
        with quiet_datasets(progress=False), _cache(cache_dir) as (cache, in_memory):
            try:
                loaded = datasets.load_dataset(str(root), name=config, cache_dir=cache, keep_in_memory=in_memory)
            except Exception as exc:  # noqa: BLE001
                extra = ""
                if any(f.endswith(".parquet") for f in listing):
                    extra = (f" (and no parquet file there is one of split {splits[0]!r}: "
                             f"{_existing(listing, config)})")
                raise DataError(f"dataset {owner!r}: cannot read the directory {path!r}: "
                                f"{first_line(exc)}{extra}") from None
        return {s: loaded[s] for s in splits if s in loaded}

    return _memo(("dir", str(root.resolve()), config, tuple(splits), _stamp(files), cache_dir), read)


# ------------------------------------------------------------------------------------------- parquet files

#: Where a split's parquet files lie inside a config's folder, in the order tried (``{c}``: the config, ``{s}``: the
#: split; a split name never contains ``-`` or ``/``, so ``train`` never picks ``train_r2``'s files):
#: the parquet branch's ``<config>/<split>/NNNN.parquet``, its ``partial-<split>`` folder (the first ~5 GB of a
#: large split, when that is all it holds), its older ``<config>/<dataset>-<split>[-NNNNN-of-NNNNN].parquet``
#: (e.g. aps/super_glue), and a main branch's ``<config>/<split>-NNNNN-of-NNNNN.parquet``.
CONFIG_LAYOUTS = (
    r"{c}/{s}/[^/]+\.parquet",
    r"{c}/partial-{s}/[^/]+\.parquet",
    r"{c}/[^/]+-{s}(?:-\d+-of-\d+)?\.parquet",
    r"{c}/{s}(?:-[^/]*)?\.parquet",
)
#: Config-less layouts, tried when no config folder has the split: ``data/<split>-*.parquet`` (a main branch),
#: ``<split>/*.parquet``, ``<split>[-*].parquet``.
ROOT_LAYOUTS = (
    r"data/{s}(?:-[^/]*)?\.parquet",
    r"{s}/[^/]+\.parquet",
    r"{s}(?:-[^/]*)?\.parquet",
)


class AmbiguousConfig(ValueError):
    """A split's parquet files are in several config folders and no config was named."""


def _match(files: list[str], layout: str, config: str, split: str) -> list[str]:
    rx = re.compile(layout.format(c=re.escape(config), s=re.escape(split)))
    return sorted(f for f in files if rx.fullmatch(f))


def pick_parquet(files: Iterable[str], config: str | None, split: str) -> list[str]:
    """The parquet files of ``split`` among ``files`` (paths relative to a repository's root, ``/``-separated), in
    name order: the first of :data:`CONFIG_LAYOUTS` that matches in the config's folder (no config: the ``default``
    folder if there is one, else the one folder that has the split), else the first of :data:`ROOT_LAYOUTS` that
    matches; ``[]`` if none does. :class:`AmbiguousConfig` if, with no config, several folders have the split."""
    parquet = [f for f in files if f.endswith(".parquet")]
    if config is not None:
        configs = [config]
    else:
        tops = sorted({f.split("/", 1)[0] for f in parquet if "/" in f})
        configs = ["default"] if "default" in tops else tops
    found: dict[str, list[str]] = {}
    for c in configs:
        for layout in CONFIG_LAYOUTS:
            match = _match(parquet, layout, c, split)
            if match:
                found[c] = match
                break
    if len(found) > 1:
        raise AmbiguousConfig(f"split {split!r} has parquet files in several config folders "
                              f"({', '.join(found)}) and the dataset names no config")
    if found:
        return next(iter(found.values()))
    for layout in ROOT_LAYOUTS:
        match = _match(parquet, layout, "", split)
        if match:
            return match
    return []


def _existing(files: list[str], config: str | None, most: int = 8) -> str:
    """What ``files`` hold for ``config`` (the files under its folder, else the repository's top level), for an
    error message, at most ``most`` names."""
    def names(items: list[str]) -> str:
        shown = ", ".join(items[:most])
        return shown + (f", ... ({len(items) - most} more)" if len(items) > most else "")

    if config is not None:
        under = sorted(f for f in files if f.startswith(f"{config}/"))
        if under:
            return f"files for config {config!r}: {names(under)}"
        tops = sorted({f.split("/", 1)[0] + ("/" if "/" in f else "") for f in files})
        return f"no folder {config + '/'!r}; it has {names(tops) or 'no files'}"
    parquet = sorted(f for f in files if f.endswith(".parquet"))
    return f"parquet files: {names(parquet)}" if parquet else f"no parquet files; it has {names(sorted(files)) or 'no files'}"


def pick_parquet_splits(files: Iterable[str], config: str | None, splits: list[str], *, owner: str, where: str,
                        hint: str) -> dict[str, list[str]]:
    """``{split: its parquet files}`` (:func:`pick_parquet`) for every one of ``splits``; a one-line DataError
    ending in ``hint`` (the fix) when a split has none, naming the files that do exist for the config, or when
    the config folder is ambiguous."""
    files = list(files)
    out: dict[str, list[str]] = {}
    for split in splits:
        try:
            found = pick_parquet(files, config, split)
        except AmbiguousConfig as exc:
            raise DataError(f"dataset {owner!r}: {where}: {exc}; {hint}") from None
        if not found:
            raise DataError(f"dataset {owner!r}: {where} has no parquet file for split {split!r} "
                            f"({_existing(files, config)}); {hint}")
        out[split] = found
    return out


# ---------------------------------------------------------------------------------------------------- hub


def list_hub_files(hub_id: str, revision: str | None, local_only: bool) -> list[str]:
    """Every file of the dataset repository ``hub_id`` at ``revision``: listed by the hub, or (``local_only``) as the
    ``huggingface_hub`` cache recorded it when the files were downloaded."""
    import huggingface_hub

    if not local_only:
        return list(huggingface_hub.HfApi().list_repo_files(hub_id, repo_type="dataset", revision=revision))
    cached_tree = getattr(huggingface_hub, "get_cached_repo_tree", None)
    if cached_tree is not None:  # huggingface_hub >= 1.x: the listing snapshot_download cached
        return [f.path for f in cached_tree(hub_id, repo_type="dataset", revision=revision)]
    folder = Path(huggingface_hub.snapshot_download(hub_id, repo_type="dataset", revision=revision,
                                                    local_files_only=True))
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def download_hub_files(hub_id: str, revision: str | None, files: list[str], local_only: bool) -> str:
    """The local folder holding ``files`` (repository paths) of ``hub_id`` at ``revision``, downloaded into the
    ``huggingface_hub`` cache if needed (``local_only``: the cache only; an error if one of them is missing)."""
    import huggingface_hub

    return huggingface_hub.snapshot_download(hub_id, repo_type="dataset", revision=revision,
                                             allow_patterns=[glob.escape(f) for f in files],
                                             local_files_only=local_only)


def _parquet_paths(hub_id: str, config: str | None, revision: str | None, splits: list[str], owner: str,
                   where: str, why: str | None, hint: str) -> dict[str, list[str]]:
    """Local paths of each split's parquet files on the hub's parquet branch: listed, picked, downloaded."""
    local_only = why is not None
    try:
        listing = list_hub_files(hub_id, revision, local_only)
    except Exception as exc:  # noqa: BLE001 - network, missing repo or revision, nothing cached: one line
        if local_only:
            raise DataError(f"dataset {owner!r}: cannot load {where}: {why}; {hint}") from None
        try:  # the hub answered with an error: what an earlier download cached still serves
            listing = list_hub_files(hub_id, revision, True)
            local_only = True
        except Exception:  # noqa: BLE001
            raise DataError(f"dataset {owner!r}: cannot list the files of {where}: {first_line(exc)}; "
                            f"{hint}") from None
    picked = pick_parquet_splits(listing, config, splits, owner=owner, where=where, hint=hint)
    wanted = sorted({f for found in picked.values() for f in found})
    try:
        folder = Path(download_hub_files(hub_id, revision, wanted, local_only))
    except Exception as exc:  # noqa: BLE001
        because = why if why is not None else first_line(exc)
        raise DataError(f"dataset {owner!r}: cannot download the parquet files of {where}: {because}; "
                        f"{hint}") from None
    return {split: [str(folder / f) for f in found] for split, found in picked.items()}


def _read_hub(hub_id: str, config: str | None, revision: str | None, splits: list[str], owner: str,
              cache_dir: str | None, hint: str) -> dict[str, Any]:
    import datasets

    where = f"{hub_id}" + (f" (config {config!r})" if config else "") + (f" at {revision}" if revision else "")
    parquet = revision == PARQUET_BRANCH  # files picked from a listing, through the huggingface_hub cache
    cache = "the huggingface_hub cache" if parquet else "the datasets cache"
    offline = env_offline()
    why = None
    if offline is not None:
        why = f"{offline} is set and it is not in {cache}"
    elif not hub_reachable():
        why = f"the hub {hub_endpoint()} is unreachable and it is not in {cache}"
    if parquet:
        with hub_switched_off() if why is not None else nullcontext():
            paths = _parquet_paths(hub_id, config, revision, splits, owner, where, why, hint)
        return _read_files(paths, owner, cache_dir)
    kwargs: dict[str, Any] = {"name": config, "revision": revision}
    try:
        with quiet_datasets(progress=why is None):
            if why is None:
                loaded = datasets.load_dataset(hub_id, cache_dir=cache_dir, **kwargs)
            else:
                with hub_switched_off():
                    loaded = datasets.load_dataset(hub_id, cache_dir=cache_dir, **kwargs)
    except Exception as exc:  # noqa: BLE001 - network, missing repo, script dataset: one line
        if why is not None:
            raise DataError(f"dataset {owner!r}: cannot load {where}: {why}; {hint}") from None
        extra = ""
        if "scripts are no longer supported" in str(exc):
            extra = f" (try revision = {PARQUET_BRANCH!r})"
        raise DataError(f"dataset {owner!r}: cannot load {where}: {first_line(exc)}{extra}; {hint}") from None
    missing = [s for s in splits if s not in loaded]
    if missing:
        raise DataError(f"dataset {owner!r}: {where} has no split {missing[0]!r} (it has "
                        f"{', '.join(loaded)}); {hint}")
    return {s: loaded[s] for s in splits}


def load_hub(hub_id: str, config: str | None, revision: str | None, splits: list[str], owner: str,
             cache_dir: str | None, hint: str) -> dict[str, Any]:
    """The splits of ``hub_id`` through the ``datasets`` cache / the hub (memoised for the process); a one-line
    DataError ending in ``hint`` (how to use local files) when it cannot be had."""
    return _memo(("hub", hub_id, config, revision, tuple(splits), cache_dir),
                 lambda: _read_hub(hub_id, config, revision, splits, owner, cache_dir, hint))


def load_source(owner: str, *, data_files: dict[str, list[str]] | None, path: str | None, hub_id: str | None,
                config: str | None, revision: str | None, splits: list[str], cache_dir: str | None,
                hint: str) -> dict[str, Any]:
    """The tables of whichever source is given, in this order: local ``data_files``, a local copy of the repository
    (``path``), else ``hub_id`` through the cache / the hub (``hint``: how to use local files instead)."""
    if data_files is not None:
        return load_data_files(data_files, owner, cache_dir)
    if path is not None:
        return load_directory(path, splits, config, owner, cache_dir)
    return load_hub(hub_id, config, revision, splits, owner, cache_dir, hint)


# ------------------------------------------------------------------------------------------------ tokenizer


def load_tokenizer(name: str, owner: str):
    """A ``transformers`` tokenizer from a local directory or a hub id (the local HF cache only, when offline)."""
    import transformers

    local = os.path.isdir(os.path.expanduser(name))
    offline = None if local else (env_offline() or (None if hub_reachable() else "the hub is unreachable"))
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        path = os.path.expanduser(name) if local else name
        return transformers.AutoTokenizer.from_pretrained(path, local_files_only=offline is not None)
    except Exception as exc:  # noqa: BLE001
        why = f"{offline}; " if offline else ""
        raise ConfigError(f"dataset {owner!r}: cannot load tokenizer {name!r}: {why}{first_line(exc)} "
                          f"(pass a local tokenizer directory)") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
