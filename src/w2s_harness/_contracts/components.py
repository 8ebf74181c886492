"""The component contracts plugins implement: Dataset, FeatureModel / FineTuneModel, Loss, Strategy.

The core knows these protocols, never a concrete dataset or model. Everything here is import-light
(no torch at module import) so ``w2s-harness list`` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import ConfigError
from .validate import check_choice, check_int, check_number

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
    """Index arrays into :class:`TextData` for one seed. Disjoint; ``test`` never touches training.

    ``val``: rows the dataset itself holds out for checkpoint selection (EleutherAI/w2s's ``n_val`` rows, in a
    recipe's ``eleuther`` mode), in neither half; ``None`` (most datasets): early stopping then holds out
    ``val_frac`` of each stage's own rows."""

    train1: np.ndarray
    train2: np.ndarray
    test: np.ndarray
    val: np.ndarray | None = None


@runtime_checkable
class Dataset(Protocol):
    """A dataset plugin. Subclass :class:`w2s_harness._data.datasets.BaseDataset` for the split logic."""

    name: str

    def load(self) -> TextData:
        """Load (and memoise) the formatted rows the run uses (its test split and training pool)."""

    def splits(self, seed: int) -> Splits:
        """Deterministic train1/train2/test indices for ``seed``."""

    def identity(self) -> dict[str, Any]:
        """JSON-able parameters that determine this dataset's content and splits (for stage hashes)."""


# -------------------------------------------------------------------------------------------- models


#: Head solvers of :class:`TrainConfig` (``lbfgs`` applies to linear heads on cached features only).
SOLVERS = ("adamw", "lbfgs")
#: How a head reads soft (weak) labels: as they are, or as their argmax one-hot rows.
WEAK_LABELS = ("soft", "hard")
#: ``lbfgs`` defaults: the L2 strength in scikit-learn's convention, the iteration cap per solve and the gradient
#: tolerance (scikit-learn's ``tol``). A model may pass its own default ``C`` (``check_train_config(default_C=)``).
LBFGS_C = 1.0
LBFGS_MAX_ITER = 500
LBFGS_TOL = 1e-4
#: The parameters only mini-batch AdamW training reads: naming one selects ``solver = "adamw"`` when the solver is
#: left to its default (``solver=None``), and is an error with ``solver = "lbfgs"``.
ADAMW_PARAMS = ("lr", "epochs", "batch_size", "weight_decay", "warmup_frac", "warmup_steps", "adam_beta1",
                "adam_beta2", "max_grad_norm")
#: Checkpoint selection of :class:`TrainConfig`: none (train to the end, the reference), on a held-out slice of the
#: stage's training rows scored against its own (weak) labels, or against ground truth (an oracle for a transfer).
EARLY_STOP = ("none", "weak_val", "gt_val")
#: Default fraction of a stage's training rows held out for early stopping.
EARLY_STOP_VAL_FRAC = 0.2
#: What early stopping selects the checkpoint by on the held-out slice (accuracy; AUROC as EleutherAI/w2s).
VAL_METRICS = ("accuracy", "auroc")
#: AdamW's default betas (torch's and Hugging Face's); EleutherAI/w2s sets ``adam_beta2 = 0.95``.
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999


@dataclass
class TrainConfig:
    """Optimisation settings for one training stage.

    ``solver = "adamw"``: mini-batch AdamW + cosine schedule with linear warmup (``lr``, ``epochs``,
    ``batch_size``, ``weight_decay``, ``warmup_frac`` or ``warmup_steps``, ``adam_beta1``/``adam_beta2``,
    ``max_grad_norm``; ``minibatch_size`` for gradient accumulation). ``solver = "lbfgs"`` (linear heads on cached features): a
    full-batch L-BFGS solve of ``C * sum_i loss_i + 0.5 * ||W||^2`` on standardised features (``C``,
    ``max_iter``, ``tol``; see :mod:`w2s_harness._engine.probe`). ``weak_labels = "hard"`` trains on the argmax of soft
    targets (either solver).

    Build it with :func:`w2s_harness.check_train_config`, which validates every field and names the owner in
    the error, rather than with the constructor.
    """

    lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 32
    weight_decay: float = 0.0
    warmup_frac: float = 0.0
    eval_every_epoch: bool = True
    solver: str = "adamw"
    C: float = LBFGS_C
    max_iter: int = LBFGS_MAX_ITER
    tol: float = LBFGS_TOL
    weak_labels: str = "soft"
    #: checkpoint selection (:data:`EARLY_STOP`) on a held-out ``val_frac`` of the training rows, seeded per seed
    early_stop: str = "none"
    val_frac: float = EARLY_STOP_VAL_FRAC
    #: training-curve points: every ``curve_every`` optimiser steps (AdamW steps, L-BFGS iterations); 0: at the end
    #: of every epoch (AdamW), every ``_probe.CURVE_EVERY`` iterations (L-BFGS)
    curve_every: int = 0
    #: learning-rate warmup in optimiser steps (replaces ``warmup_frac``; EleutherAI/w2s: 40); None: ``warmup_frac``
    warmup_steps: int | None = None
    #: AdamW's betas (EleutherAI/w2s: ``adam_beta2 = 0.95``)
    adam_beta1: float = ADAM_BETA1
    adam_beta2: float = ADAM_BETA2
    #: clip the gradient's global L2 norm to this before each step (Hugging Face's Trainer: 1.0); 0: no clipping
    max_grad_norm: float = 0.0
    #: what early stopping selects on (:data:`VAL_METRICS`): accuracy, or AUROC (EleutherAI/w2s's ``val_auroc``)
    val_metric: str = "accuracy"
    #: gradient accumulation: run each batch as micro-batches of this many rows, the loss called on each and the
    #: gradients summed (weighted by rows) before the one optimiser step, as Hugging Face's Trainer; None: one
    #: forward and one loss over the whole batch. Set by a fine-tuning model (``hf:``'s ``grad_accumulation``).
    minibatch_size: int | None = None


def check_train_config(
    owner: str,
    *,
    lr: float,
    epochs: int,
    batch_size: int,
    weight_decay: float = 0.0,
    warmup_frac: float = 0.0,
    solver: str | None = "adamw",
    C: float | None = None,
    max_iter: int | None = None,
    tol: float | None = None,
    weak_labels: str = "soft",
    early_stop: str = "none",
    val_frac: float | None = None,
    curve_every: int = 0,
    warmup_steps: int | None = None,
    adam_beta1: float | None = None,
    adam_beta2: float | None = None,
    max_grad_norm: float | None = None,
    val_metric: str = "accuracy",
    adamw_given: Sequence[str] = (),
    default_C: float = LBFGS_C,
) -> TrainConfig:
    """A validated :class:`TrainConfig`; a bad value raises a one-line :class:`~w2s_harness.ConfigError` naming
    ``owner`` (e.g. ``"model 'glove-bow'"``) and the parameter.

    ``solver=None`` is the linear probes' default: ``"lbfgs"``, unless the model's user set a parameter only AdamW
    reads (:data:`ADAMW_PARAMS`; the model passes the names it was given as ``adamw_given``), which keeps such a
    configuration on ``"adamw"``. Early stopping and curve points apply to either solver. An explicit ``solver = "lbfgs"``
    with one of them is an error. ``C``, ``max_iter`` and ``tol`` apply to ``"lbfgs"`` only: ``None`` takes the
    default (``default_C``, :data:`LBFGS_MAX_ITER`, :data:`LBFGS_TOL`), and giving one with ``"adamw"`` is an
    error (it would change nothing but the stage ids)."""

    def positive(key, v):
        return check_number(v, key, owner=owner, lo=0, lo_open=True)

    lr = positive("lr", lr)
    adamw_given = [k for k in ADAMW_PARAMS if k in adamw_given]
    if solver is None:
        solver = "adamw" if adamw_given else "lbfgs"
    check_choice(solver, "solver", SOLVERS, owner=owner)
    if solver == "lbfgs" and adamw_given:
        raise ConfigError(
            f'{owner}: {", ".join(adamw_given)} only {"applies" if len(adamw_given) == 1 else "apply"} to '
            f'solver = "adamw" (mini-batch training); remove {"it" if len(adamw_given) == 1 else "them"} or set '
            'solver = "adamw"'
        )
    check_choice(weak_labels, "weak_labels", WEAK_LABELS, owner=owner)
    given = [k for k, v in (("C", C), ("max_iter", max_iter), ("tol", tol)) if v is not None]
    if solver != "lbfgs" and given:
        verb = "applies" if len(given) == 1 else "apply"
        raise ConfigError(f'{owner}: {", ".join(given)} only {verb} to solver = "lbfgs"; set solver = "lbfgs"')
    check_choice(early_stop, "early_stop", EARLY_STOP, owner=owner)
    if val_frac is not None and early_stop == "none":
        raise ConfigError(f'{owner}: val_frac only applies with early_stop = "weak_val" or "gt_val"')
    if val_frac is not None:
        check_number(val_frac, "val_frac", owner=owner, lo=0, hi=1, lo_open=True, hi_open=True)
    check_choice(val_metric, "val_metric", VAL_METRICS, owner=owner)
    if val_metric != "accuracy" and early_stop == "none":
        raise ConfigError(f'{owner}: val_metric only applies with early_stop = "weak_val" or "gt_val"')
    if val_metric != "accuracy" and solver == "lbfgs":
        raise ConfigError(f'{owner}: val_metric = {val_metric!r} applies to solver = "adamw" only (an L-BFGS probe '
                          "selects on accuracy)")
    if warmup_steps is not None:
        warmup_steps = check_int(warmup_steps, "warmup_steps", owner=owner, lo=0)
        if check_number(warmup_frac, "warmup_frac", owner=owner, lo=0, hi=1):
            raise ConfigError(f"{owner}: give warmup_frac or warmup_steps, not both")
    betas = {}
    for key, value, default in (("adam_beta1", adam_beta1, ADAM_BETA1), ("adam_beta2", adam_beta2, ADAM_BETA2)):
        betas[key] = default if value is None else check_number(value, key, owner=owner, lo=0, hi=1, hi_open=True)
    return TrainConfig(
        lr=lr,
        epochs=check_int(epochs, "epochs", owner=owner, lo=0),
        batch_size=check_int(batch_size, "batch_size", owner=owner, lo=1),
        weight_decay=check_number(weight_decay, "weight_decay", owner=owner, lo=0),
        warmup_frac=check_number(warmup_frac, "warmup_frac", owner=owner, lo=0, hi=1),
        solver=solver,
        C=positive("default_C", default_C) if C is None else positive("C", C),
        max_iter=LBFGS_MAX_ITER if max_iter is None else check_int(max_iter, "max_iter", owner=owner, lo=1),
        tol=LBFGS_TOL if tol is None else positive("tol", tol),
        weak_labels=weak_labels,
        early_stop=early_stop,
        val_frac=EARLY_STOP_VAL_FRAC if val_frac is None else float(val_frac),
        curve_every=check_int(curve_every, "curve_every", owner=owner, lo=0),
        warmup_steps=warmup_steps,
        **betas,
        max_grad_norm=0.0 if max_grad_norm is None else check_number(max_grad_norm, "max_grad_norm", owner=owner, lo=0),
        val_metric=val_metric,
    )


#: The head-training parameters every built-in model takes (through ``**head``, see :func:`takes_head_parameters`)
#: and the defaults its signature shows: ``None`` for those whose default is the model's own (its ``lr``, ...) or
#: is decided from what was given (the probe ``solver``, see :func:`check_train_config`).
HEAD_PARAMETERS: dict[str, Any] = {
    "lr": None, "epochs": None, "batch_size": None, "weight_decay": None, "warmup_frac": None,
    "warmup_steps": None, "adam_beta1": None, "adam_beta2": None, "max_grad_norm": None,
    "solver": None, "C": None, "max_iter": None, "tol": None,
    "weak_labels": "soft", "early_stop": "none", "val_frac": None, "val_metric": "accuracy", "curve_every": 0,
}


def takes_head_parameters(init: Callable[..., None]) -> Callable[..., None]:
    """Decorate a model's ``__init__(self, ..., **head)``: its signature then lists the :data:`HEAD_PARAMETERS` it
    does not name itself as keyword-only parameters, so the registry checks, suggests and resolves them (stage
    ids hash the resolved values) exactly as if they were spelled out, and every model need not repeat them.
    Build the training config from ``head`` with :func:`head_train_config`."""
    import inspect

    sig = inspect.signature(init)
    own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    names = {p.name for p in own}
    extra = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
             for k, v in HEAD_PARAMETERS.items() if k not in names]
    init.__signature__ = sig.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
    return init


