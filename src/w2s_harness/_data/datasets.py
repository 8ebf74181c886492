"""Split logic shared by every dataset plugin: :class:`BaseDataset`.

A dataset plugin subclasses :class:`BaseDataset`, sets :attr:`~BaseDataset.name` and implements either
:meth:`~BaseDataset._load` (return the whole formatted dataset as :class:`~w2s_harness._contracts.components.TextData`), or,
so that a run's work scales with the rows it uses, the row-level pair :meth:`~BaseDataset._num_rows` +
:meth:`~BaseDataset._load_rows`. Everything else (row sampling, memoised loading, seeded splits, identity for
stage hashes, parameter checks) lives here.

Rows are **sampled first**, from ``test_seed`` alone (as the reference implementation, openai/weak-to-strong, fixes
its ``n_docs`` / ``n_test_docs`` documents per dataset):

* the **test** split: ``n_test`` rows, the same for every run seed, so every seed evaluates on the same held-out
  set and no seed ever trains on it;
* the **training pool**: ``n_train`` further rows (default: every row left), also fixed for the dataset.

An ``n_train`` or ``n_test`` larger than what the dataset has is not an error: every usable row is taken and one
``warning:`` line says so (the rows each stage used are in results.json, see :func:`split_rows`).

Only those rows are then loaded and formatted (:meth:`BaseDataset.load` returns them, so a feature model embeds
only them). The run ``seed`` shuffles the pool and cuts it 50/50 into **train1** (weak model, ground truth) and
**train2** (strong model: ceiling and transfer).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._contracts.components import Splits, TextData
from .._contracts.errors import ConfigError, DataError
from .._contracts.validate import check_int

#: Fraction of the data used for the test split when ``n_test`` is not given (and the dataset has no designated
#: test rows, see :meth:`BaseDataset._test_candidates`).
DEFAULT_TEST_FRAC = 0.2


def _check_count(owner: str, key: str, value: Any, minimum: int) -> int | None:
    return check_int(value, key, owner=f"dataset {owner!r}", lo=minimum, optional=True)


def warn(message: str) -> None:
    """Print ``warning: <message>`` on stderr (as the runner's notices)."""
    print(f"warning: {message}", file=sys.stderr)


def split_rows(splits) -> dict[str, int]:
    """``{"train1": n, "train2": n, "test": n}``: the rows of each part of a :class:`Splits` (recorded with every
    train stage's metrics in results.json)."""
    return {part: len(getattr(splits, part)) for part in ("train1", "train2", "test")}


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
    """Seeded train1/train2/test splits over the rows of a dataset, loading only the rows a run uses.

    :param n_train: examples used for train1 + train2 (before the 50/50 split), drawn once from ``test_seed``;
        ``None`` = every example left after the test split.
    :param n_test: size of the test split; ``None`` = 20% of the rows (or, for a dataset with designated test
        rows, all of them).
    :param test_seed: seed of the row sampling: the test split and the training pool (independent of the run
        seed).
    """

    name: str = "base"

    #: Draw the test split and the training pool with equal class counts, undersampling the larger classes (the
    #: first rows of each class in the sampled order are kept). A subclass sets it, e.g. from a parameter; the
    #: labels come from :meth:`_row_labels` and the number of classes from :meth:`_num_classes`.
    balance_classes: bool = False

    def __init__(self, *, n_train: int | None = None, n_test: int | None = None, test_seed: int = 0):
        self.n_train = _check_count(self.name, "n_train", n_train, 2)
        self.n_test = _check_count(self.name, "n_test", n_test, 1)
        ts = _check_count(self.name, "test_seed", test_seed, 0)
        self.test_seed = 0 if ts is None else ts
        self._all: TextData | None = None
        self._data: TextData | None = None
        self._selection: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._short: list[str] = []

    def use_seeds(self, seeds: Sequence[int]) -> None:
        """The run's seeds, told before :meth:`load` by whoever creates the dataset for a run (the planner and each
        run context). A dataset whose texts or splits depend on the run seed (a recipe in ``openai`` or
        ``eleuther`` mode) prepares the rows of all of them; the default ignores them (the rows used are fixed by
        ``test_seed``, and only :meth:`splits` reads the seed)."""

    # ---------------------------------------------------------------------------- for subclasses

    def _load(self) -> TextData:
        """Load and format the whole dataset (no splitting). Subclasses implement this, or the row-level pair
        :meth:`_num_rows` + :meth:`_load_rows`."""
        raise NotImplementedError(f"{type(self).__name__} must implement _load() (or _num_rows() and _load_rows())")

    def _num_rows(self) -> int:
        """Number of rows the dataset has (before any formatting). Default: ``len(self._load())``."""
        return len(self._load_all())

    def _load_rows(self, rows: np.ndarray) -> TextData:
        """Load and format only ``rows`` (sorted, distinct row ids in ``[0, _num_rows())``), in that order.

        Default: the rows of the whole :meth:`_load` (which is then called once, whatever the rows); the same
        ``TextData`` object when every row is used. An override must give row ``i`` the same text and label
        whichever other rows are asked for.
        """
        full = self._load_all()
        if len(rows) == len(full):  # sorted distinct ids of [0, len): every row
            return full
        texts = [full.texts[i] for i in rows]
        labels = np.asarray(full.labels)[rows]
        names = list(full.class_names)
        return TextData(texts, labels, names, fingerprint_examples(texts, labels, names))

    def _test_candidates(self) -> np.ndarray | None:
        """Row ids the test split is drawn from (e.g. a source's own test split); the training pool is then drawn
        from the other rows, and ``n_test=None`` means all of these rows. ``None`` (default): the test split is
        drawn from every row, 20% of them unless ``n_test`` is given."""
        return None

    def _keep_rows(self, rows: np.ndarray) -> np.ndarray | None:
        """Which of ``rows`` may be used (a boolean mask), e.g. to drop texts longer than a context window; rows
        are screened lazily in the sampled order until the splits are full. ``None`` (default): all of them."""
        return None

    def _row_labels(self, rows: np.ndarray) -> np.ndarray:
        """Class ids of ``rows``, for :attr:`balance_classes`. Default: from :meth:`_load_rows`."""
        return np.asarray(self._load_rows(np.sort(rows)).labels)[np.argsort(np.argsort(rows))]

    def _num_classes(self) -> int:
        """Number of classes, for :attr:`balance_classes`. Default: from :meth:`_load`."""
        return self._load_all().n_classes

    def params(self) -> dict[str, Any]:
        """JSON-able parameters of the subclass that determine the content (override and extend)."""
        return {}

    def _row_difficulty(self, rows: np.ndarray) -> Sequence | None:
        """The difficulty of ``rows`` (sorted row ids), in that order (numbers; NaN where unknown), or ``None`` when
        the dataset has none (the default). Feeds :meth:`difficulty`, which easy-to-hard splits read; a dataset
        with a difficulty names its source with a ``difficulty_column`` parameter (``local`` files, choice
        datasets, ``lichess_puzzles``)."""
        return None

    def difficulty(self) -> np.ndarray:
        """The difficulty of every row of :meth:`load` (float64), for an easy-to-hard split; a one-line
        :class:`~w2s_harness.DataError` when the dataset has none, or a row's is missing or not a number."""
        rows = self._sampled()[0]
        values = self._row_difficulty(rows)
        if values is None:
            raise DataError(f"dataset {self.name!r} has no difficulty values; set its difficulty_column (a numeric "
                            f"column) for an easy-to-hard split")
        values = list(values)
        if len(values) != len(rows):
            raise DataError(f"dataset {self.name!r}: _row_difficulty returned {len(values)} values for {len(rows)} "
                            f"rows")
        bad = [v for v in values if v is not None and (
            isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)))]
        if bad:
            raise DataError(f"dataset {self.name!r}: the difficulty must be a number, found {bad[0]!r}"
                            + (f" ({len(bad)} such rows)" if len(bad) > 1 else ""))
        out = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
        if np.isnan(out).any():
            raise DataError(f"dataset {self.name!r}: {int(np.isnan(out).sum())} of the {len(out)} rows used have no "
                            f"difficulty (an empty cell); fill or drop them, or check difficulty_column")
        return out

    # ---------------------------------------------------------------------------------- protocol

    def load(self) -> TextData:
        """The formatted rows this configuration uses (the test split and the training pool, in row order),
        loaded once per instance. :meth:`splits` indexes into it."""
        if self._data is None:
            rows = self._sampled()[0]
            data = self._load_rows(rows)
            self._validate(data)
            if len(data) != len(rows):
                raise DataError(
                    f"dataset {self.name!r}: _load_rows returned {len(data)} examples for {len(rows)} rows"
                )
            self._data = data
        return self._data

    def identity(self) -> dict[str, Any]:
        """Name, parameters, split settings and the content fingerprint of the rows used (loads them once)."""
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
        _, test, pool = self._sampled()
        n = len(pool)
        return n // 2, n - n // 2, len(test)

    def splits(self, seed: int) -> Splits:
        """Disjoint, sorted index arrays into :meth:`load` for ``seed``; ``test`` is the same for every seed, and
        train1 + train2 is always the same pool, shuffled by ``seed``."""
        seed = _check_count(self.name, "seed", seed, 0)
        if seed is None:
            raise ConfigError(f"dataset {self.name!r}: a seed is required for the train1/train2 split")
        _, test, pool = self._sampled()
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7472]))
        train = rng.permutation(pool)
        half = len(train) // 2
        return Splits(train1=np.sort(train[:half]), train2=np.sort(train[half:]), test=test)

    # ---------------------------------------------------------------------------------- internals

    def _load_all(self) -> TextData:
        """:meth:`_load`, called once and checked."""
        if self._all is None:
            data = self._load()
            self._validate(data)
            self._all = data
        return self._all

    def _sampled(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, test, pool)``: the sorted row ids used, and the test split and training pool as sorted
        positions in ``rows`` (that is, indices into :meth:`load`)."""
        if self._selection is None:
            n = _check_count(self.name, "_num_rows()", self._num_rows(), 0)
            perm = np.random.default_rng(np.random.SeedSequence([self.test_seed, 0x7465])).permutation(n)
            candidates = self._test_candidates()
            self._short = []
            if candidates is None:
                n_test = self._n_test(n)
                test = self._take(perm, n_test, "n_test", "rows")
                rest = np.ones(n, dtype=bool)
                rest[test] = False
                pool = self._take(perm[rest[perm]], self.n_train, "n_train", "rows left after the test split")
            else:
                is_test = np.zeros(n, dtype=bool)
                is_test[np.asarray(candidates, dtype=np.int64)] = True
                test = self._take(perm[is_test[perm]], self.n_test, "n_test", "rows of its test split")
                pool = self._take(perm[~is_test[perm]], self.n_train, "n_train", "training rows")
            if len(test) < 1:
                raise DataError(f"dataset {self.name!r} has no usable test rows")
            if len(pool) < 2:
                raise DataError(
                    f"dataset {self.name!r}: fewer than 2 usable training rows ({len(pool)}); lower n_test"
                )
            self.warn_short(self._short)
            rows = np.union1d(test, pool)
            self._selection = (rows, np.searchsorted(rows, np.sort(test)), np.searchsorted(rows, np.sort(pool)))
        return self._selection

    def warn_short(self, notes: Sequence[str]) -> None:
        """One ``warning:`` line for the counts larger than what the dataset has (``notes``: one phrase each); a
        dataset selects its rows once, so a run prints it once."""
        if notes:
            warn(f"dataset {self.name!r}: {'; '.join(notes)}: using every one (results.json records the "
                      f"rows each stage used per split)")

    def _screen(self, rows: np.ndarray) -> np.ndarray:
        mask = self._keep_rows(rows)
        if mask is None:
            return rows
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != rows.shape:
            raise DataError(f"dataset {self.name!r}: _keep_rows returned a mask of shape {mask.shape} for "
                            f"{len(rows)} rows")
        return rows[mask]

    def _take(self, order: np.ndarray, n: int | None, key: str, what: str) -> np.ndarray:
        """The first ``n`` usable rows of ``order`` (all of them if ``n`` is None), in that order: screened by
        :meth:`_keep_rows` and, with :attr:`balance_classes`, taken with equal class counts. Fewer than ``n``
        usable rows: all of them (balanced to the smallest class), noted for the warning line."""
        balance = bool(self.balance_classes)
        if n is None:
            return self._all_usable(self._screen(order))
        if balance:
            k = self._num_classes()
            quota = np.full(k, n // k) + (np.arange(k) < n % k)
            counts = np.zeros(k, dtype=np.int64)
        taken: list[np.ndarray] = []
        screened: list[np.ndarray] = []
        n_taken = seen = pos = 0
        while n_taken < n and pos < len(order):
            need = n - n_taken
            # exactly the rows still needed while nothing was rejected, else enough for the rejection rate so far
            size = need if n_taken == seen else int(np.ceil(need * seen / max(n_taken, 1) * 1.2)) + 16
            chunk = order[pos:pos + size]
            pos += len(chunk)
            seen += len(chunk)
            usable = self._screen(chunk)
            screened.append(usable)
            if balance:
                labels = np.asarray(self._row_labels(usable), dtype=np.int64)
                pick = self._within_quota(labels, quota - counts)
                usable = usable[pick][:need]
                counts += np.bincount(labels[pick][:need], minlength=len(counts))
            else:
                usable = usable[:need]
            taken.append(usable)
            n_taken += len(usable)
        if n_taken < n:  # every row was screened: take them all
            out = self._all_usable(np.concatenate(screened) if screened else order[:0])
            balanced = " with balanced classes" if balance else ""
            self._short.append(f"{key}={n} but only {len(out)} usable {what}{balanced}")
            return out
        return np.concatenate(taken) if taken else order[:0]

    def _all_usable(self, usable: np.ndarray) -> np.ndarray:
        """Every row of ``usable`` (screened already), balanced to the smallest class with :attr:`balance_classes`
        (the first rows of each class, in order)."""
        if not self.balance_classes or len(usable) == 0:
            return usable
        labels = np.asarray(self._row_labels(usable), dtype=np.int64)
        counts = np.bincount(labels, minlength=self._num_classes())
        quota = np.full(len(counts), counts.min())
        return usable[self._within_quota(labels, quota)]

    @staticmethod
    def _within_quota(labels: np.ndarray, quota: np.ndarray) -> np.ndarray:
        """Mask of the rows kept when each class ``c`` keeps its first ``quota[c]`` rows."""
        keep = np.zeros(len(labels), dtype=bool)
        for c, q in enumerate(quota):
            where = np.flatnonzero(labels == c)[: max(int(q), 0)]
            keep[where] = True
        return keep

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
