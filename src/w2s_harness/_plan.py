"""Stage graphs: what a strategy builds and the runner executes.

A strategy never trains anything itself: it calls :class:`PlanBuilder` methods (``train``, ``label``,
``combine``, ``filter``) which return :class:`StageRef` handles and declare stages. Each stage's id is a
content hash of everything that determines its output (operation, component names and parameters,
data subset, seed, upstream stage ids, dataset identity, package version), so identical work declared by
two strategies, or by two runs, is computed once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._errors import ConfigError

SPLITS = ("train1", "train2", "test")
#: Bump when a stage operation's semantics change so stale caches are not reused.
STAGE_FORMAT = 1


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
        """Resolve to sorted row indices given a :class:`~w2s_harness._components.Splits`.

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


def as_subset(on: Subset | str) -> Subset:
    return on if isinstance(on, Subset) else Subset(on)


@dataclass(frozen=True)
class StageRef:
    """A handle to a declared stage: its id, what it produces, and a display name."""

    id: str
    op: str
    name: str


@dataclass
class Stage:
    """One unit of cached work. ``spec`` is JSON-able and (with ``op``) fully determines the output."""

    id: str
    op: str  # train | label | combine | filter
    kind: str  # display kind for results.json: train_weak, train_ceiling, train_transfer, label, ...
    name: str
    spec: dict[str, Any]
    deps: tuple[str, ...]
    seed: int