def head_train_config(owner: str, head: dict[str, Any], *, lr: float, epochs: int, batch_size: int,
                      weight_decay: float = 0.0, warmup_frac: float = 0.0, solver: str | None = None,
                      default_C: float = LBFGS_C) -> TrainConfig:
    """:func:`check_train_config` for a model's ``**head`` parameters (:data:`HEAD_PARAMETERS`): a value given
    there wins over the model's defaults passed here, and the AdamW parameters given are reported as
    ``adamw_given`` (so a linear probe whose user set one trains with AdamW). An unknown key is a one-line
    :class:`ConfigError` with a suggestion."""
    from .errors import did_you_mean

    for key in head:
        if key not in HEAD_PARAMETERS:
            raise ConfigError(f"{owner} has no parameter {key!r}.{did_you_mean(key, HEAD_PARAMETERS)} "
                              f"Head parameters: {', '.join(HEAD_PARAMETERS)}")
    given = {k: v for k, v in head.items() if v is not None}
    model_defaults = {"lr": lr, "epochs": epochs, "batch_size": batch_size, "weight_decay": weight_decay,
                      "warmup_frac": warmup_frac}
    return check_train_config(
        owner,
        **{k: given.get(k, v) for k, v in model_defaults.items()},
        adamw_given=[k for k in ADAMW_PARAMS if k in given],
        solver=given.get("solver", solver),
        default_C=default_C,
        **{k: head.get(k, HEAD_PARAMETERS[k]) for k in ("C", "max_iter", "tol", "weak_labels", "early_stop",
                                                        "val_frac", "val_metric", "curve_every", "warmup_steps",
                                                        "adam_beta1", "adam_beta2", "max_grad_norm")},
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
