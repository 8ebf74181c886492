"""Split logic shared by every dataset plugin: :class:`BaseDataset`.

A dataset plugin subclasses :class:`BaseDataset`, sets :attr:`~BaseDataset.name` and implements
:meth:`~BaseDataset._load` (return the whole formatted dataset as :class:`~w2s_harness._components.TextData`).
Everything else (memoised loading, seeded splits, identity for stage hashes, parameter checks) lives here.

Splits (as in the reference implementation, openai/weak-to-strong):

* the **test** split is drawn once from ``test_seed``, independent of the run seed, so every seed evaluates
  on the same held-out set and no seed ever trains on it;
* the run ``seed`` shuffles the remaining pool, takes ``n_train`` examples and splits them 50/50 into
  **train1** (weak model, ground truth) and **train2** (strong model: ceiling and transfer).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._components import Splits, TextData
from ._errors import ConfigError, DataError

#: Fraction of the data used for the test split when ``n_test`` is not given.
DEFAULT_TEST_FRAC = 0.2


def _check_count(owner: str, key: str, value: Any, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"dataset {owner!r}: {key} must be an integer or omitted, got {value!r}")
    if value < minimum:
        raise ConfigError(f"dataset {owner!r}: {key} must be >= {minimum}, got {value}")
    return int(value)


def fingerprint_examples(
    texts: Sequence[str], labels: Sequence[int] | np.ndarray, class_names: Sequence[str]
) -> str:
    """sha256 of the formatted texts, their labels and the class names (hex, 64 chars)."""
    h = hashlib.sha256()
    h.update(repr(list(class_names)).encode())
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


class BaseDataset:
    """Seeded train1/train2/test splits over a fully loaded :class:`TextData`.

    :param n_train: examples used for train1 + train2 (before the 50/50 split); ``None`` = every example
        left after the test split.
    :param n_test: size of the test split; ``None`` = 20% of the data.
    :param test_seed: seed of the test split (independent of the run seed).
    """

    name: str = "base"

    def __init__(self, *, n_train: int | None = None, n_test: int | None = None, test_seed: int = 0):
        self.n_train = _check_count(self.name, "n_train", n_train, 2)
        self.n_test = _check_count(self.name, "n_test", n_test, 1)
        ts = _check_count(self.name, "test_seed", test_seed, 0)
        self.test_seed = 0 if ts is None else ts
        self._data: TextData | None = None
        self._test_cache: tuple[np.ndarray, np.ndarray] | None = None

    # ---------------------------------------------------------------------------- for subclasses

    def _load(self) -> TextData:
        """Load and format the whole dataset (no splitting). Subclasses implement this."""
        raise NotImplementedError(f"{type(self).__name__} must implement _load()")

    def params(self) -> dict[str, Any]:
        """JSON-able parameters of the subclass that determine the content (override and extend)."""
        return {}

    # ---------------------------------------------------------------------------------- protocol

    def load(self) -> TextData:
        """The full formatted dataset, loaded once per instance."""
        if self._data is None:
            data = self._load()
            self._validate(data)
            self._data = data
        return self._data

    def identity(self) -> dict[str, Any]:
        """Name, parameters, split settings and the content fingerprint (loads the data once)."""
        return {
            "name": self.name,
            **self.params(),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "test_seed": self.test_seed,
            "fingerprint": self.load().fingerprint,
        }

    def split_sizes(self) -> tuple[int, int, int]:
        """``(n_train1, n_train2, n_test)`` for this configuration (same for every seed)."""
        n = len(self.load())
        n_test = self._n_test(n)
        n_train = self._n_train(n, n_test)
        return n_train // 2, n_train - n_train // 2, n_test

    def splits(self, seed: int) -> Splits:
        """Disjoint, sorted index arrays for ``seed``; ``test`` is the same for every seed."""
        seed = _check_count(self.name, "seed", seed, 0)
        if seed is None:
            raise ConfigError(f"dataset {self.name!r}: a seed is required for the train1/train2 split")
        test, pool = self._test_and_pool()
        n_train = self._n_train(len(self.load()), len(test))
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7472]))
        train = rng.permutation(pool)[:n_train]
        half = n_train // 2
        return Splits(train1=np.sort(train[:half]), train2=np.sort(train[half:]), test=test)

    # ---------------------------------------------------------------------------------- internals

    def _n_test(self, n: int) -> int:
        if self.n_test is None:
            n_test = max(1, round(DEFAULT_TEST_FRAC * n))
        else:
            n_test = self.n_test
        if n_test + 2 > n:
            raise DataError(
                f"dataset {self.name!r}: n_test={n_test} leaves fewer than 2 of its {n} examples for training; "
                f"lower n_test"
            )
        return n_test

    def _n_train(self, n: int, n_test: int) -> int:
        available = n - n_test
        if self.n_train is None:
            return available
        if self.n_train > available:
            raise DataError(
                f"dataset {self.name!r}: n_train={self.n_train} + n_test={n_test} exceed its {n} examples; "
                f"lower n_train to at most {available} (or lower n_test)"
            )
        return self.n_train

    def _test_and_pool(self) -> tuple[np.ndarray, np.ndarray]:
        if self._test_cache is None:
            n = len(self.load())
            n_test = self._n_test(n)
            rng = np.random.default_rng(np.random.SeedSequence([self.test_seed, 0x7465]))
            perm = rng.permutation(n)
            self._test_cache = (np.sort(perm[:n_test]), np.sort(perm[n_test:]))
        return self._test_cache

    def _validate(self, data: TextData) -> None:
        if len(data) == 0:
            raise DataError(f"dataset {self.name!r} has no examples")
        labels = np.asarray(data.labels)
        if labels.shape != (len(data.texts),):
            raise DataError(
                f"dataset {self.name!r}: {len(data.texts)} texts but labels of shape {labels.shape}"
            )
        if data.n_classes < 2:
            raise DataError(f"dataset {self.name!r} needs at least 2 classes, got {list(data.class_names)}")
        if labels.min() < 0 or labels.max() >= data.n_classes:
            raise DataError(
                f"dataset {self.name!r}: labels must be class ids in [0, {data.n_classes}), "
                f"got range [{labels.min()}, {labels.max()}]"
            )

    def __repr__(self) -> str:
        args = ", ".join(
            f"{k}={v!r}"
            for k, v in {
                **self.params(),
                "n_train": self.n_train,
                "n_test": self.n_test,
                "test_seed": self.test_seed,
            }.items()
        )
        return f"{type(self).__name__}({args})"
