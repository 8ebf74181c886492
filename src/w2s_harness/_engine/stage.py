"""Stages as the planner declares them and the ops run them: the contract between :mod:`w2s_harness._plan.planner` and :mod:`w2s_harness._engine.ops`.

:class:`Stage` (one unit of cached work), :class:`StageKind`, :class:`StageRef`, the rows a stage reads
(:class:`Subset`, whose :meth:`~Subset.indices` every op that reads rows runs), component references
(:func:`ref_key`) and the stage op contract (:class:`StageOp`, :class:`OpInput`). The planner (:mod:`w2s_harness._plan.planner`:
:class:`~w2s_harness.PlanBuilder`, :func:`~w2s_harness.make_plan`) builds on this module and the ops import only
it, so the planner is not engine code: editing it changes no stage's code fingerprint (see :mod:`w2s_harness._engine.codehash`), and
the planner may import the ops (the built-in op registry) without an import cycle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from .._contracts.errors import ConfigError, PluginError

if TYPE_CHECKING:  # annotations only
    from .._config.config import Component
    from .._plan.planner import PlanBuilder


SPLITS = ("train1", "train2", "test")


@dataclass(frozen=True)
class Subset:
    """Rows of one split: the whole split, slice ``part`` of ``parts`` (contiguous chunks of the split in
    its seeded order), or with ``complement=True`` everything in the split except that slice (cross-fitting).
    """

    split: str
    part: int = 0
    parts: int = 1
    complement: bool = False

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; use one of {', '.join(SPLITS)}")
        if not 0 <= self.part < self.parts:
            raise ConfigError(f"subset part {self.part} is outside 0..{self.parts - 1}")

    def describe(self) -> str:
        if self.parts == 1:
            return self.split
        return f"{self.split}[{'~' if self.complement else ''}{self.part}/{self.parts}]"

    def as_dict(self) -> dict[str, Any]:
        return {"split": self.split, "part": self.part, "parts": self.parts, "complement": self.complement}

    def indices(self, splits, seed: int = 0):
        """Resolve to sorted row indices given a :class:`~w2s_harness._contracts.components.Splits`.

        Slices are cut from a seeded permutation of the split, never from its index order, because datasets
        are often stored sorted (by class, by source) and contiguous chunks would then be unbalanced."""
        import numpy as np

        rows = getattr(splits, self.split)
        if self.parts == 1:
            return rows
        order = np.random.default_rng(np.random.SeedSequence([seed, 0x5EC7])).permutation(rows)
        chunks = np.array_split(order, self.parts)
        if self.complement:
            return np.sort(np.concatenate([c for i, c in enumerate(chunks) if i != self.part]))
        return np.sort(chunks[self.part])


def ref_key(ref: dict[str, Any]) -> str:
    """A hashable key of a component reference ``{"name": ..., **params}`` (models, losses in stage specs)."""
    return repr(sorted(ref.items()))


def as_subset(on: Subset | str | dict) -> Subset:
    """``on`` as a :class:`Subset`: a split name, a Subset, or a Subset's ``as_dict()`` (a stage spec's ``on``)."""
    if isinstance(on, Subset):
        return on
    if isinstance(on, dict):
        try:
            return Subset(**on)
        except TypeError:
            raise ConfigError(f"rows {on!r}: a subset table has keys split, part, parts, complement") from None
    if not isinstance(on, str):
        raise ConfigError(f"rows {on!r}: give a split name ({', '.join(SPLITS)}) or a Subset")
    return Subset(on)


def ref_dict(ref: Component | dict | str) -> dict[str, Any]:
    """A component reference as the flat ``{"name": ..., **params}`` dict stage specs store."""
    if isinstance(ref, dict):
        return dict(ref)
    if isinstance(ref, str):
        return {"name": ref}
    return ref.as_dict()


class StageKind(str, Enum):
    """What a stage is, for results.json, the report and observers (``stage.kind``). A ``str`` enum: it compares
    equal to its value (``StageKind.LABEL == "label"``) and serialises as it."""

    TRAIN_WEAK = "train_weak"  #: the weak model on train1 ground truth
    TRAIN_CEILING = "train_ceiling"  #: the strong model on train2 ground truth
    TRAIN_TRANSFER = "train_transfer"  #: the strong model on weak (or chained) labels: a row's transfer
    TRAIN_RUNG = "train_rung"  #: an inner rung of a label chain
    TRAIN_RUNG_FOLD = "train_rung_fold"  #: a cross-fitting copy of an inner rung (labels one fold)
    TRAIN_SUPERVISOR = "train_supervisor"  #: an ensemble member
    TRAIN_REFERENCE = "train_reference"  #: a model that scores labels (filter by learnability)
    TRAIN = "train"  #: any other train stage
    LABEL = "label"  #: soft labels of a trained model on a subset
    COMBINE = "combine"  #: several label sources combined into one
    FILTER = "filter"  #: labels kept by a score
    OP = "op"  #: a stage of a plugin op that declares no other kind

    def __str__(self) -> str:
        return self.value


#: The ops each kind may be declared with.
TRAIN_KINDS = frozenset(k for k in StageKind if k.value.startswith("train"))


@dataclass(frozen=True)
class StageRef:
    """A handle to a declared stage: its id, its op and its display name."""

    id: str
    op: str
    name: str


#: What a stage produces, and what an op's input accepts. Both are ``{"indices", "probs"}`` tables (numpy arrays:
#: ``(M,)`` int64 dataset row ids, ``(M, k)`` float32 probabilities):
#:
#: * ``model``: a trained model's predictions on every row of train1, train2, test (and the dataset's validation
#:   rows), with its test accuracy in the stage's metrics: what the built-in ``train`` op produces;
#: * ``labels``: soft labels of some rows, which a ``train`` stage can train on (``label``, ``combine``,
#:   ``filter`` and most plugin ops). A ``labels`` table may carry ``val_indices`` / ``val_probs``: the labels of
#:   the dataset's own validation rows, on which a transfer selects its checkpoint (pass them on).
ARTIFACTS = ("model", "labels")


#: Spec keys every stage has: parameter names an op may not use.
RESERVED_PARAMS = ("seed", "deps")


@dataclass(frozen=True)
class OpInput:
    """One input of a :class:`StageOp`: which upstream stages it takes and what they must produce.

    :param name: the input's name: the key in ``builder.op(..., inputs={name: ...})`` and in the ``inputs`` that
        :meth:`StageOp.run` receives.
    :param artifact: what every stage given here must produce: ``"labels"`` (default) or ``"model"`` (a train
        stage), see :data:`ARTIFACTS`.
    :param min: the fewest stages; ``0`` makes the input optional.
    :param max: the most stages; ``None`` for any number. With ``max == 1`` ``run`` receives one table (or
        ``None`` when an optional input is not given), otherwise a list of tables.
    """

    name: str
    artifact: str = "labels"
    min: int = 1
    max: int | None = 1

    def __post_init__(self):
        if self.artifact not in ARTIFACTS:
            raise PluginError(f"op input {self.name!r}: artifact={self.artifact!r}; use one of {', '.join(ARTIFACTS)}")
        if self.min < 0 or (self.max is not None and self.max < max(self.min, 1)):
            raise PluginError(f"op input {self.name!r}: min={self.min}, max={self.max} allow no stage count")

    @property
    def many(self) -> bool:
        """Whether the input takes a list of stages (``max`` is not 1)."""
        return self.max is None or self.max > 1

    def describe(self) -> str:
        if self.max is None:
            return f"at least {self.min}"
        return f"{self.min}" if self.min == self.max else f"{self.min} to {self.max}"


class StageOp:
    """Base class of a stage op: one kind of cached stage computation, registered by the ``w2s_register_ops`` hook.

    The registered factory (usually the subclass itself) takes the op's parameters as keywords, like every
    component: its signature is the parameters' schema, its defaults are resolved into the stage id, and it
    should raise :class:`~w2s_harness.ConfigError` for a bad value. A subclass sets the class attributes
    :attr:`inputs`, :attr:`output` and :attr:`kinds` and implements :meth:`run`; ``builder.op(name,
    inputs=..., params=...)`` declares a stage of it. The op's code (the module that defines it, with the
    modules of its package it imports) is hashed into the id of each of its stages, so editing it reruns them.
    The op is created again from the stage's spec where the stage runs (possibly another process), so its
    parameters must be JSON-able.
    """

    #: The upstream stages the op takes, in order (their ids are the stage's ``deps`` in this order).
    inputs: tuple[OpInput, ...] = ()
    #: What the op produces: ``"labels"`` (trainable soft labels) or ``"model"``, see :data:`ARTIFACTS`. A
    #: ``"model"`` stage is predictions, not weights: its table holds the probabilities of the rows it predicts
    #: (``builder.label`` reads train rows from it) and its metrics must carry ``test_acc`` (``test_auroc`` is
    #: optional, else computed from the test rows' probabilities), so it can be a result row's weak, ceiling or
    #: transfer stage (``builder.experiment``), e.g. a prompted model that is never fine-tuned.
    output: str = "labels"
    #: The :class:`StageKind` values its stages may have; the first is the default.
    kinds: tuple[StageKind, ...] = (StageKind.OP,)

    def spec(self, params: dict[str, Any], inputs: dict[str, list[StageRef]]) -> dict[str, Any]:
        """The stage's spec from every parameter the factory saw (its defaults filled in) and the declared inputs:
        what is hashed into the stage id and what the op is created from where it runs. Override to normalise a
        parameter (a split name to a subset table) or to check parameters against the inputs; the default
        returns ``params``."""
        return dict(params)

    def identity(self, spec: dict[str, Any], builder: PlanBuilder) -> dict[str, Any]:
        """Spec entries to hash in place of their values (e.g. a model reference as the model's full identity,
        ``builder.identify(ref)``); the default hashes the spec as it is."""
        return {}

    def resources(self) -> dict[str, Any]:
        """What one of its stages needs from an executor: any of ``num_cpus``, ``num_gpus``, ``memory`` (bytes or
        a size such as ``"4GB"``). The default, nothing, leaves it to the executor (ops are cheap)."""
        return {}

    def run(self, ctx, inputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Compute the stage.

        :param ctx: an :class:`~w2s_harness.OpContext`: the stage, its parameters, seed, data and splits.
        :param inputs: ``{input name: table}`` (``max == 1``; ``None`` for an optional input not given) or
            ``{input name: [tables]}``, each an ``{"indices", "probs", ...}`` dict of numpy arrays.
        :returns: ``(metrics, arrays)``: JSON-able metrics (recorded in results.json) and the output table,
            stored in the stage cache and handed to the stages downstream.
        """
        raise NotImplementedError(f"{type(self).__name__}.run")


