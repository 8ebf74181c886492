"""File content hashes: streamed sha256, and a cache of them keyed by (resolved path, size, mtime_ns).

Content hashes identify checkpoints, weights files and image files in stage ids, so changing a byte changes the
id; the files can be tens of GiB (weights) or tens of thousands (images), so reading all of them on every run
would dominate start-up. :func:`file_sha256s` therefore keeps the digests in memory and in ``file-hashes.json``
under :func:`user_cache_dir`, and like make and rsync takes a file with the same size and modification time as
unchanged (one modified in the last two seconds is hashed but not cached, as git treats "racy" entries).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Files are hashed in blocks of this many bytes (weights can be tens of GiB).
HASH_BLOCK = 8 << 20
#: Name of the persistent file-hash cache in :func:`user_cache_dir`.
HASH_CACHE_FILE = "file-hashes.json"
#: A file modified less than this long before it is hashed is not cached ("racy" entries, as in git): a rewrite
#: within the file system's timestamp granularity could keep its size and mtime.
_RACY_NS = 2_000_000_000

#: In-process memo of file hashes, (resolved path, size, mtime_ns) -> sha256 hex, in front of the cache file.
_SHA256_MEMO: dict[tuple[str, int, int], str] = {}


def user_cache_dir() -> Path:
    """``$W2S_HARNESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/w2s-harness``, else ``~/.cache/w2s-harness``."""
    own = os.environ.get("W2S_HARNESS_CACHE_DIR", "").strip()
    if own:
        return Path(os.path.expanduser(own))
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(os.path.expanduser(xdg)) if xdg else Path.home() / ".cache") / "w2s-harness"


def file_sha256(path: str | os.PathLike) -> str:
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
                digest = file_sha256(real)
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
