"""``example-parity``: a tiny synthetic text dataset (no download, no files)."""

from __future__ import annotations

from typing import Any

import numpy as np

from w2s_harness import BaseDataset, TextData, fingerprint_examples

CLASS_NAMES = ["even", "odd"]


class ParityDataset(BaseDataset):
    """Sentences "the number N is here" labelled by the parity of N.

    :param n: number of examples to generate.
    :param max_number: N is drawn uniformly from ``[0, max_number)``.
    :param seed: generator seed of the content (not of the splits).
    :param n_train, n_test, test_seed: split settings, see :class:`w2s_harness.BaseDataset`.
    """

    name = "example-parity"

    def __init__(self, n: int = 400, max_number: int = 100, seed: int = 0, *, n_train: int | None = None,
                 n_test: int | None = None, test_seed: int = 0):
        super().__init__(n_train=n_train, n_test=n_test, test_seed=test_seed)
        self.n = int(n)
        self.max_number = int(max_number)
        self.seed = int(seed)

    def params(self) -> dict[str, Any]:
        # what determines the content: part of identity(), hence of every stage id
        return {"n": self.n, "max_number": self.max_number, "seed": self.seed}

    def _load(self) -> TextData:
        rng = np.random.default_rng(self.seed)
        numbers = rng.integers(0, self.max_number, size=self.n)
        texts = [f"the number {k} is here" for k in numbers]
        labels = (numbers % 2).astype(np.int64)
        return TextData(texts, labels, list(CLASS_NAMES), fingerprint_examples(texts, labels, CLASS_NAMES))
