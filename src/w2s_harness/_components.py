"""The component contracts plugins implement: Dataset, ModelSpec, Loss, Strategy.

The core knows these protocols, never a concrete dataset or model. Everything here is import-light
(no torch at module import) so ``w2s-harness list`` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

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
        """Load (and memoise) the full formatted dataset."""

    def splits(self, seed: int) -> Splits:
        """Deterministic train1/train2/test indices for ``seed``."""

    def identity(self) -> dict[str, Any]:
        """JSON-able parameters that determine this dataset's content and splits (for stage hashes)."""


# -------------------------------------------------------------------------------------------- models


@dataclass
class TrainConfig:
    """Optimisation settings for one training stage (AdamW + cosine schedule with linear warmup)."""

    lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 32
    weight_decay: float = 0.0
    warmup_frac: float = 0.0
    eval_every_epoch: bool = True


@runtime_checkable
class ModelSpec(Protocol):
    """A model plugin: a factory for a trainable classifier.

    Two kinds:

    * ``linear_probe = True``: a frozen backbone turns texts into features once (cached by the runner per
      run directory, keyed by :meth:`feature_key`), and :meth:`build` returns a head ``(B, d) -> (B, k)``.
    * ``linear_probe = False``: :meth:`build` returns a module whose ``forward(list_of_texts)`` returns
      logits ``(B, k)``; the whole backbone is fine-tuned.
    """

    name: str
    linear_probe: bool
    train_config: TrainConfig

    def identity(self) -> dict[str, Any]:
        """JSON-able parameters that determine the trained model (for stage hashes)."""

    def feature_key(self) -> str:
        """Cache key of the features (linear probe only): same key -> same features for the same texts."""

    def features(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> dict[str, np.ndarray]:
        """Embed ``texts`` (linear probe only): ``{feature_key: (N, d) float32 array}``.

        The dict holds at least this model's own :meth:`feature_key` and may hold more: e.g. the ``hf:`` model
        returns every layer of one encoder pass, each under the key a model truncated at that layer would have,
        so one pass serves a whole ladder. :class:`w2s_harness._features.FeatureCache` stores every entry.
        ``progress(n)`` advances a bar by ``n`` texts. Models may accept an optional ``device`` keyword.
        """

    def build(self, n_classes: int, in_features: int | None, device: torch.device) -> torch.nn.Module:
        """A fresh classifier on ``device``: zero-initialised linear head (the reference)."""


# ---------------------------------------------------------------------------------------------- loss


class Loss(Protocol):
    """``loss(logits (N,k), targets (N,k) soft or (N,) ints, step_frac in [0,1]) -> scalar tensor``."""

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, step_frac: float = 0.0) -> torch.Tensor:
        ...


# -------------------------------------------------------------------------------------------- strategy


@dataclass(frozen=True)
class ComponentRef:
    """A component named in config: registry name + parameters (what goes into stage hashes)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}


class Strategy(Protocol):
    """A strategy plugin: ``plan(builder)`` adds stages for one seed via the :class:`~w2s_harness._plan.PlanBuilder`."""

    def plan(self, builder) -> None:
        ...
