"""Plans: the stage graph a strategy declares and the runner executes, and :func:`make_plan`, which builds it.

A strategy never trains anything itself: it calls :class:`PlanBuilder` methods (``train``, ``label``,
``combine``, ``filter``, ``op`` for a stage of any registered :class:`StageOp`, and the helpers ``reference``,
``transfers``, ``chain``) which return :class:`StageRef` handles and declare stages. Each stage's id is a
content hash of everything that determines its output (operation, component names and parameters,
data subset, seed, upstream stage ids, dataset identity, package version), so identical work declared by
two strategies, or by two runs, is computed once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .._config.config import Component
from .._contracts.errors import ConfigError, PluginError, W2SError
from .._engine.stage import (  # the stage data model, shared with the ops; re-exported (w2s_harness._plan.planner.Subset...)
    ARTIFACTS,
    RESERVED_PARAMS,
    SPLITS,  # noqa: F401
    TRAIN_KINDS,
    OpInput,
    Stage,
    StageKind,
    StageOp,
    StageRef,
    Subset,
    as_subset,
    ref_dict,
    ref_key,
)
from .._plugin_system.kinds import COMPONENT_SECTIONS, SECTION_KIND
from .._plugin_system.registry import jsonable

#: Bump when a stage operation's semantics change so stale caches are not reused.
STAGE_FORMAT = 2


def _preferred(name: str, other: str) -> bool:
    return (len(name), name) < (len(other), other)


def stage_identity(op: str, spec: dict[str, Any], context: dict[str, Any],
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document a stage id hashes (see :attr:`Stage.identity`). ``extra``: more top-level entries (a
    plugin op's code fingerprint and input layout); the built-in ops, whose code is the engine's, add none."""
    doc = {"op": op, "spec": spec, "context": context, "format": STAGE_FORMAT, **(extra or {})}
    return json.loads(json.dumps(doc, sort_keys=True, default=str))


def stage_hash(identity: dict[str, Any]) -> str:
    """16 hex digits of the sha256 of a stage identity."""
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Experiment:
    """One row of the results table for one seed: which stages are its weak, ceiling and transfer models.

    :ivar name: the row's name, unique in a plan (``"naive/xent"``).
    :ivar strategy: the strategy column (``"naive"``, ``"bootstrap"``, ``"direct"``...).
    :ivar loss: the loss column (a loss label, see :meth:`PlanBuilder.loss_label`).
    :ivar rungs: ``(model label, train stage)`` along a label chain, weak first (empty for a two-model row).
    :ivar baseline: the row this one is compared with per seed (paired PGR difference), if any.
    """

    name: str
    strategy: str
    loss: str
    weak: StageRef
    ceiling: StageRef
    transfer: StageRef
    rungs: list[tuple[str, StageRef]] = field(default_factory=list)
    baseline: str | None = None
    weak_model: str = ""
    strong_model: str = ""


@dataclass(frozen=True)
class Comparison:
    """A per-seed paired difference ``PGR(a) - PGR(b)`` between two rows."""

    a: str
    b: str


class Reference(NamedTuple):
    """The reference protocol's fixed stages (see :meth:`PlanBuilder.reference`)."""

    weak: StageRef
    labels: StageRef
    ceiling: StageRef


#: How rung i of a chain gets its labels from rung i-1 (see :meth:`PlanBuilder.chain`).
CHAIN_SCHEMES = ("same", "slices", "crossfit")