@dataclass
class Stage:
    """One unit of cached work. ``spec`` is JSON-able and (with ``op``) fully determines the output.

    :ivar op: the registered :class:`StageOp` the runner executes: ``train``, ``label``, ``combine``, ``filter``
        or a plugin's op.
    :ivar kind: a :class:`StageKind`: what the stage means in the protocol.
    """

    id: str
    op: str
    kind: StageKind
    name: str
    spec: dict[str, Any]
    deps: tuple[str, ...]
    seed: int
    #: Everything hashed into ``id``: op, spec with component identities (resolved parameters, code fingerprints),
    #: seed, upstream ids, the dataset's identity and the engine's code fingerprint. ``run --dry-run`` diffs it.
    identity: dict[str, Any] = field(default_factory=dict, repr=False)
    #: ``(input name, number of stages)`` per input of the op, in order: how ``deps`` split over the op's
    #: :attr:`StageOp.inputs`.
    inputs: tuple[tuple[str, int], ...] = ()


__all__ = ["ARTIFACTS", "SPLITS", "OpInput", "Stage", "StageKind", "StageOp", "StageRecord", "StageRef", "Subset",
           "as_subset", "ref_key"]


@dataclass
class StageRecord:
    """What one stage produced (its arrays are stored beside it, not here).

    :ivar kind: a :class:`~w2s_harness.StageKind` value (``"train_weak"``, ``"label"``, ...).
    :ivar spec: the JSON-able spec the stage id hashes.
    :ivar metrics: JSON-able metrics (``test_acc`` for train stages); ``None`` if the stage did not finish.
    :ivar seconds: how long computing the stage took, in the run that computed it; a cached stage keeps that
        original time (loading it takes milliseconds and is not recorded); ``None`` if it did not finish.
    :ivar cached: loaded from the stage store instead of computed; ``None`` if it did not finish.
    """

    id: str
    op: str
    kind: str
    name: str
    seed: int
    spec: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    seconds: float | None = None
    cached: bool | None = None

    @property
    def finished(self) -> bool:
        return self.metrics is not None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["kind"] = str(self.kind)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StageRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
