"""On-disk cache of frozen-backbone features for linear-probe models.

One ``.npy`` file per (feature key, dataset fingerprint): ``<root>/<sha256(feature_key + fingerprint)[:20]>.npy``.
A model's :meth:`FeatureModel.features <w2s_harness.FeatureModel.features>` returns a dict ``{feature_key: array}`` that holds
at least its own key and may hold more: the ``hf:`` model returns every layer of one encoder pass, each under the
key a model truncated at that layer would have, so one pass serves a whole ladder (L1/L3/L6). Every returned
array is stored (atomically: temp file + ``os.replace``), so the other rungs are cache hits.

**Chunks (resumable passes).** On a miss the texts are embedded ``chunk_rows`` at a time, and each finished
chunk's whole dict (every key the model returned, so every layer of an ``hf:`` pass) is written atomically to
``<root>/<entry>.partial/<start>-<end>.npz`` (``<entry>`` is the requested key's file name without ``.npy``;
the ``.npz`` holds the keys as a string array ``keys`` and the arrays as ``a0, a1, ...``, so any key string
works and nothing needs pickle). An encoder pass on a large model can take hours on a GPU: a run killed
(``kill -9``, OOM, a lost node) or stopped part-way keeps every finished chunk, and the next call on the same
root loads them (advancing ``progress`` by their rows) and computes only the missing rows. A chunk file that
cannot be read, or whose rows or keys do not fit, is deleted and recomputed; a resume with another
``chunk_rows`` still uses the saved chunks (a new chunk ends where a saved one starts). After the last chunk the arrays
are assembled, each key is written as its own ``.npy`` (the requested key last, so its file existing means the
entry is complete) and the partial directory is removed. Each chunk is embedded on its own, so the values
equal an unchunked pass for any model whose per-text features do not depend on the other texts of the call (an
``hf:`` pass pads per batch anyway, so it is equal up to padding noise, as with any change of batch
composition).

**Safe stop points.** ``get(..., check_stop=f)`` calls ``f()`` after each computed chunk is saved; ``f``
raises :class:`~w2s_harness._execution.interrupts.StopRequested` when the run was asked to stop, which propagates with
the saved chunks left on disk for the resume.

**One computation at a time.** Two runs on one output directory, or forked worker processes, may ask for the
same features at once. Computing an entry happens under a per-entry :class:`filelock.FileLock`
(``<root>/.locks/<entry>.lock``: an ``flock`` lock, so the OS releases it if its holder dies; the empty lock
files stay behind). After acquiring it the cache looks for the final file again, so a waiter reads what the
holder just wrote instead of embedding again, and one that takes over from a killed holder resumes from its
chunks. Only the requested entry is locked: two runs asking for different layers of one ``hf:`` pass at once
each run the pass.
"""

from __future__ import annotations

import hashlib
import numbers
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from .._contracts.components import TextData
from .._contracts.errors import ConfigError, W2SError

#: Each cache keeps the arrays it read or wrote in memory up to this many bytes (checked against the file's stat).
MEMO_MAX_BYTES = 1 << 30


class _Memo:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[tuple[int, int], np.ndarray]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, path: Path) -> np.ndarray | None:
        key = str(path)
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            try:
                st = path.stat()
            except OSError:
                st = None
            if st is None or (st.st_mtime_ns, st.st_size) != item[0]:
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, path: Path, arr: np.ndarray) -> None:
        key = str(path)
        try:
            st = path.stat()
        except OSError:
            return
        with self._lock:
            self._drop(key)
            arr.setflags(write=False)  # shared between callers: never mutate in place
            if arr.nbytes > self.max_bytes:
                return
            self._items[key] = ((st.st_mtime_ns, st.st_size), arr)
            self._bytes += arr.nbytes
            while self._bytes > self.max_bytes and self._items:
                self._drop(next(iter(self._items)))

    def _drop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._bytes -= item[1].nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def cache_name(feature_key: str, fingerprint: str) -> str:
    """File name of the features of ``feature_key`` on the data with ``fingerprint``."""
    return hashlib.sha256((feature_key + fingerprint).encode()).hexdigest()[:20] + ".npy"