class PlanBuilder:
    """Collects the stages and result rows of one seed; a strategy's ``plan(builder)`` receives one.

    Read-only attributes a strategy may use: ``config`` (the resolved :class:`~w2s_harness.RunConfig`: its
    ``weak``, ``strong`` and ``losses``), ``seed``, ``dataset`` (the run's dataset component, created by the
    run's plugin manager but not loaded, or ``None`` for a builder made by hand: a strategy reads a dataset's
    own attributes from it, e.g. its ``prompt``).

    :param config: the resolved run config.
    :param seed: the seed; part of every stage id.
    :param context: JSON-able identity shared by all stages (dataset identity, engine code fingerprint).
    :param identify: ``identify(model_ref) -> identity`` of a model (resolved parameters, code fingerprint,
        checkpoint hash...), hashed into every stage that trains it, so a change in the model's code or defaults
        invalidates its stages.
    :param check_loss: ``check_loss(name, params)`` raises if a loss does not exist or rejects its parameters.
    :param identify_loss: ``identify_loss(loss_ref) -> identity`` of a loss, hashed like ``identify``'s.
    :param ops: the op :class:`~w2s_harness.Registry` (``pm.registry("op")``); default the built-in ops only.
    :param identify_op: ``identify_op(name) -> {module: digest}``, the code fingerprint of a registered op
        (empty for the built-in ops, whose code is the engine's); default computed from the registry.
    :param dataset: the run's dataset component (see ``dataset`` above).
    """

    def __init__(self, config, seed: int, context: dict[str, Any], identify=None, check_loss=None,
                 identify_loss=None, ops=None, identify_op=None, dataset=None):
        self.config = config
        self.seed = seed
        self.dataset = dataset
        self.context = context
        self.identify = identify or (lambda ref: ref)
        self.identify_loss = identify_loss or (lambda ref: ref)
        self._check_loss = check_loss
        self._ops = ops
        self._identify_op = identify_op
        self._op_codes: dict[str, dict[str, str]] = {}
        self._outputs: dict[str, str] = {}  # stage id -> the artifact it produces
        self.stages: dict[str, Stage] = {}
        self.experiments: list[Experiment] = []
        self.comparisons: list[Comparison] = []

    # ------------------------------------------------------------------ internals
    def _add(self, op: str, kind: StageKind | str, name: str, spec: dict[str, Any],
             deps: Iterable[StageRef], hashed: dict[str, Any] | None = None, *,
             extra: dict[str, Any] | None = None, inputs: tuple[tuple[str, int], ...] = (),
             output: str = "labels") -> StageRef:
        """Declare a stage. ``hashed`` overrides spec entries in the identity (a component reference is hashed
        as its full identity, while the spec keeps the reference the op creates it from); ``extra`` adds
        top-level identity entries (:func:`stage_identity`)."""
        deps = tuple(deps)
        spec = {**spec, "seed": self.seed, "deps": [d.id for d in deps]}
        identity = stage_identity(op, {**spec, **(hashed or {})}, self.context, extra)
        sid = stage_hash(identity)
        kind = StageKind(kind)
        have = self.stages.get(sid)
        if have is None:
            self.stages[sid] = Stage(sid, op, kind, name, spec, tuple(d.id for d in deps), self.seed, identity,
                                     inputs)
            self._outputs[sid] = output
        elif _preferred(name, have.name):
            # one stage declared twice under two names (e.g. by a row and its control): the name must not depend
            # on which was declared first, so the shorter one (then the alphabetically first) wins
            have.name = name
        return StageRef(sid, op, self.stages[sid].name)

    # ------------------------------------------------------------------ labels for display
    @staticmethod
    def model_label(ref: Component | dict | str) -> str:
        """A model's display name: its registry name, plus ``@L<n>`` when truncated with ``layers``."""
        d = ref_dict(ref)
        layers = d.get("layers")
        return d["name"] + (f"@L{layers}" if layers is not None else "")

    @staticmethod
    def loss_label(loss: Component | dict | str) -> str:
        """A loss's display name: its name plus its explicit parameters, ``logconf(aux_coef=0.3)``."""
        d = ref_dict(loss)
        params = ",".join(f"{k}={v}" for k, v in sorted(d.items()) if k != "name")
        return f"{d['name']}({params})" if params else d["name"]

    # ------------------------------------------------------------------ references from strategy options
    def model_ref(self, value: Any, option: str) -> dict[str, Any]:
        """A model given in a strategy option: ``"weak"`` / ``"strong"`` (the run's models, with their
        parameters), a registered name, or a table ``{name = "hf:...", layers = 1}``. ``option`` names the
        option in errors (``"strategy.rungs"``)."""
        if value == "weak":
            return self.config.weak.as_dict()
        if value == "strong":
            return self.config.strong.as_dict()
        if isinstance(value, str) and value:
            return {"name": value}
        if isinstance(value, dict) and isinstance(value.get("name"), str) and value["name"]:
            return dict(value)
        raise ConfigError(f"{option}: a model is a name (or 'weak'/'strong') or a table with a 'name', got {value!r}")

    def loss_ref(self, value: Any, option: str) -> Component:
        """A loss given in a strategy option (a name or a table ``{name = "logconf", aux_coef = 0.3}``), checked
        against the registry now; errors name ``option``."""
        return loss_option(value, option, self._check_loss)

    # ------------------------------------------------------------------ stage ops
    def op_registry(self):
        """The op :class:`~w2s_harness.Registry` this builder declares stages from."""
        if self._ops is None:
            from .._engine.ops import builtin_op_registry

            self._ops = builtin_op_registry()
        return self._ops

    def _op_code(self, name: str) -> dict[str, str]:
        if name not in self._op_codes:
            if self._identify_op is not None:
                self._op_codes[name] = dict(self._identify_op(name))
            else:
                from .._engine.codehash import CodeHasher

                entry, _ = self.op_registry().resolve(name)
                self._op_codes[name] = CodeHasher().component(entry.factory)
        return self._op_codes[name]

    def artifact(self, ref: StageRef) -> str:
        """What the stage ``ref`` produces: ``"model"`` or ``"labels"`` (see :data:`ARTIFACTS`)."""
        have = self._outputs.get(ref.id)
        if have is not None:
            return have
        entry, _ = self.op_registry().resolve(ref.op)
        return getattr(entry.factory, "output", "labels")

    def _bind(self, op: str, slots: Sequence[OpInput], inputs) -> dict[str, list[StageRef]]:
        """``inputs`` (a stage, a list filling the inputs in order, or ``{input name: stage(s)}``) per input."""
        names = [s.name for s in slots]
        if isinstance(inputs, StageRef):
            inputs = [inputs]
        if isinstance(inputs, Mapping):
            unknown = [k for k in inputs if k not in names]
            if unknown:
                raise ConfigError(f"op {op!r} has no input {unknown[0]!r}; its inputs: {', '.join(names) or '(none)'}")
            given = {k: [v] if isinstance(v, StageRef) else list(v or []) for k, v in inputs.items()}
        else:
            refs = list(inputs or [])
            if len(slots) == 1:
                given = {names[0]: refs}
            elif any(s.many for s in slots) and refs:
                raise ConfigError(f"op {op!r} has several inputs ({', '.join(names)}); pass inputs={{name: stage or "
                                  f"[stages]}}")
            elif len(refs) > len(slots):
                raise ConfigError(f"op {op!r} takes at most {len(slots)} input stages, got {len(refs)}")
            else:
                given = {s.name: [r] for s, r in zip(slots, refs)}
        bound: dict[str, list[StageRef]] = {}
        for slot in slots:
            refs = given.get(slot.name, [])
            for ref in refs:
                if not isinstance(ref, StageRef):
                    raise ConfigError(f"op {op!r}: input {slot.name!r} takes stages (builder results), got {ref!r}")
                have = self.artifact(ref)
                if have != slot.artifact:
                    hint = "; pass the result of builder.label(...)" if slot.artifact == "labels" else ""
                    raise ConfigError(f"op {op!r}: input {slot.name!r} needs stages that produce {slot.artifact}; "
                                      f"stage {ref.name!r} ({ref.op}) produces {have}{hint}")
            if len(refs) < slot.min or (slot.max is not None and len(refs) > slot.max):
                raise ConfigError(f"op {op!r}: input {slot.name!r} takes {slot.describe()} stage(s), got {len(refs)}")
            bound[slot.name] = refs
        return bound

    def op(self, op: str, *, inputs: StageRef | Sequence[StageRef] | Mapping[str, Any] = (),
           params: dict[str, Any] | None = None, kind: StageKind | str | None = None,
           name: str | None = None) -> StageRef:
        """Declare a stage of the registered op ``op`` (``w2s-harness list ops``): the built-in ``train``,
        ``label``, ``combine``, ``filter`` or a plugin's.

        :param op: the op's registered name.
        :param inputs: the upstream stages: a stage or a list (filling the op's :attr:`StageOp.inputs` in order;
            an op with one input takes them all), or ``{input name: stage or [stages]}``. Each must produce what
            its input declares (a label stage's ``labels``, a train stage's ``model``).
        :param params: the op's parameters (checked against its factory's signature; defaults are filled in and
            hashed into the stage id).
        :param kind: a :class:`StageKind` among the op's :attr:`StageOp.kinds`; default the first.
        :param name: display name; default the op's name.
        :returns: a handle; a stage producing ``labels`` can be passed as ``labels`` to :meth:`train`.
        """
        import inspect

        params = dict(params or {})
        registry = self.op_registry()
        entry, implicit = registry.resolve(op)
        instance = registry.create(op, **params)  # checks the parameter names, and the factory the values
        if not isinstance(instance, StageOp):
            raise PluginError(f"op {op!r} (plugin {entry.plugin!r}): its factory returned {type(instance).__name__}, "
                              f"not a StageOp; subclass w2s_harness.StageOp")
        if instance.output not in ARTIFACTS:
            raise PluginError(f"op {op!r}: output={instance.output!r}; use one of {', '.join(ARTIFACTS)}")
        raw: dict[str, Any] = {p.name: p.default for p in (entry.parameters() or {}).values()
                               if p.default is not inspect.Parameter.empty}
        raw.update(implicit)
        raw.update(params)
        bound = self._bind(op, tuple(instance.inputs), inputs)
        spec = instance.spec(raw, bound)
        reserved = [k for k in spec if k in RESERVED_PARAMS]
        if reserved:
            raise PluginError(f"op {op!r}: {reserved[0]!r} cannot be a parameter name (every stage spec has it)")
        spec = {str(k): jsonable(v) for k, v in spec.items()}
        kinds = tuple(StageKind(k) for k in instance.kinds) or (StageKind.OP,)
        kind = kinds[0] if kind is None else StageKind(kind)
        if kind not in kinds:
            raise ConfigError(f"op {op!r}: kind={kind.value!r}; use one of {', '.join(k.value for k in kinds)}")
        code = self._op_code(op)
        layout = tuple((slot.name, len(bound[slot.name])) for slot in instance.inputs)
        # an op outside the engine hashes its code and how its inputs split the deps; the built-ins add nothing
        extra = {"op_code": code, "inputs": dict(layout)} if code else None
        deps = [ref for slot in instance.inputs for ref in bound[slot.name]]
        return self._add(op, kind, name or op, spec, deps, instance.identity(spec, self) or None, extra=extra,
                         inputs=layout, output=instance.output)

    # ------------------------------------------------------------------ stage declarations
    def train(
        self,
        model: Component | dict | str,
        *,
        on: Subset | str,
        labels: str | StageRef | Sequence[StageRef] = "gt",
        loss: Component | dict | str | None = None,
        kind: StageKind | str = StageKind.TRAIN,
        name: str | None = None,
    ) -> StageRef:
        """Declare: train ``model`` on the rows ``on`` (the built-in ``train`` op).

        :param model: a model reference (``"glove-bow"``, ``{"name": "hf:...", "layers": 1}``, a
            :class:`~w2s_harness.Component`, or ``builder.config.strong``).
        :param on: a split name (``"train1"``, ``"train2"``) or a :class:`Subset`.
        :param labels: ``"gt"`` (ground truth) or the stage(s) producing ``labels`` to train on (``label``,
            ``combine``, ``filter`` or a plugin op's); several are concatenated and must not overlap. Rows they
            do not label (dropped by a filter) are skipped.
        :param loss: a loss reference; default ``xent``.
        :param kind: a :class:`StageKind` (must be one of the ``train_*`` kinds).
        :param name: display name; default ``"<kind>:<model label>"``.
        :returns: a handle; the stage evaluates on test and predicts every split, so labelling it is free.
        """
        kind = StageKind(kind)
        if kind not in TRAIN_KINDS:
            raise ConfigError(f"builder.train: kind={kind.value!r} is not a train kind; use one of "
                              f"{', '.join(sorted(k.value for k in TRAIN_KINDS))}")
        label_refs: list[StageRef] = [] if labels == "gt" else ([labels] if isinstance(labels, StageRef) else list(labels))
        for ref in label_refs:
            if not isinstance(ref, StageRef) or self.artifact(ref) != "labels":
                raise ConfigError(f"stage {getattr(ref, 'name', ref)!r} produces no labels; pass the result of "
                                  f"builder.label(...)")
        params = {"model": model, "loss": loss or "xent", "on": on, "labels": "gt" if labels == "gt" else "soft"}
        display = name or f"{kind.value}:{self.model_label(model)}"
        return self.op("train", inputs={"labels": label_refs}, params=params, kind=kind, name=display)

    def label(self, trained: StageRef, *, on: Subset | str, name: str | None = None) -> StageRef:
        """Declare: soft labels (predicted probabilities) of the train stage ``trained`` on the rows ``on`` (the
        built-in ``label`` op)."""
        if not isinstance(trained, StageRef) or trained.op != "train":
            raise ConfigError(f"builder.label needs a train stage, got {getattr(trained, 'op', None)!r} stage "
                              f"{getattr(trained, 'name', trained)!r}")
        return self.op("label", inputs={"trained": trained}, params={"on": on},
                       name=name or f"label:{trained.name}->{as_subset(on).describe()}")

    def combine(self, labels: Sequence[StageRef], *, how: str = "mean", weights: Sequence[float] | None = None,
                scored_by: Sequence[tuple[StageRef, Subset | str]] | None = None,
                name: str | None = None) -> StageRef:
        """Declare: combine label stages over the same rows into one soft label (an ensemble; the built-in
        ``combine`` op).

        :param labels: label stages over the same rows.
        :param weights: one weight per source, for ``how="weighted"``.
        :param scored_by: one ``(train stage, held-out rows)`` per source, for ``how="accuracy"``.
        :param name: display name.
        :param how: ``mean``; ``weighted`` by explicit ``weights``; or ``accuracy``: source i weighted by the
            accuracy of train stage ``scored_by[i][0]`` on the rows ``scored_by[i][1]`` against ground truth.
            Those rows must be held out from that stage's training (e.g. a bag's out-of-bag fold of train1)."""
        params: dict[str, Any] = {"how": how, "weights": list(weights) if weights is not None else None}
        inputs: dict[str, Any] = {"labels": list(labels)}
        if how == "accuracy":
            if scored_by is None or len(scored_by) != len(labels):
                raise ConfigError("combine how='accuracy' needs scored_by = one (train stage, held-out rows) per source")
            params["holdout"] = [as_subset(rows).as_dict() for _, rows in scored_by]
            inputs["scored_by"] = [ref for ref, _ in scored_by]
        return self.op("combine", inputs=inputs, params=params, name=name or "combine")

    def filter(self, labels: StageRef, *, keep_frac: float, by: str = "confidence",
               reference: StageRef | None = None, name: str | None = None) -> StageRef:
        """Declare: keep the ``keep_frac`` most useful labels of ``labels``: by ``confidence`` (max probability)
        or by ``learnability`` (CE under the weak labels minus CE under ``reference`` labels, highest kept); the
        built-in ``filter`` op. Any other rule is a plugin op: see :meth:`op`."""
        inputs = {"labels": labels, "reference": [reference] if reference is not None else []}
        return self.op("filter", inputs=inputs, params={"keep_frac": keep_frac, "by": by},
                       name=name or f"filter:{by}")

    # ------------------------------------------------------------------ result rows
    def experiment(self, name: str, *, strategy: str, loss: str, weak: StageRef, ceiling: StageRef,
                   transfer: StageRef, rungs: Sequence[tuple[str, StageRef]] = (), baseline: str | None = None,
                   weak_model: str | None = None, strong_model: str | None = None) -> Experiment:
        """Declare a result row: PGR of ``transfer`` between ``weak`` and ``ceiling`` (test accuracy).

        :param name: unique row name, by convention ``"<strategy>/<loss label>"``.
        :param strategy: the table's strategy column.
        :param loss: the table's loss column (use :meth:`loss_label`).
        :param weak: the weak train stage.
        :param ceiling: the strong-on-ground-truth train stage.
        :param transfer: the student's train stage.
        :param rungs: ``(model label, train stage)`` along a label chain, weak first; their accuracies are
            reported too.
        :param baseline: name of the row this one is compared with (also call :meth:`compare`).
        :param weak_model: display name of the weak model; default the run's ``[weak]`` label.
        :param strong_model: display name of the strong model; default the run's ``[strong]`` label.
        """
        if any(e.name == name for e in self.experiments):
            raise ConfigError(f"strategy declared experiment {name!r} twice")
        for what, ref in (("weak", weak), ("ceiling", ceiling), ("transfer", transfer)):
            if not isinstance(ref, StageRef) or self.artifact(ref) != "model":
                raise ConfigError(f"experiment {name!r}: {what} must be a stage that produces a model (a "
                                  f"builder.train(...) result or a plugin op with output = \"model\")")
        exp = Experiment(name=name, strategy=strategy, loss=loss, weak=weak, ceiling=ceiling, transfer=transfer,
                         rungs=list(rungs), baseline=baseline,
                         weak_model=self.model_label(self.config.weak) if weak_model is None else weak_model,
                         strong_model=self.model_label(self.config.strong) if strong_model is None else strong_model)
        self.experiments.append(exp)
        return exp

    def compare(self, a: str, b: str) -> None:
        """Report the per-seed paired difference ``PGR(a) - PGR(b)`` of two rows (declared once per pair)."""
        if Comparison(a, b) not in self.comparisons:
            self.comparisons.append(Comparison(a, b))

    # ------------------------------------------------------------------ the protocol's building blocks
    def reference(self, weak: Component | dict | str | None = None,
                  strong: Component | dict | str | None = None) -> Reference:
        """The reference protocol's fixed part: ``weak`` on train1 ground truth, its soft labels on train2, and
        ``strong`` on train2 ground truth (the ceiling). Models default to the run's ``[weak]`` / ``[strong]``.
        Every strategy that calls this shares these stages (same ids), so they are computed once."""
        weak_ref = self.train(self.config.weak if weak is None else weak, on="train1",
                              kind=StageKind.TRAIN_WEAK, name="weak")
        labels = self.label(weak_ref, on="train2", name="weak labels")
        ceiling = self.train(self.config.strong if strong is None else strong, on="train2",
                             kind=StageKind.TRAIN_CEILING, name="ceiling")
        return Reference(weak_ref, labels, ceiling)

    def transfers(self, strategy: str, reference: Reference, labels: StageRef | Sequence[StageRef] | None = None,
                  *, losses: Sequence[Component] | None = None, row_prefix: str | None = None,
                  compare_losses: bool = True, baseline: str | dict[str, str] | None = None) -> list[str]:
        """One transfer stage (the run's strong model on ``labels``) and one result row per loss.

        :param strategy: the rows' strategy column; rows are named ``"<row_prefix or strategy>/<loss label>"``.
        :param reference: from :meth:`reference` (weak and ceiling of every row).
        :param labels: what the student trains on; default ``reference.labels`` (the weak labels).
        :param losses: default the run's configured losses.
        :param row_prefix: row names start with this instead of ``strategy``.
        :param compare_losses: compare every row after the first with the first (e.g. ``logconf - xent``).
        :param baseline: compare every row with this row instead (or ``{loss label: row name}``).
        :returns: the row names, in loss order.
        """
        labels = reference.labels if labels is None else labels
        names = []
        for loss in self.config.losses if losses is None else losses:
            tag = self.loss_label(loss)
            transfer = self.train(self.config.strong, on="train2", labels=labels, loss=loss,
                                  kind=StageKind.TRAIN_TRANSFER,
                                  name=f"transfer[{tag}]" if strategy == "naive" else f"{strategy} transfer[{tag}]")
            name = f"{row_prefix or strategy}/{tag}"
            base = baseline.get(tag) if isinstance(baseline, dict) else baseline
            self.experiment(name, strategy=strategy, loss=tag, weak=reference.weak, ceiling=reference.ceiling,
                            transfer=transfer, baseline=base)
            names.append(name)
            if base is not None:
                self.compare(name, base)
        if baseline is None and compare_losses:
            for other in names[1:]:
                self.compare(other, names[0])
        return names

    def naive_rows(self) -> tuple[Reference, dict[str, str]]:
        """The reference stages and a ``naive/<loss>`` row per configured loss (the ``naive`` strategy's exact
        stages, so a strategy that reports against naive computes nothing twice); returns the reference and
        ``{loss label: row name}``."""
        ref = self.reference()
        rows = self.transfers("naive", ref)
        return ref, {self.loss_label(loss): row for loss, row in zip(self.config.losses, rows)}

    @staticmethod
    def check_chain(scheme: str, folds: int, owner: str) -> None:
        """Raise a one-line error unless ``scheme`` is a :data:`CHAIN_SCHEMES` value and ``folds`` an int >= 2."""
        if scheme not in CHAIN_SCHEMES:
            raise ConfigError(f"strategy {owner!r}: scheme={scheme!r}; use one of {', '.join(CHAIN_SCHEMES)}")
        if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
            raise ConfigError(f"strategy {owner!r}: folds must be an integer >= 2, got {folds!r}")

    def chain(self, models: Sequence[Component | dict | str], losses: Sequence[Component | dict | str], *,
              scheme: str = "crossfit",
              folds: int = 3, names: Sequence[str] | None = None) -> list[tuple[str, StageRef]]:
        """A label chain ``models[0] -> models[1] -> ... -> models[-1]``; returns ``(label, train stage)`` per rung.

        Rung 0 is the weak model trained on train1 ground truth; it labels train2 (out-of-sample). Rung i >= 1
        trains with ``losses[i-1]`` on the labels of rung i-1; the last rung's stage is the transfer stage.
        How an inner rung (0 < i < n-1) labels train2 for the next rung:

        * ``same``: rung i trains on all of train2 and labels it in-sample.
        * ``slices``: train2 is cut into n-1 disjoint slices; rung i trains on slice i-1 and labels slice i
          (out-of-sample). The last rung trains on only the last slice.
        * ``crossfit``: K = ``folds`` copies of rung i train on the complement of fold k of train2 and label
          fold k; the next rung trains on the union (every label out-of-sample). The rung's *reported* stage is
          rung i trained on all of train2 (the ``same`` model), which labels nothing.

        With two models every scheme is the reference protocol (the stages of :meth:`reference` + a transfer).
        """
        models = [ref_dict(m) for m in models]
        n = len(models)
        if n < 2 or len(losses) != n - 1:
            raise ConfigError(f"builder.chain needs >= 2 models and one loss per rung after the first; got "
                              f"{n} models and {len(losses)} losses")
        self.check_chain(scheme, folds, "chain")
        names = list(names) if names is not None else [self.model_label(m) for m in models]
        on = (lambda i: Subset("train2", i, n - 1)) if scheme == "slices" else (lambda i: Subset("train2"))
        weak = self.train(models[0], on="train1", kind=StageKind.TRAIN_WEAK, name="weak")
        rungs = [(names[0], weak)]
        labels: list[StageRef] = [self.label(weak, on=on(0), name="weak labels" if n == 2 or scheme != "slices"
                                             else "weak labels [slice 0]")]
        for i in range(1, n):
            last = i == n - 1
            tag = self.loss_label(losses[i - 1])
            ref = self.train(models[i], on=on(i - 1), labels=labels, loss=losses[i - 1],
                             kind=StageKind.TRAIN_TRANSFER if last else StageKind.TRAIN_RUNG,
                             name=f"{'transfer' if last else 'rung'}[{names[i]}<-{names[i - 1]}, {tag}]")
            rungs.append((names[i], ref))
            if last:
                break
            if scheme == "crossfit":
                fold_labels = []
                for k in range(folds):
                    fk = self.train(models[i], on=Subset("train2", k, folds, complement=True), labels=labels,
                                    loss=losses[i - 1], kind=StageKind.TRAIN_RUNG_FOLD,
                                    name=f"rung[{names[i]}<-{names[i - 1]}, fold {k}/{folds}]")
                    fold_labels.append(self.label(fk, on=Subset("train2", k, folds)))
                labels = fold_labels
            else:
                labels = [self.label(ref, on=on(i))]
        return rungs


