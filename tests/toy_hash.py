"""``toy-hash``: a hashed bag-of-words model with a zero-initialised linear head, shared by the end-to-end tests.

``dim`` buckets: few buckets collide and make a weak model, many make a strong one. Runs take seconds and need no
downloaded weights; the model goes through the same registry and hooks as a third-party plugin's.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np

from w2s_harness import check_train_config, hookimpl, zero_linear_head


class ToyHash:
    """Counts of words hashed into ``dim`` buckets + a zero-initialised linear head."""

    name = "toy-hash"

    def __init__(self, dim: int = 64, epochs: int = 5, lr: float = 0.05, solver: str = "adamw",
                 C: float | None = None, early_stop: str = "none", val_frac: float | None = None,
                 curve_every: int = 0, batch_size: int = 32):
        self.dim = dim
        # C is an L-BFGS parameter; the AdamW head rejects it, so it is passed only with that solver
        self.train_config = check_train_config(f"model {self.name!r}", lr=lr, epochs=epochs, batch_size=batch_size,
                                               solver=solver, C=C if solver == "lbfgs" else None,
                                               early_stop=early_stop, val_frac=val_frac, curve_every=curve_every)

    def feature_key(self):
        return f"{self.name}|{self.dim}"

    def identity(self):
        return {"name": self.name, "dim": self.dim, "train": asdict(self.train_config)}

    def features(self, texts, progress=None, device=None):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.split():
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        return {self.feature_key(): out}

    def head(self, n_classes, in_features, device):
        return zero_linear_head(in_features, n_classes, device)


class ToyPlugin:
    """Registers ``toy-hash``."""

    @hookimpl
    def w2s_register_models(self, registry):
        registry.add("toy-hash", ToyHash, description="hashed bag of words (tests)")


PLUGINS = [ToyPlugin()]


def majority_words_csv(path: Path, n: int) -> Path:
    """``n`` 'reviews' for toy-hash: the label is the majority among 3 signal words (20 per class), plus 6 filler
    words (60 of them), seeded."""
    rng = np.random.default_rng(0)
    pos, neg, filler = [f"good{i}" for i in range(20)], [f"bad{i}" for i in range(20)], [f"w{i}" for i in range(60)]
    lines = ["text,label"]
    for _ in range(n):
        y = int(rng.integers(2))
        n_pos = int(rng.choice([2, 3])) if y else int(rng.choice([0, 1]))
        words = list(rng.choice(pos, n_pos)) + list(rng.choice(neg, 3 - n_pos)) + list(rng.choice(filler, 6))
        rng.shuffle(words)
        lines.append(f"{' '.join(words)},{'pos' if y else 'neg'}")
    path.write_text("\n".join(lines) + "\n")
    return path