def save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    """Write ``arr`` to ``path`` through a temp file in the same directory + ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


#: Default rows per chunk of an encoder pass (each chunk is saved as it finishes).
DEFAULT_CHUNK_ROWS = 2048

_CHUNK_RE = re.compile(r"^(\d+)-(\d+)\.npz$")

#: A chunk: ``{feature_key: (rows, d) float32 array}``; its signature: ``{feature_key: d}``.
_Chunk = dict[str, np.ndarray]


def _model_name(model: Any) -> str:
    return str(getattr(model, "name", model))


def _signature(chunk: _Chunk) -> dict[str, int]:
    return {k: int(a.shape[1]) for k, a in chunk.items()}


def _describe_mismatch(expected: dict[str, int], got: dict[str, int]) -> str:
    parts = []
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing:
        parts.append(f"missing {missing[:3]}")
    if extra:
        parts.append(f"extra {extra[:3]}")
    widths = [f"{k!r} has width {got[k]}, not {d}" for k, d in expected.items() if got.get(k, d) != d]
    parts.extend(widths[:3])
    return "; ".join(parts)


def save_chunk_atomic(path: Path, chunk: _Chunk) -> None:
    """Write a chunk to ``path`` (``.npz``: ``keys`` + ``a0, a1, ...``) via a temp file + ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    arrays = {f"a{i}": a for i, a in enumerate(chunk.values())}
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, keys=np.array(list(chunk), dtype=str), **arrays)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_chunk(path: Path, rows: int) -> _Chunk | None:
    """The chunk at ``path`` if it reads back whole, as 2-D float32 arrays of ``rows`` rows; else ``None``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = [str(k) for k in z["keys"]]
            if len(set(keys)) != len(keys) or set(z.files) != {"keys", *(f"a{i}" for i in range(len(keys)))}:
                return None
            chunk = {k: z[f"a{i}"] for i, k in enumerate(keys)}
    except Exception:  # noqa: BLE001 - truncated/corrupt (zip, header or data errors): recompute the chunk
        return None
    for a in chunk.values():
        if a.ndim != 2 or a.shape[0] != rows or a.dtype != np.float32:
            return None
    return chunk


class FeatureCache:
    """Features of linear-probe models, computed once per (feature key, data fingerprint).

    :param root: directory of the ``.npy`` files (created on first write).
    :param chunk_rows: rows per chunk of an encoder pass; each finished chunk is saved, so an interrupted pass
        resumes from the last one (see the module docstring).
    """

    def __init__(self, root: str | os.PathLike, chunk_rows: int = DEFAULT_CHUNK_ROWS):
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, numbers.Integral) or chunk_rows <= 0:
            raise ConfigError(f"feature cache: chunk_rows must be a positive integer, got {chunk_rows!r}")
        self.root = Path(root)
        self.chunk_rows = int(chunk_rows)
        # Owned by this cache, so by one run context: nothing is shared between runs of one process.
        self._memo = _Memo(MEMO_MAX_BYTES)
        self.hits = 0
        self.misses = 0

    def path(self, feature_key: str, data: TextData) -> Path:
        return self.root / cache_name(feature_key, data.fingerprint)

    def partial_dir(self, feature_key: str, data: TextData) -> Path:
        """Where the finished chunks of an unfinished pass for ``feature_key`` on ``data`` are kept."""
        return self.path(feature_key, data).with_suffix(".partial")

    def lock_path(self, feature_key: str, data: TextData) -> Path:
        """The lock file held while ``feature_key`` on ``data`` is computed."""
        return self.root / ".locks" / cache_name(feature_key, data.fingerprint).replace(".npy", ".lock")

    def contains(self, model_spec: Any, data: TextData) -> bool:
        return self.path(model_spec.feature_key(), data).is_file()

    def get(
        self,
        model_spec: Any,
        data: TextData,
        progress: Callable[[int], None] | None = None,
        *,
        device: Any = None,
        check_stop: Callable[[], None] | None = None,
    ) -> np.ndarray:
        """The ``(len(data), d)`` float32 features of ``model_spec`` on ``data``.

        Computed only on a miss, ``chunk_rows`` texts per ``model_spec.features(texts[start:end], progress,
        device)`` call, resuming from the chunks an earlier, interrupted call saved; every array it returns is
        stored under its own key. ``device`` (a ``torch.device``, a string or ``None``) is passed on to
        ``features``. ``check_stop()`` is called after each computed chunk is saved and may raise
        :class:`~w2s_harness._execution.interrupts.StopRequested` (propagated; the saved chunks stay for the resume).
        Another process computing the same entry is waited for, and its result read.
        """
        key = model_spec.feature_key()
        path = self.path(key, data)
        arr = self._read(path)
        if arr is not None:
            self.hits += 1
            return arr
        lock = self.lock_path(key, data)
        lock.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(lock):
            arr = self._read(path)  # another process may have finished it while we waited
            if arr is not None:
                self.hits += 1
                return arr
            self.misses += 1
            return self._compute(model_spec, key, data, progress, device, check_stop)

    def _compute(self, model_spec, key, data, progress, device, check_stop) -> np.ndarray:
        partial = self.partial_dir(key, data)
        for attempt in range(2):
            out = self._pass(model_spec, key, data, partial, progress, device, check_stop, retry=attempt == 0)
            if out is not None:
                break
            shutil.rmtree(partial, ignore_errors=True)  # its chunks disagree with what the model returns now
        assert out is not None
        # The requested key last: its file existing means the whole entry (every key) is written.
        for k in sorted(out, key=lambda k: k == key):
            p = self.path(k, data)
            save_npy_atomic(p, out[k])
            self._memo.put(p, out[k])
        shutil.rmtree(partial, ignore_errors=True)
        return out[key]

    def _pass(self, model_spec, key, data, partial, progress, device, check_stop, *, retry) -> _Chunk | None:
        """Assemble every row from saved and newly computed chunks; ``None`` (with ``retry``) when a computed
        chunk disagrees with the keys/widths of the saved ones (stale chunks: the caller deletes them)."""
        n = len(data)
        saved: dict[int, int] = {}  # start -> end of the chunk files on disk
        if partial.is_dir():
            for p in partial.iterdir():
                m = _CHUNK_RE.match(p.name)
                if m:
                    start, end = int(m.group(1)), int(m.group(2))
                    if start < end <= n or start == end == n == 0:
                        saved[start] = max(end, saved.get(start, end))
        starts = sorted(saved)
        out: _Chunk | None = None
        sig: dict[str, int] | None = None
        sig_from_disk = False
        pos = 0
        while pos < n or out is None:
            chunk = None
            end = saved.get(pos)
            if end is not None:
                file = partial / f"{pos}-{end}.npz"
                chunk = load_chunk(file, end - pos)
                if chunk is not None and (key not in chunk or (sig is not None and _signature(chunk) != sig)):
                    chunk = None
                if chunk is None:
                    file.unlink(missing_ok=True)
                elif progress is not None:
                    progress(end - pos)
            computed = chunk is None
            if computed:
                later = [s for s in starts if s > pos]
                end = min(pos + self.chunk_rows, n, later[0] if later else n)
                chunk = self._embed(model_spec, key, data.texts[pos:end], progress, device)
                got = _signature(chunk)
                if sig is not None and got != sig:
                    if sig_from_disk and retry:
                        return None
                    raise W2SError(
                        f"model {_model_name(model_spec)!r}: features() returned other keys or widths for "
                        f"rows {pos}-{end} than for the rows before ({_describe_mismatch(sig, got)}); every "
                        f"call must return the same keys with the same widths"
                    )
                save_chunk_atomic(partial / f"{pos}-{end}.npz", chunk)
            if out is None:
                sig, sig_from_disk = _signature(chunk), not computed
                out = {k: np.empty((n, w), dtype=np.float32) for k, w in sig.items()}
            for k, a in chunk.items():
                out[k][pos:end] = a
            pos = end
            if computed and check_stop is not None:
                check_stop()
        return out

    def _embed(self, model_spec, key, texts, progress, device) -> _Chunk:
        """One ``features()`` call, checked: its own key present, every array ``(len(texts), d)``."""
        result = model_spec.features(texts, progress, device)
        if not isinstance(result, dict):  # a plain array: the model's own key
            result = {key: result}
        if key not in result:
            raise W2SError(
                f"model {_model_name(model_spec)!r}: features() returned keys "
                f"{sorted(result)[:5]} but not its own feature_key() {key!r}"
            )
        chunk = {}
        for k, a in result.items():
            a = np.ascontiguousarray(a, dtype=np.float32)
            if a.ndim != 2 or a.shape[0] != len(texts):
                raise W2SError(
                    f"model {_model_name(model_spec)!r}: features for {k!r} have shape "
                    f"{a.shape}, expected ({len(texts)}, d)"
                )
            chunk[str(k)] = a
        return chunk

    def _read(self, path: Path) -> np.ndarray | None:
        arr = self._memo.get(path)
        if arr is not None:
            return arr
        try:
            arr = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):  # a corrupt file (e.g. written by an old, killed process)
            return None
        self._memo.put(path, arr)
        return arr