def loss_option(value: Any, option: str, check=None) -> Component:
    """Parse a loss given in a strategy option (a name or a table with a ``name``) and, with ``check``, check it
    against the loss registry; every error names ``option``."""
    try:
        comp = Component.from_dict(option, value)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (a loss in strategy options is a name or a table with a 'name')") from None
    if check is not None:
        try:
            check(comp.name, comp.params)
        except W2SError as exc:
            raise type(exc)(f"{option}: {exc}") from None
    return comp


# ------------------------------------------------------------------------------------------- plans


@dataclass
class Plan:
    """Every seed's stages (deduplicated, in dependency order) and result rows."""

    stages: list[Stage]
    experiments: dict[int, list[Experiment]]
    comparisons: list[Comparison] = field(default_factory=list)
    #: the dataset instance the plan was made from (its rows are loaded already: the run reuses it)
    dataset: Any = field(default=None, repr=False, compare=False)


def validate_components(config, pm) -> None:
    """Check every named component exists and accepts its parameters (no data is loaded)."""
    if not config.losses:
        raise ConfigError("no loss configured; set [loss] name or --loss xent")
    for section in COMPONENT_SECTIONS:
        comps = config.losses if section == "loss" else [config.component(section)]
        for comp in comps:
            if section == "dataset":  # its easy-to-hard keys are the run's, not the factory's
                from .._data.difficulty import DifficultySplit, dataset_params

                DifficultySplit.from_params(comp.name, comp.params)
                pm.registry(SECTION_KIND[section]).check_params(comp.name, dataset_params(comp))
                continue
            pm.registry(SECTION_KIND[section]).check_params(comp.name, comp.params)


