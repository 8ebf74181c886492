"""One hub dataset's splits, addressed by global row ids: the source every hub-backed recipe shares.

A recipe (classification or choice) names a hub id, its splits and the raw columns it needs; :class:`HubTables`
validates where the rows come from (``data_files`` | ``path`` | the hub), opens the tables lazily through
:mod:`.hfsource`, checks their schema in one line, and maps the datasets' row ids (the splits concatenated in
order) to ``(split, local row)`` so a recipe reads only the rows a run samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from w2s_harness import ConfigError, DataError, check_path

from .hfsource import load_source, normalise_data_files

Row = dict[str, Any]


def _text(owner: str, key: str, value: Any) -> str | None:
    return check_path(value, key, owner=f"dataset {owner!r}", optional=True, what="a string")


class HubTables:
    """The splits of ``hub`` (or local files in its raw schema, or a local copy of its repository) as one row space.

    :param owner: the dataset's registered name, for messages.
    :param hub: the default hub id; ``hub_id`` overrides it (a mirror with the same schema).
    :param config: the hub config (subset) name.
    :param splits: every split, in row-id order; ``train_splits`` must be present.
    :param columns: the raw columns every split needs (``required`` may compute them per split instead).
    :param revision: given revision, else ``default_revision``.
    :param check: ``check(split, columns it has)`` raises a one-line DataError for a split the recipe cannot
        read (default: :meth:`check_columns`), for sources with several schemas or optional columns.
    """

    def __init__(self, owner: str, *, hub: str, config: str | None, splits: list[str], train_splits: list[str],
                 columns: list[str], data_files: Any = None, path: Any = None, hub_id: Any = None,
                 revision: Any = None, default_revision: str | None = None, cache_dir: Any = None,
                 check: Callable[[str, list[str]], None] | None = None):
        self.check = check or self.check_columns
        self.owner, self.hub, self.config = owner, hub, config
        self.splits, self.train_splits, self.columns = list(splits), list(train_splits), list(columns)
        self.data_files = normalise_data_files(data_files, owner, self.splits, self.train_splits[0])
        if self.data_files is not None:
            missing = [s for s in self.train_splits if s not in self.data_files]
            if missing:
                raise ConfigError(f"dataset {owner!r}: data_files needs the training split(s) "
                                  f"{', '.join(repr(s) for s in missing)}; {self.local_hint()}")
        self.path = _text(owner, "path", path)
        if self.path is not None and self.data_files is not None:
            raise ConfigError(f"dataset {owner!r}: give data_files or path, not both")
        self.hub_id = _text(owner, "hub_id", hub_id) or hub
        self.revision = _text(owner, "revision", revision) if revision is not None else default_revision
        self.cache_dir = _text(owner, "cache_dir", cache_dir)
        self.tables: dict[str, Any] | None = None
        self.order: list[str] = []
        self._offsets = np.zeros(1, dtype=np.int64)

    def params(self) -> dict[str, Any]:
        """Where the rows come from, for the dataset's identity."""
        if self.data_files is not None:
            return {"data_files": self.data_files}
        if self.path is not None:
            return {"path": self.path}
        return {"hub_id": self.hub_id, "config": self.config, "revision": self.revision}

    def local_hint(self) -> str:
        """How to run offline: the ``data_files`` table to give, and the schema it must have."""
        files = ", ".join(f'{s} = "{s}.parquet"' for s in self.splits)
        return (f"to use local files, set data_files = {{{files}}} (the raw {self.hub} schema, columns "
                f"{', '.join(self.columns)}; .parquet, .jsonl or .csv) or path = a local copy of the {self.hub} "
                f"repository")

    def open(self) -> dict[str, Any]:
        """Load the tables once; a one-line DataError for a missing training split or column."""
        if self.tables is not None:
            return self.tables
        tables = load_source(self.owner, data_files=self.data_files, path=self.path, hub_id=self.hub_id,
                             config=self.config, revision=self.revision, splits=self.splits,
                             cache_dir=self.cache_dir, hint=self.local_hint())
        for split in self.train_splits:
            if split not in tables:
                raise DataError(f"dataset {self.owner!r}: no {split!r} split found; {self.local_hint()}")
        for split, table in tables.items():
            self.check(split, list(table.column_names))
        self.order = [s for s in self.splits if s in tables]
        self._offsets = np.cumsum([0] + [len(tables[s]) for s in self.order]).astype(np.int64)
        self.tables = tables
        return tables

    def check_columns(self, split: str, have: list[str], needed: list[str] | None = None) -> None:
        """A one-line DataError when ``split`` lacks one of ``needed`` (default: :attr:`columns`)."""
        missing = [c for c in (self.columns if needed is None else needed) if c not in have]
        if missing:
            raise DataError(f"dataset {self.owner!r}: split {split!r} has no column {missing[0]!r} (it has "
                            f"{', '.join(have)}); it needs the raw {self.hub} schema: {', '.join(self.columns)}")

    def num_rows(self) -> int:
        self.open()
        return int(self._offsets[-1])

    def split_rows(self, split: str | None) -> np.ndarray | None:
        """The row ids of ``split`` (``None`` when it is not there)."""
        self.open()
        if split is None or split not in self.order:
            return None
        k = self.order.index(split)
        return np.arange(self._offsets[k], self._offsets[k + 1])

    def groups(self, rows: np.ndarray) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """``(split, positions in rows, local row ids)`` per split that ``rows`` touch."""
        self.open()
        rows = np.asarray(rows, dtype=np.int64)
        which = np.searchsorted(self._offsets, rows, side="right") - 1
        for k, split in enumerate(self.order):
            pos = np.flatnonzero(which == k)
            if len(pos):
                yield split, pos, rows[pos] - self._offsets[k]

    def read(self, split: str, local: np.ndarray, columns: list[str]) -> list[Row]:
        """The raw rows ``local`` of ``split``, restricted to ``columns``."""
        batch = self.open()[split].select_columns(columns).select(np.asarray(local).tolist())[:]
        return [{c: batch[c][i] for c in columns} for i in range(len(local))]
