"""The component contracts plugins implement: Dataset, FeatureModel / FineTuneModel, Loss, Strategy.

The core knows these protocols, never a concrete dataset or model. Everything here is import-light
(no torch at module import) so ``w2s-harness list`` stays instant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch


# ------------------------------------------------------------------------------------------ datasets


@dataclass
class TextData:
    """A whole labelled dataset, already formatted into model inputs.

    ``texts[i]`` is the formatted input (e.g. question + answer), ``labels[i]`` an int class id in
    ``[0, len(class_names))``. ``fingerprint`` identifies the content (and formatting) and goes into every
    stage hash and feature-cache key, so editing the data invalidates exactly what depends on it.
    """

    texts: list[str]
    labels: np.ndarray
    class_names: list[str]
    fingerprint: str

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Splits:
    """Index arrays into :class:`TextData` for one seed. Disjoint; ``test`` never touches training."""

    train1: np.ndarray
    train2: np.ndarray
    test: np.ndarray


@runtime_checkable
class Dataset(Protocol):
    """A dataset plugin. Subclass :class:`w2s_harness._datasets.BaseDataset` for the split logic."""

    name: str

    def load(self) -> TextData:
        """Load (and memoise) the formatted rows the run uses (its test split and training pool)."""

    def splits(self, seed: int) -> Splits:
        """Deterministic train1/train2/test indices for ``seed``."""

    def identity(self) -> dict[str, Any]:
        """JSON-able parameters that determine this dataset's content and splits (for stage hashes)."""


# -------------------------------------------------------------------------------------------- models


@dataclass
class TrainConfig:
    """Optimisation settings for one training stage (AdamW + cosine schedule with linear warmup).

    Build it with :func:`w2s_harness.check_train_config`, which validates every field and names the owner in
    the error, rather than with the constructor.
    """

    lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 32
    weight_decay: float = 0.0
    warmup_frac: float = 0.0
    eval_every_epoch: bool = True


def check_train_config(
    owner: str,
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    weight_decay: float = 0.0,
    warmup_frac: float = 0.0,
) -> TrainConfig:
    """A validated :class:`TrainConfig`; a bad value raises a one-line :class:`~w2s_harness.ConfigError` naming
    ``owner`` (e.g. ``"model 'glove-bow'"``) and the parameter."""

    def num(key, v, lo, hi=None, integer=False):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if integer:
            ok = ok and float(v).is_integer()
        if not ok or not math.isfinite(v) or v < lo or (hi is not None and v > hi):
            rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            kind = "an integer" if integer else "a number"
            raise ConfigError(f"{owner}: {key} must be {kind} {rng}, got {v!r}")
        return int(v) if integer else float(v)

    lr = num("lr", lr, 0.0)
    if lr <= 0:
        raise ConfigError(f"{owner}: lr must be > 0, got {lr!r}")
    return TrainConfig(
        lr=lr,
        epochs=num("epochs", epochs, 0, integer=True),
        batch_size=num("batch_size", batch_size, 1, integer=True),
        weight_decay=num("weight_decay", weight_decay, 0.0),
        warmup_frac=num("warmup_frac", warmup_frac, 0.0, 1.0),
    )


@runtime_checkable
class FeatureModel(Protocol):
    """A model whose backbone stays frozen (a linear probe): texts become features once, heads train on them.

    The runner embeds the rows the run uses once per :meth:`feature_key` and caches the arrays in the run directory,
    so every stage that uses this model (weak, ceiling, transfers, every seed) trains only a head.
    """

    name: str
    train_config: TrainConfig

    def identity(self) -> dict[str, Any]:
        """JSON-able description of everything that determines the trained head (for stage ids)."""

    def feature_key(self) -> str:
        """Cache key of the features: the same key means the same features for the same texts."""

    def features(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None, device: Any = None
    ) -> dict[str, np.ndarray]:
        """Embed ``texts``: ``{feature_key: (N, d) float32 array}``.

        The dict holds at least this model's own :meth:`feature_key` and may hold more: the ``hf:`` model returns
        every layer of one encoder pass, each under the key a model truncated at that layer would have, so one
        pass serves a whole ladder. Every entry is cached. ``progress(n)`` advances a bar by ``n`` texts;
        ``device`` is the run's ``torch.device`` (a model that only uses numpy ignores it).
        """

    def head(self, n_classes: int, in_features: int, device: Any) -> torch.nn.Module:
        """A fresh head ``(B, in_features) -> (B, n_classes)`` on ``device`` (the reference: a zero-initialised
        linear layer, :func:`w2s_harness.zero_linear_head`)."""


@runtime_checkable
class FineTuneModel(Protocol):
    """A model trained end to end: the whole network sees the texts of every batch."""

    name: str
    train_config: TrainConfig

    def identity(self) -> dict[str, Any]:
        """JSON-able description of everything that determines the trained model (for stage ids)."""

    def classifier(self, n_classes: int, device: Any) -> torch.nn.Module:
        """A fresh module on ``device`` whose ``forward(list_of_texts)`` returns logits ``(B, n_classes)``."""


def is_feature_model(model: Any) -> bool:
    """Whether ``model`` is a :class:`FeatureModel` (checked by its methods, as the runtime protocol does)."""
    return callable(getattr(model, "features", None)) and callable(getattr(model, "head", None))


def check_model(model: Any, name: str) -> Any:
    """``model`` if it implements one of the two model protocols, else a one-line error naming what is missing."""
    if is_feature_model(model) and callable(getattr(model, "feature_key", None)):
        return model
    if callable(getattr(model, "classifier", None)):
        return model
    raise ConfigError(
        f"model {name!r}: its factory returned {type(model).__name__}, which is neither a FeatureModel "
        f"(feature_key, features, head) nor a FineTuneModel (classifier); see the plugin guide, 'Models'"
    )


# ---------------------------------------------------------------------------------------------- loss


class Loss(Protocol):
    """``loss(logits (N, k), targets (N, k) soft or (N,) class ids, step_frac in [0, 1]) -> scalar tensor``.

    ``step_frac`` is the fraction of training done (schedules such as logconf's warmup read it). A loss is
    created fresh for every stage, so it may keep state across the batches of one stage.

    **Optional fast path.** A loss may also offer ``prevalidate(targets, n_classes) -> (N, k) targets`` and
    ``compute(logits, targets, step_frac)``: the training loop then checks the whole target matrix once and calls
    ``compute`` on each batch without re-checking it (the first batch still goes through ``__call__``).
    :class:`w2s_harness.BaseLoss` provides both; subclass it and implement ``compute``.
    """

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, step_frac: float = 0.0) -> torch.Tensor:
        ...


# -------------------------------------------------------------------------------------------- strategy


class Strategy(Protocol):
    """A strategy: ``plan(builder)`` declares the stages and result rows of one seed on a
    :class:`~w2s_harness.PlanBuilder`. It is called once per seed and must declare the same rows every time."""

    def plan(self, builder) -> None:
        ...