def make_plan(config, pm, *, content: bool = True) -> Plan:
    """Build the plan of ``config``: its strategy's stages for every seed, checked before anything runs.

    Raises a one-line error for an unknown component or parameter, a strategy that declares no row, seeds that
    declare different rows, or any loss named in the plan that cannot be created.

    :param content: ``False`` plans without loading the data or reading checkpoints (``validate --offline``):
        every name, parameter and the stage graph are checked, but stage ids leave out the content hashes, so
        such a plan must not be run."""
    from .identity import Identities

    validate_components(config, pm)
    strategy = pm.create("strategy", config.strategy.name, **config.strategy.params)
    from .._data import difficulty

    dataset = difficulty.create(pm, config.dataset, seeds=config.run.seeds)
    identities = Identities(pm, content=content)
    params = difficulty.dataset_params(config.dataset)
    context = {"dataset": identities.dataset(config.dataset.name, params, dataset), "engine": identities.engine()}
    if isinstance(dataset, difficulty.EasyToHard):
        # in the ids even offline (no instance identity there), so the two splits never share a stage
        context["split"] = {"kind": difficulty.EASY_TO_HARD, **dataset.split.as_dict()}
        if content:
            for seed in config.run.seeds:  # an empty part is a one-line error now, not after the weak model trained
                dataset.splits(seed)

    def check_loss(name: str, params: dict) -> None:
        pm.create("loss", name, **params)

    ops = pm.registry("op")

    stages: dict[str, Stage] = {}
    experiments: dict[int, list[Experiment]] = {}
    first: tuple | None = None  # (seed, row names, comparisons) of the first seed: every seed must match it
    for seed in config.run.seeds:
        builder = PlanBuilder(config, seed, context, identities.model, check_loss, identities.loss, ops=ops,
                              identify_op=identities.op, dataset=dataset)
        strategy.plan(builder)
        if not builder.experiments:
            raise ConfigError(f"strategy {config.strategy.name!r} declared no experiment for seed {seed}")
        shape = ([e.name for e in builder.experiments], builder.comparisons)
        if first is None:
            first = (seed, *shape)
        elif shape != first[1:]:
            raise ConfigError(
                f"strategy {config.strategy.name!r} declared different rows or comparisons for seed {seed} than for "
                f"seed {first[0]}; a strategy must declare the same rows for every seed")
        for sid, st in builder.stages.items():
            have = stages.setdefault(sid, st)
            if _preferred(st.name, have.name):
                have.name = st.name
        experiments[seed] = builder.experiments
    _check_stage_losses(stages.values(), check_loss)
    return Plan(list(stages.values()), experiments, first[2], dataset=dataset)


def _check_stage_losses(stages, check_loss) -> None:
    """Create every loss a train stage names once, so a typo in a strategy option (a rung's or an inner loss)
    fails before anything trains instead of after the weak model did. Models are checked by ``identify``."""
    seen = set()
    for stage in stages:
        ref = stage.spec.get("loss") if stage.op == "train" else None
        if not isinstance(ref, dict) or ref_key(ref) in seen:
            continue
        seen.add(ref_key(ref))
        check_loss(ref["name"], {k: v for k, v in ref.items() if k != "name"})