def stage_hash(op: str, spec: dict[str, Any], context: dict[str, Any]) -> str:
    blob = json.dumps({"op": op, "spec": spec, "ctx": context, "format": STAGE_FORMAT}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class ExperimentSpec:
    """One row of the results table: which stages are weak, ceiling and transfer for one seed."""

    name: str
    strategy: str
    loss: str
    weak: StageRef
    ceiling: StageRef
    transfer: StageRef
    rungs: list[tuple[str, StageRef]] = field(default_factory=list)  # (model name, train stage) along a ladder
    #: name of the experiment this one is compared against per seed (paired difference of PGR)
    baseline: str | None = None
    weak_model: str = ""
    strong_model: str = ""


@dataclass
class Comparison:
    a: str
    b: str


class PlanBuilder:
    """Collects the stages and experiment rows of one seed.

    :param config: the resolved :class:`~w2s_harness._config.RunConfig` (strategies read ``weak``, ``strong``,
        ``losses`` from it).
    :param seed: the seed; part of every stage hash.
    :param context: JSON-able identity shared by all stages (dataset identity, package version).
    """

    def __init__(self, config, seed: int, context: dict[str, Any], identify=None):
        self.config = config
        self.seed = seed
        self.context = context
        # identify(model_ref_dict) -> the model's resolved identity (defaults, checkpoint hash, tokenizer
        # version): part of the stage hash so a change in a model's code or defaults invalidates its stages.
        self.identify = identify or (lambda ref: ref)
        self.stages: dict[str, Stage] = {}
        self.experiments: list[ExperimentSpec] = []
        self.comparisons: list[Comparison] = []

    # ------------------------------------------------------------------ helpers
    def _add(self, op: str, kind: str, name: str, spec: dict[str, Any], deps: Iterable[StageRef]) -> StageRef:
        deps = tuple(deps)
        spec = {**spec, "seed": self.seed, "deps": [d.id for d in deps]}
        sid = stage_hash(op, spec, self.context)
        if sid not in self.stages:
            self.stages[sid] = Stage(sid, op, kind, name, spec, tuple(d.id for d in deps), self.seed)
        return StageRef(sid, op, self.stages[sid].name)

    @staticmethod
    def _component(ref) -> dict[str, Any]:
        if isinstance(ref, dict):
            return dict(ref)
        if isinstance(ref, str):
            return {"name": ref}
        return ref.as_dict()

    @staticmethod
    def model_label(ref) -> str:
        d = PlanBuilder._component(ref)
        layers = d.get("layers")
        return d["name"] + (f"@L{layers}" if layers is not None else "")

    # ------------------------------------------------------------------ stage declarations
    def train(
        self,
        model,
        *,
        on: Subset | str,
        labels: str | StageRef | Sequence[StageRef] = "gt",
        loss=None,
        kind: str = "train",
        name: str | None = None,
    ) -> StageRef:
        """Train ``model`` on subset ``on`` with ground truth (``labels="gt"``) or soft labels produced by label
        stages (a list is concatenated; together they must cover ``on``). ``loss`` defaults to ``xent``.
        The stage evaluates on the test split and predicts every split (so labelling is free later)."""
        sub = as_subset(on)
        label_refs: list[StageRef] = [] if labels == "gt" else ([labels] if isinstance(labels, StageRef) else list(labels))
        for ref in label_refs:
            if ref.op not in ("label", "combine", "filter"):
                raise ConfigError(f"stage {ref.name!r} produces no labels; pass the result of builder.label(...)")
        spec = {
            "model": self._component(model),
            "model_identity": self.identify(self._component(model)),
            "loss": self._component(loss or "xent"),
            "on": sub.as_dict(),
            "labels": "gt" if labels == "gt" else "soft",
        }
        display = name or f"{kind}:{self.model_label(model)}"
        return self._add("train", kind, display, spec, label_refs)

    def label(self, trained: StageRef, *, on: Subset | str, name: str | None = None) -> StageRef:
        """Soft labels (predicted probabilities) of ``trained`` on subset ``on``."""
        if trained.op != "train":
            raise ConfigError(f"builder.label needs a train stage, got {trained.op!r} stage {trained.name!r}")
        sub = as_subset(on)
        return self._add("label", "label", name or f"label:{trained.name}->{sub.describe()}", {"on": sub.as_dict()}, [trained])

    def combine(self, labels: Sequence[StageRef], *, how: str = "mean", weights: Sequence[float] | None = None,
                scored_by: Sequence[tuple[StageRef, Subset | str]] | None = None,
                name: str | None = None) -> StageRef:
        """Combine label stages over the same rows into one soft label (ensemble).

        ``how``: ``mean``; ``weighted`` by explicit ``weights``; or ``accuracy``: source i weighted by the
        accuracy of train stage ``scored_by[i][0]`` on the rows ``scored_by[i][1]``, against ground truth. Those
        rows must be held out from that stage's training (e.g. a bag's out-of-bag fold of train1)."""
        if how not in ("mean", "weighted", "accuracy"):
            raise ConfigError(f"combine how={how!r}: use 'mean', 'weighted' or 'accuracy'")
        spec: dict = {"how": how, "weights": list(weights) if weights is not None else None}
        deps = list(labels)
        if how == "accuracy":
            if scored_by is None or len(scored_by) != len(labels):
                raise ConfigError("combine how='accuracy' needs scored_by = one (train stage, held-out rows) per source")
            spec["holdout"] = [as_subset(rows).as_dict() for _, rows in scored_by]
            deps += [ref for ref, _ in scored_by]
        return self._add("combine", "combine", name or "combine", spec, deps)

    def filter(self, labels: StageRef, *, keep_frac: float, by: str = "confidence",
               reference: StageRef | None = None, name: str | None = None) -> StageRef:
        """Keep the ``keep_frac`` most useful weak labels: by ``confidence`` (max prob) or by ``learnability``
        (CE under the weak labels minus CE under ``reference`` labels, highest kept; the JEST idea)."""
        if not 0 < keep_frac <= 1:
            raise ConfigError(f"filter keep_frac must be in (0, 1], got {keep_frac}")
        if by not in ("confidence", "learnability"):
            raise ConfigError(f"filter by={by!r}: use 'confidence' or 'learnability'")
        if by == "learnability" and reference is None:
            raise ConfigError("filter by='learnability' needs reference=<label stage of a strong reference model>")
        deps = [labels] + ([reference] if reference is not None else [])
        return self._add("filter", "filter", name or f"filter:{by}", {"keep_frac": keep_frac, "by": by}, deps)

    # ------------------------------------------------------------------ report rows
    def experiment(self, name: str, **kwargs) -> ExperimentSpec:
        exp = ExperimentSpec(name=name, **kwargs)
        if any(e.name == name for e in self.experiments):
            raise ConfigError(f"strategy declared experiment {name!r} twice")
        self.experiments.append(exp)
        return exp

    def compare(self, a: str, b: str) -> None:
        """Report the per-seed paired difference ``PGR(a) - PGR(b)``."""
        self.comparisons.append(Comparison(a, b))
