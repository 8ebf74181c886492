"""On-disk cache of frozen-backbone features for linear-probe models.

One ``.npy`` file per (feature key, dataset fingerprint): ``<root>/<sha256(feature_key + fingerprint)[:20]>.npy``.
A model's :meth:`FeatureModel.features <w2s_harness.FeatureModel.features>` returns a dict ``{feature_key: array}`` that holds
at least its own key and may hold more: the ``hf:`` model returns every layer of one encoder pass, each under the
key a model truncated at that layer would have, so one pass serves a whole ladder (L1/L3/L6). Every returned
array is stored (atomically: temp file + ``os.replace``), so the other rungs are cache hits.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._components import TextData
from ._errors import W2SError

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


class FeatureCache:
    """Features of linear-probe models, computed once per (feature key, data fingerprint).

    :param root: directory of the ``.npy`` files (created on first write).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        # Owned by this cache, so by one run context: nothing is shared between runs of one process.
        self._memo = _Memo(MEMO_MAX_BYTES)
        self.hits = 0
        self.misses = 0

    def path(self, feature_key: str, data: TextData) -> Path:
        return self.root / cache_name(feature_key, data.fingerprint)

    def contains(self, model_spec: Any, data: TextData) -> bool:
        return self.path(model_spec.feature_key(), data).is_file()

    def get(
        self,
        model_spec: Any,
        data: TextData,
        progress: Callable[[int], None] | None = None,
        *,
        device: Any = None,
    ) -> np.ndarray:
        """The ``(len(data), d)`` float32 features of ``model_spec`` on ``data``.

        Computed through ``model_spec.features(data.texts, progress)`` only on a miss; every array it returns is
        stored under its own key. ``device`` (a ``torch.device``, a string or ``None``) is passed on to ``features``.
        """
        key = model_spec.feature_key()
        path = self.path(key, data)
        arr = self._read(path)
        if arr is not None:
            self.hits += 1
            return arr
        self.misses += 1
        result = model_spec.features(data.texts, progress, device)
        if not isinstance(result, dict):  # a plain array: the model's own key
            result = {key: result}
        if key not in result:
            raise W2SError(
                f"model {getattr(model_spec, 'name', model_spec)!r}: features() returned keys "
                f"{sorted(result)[:5]} but not its own feature_key() {key!r}"
            )
        for k, a in result.items():
            a = np.ascontiguousarray(a, dtype=np.float32)
            if a.ndim != 2 or a.shape[0] != len(data):
                raise W2SError(
                    f"model {getattr(model_spec, 'name', model_spec)!r}: features for {k!r} have shape "
                    f"{a.shape}, expected ({len(data)}, d)"
                )
            p = self.path(k, data)
            save_npy_atomic(p, a)
            self._memo.put(p, a)
            if k == key:
                arr = a
        return arr

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
