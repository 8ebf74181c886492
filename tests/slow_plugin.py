"""A plugin for the interrupt and concurrency tests, loaded by name into real subprocesses.

``slow-charhash`` embeds texts as hashed character trigram counts (deterministic across processes) and
``slow-xent`` is soft-label cross-entropy; both can be slowed down through environment variables so a test can
interrupt them at a chosen point, and the model logs how many texts each ``features`` call embedded (to count
what a resumed or concurrent run recomputed). Slowing down changes no number.

- ``SLOW_FEATURE_DELAY``: seconds to sleep per ``features`` call (one chunk of the encoder pass);
- ``SLOW_LOSS_DELAY``: seconds to sleep per loss call (one training step);
- ``SLOW_LOG``: a file that gets one line ``<feature dim> <n texts>`` per ``features`` call.
"""

from __future__ import annotations

import dataclasses
import os
import time
import zlib

import numpy as np

from w2s_harness import check_train_config, hookimpl, zero_linear_head


class SlowCharHash:
    name = "slow-charhash"

    def __init__(self, dim: int = 64, lr: float = 0.05, epochs: int = 10, batch_size: int = 32):
        self.dim = dim
        self.train_config = check_train_config(f"model {self.name!r}", lr=lr, epochs=epochs, batch_size=batch_size)

    def feature_key(self) -> str:
        return f"{self.name}|dim={self.dim}"

    def identity(self):
        return {"features": self.feature_key(), "train": dataclasses.asdict(self.train_config)}

    def features(self, texts, progress=None, device=None):
        time.sleep(float(os.environ.get("SLOW_FEATURE_DELAY", "0")))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            padded = f" {text.lower()} "
            for j in range(len(padded) - 2):
                out[i, zlib.crc32(padded[j:j + 3].encode()) % self.dim] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
        log = os.environ.get("SLOW_LOG")
        if log:
            with open(log, "a") as fh:
                fh.write(f"{self.dim} {len(texts)}\n")
        if progress is not None:
            progress(len(texts))
        return {self.feature_key(): out}

    def head(self, n_classes, in_features, device):
        return zero_linear_head(in_features, n_classes, device)


class SlowXent:
    def __init__(self):
        self.delay = float(os.environ.get("SLOW_LOSS_DELAY", "0"))

    def __call__(self, logits, targets, step_frac=0.0):
        import torch

        if self.delay:
            time.sleep(self.delay)
        return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


@hookimpl
def w2s_register_models(registry):
    registry.add("slow-charhash", SlowCharHash, description="hashed trigram counts, slowed on request (tests)")


@hookimpl
def w2s_register_losses(registry):
    registry.add("slow-xent", SlowXent, description="soft-label cross-entropy, slowed on request (tests)")
