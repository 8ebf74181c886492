"""``example-charhash``: hashed character n-gram counts + a zero-initialised linear head (a ``FeatureModel``).

The backbone is frozen (there is none to train: the features are counts), so the runner embeds the whole dataset
once per :meth:`CharHash.feature_key`, caches the array in the run directory, and every stage trains only a head.
numpy only; torch is used by the harness for the head.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from w2s_harness import check_int, check_train_config, zero_linear_head

#: Bump when the features change for the same parameters: it is part of the feature key and the stage ids, so
#: cached features and trained heads are then recomputed instead of reused.
VERSION = "1"


def ngrams(text: str, n: int) -> list[str]:
    """Character n-grams of the lower-cased text padded with one space on each side."""
    padded = f" {text.lower()} "
    return [padded[i:i + n] for i in range(max(1, len(padded) - n + 1))]


def bucket(gram: str, dim: int) -> int:
    # zlib.crc32 is stable across processes and runs; Python's hash() of a str is salted per process and would
    # make the cached features meaningless
    return zlib.crc32(gram.encode("utf-8")) % dim


class CharHash:
    """Counts of hashed character n-grams in ``dim`` buckets, L2-normalised, + a linear head.

    A small ``dim`` (many collisions) makes a weak model, a large one a strong model.

    :param dim: number of hash buckets (the feature size).
    :param ngram: n-gram length in characters (3: trigrams).
    :param lr/epochs/batch_size/weight_decay/warmup_frac: head training (AdamW + cosine schedule).
    """

    name = "example-charhash"

    def __init__(self, dim: int = 256, ngram: int = 3, lr: float = 0.05, epochs: int = 10, batch_size: int = 32,
                 weight_decay: float = 0.0, warmup_frac: float = 0.0):
        owner = f"model {self.name!r}"
        self.dim = check_int(dim, "dim", owner=owner, lo=1)
        self.ngram = check_int(ngram, "ngram", owner=owner, lo=1)
        self.train_config = check_train_config(f"model {self.name!r}", lr=lr, epochs=epochs,
                                               batch_size=batch_size, weight_decay=weight_decay,
                                               warmup_frac=warmup_frac)

    def feature_key(self) -> str:
        # everything that changes the features, and nothing else: models that differ only in training settings
        # share one cached array
        return f"{self.name}|v{VERSION}|dim={self.dim}|ngram={self.ngram}"

    def identity(self) -> dict[str, Any]:
        # everything that changes the trained head: hashed into the id of every stage that trains this model
        return {"name": self.name, "features": self.feature_key(), "train": dataclasses.asdict(self.train_config)}

    def features(self, texts: Sequence[str], progress: Callable[[int], None] | None = None,
                 device: Any = None) -> dict[str, np.ndarray]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for gram in ngrams(text, self.ngram):
                out[i, bucket(gram, self.dim)] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
        if progress is not None:
            progress(len(texts))
        return {self.feature_key(): out}

    def head(self, n_classes: int, in_features: int, device: Any):
        return zero_linear_head(in_features, n_classes, device)

    def __repr__(self) -> str:
        return f"CharHash(dim={self.dim}, ngram={self.ngram}, {self.train_config})"
