"""A choice dataset read from the hub, from local data files in the hub's raw schema, or from a local copy of the
hub repository: the source handling the pairwise recipes (``anthropic_hh_pairwise``) and ``lichess_puzzles``
share. A subclass names its hub id, splits and raw columns and turns one raw row into a
:class:`~w2s_harness.Choice`."""

from __future__ import annotations

from typing import Any

import numpy as np

from w2s_harness import Choice, ChoiceDataset

from .hubtables import HubTables

Row = dict[str, Any]
#: Raw rows read per table access.
READ_BLOCK = 4096


class HubChoiceDataset(ChoiceDataset):
    """Rows of a hub dataset (or local files in its raw schema) as choice examples.

    :param data_files: local files in the raw schema instead of the hub, ``{split = path or [paths]}`` with the
        hub's split names; a single path means the (first) training split. ``.parquet``, ``.jsonl``/``.json`` or
        ``.csv``/``.tsv``, optionally compressed (``.gz``). Without the test split, the test rows are drawn from
        the training rows.
    :param path: a local copy of the hub repository.
    :param hub_id: another hub id with the same schema (e.g. a mirror).
    :param revision: hub revision (branch, tag or commit).
    :param cache_dir: HF ``datasets`` cache directory.
    """

    hub: str = ""
    config: str | None = None
    train_splits: tuple[str, ...] = ("train",)
    test_split: str | None = "test"
    #: raw columns every row needs (:meth:`_raw_columns` may add optional ones the source has)
    columns: tuple[str, ...] = ()

    def __init__(self, *, data_files: Any = None, path: str | None = None, hub_id: str | None = None,
                 revision: str | None = None, cache_dir: str | None = None, pair_template: str | None = None,
                 shuffle_seed: int = 0, n_train: int | None = None, n_test: int | None = None, test_seed: int = 0):
        super().__init__(pair_template=pair_template, shuffle_seed=shuffle_seed, n_train=n_train, n_test=n_test,
                         test_seed=test_seed)
        self.source = HubTables(self.name, hub=self.hub, config=self.config, splits=self.hub_splits,
                                train_splits=list(self.train_splits), columns=list(self.columns),
                                data_files=data_files, path=path, hub_id=hub_id, revision=revision,
                                cache_dir=cache_dir, check=self._check_columns)

    @property
    def hub_splits(self) -> list[str]:
        return list(self.train_splits) + ([self.test_split] if self.test_split else [])

    def source_params(self) -> dict[str, Any]:
        return self.source.params()

    def choice_params(self) -> dict[str, Any]:
        return self.source_params()

    def _check_columns(self, split: str, have: list[str]) -> None:
        self.source.check_columns(split, have, self._raw_columns(have))

    def _raw_columns(self, have: list[str]) -> list[str]:
        """The raw columns read, given the columns a split has (default: :attr:`columns`)."""
        return list(self.columns)

    def _num_rows(self) -> int:
        return self.source.num_rows()

    def _test_candidates(self) -> np.ndarray | None:
        return self.source.split_rows(self.test_split)

    def _choices(self, rows: np.ndarray) -> list[Choice | None]:
        rows = np.asarray(rows, dtype=np.int64)
        out: list[Choice | None] = [None] * len(rows)
        for split, pos, local in self.source.groups(rows):
            cols = self._raw_columns(list(self.source.open()[split].column_names))
            for s in range(0, len(pos), READ_BLOCK):
                raw = self.source.read(split, local[s:s + READ_BLOCK], cols)
                for p, row in zip(pos[s:s + READ_BLOCK], raw):
                    out[p] = self.to_choice(row, int(rows[p]))
        return out

    def to_choice(self, row: Row, row_id: int) -> Choice | None:
        """One raw row as a :class:`~w2s_harness.Choice` (``None``: unusable, skipped)."""
        raise NotImplementedError
