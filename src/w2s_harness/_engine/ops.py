"""What each stage operation does: the built-in ops train, label, combine, filter, and how any op runs.

Stage ops are a plugin kind (:class:`~w2s_harness.StageOp`, registered by ``w2s_register_ops``); the built-in ones
are registered by this module's own ``w2s_register_ops`` (the plugin ``builtin:ops``), their code being the engine's.
Each built-in op function takes the :class:`RunContext`, the stage and the finished upstream stages
(``(StageRecord, arrays)`` pairs), and returns ``(metrics, arrays)``: JSON-able metrics and numpy arrays stored in
the stage cache. Soft labels travel between stages as ``{"indices": (M,) int64 row ids, "probs": (M, k) float32}``.
:func:`execute` creates a stage's op from the registry and its spec, and hands it an :class:`OpContext`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._contracts.components import check_model, is_feature_model
from .._contracts.errors import ConfigError, DataError, PluginError, ResourceError
from .._data.datasets import split_rows
from ..hookspecs import hookimpl
from .stage import (
    RESERVED_PARAMS,
    TRAIN_KINDS,
    OpInput,
    Stage,
    StageKind,
    StageOp,
    StageRecord,
    Subset,
    as_subset,
    ref_dict,
    ref_key,
)


@dataclass
class RunContext:
    """Per-run state the ops share: components (created once), data, splits, features and the device."""

    pm: Any
    config: Any
    output_dir: Path
    progress: Callable[..., Any] | None = None  # progress(description, total, unit="rows") -> advance(n) callable
    #: Raises StopRequested once the run was asked to stop; long inner loops (the encoder pass) call it at safe
    #: points. None in worker processes (the parent decides when to stop).
    check_stop: Callable[[], None] | None = None
    _dataset: Any = None
    _data: Any = None
    _splits: dict = field(default_factory=dict)
    _models: dict = field(default_factory=dict)
    _features: Any = None
    _device: Any = None
    _feature_salts: dict = field(default_factory=dict)
    _ops: dict = field(default_factory=dict)

    @property
    def dataset(self):
        if self._dataset is None:
            c = self.config.dataset
            from .._data.difficulty import create

            self._dataset = create(self.pm, c, seeds=self.config.run.seeds)
        return self._dataset

    @property
    def data(self):
        if self._data is None:
            self._data = self.dataset.load()
        return self._data

    def splits(self, seed: int):
        if seed not in self._splits:
            self._splits[seed] = self.dataset.splits(seed)
        return self._splits[seed]

    def model(self, ref: dict):
        key = ref_key(ref)
        if key not in self._models:
            params = {k: v for k, v in ref.items() if k != "name"}
            self._models[key] = check_model(self.pm.create("model", ref["name"], **params), ref["name"])
        return self._models[key]

    def op(self, stage: Stage) -> StageOp:
        """The stage's op, created from the op registry with the stage's parameters (memoised)."""
        params = op_params(stage)
        key = (stage.op, ref_key(params))
        if key not in self._ops:
            self._ops[key] = self.pm.create("op", stage.op, **params)
        return self._ops[key]

    def loss(self, ref: dict):
        # A fresh loss per stage: some losses (logconf with a rolling buffer) keep state across batches.
        params = {k: v for k, v in ref.items() if k != "name"}
        return self.pm.create("loss", ref["name"], **params)

    @property
    def device(self):
        if self._device is None:
            import torch

            want = self.config.run.device
            if want == "auto":
                want = "cuda" if torch.cuda.is_available() else "cpu"
            elif want.startswith("cuda") and not torch.cuda.is_available():
                raise ConfigError(f"run.device={want!r} but no CUDA device is visible; use --device cpu")
            self._device = torch.device(want)
        return self._device

    @property
    def features(self):
        if self._features is None:
            from .._data.features import FeatureCache

            self._features = FeatureCache(self.output_dir / "features", chunk_rows=self.config.run.feature_chunk)
        return self._features

    def _feature_data(self, model, data=None):
        """The data, its fingerprint salted with the code fingerprint of the model's class: the feature cache is
        keyed by (feature key, fingerprint), and a model whose ``features`` code changed must not be served the
        features its old code computed (its stages rerun because their ids hash that code, see ``_codehash``)."""
        import dataclasses
        import hashlib
        import json

        from .codehash import CodeHasher

        cls = type(model)
        if cls not in self._feature_salts:
            code = CodeHasher().component(cls)
            self._feature_salts[cls] = hashlib.sha256(json.dumps(code, sort_keys=True).encode()).hexdigest()[:16]
        data = self.data if data is None else data
        return dataclasses.replace(data, fingerprint=f"{data.fingerprint}|code={self._feature_salts[cls]}")

    def inputs(self, spec_model, rows):
        """Model inputs for ``rows``: cached features (a :class:`FeatureModel`) or the texts (fine-tuning). A choice
        task (:mod:`w2s_harness._data.choice`): ``(R, n, d)`` features of its (prompt, candidate) texts, or ``R`` tuples of them."""
        from .._data.choice import is_choice

        choice = is_choice(self.data)
        if is_feature_model(spec_model):
            data, index = self.data.pair_table() if choice else (self.data, None)
            advance = None
            if self.progress is not None:
                advance = self.progress(f"embedding with {spec_model.name}", len(data))
            feats = self.features.get(spec_model, self._feature_data(spec_model, data), progress=advance,
                                      device=self.device, check_stop=self.check_stop)
            return feats[rows] if index is None else feats[index[rows]]
        texts = self.data.pairs if choice else self.data.texts
        return [texts[i] for i in rows]


def takes(fn: Callable[..., Any], args: tuple) -> bool:
    """Whether ``fn`` accepts ``args`` positionally (True when its signature cannot be read)."""
    import inspect

    try:
        inspect.signature(fn).bind(*args)
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): assume it does
        return True
    return True


def one_hot(labels, k: int):
    import numpy as np

    out = np.zeros((len(labels), k), dtype=np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def take_rows(table: dict, rows):
    """``table["probs"]`` for the dataset rows ``rows``, looked up through ``table["indices"]``."""
    pos = {int(r): i for i, r in enumerate(table["indices"])}
    return table["probs"][[pos[int(r)] for r in rows]]


def _merge_labels(upstream: list[dict]):
    """Concatenate label artifacts into one (indices, probs) table; a row labelled twice is an error."""
    import numpy as np

    idx = np.concatenate([u["indices"] for u in upstream])
    probs = np.concatenate([u["probs"] for u in upstream])
    if len(np.unique(idx)) != len(idx):
        raise ConfigError("label stages passed to one train stage overlap: each row must be labelled once")
    return idx, probs


def op_train(ctx: RunContext, stage: Stage, upstream: list[tuple[StageRecord, dict]]):
    import numpy as np

    from .._data.choice import choice_module, is_choice
    from . import training

    spec = stage.spec
    data, splits = ctx.data, ctx.splits(stage.seed)
    rows = Subset(**spec["on"]).indices(splits, stage.seed)
    k = data.n_classes
    if spec["labels"] == "gt":
        targets = one_hot(data.labels[rows], k)
    else:
        idx, probs = _merge_labels([arrays for _, arrays in upstream])
        pos = {int(r): i for i, r in enumerate(idx)}
        keep = np.array([int(r) in pos for r in rows], dtype=bool)
        rows = rows[keep]  # a filter stage may have dropped rows
        if len(rows) == 0:
            raise DataError(f"stage {stage.name!r}: no labelled rows left to train on; raise filter keep_frac")
        targets = probs[[pos[int(r)] for r in rows]].astype(np.float32)
    spec_model = ctx.model(spec["model"])
    loss = ctx.loss(spec["loss"])
    val_rows = dataset_val(splits)
    # predictions cover the dataset's own validation rows too: label stages carry the weak labels of those rows,
    # on which a transfer selects its checkpoint (EleutherAI/w2s's weak-labelled val split)
    every = np.concatenate([splits.train1, splits.train2, splits.test, val_rows])
    x_all = ctx.inputs(spec_model, every)
    pos_all = {int(r): i for i, r in enumerate(every)}
    take = (lambda rr: x_all[[pos_all[int(r)] for r in rr]]) if not isinstance(x_all, list) else (
        lambda rr: [x_all[pos_all[int(r)]] for r in rr])
    in_features = None if isinstance(x_all, list) else int(x_all.shape[-1])
    if is_choice(data):  # one scalar head shared by the n candidates (_choice)
        module = choice_module(spec_model, k, in_features, ctx.device)
    else:
        module = (spec_model.head(k, in_features, ctx.device) if in_features is not None
                  else spec_model.classifier(k, ctx.device))
    cfg = spec_model.train_config
    policy = getattr(cfg, "early_stop", "none")
    val = {}
    if policy != "none" and len(val_rows):
        # the dataset holds out its own validation rows (a recipe in eleuther mode): every curve point is scored
        # on them, against ground truth for a stage trained on ground truth or with gt_val, else against the weak
        # labels of those rows that the label stages carry (as EleutherAI/w2s's transfer selects on val)
        own = spec["labels"] == "gt" or policy == "gt_val"
        val_targets = one_hot(data.labels[val_rows], k) if own else _val_labels(stage, upstream, val_rows)
        val = {"val_inputs": take(val_rows), "val_targets": val_targets}
    elif policy != "none":
        # a seeded slice of the rows, held out from training, scores every curve point: against the stage's own
        # labels (weak_val: what a weak-to-strong setting has) or ground truth (gt_val: an oracle for a transfer)
        keep, held = training.validation_split(len(rows), cfg.val_frac, stage.seed)
        val_targets = targets[held] if policy == "weak_val" else one_hot(data.labels[rows[held]], k)
        val = {"val_inputs": take(rows[held]), "val_targets": val_targets}
        rows, targets = rows[keep], targets[keep]
    history = training.fit(
        module, take(rows), targets, loss, cfg, seed=stage.seed, device=ctx.device,
        eval_inputs=take(splits.test), eval_labels=data.labels[splits.test], where=stage.name, **val,
    )
    probs_all = training.predict_proba(module, x_all, device=ctx.device)
    start = len(splits.train1) + len(splits.train2)
    test_probs = probs_all[start:start + len(splits.test)]
    metrics = {
        "test_acc": training.accuracy(test_probs, data.labels[splits.test]),
        "test_auroc": training.auroc(test_probs, data.labels[splits.test]),
        "n_train": len(rows),
        "split_rows": split_rows(splits),  # the rows of the seed's train1 / train2 / test
        **history,
    }
    if len(val_rows) and "early_stop" in metrics:
        metrics["early_stop"]["val_rows"] = {"source": "dataset", "n": len(val_rows)}
    return metrics, {"indices": every.astype(np.int64), "probs": probs_all.astype(np.float32)}


def dataset_val(splits):
    """The dataset's own validation rows of ``splits`` (:attr:`Splits.val`), an empty array if it has none."""
    import numpy as np

    val = getattr(splits, "val", None)
    return np.zeros(0, dtype=np.int64) if val is None else np.asarray(val, dtype=np.int64)


def val_table(arrays: dict) -> dict | None:
    """The labels of the dataset's validation rows that a labels table carries (``val_indices`` / ``val_probs``),
    as a table of their own (``{"indices", "probs"}``); None if it carries none."""
    if "val_indices" not in arrays:
        return None
    return {"indices": arrays["val_indices"], "probs": arrays["val_probs"]}


def _val_labels(stage: Stage, upstream, val_rows):
    """The weak labels of the dataset's validation rows, carried by the (first) upstream label stage."""
    for _, arrays in upstream:
        if (table := val_table(arrays)) is not None:
            return take_rows(table, val_rows)
    raise ConfigError(f"stage {stage.name!r}: early_stop = \"weak_val\" needs the weak labels of the dataset's "
                      f"validation rows, and no upstream label stage carries them; use early_stop = \"gt_val\"")


def _with_val(stage_splits, source: dict, out: dict) -> dict:
    """``out`` plus the labels of the dataset's validation rows taken from ``source`` (a train stage's predictions
    or a label table that carries them), so that a transfer can select its checkpoint on them."""
    import numpy as np

    val_rows = dataset_val(stage_splits)
    if not len(val_rows):
        return out
    table = val_table(source) or source
    if not np.isin(val_rows, table["indices"]).all():  # a source that never predicted them: nothing to carry
        return out
    out["val_indices"] = val_rows.astype(np.int64)
    out["val_probs"] = take_rows(table, val_rows).astype(np.float32)
    return out


def op_label(ctx: RunContext, stage: Stage, upstream):
    import numpy as np

    from . import training

    (_, arrays), = upstream
    rows = Subset(**stage.spec["on"]).indices(ctx.splits(stage.seed), stage.seed)
    probs = take_rows(arrays, rows)
    # Accuracy of the labels against ground truth is reported for diagnosis only; nothing trains on it.
    metrics = {"n": len(rows), "label_acc": training.accuracy(probs, ctx.data.labels[rows])}
    out = {"indices": rows.astype(np.int64), "probs": probs.astype(np.float32)}
    return metrics, _with_val(ctx.splits(stage.seed), arrays, out)


def op_combine(ctx: RunContext, stage: Stage, upstream):
    import numpy as np

    from . import training

    spec = stage.spec
    n_sources = len(spec["holdout"]) if spec["how"] == "accuracy" else len(upstream)
    tables = [arrays for _, arrays in upstream[:n_sources]]
    base = tables[0]["indices"]
    for t in tables[1:]:
        if not np.array_equal(np.sort(t["indices"]), np.sort(base)):
            raise ConfigError(f"stage {stage.name!r}: combined label stages must label the same rows")
    aligned = [take_rows(t, base) for t in tables]
    held_out_acc = None
    if spec["how"] == "accuracy":
        # Each source's producer scored on its own held-out rows (ground truth the weak side may see).
        held_out_acc = []
        for (_, trained), holdout in zip(upstream[n_sources:], spec["holdout"]):
            rows = Subset(**holdout).indices(ctx.splits(stage.seed), stage.seed)
            held_out_acc.append(training.accuracy(take_rows(trained, rows), ctx.data.labels[rows]))
        weights = held_out_acc if sum(held_out_acc) > 0 else [1.0] * len(aligned)
    else:
        weights = spec["weights"] or [1.0] * len(aligned)
    if len(weights) != len(aligned):
        raise ConfigError(f"stage {stage.name!r}: {len(weights)} weights for {len(aligned)} label sources")
    w = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    probs = sum(wi * a for wi, a in zip(w, aligned)).astype(np.float32)
    metrics = {"n": len(base), "label_acc": training.accuracy(probs, ctx.data.labels[base]),
               "weights": w.tolist()}
    if held_out_acc is not None:
        metrics["held_out_acc"] = held_out_acc
    out = {"indices": base.astype(np.int64), "probs": probs}
    vals = [val_table(t) for t in tables]
    if all(v is not None for v in vals):  # the validation rows' labels, combined with the same weights
        val_rows = vals[0]["indices"]
        out["val_indices"] = val_rows
        out["val_probs"] = sum(wi * take_rows(v, val_rows) for wi, v in zip(w, vals)).astype(np.float32)
    return metrics, out


def op_filter(ctx: RunContext, stage: Stage, upstream):
    import numpy as np

    from . import training

    labels = upstream[0][1]
    probs, idx = labels["probs"], labels["indices"]
    if stage.spec["by"] == "confidence":
        score = probs.max(axis=1)
    else:  # learnability: loss under the weak labels' own model minus loss under the reference model
        ref = upstream[1][1]
        ref_probs = take_rows(ref, idx)
        cls = probs.argmax(axis=1)
        eps = 1e-12
        score = -np.log(probs[np.arange(len(cls)), cls] + eps) + np.log(ref_probs[np.arange(len(cls)), cls] + eps)
    n_keep = max(1, round(stage.spec["keep_frac"] * len(idx)))
    order = np.argsort(-score, kind="stable")[:n_keep]
    keep = np.sort(order)
    metrics = {"n": int(n_keep), "kept_frac": n_keep / len(idx),
               "label_acc": training.accuracy(probs[keep], ctx.data.labels[idx[keep]])}
    # validation rows are never filtered: they only score checkpoints
    return metrics, OpContext.labels(idx[keep], probs[keep], carry=labels)


def op_params(stage: Stage) -> dict[str, Any]:
    """The op parameters of a stage: its spec without the entries every stage has (seed, deps)."""
    return {k: v for k, v in stage.spec.items() if k not in RESERVED_PARAMS}


class OpContext:
    """What a :class:`~w2s_harness.StageOp`'s ``run`` sees besides its inputs: the stage, its parameters and seed,
    the dataset and the seed's splits, and helpers to read and write ``{"indices", "probs"}`` tables.

    :ivar stage: the :class:`~w2s_harness.Stage` being computed (``name``, ``seed``, ``spec``, ``deps``).
    :ivar params: the op's parameters, as hashed into the stage id (the stage's spec without seed and deps).
    :ivar records: ``{input name: StageRecord or [StageRecord]}`` of the upstream stages (their metrics), shaped
        like the ``inputs`` ``run`` receives.
    """

    def __init__(self, run: RunContext, stage: Stage, upstream: list[tuple[StageRecord, dict]],
                 slots: tuple[OpInput, ...] = ()):
        self._run = run
        self._upstream = upstream
        self.stage = stage
        self.params = op_params(stage)
        self._slots = slots
        self.records = self._group([rec for rec, _ in upstream])

    def _group(self, items: list) -> dict[str, Any]:
        """``items`` (one per dep) per input, as the op declares its inputs and the stage's layout splits them."""
        counts = dict(self.stage.inputs)
        if not counts and self._slots:  # a stage built by hand: every dep to the first input
            counts = {self._slots[0].name: len(items)}
        out: dict[str, Any] = {}
        pos = 0
        for slot in self._slots:
            n = counts.get(slot.name, 0)
            part = items[pos:pos + n]
            pos += n
            out[slot.name] = part if slot.many else (part[0] if part else None)
        return out

    def inputs(self) -> dict[str, Any]:
        """The upstream tables per input (what ``run`` receives as ``inputs``)."""
        return self._group([arrays for _, arrays in self._upstream])

    @property
    def seed(self) -> int:
        """The stage's seed."""
        return self.stage.seed

    @property
    def data(self):
        """The run's dataset, loaded: a :class:`~w2s_harness.TextData` (``labels``, ``n_classes``,
        ``class_names``; ground truth: use it for diagnostics only, never to decide weak-side labels)."""
        return self._run.data

    @property
    def splits(self):
        """The seed's :class:`~w2s_harness.Splits` (``train1``, ``train2``, ``test`` row ids)."""
        return self._run.splits(self.stage.seed)

    @property
    def device(self):
        """The run's ``torch.device``."""
        return self._run.device

    @property
    def output_dir(self) -> Path:
        """The run's output directory: an op that caches work of its own across stages (e.g. a prompted model's
        scores) keeps it in a folder under it, as the feature cache does (``<output_dir>/features``)."""
        return Path(self._run.output_dir)

    def progress(self, description: str, total: int, unit: str = "steps") -> Callable[[int], None]:
        """``advance(n)`` for a long step of ``total`` ``unit`` (an LM's training batches, a search's steps): each
        call reports ``n`` more done on the CLI's progress bar (or its piped progress lines), and is a safe point to
        stop at: it raises :class:`~w2s_harness.StopRequested` once the run was asked to stop (Ctrl-C, SIGTERM),
        and the stage is then not stored. Without a progress display it only checks for a stop."""
        report = None
        if self._run.progress is not None:
            args = (description, int(total), unit)
            if not takes(self._run.progress, args):  # a caller's own progress(description, total) of before units
                args = args[:2]
            report = self._run.progress(*args)
        check_stop = self._run.check_stop

        def advance(n: int = 1) -> None:
            if report is not None:
                report(n)
            if check_stop is not None:
                check_stop()

        return advance

    def model(self, ref: dict[str, Any] | str):
        """The model component of a reference (``{"name": ..., **params}`` as in the op's parameters, or a name),
        created once per run like the train op's: for an op that uses a model without training it (a prompted
        LM). Hash its identity into the stage id with :meth:`StageOp.identity` (``builder.identify``)."""
        return self._run.model(ref_dict(ref))

    def train(self, model: dict[str, Any] | str, *, on: Subset | str | dict = "train2", labels: dict | None = None,
              loss: dict[str, Any] | str = "xent") -> tuple[dict[str, Any], dict[str, Any]]:
        """Train ``model`` (a model reference) on the rows ``on`` exactly as the built-in ``train`` op does, on
        ground truth (``labels=None``) or on a ``labels`` table; returns the train op's ``(metrics, arrays)``:
        ``test_acc``/``test_auroc`` and the predictions of every split. For an op whose model exists only at run
        time (weights it computed, e.g. the ``generative-train`` op's LM-adapted checkpoint): the stage id is then
        the op's, so :meth:`StageOp.identity` must hash what determines that model."""
        import dataclasses

        spec = {"model": ref_dict(model), "loss": ref_dict(loss), "on": as_subset(on).as_dict(),
                "labels": "gt" if labels is None else "soft"}
        stage = dataclasses.replace(self.stage, spec=spec)  # the op's own stage (name, seed), read as a train
        return op_train(self._run, stage, [] if labels is None else [(None, labels)])

    def rows(self, on: Subset | str | dict):
        """The sorted dataset row ids of a split name, a :class:`~w2s_harness.Subset` or a subset table."""
        return as_subset(on).indices(self.splits, self.stage.seed)

    @staticmethod
    def take(table: dict, rows):
        """``table["probs"]`` of the dataset rows ``rows``, looked up through ``table["indices"]``."""
        return take_rows(table, rows)

    @staticmethod
    def labels(indices, probs, carry: dict | None = None) -> dict[str, Any]:
        """A ``labels`` table ``{"indices": int64, "probs": float32}``, plus the labels of the dataset's validation
        rows that the input table ``carry`` holds (``val_indices`` / ``val_probs``), which a transfer selects its
        checkpoint on: pass them on unchanged."""
        import numpy as np

        out = {"indices": np.asarray(indices, dtype=np.int64), "probs": np.asarray(probs, dtype=np.float32)}
        if carry is not None and (table := val_table(carry)) is not None:
            out["val_indices"], out["val_probs"] = table["indices"], table["probs"]
        return out


# ----------------------------------------------------------------------------------------- the built-in ops


class _BuiltinOp(StageOp):
    """A built-in op: its ``run`` is a function of this module, called with the run context and the upstream list."""

    function: Callable[..., Any]

    def run(self, ctx: OpContext, inputs):
        return type(self).function(ctx._run, ctx.stage, ctx._upstream)


class TrainOp(_BuiltinOp):
    """Train a model on rows of a split, on ground truth or on the ``labels`` of upstream stages; it evaluates on
    test and predicts every split (``builder.train``)."""

    inputs = (OpInput("labels", "labels", min=0, max=None),)
    output = "model"
    kinds = (StageKind.TRAIN, *sorted(TRAIN_KINDS - {StageKind.TRAIN}, key=lambda k: k.value))
    function = staticmethod(op_train)

    def __init__(self, model, on, loss="xent", labels: str | None = None):
        if labels not in (None, "gt", "soft"):
            raise ConfigError(f"op 'train': labels={labels!r}; use 'gt' or 'soft'")
        self.labels = labels
        as_subset(on)

    def spec(self, params, inputs):
        soft = bool(inputs.get("labels"))
        if self.labels is not None and (self.labels == "soft") != soft:
            raise ConfigError("op 'train': labels='soft' needs label stages as inputs, labels='gt' none")
        return {"model": ref_dict(params["model"]), "loss": ref_dict(params["loss"] or "xent"),
                "on": as_subset(params["on"]).as_dict(), "labels": "soft" if soft else "gt"}

    def identity(self, spec, builder):
        return {"model": builder.identify(spec["model"]), "loss": builder.identify_loss(spec["loss"])}


class LabelOp(_BuiltinOp):
    """The soft labels (predicted probabilities) of a train stage on rows of a split (``builder.label``)."""

    inputs = (OpInput("trained", "model"),)
    kinds = (StageKind.LABEL,)
    function = staticmethod(op_label)

    def __init__(self, on):
        as_subset(on)

    def spec(self, params, inputs):
        return {"on": as_subset(params["on"]).as_dict()}


class CombineOp(_BuiltinOp):
    """Label stages over the same rows combined into one (``builder.combine``)."""

    inputs = (OpInput("labels", "labels", min=1, max=None), OpInput("scored_by", "model", min=0, max=None))
    kinds = (StageKind.COMBINE,)
    function = staticmethod(op_combine)

    def __init__(self, how: str = "mean", weights: list | None = None, holdout: list | None = None):
        if how not in ("mean", "weighted", "accuracy"):
            raise ConfigError(f"combine how={how!r}: use 'mean', 'weighted' or 'accuracy'")
        self.how = how

    def spec(self, params, inputs):
        holdout, scored = params.get("holdout"), inputs.get("scored_by", [])
        if self.how == "accuracy" and (holdout is None or len(holdout) != len(inputs["labels"])
                                       or len(scored) != len(holdout)):
            raise ConfigError("combine how='accuracy' needs scored_by = one (train stage, held-out rows) per source")
        out = {"how": params["how"], "weights": None if params["weights"] is None else list(params["weights"])}
        if holdout is not None:
            out["holdout"] = [as_subset(h).as_dict() for h in holdout]
        return out


class FilterOp(_BuiltinOp):
    """Keep the most confident (or most learnable) fraction of a label stage's rows (``builder.filter``)."""

    inputs = (OpInput("labels", "labels"), OpInput("reference", "labels", min=0, max=1))
    kinds = (StageKind.FILTER,)
    function = staticmethod(op_filter)

    def __init__(self, keep_frac: float, by: str = "confidence"):
        if isinstance(keep_frac, bool) or not isinstance(keep_frac, (int, float)) or not 0 < keep_frac <= 1:
            raise ConfigError(f"filter keep_frac must be in (0, 1], got {keep_frac}")
        if by not in ("confidence", "learnability"):
            raise ConfigError(f"filter by={by!r}: use 'confidence' or 'learnability'")
        self.by = by

    def spec(self, params, inputs):
        if self.by == "learnability" and not inputs.get("reference"):
            raise ConfigError("filter by='learnability' needs reference=<label stage of a strong reference model>")
        return dict(params)


#: The built-in ops: name -> (factory, description).
BUILTIN_OPS: dict[str, tuple[type[StageOp], str]] = {
    "train": (TrainOp, "train a model on a split (ground truth or upstream labels); predicts every split"),
    "label": (LabelOp, "a train stage's soft labels (predicted probabilities) on a split"),
    "combine": (CombineOp, "label stages over the same rows combined into one (mean, weighted, accuracy)"),
    "filter": (FilterOp, "keep the most confident / most learnable fraction of a label stage's rows"),
}


@hookimpl
def w2s_register_ops(registry):
    """The built-in ops register through the same hook as a plugin's (as the plugin ``builtin:ops``)."""
    for name, (factory, description) in BUILTIN_OPS.items():
        registry.add(name, factory, description=description)


def builtin_op_registry():
    """An op registry with the built-in ops only (a :class:`PlanBuilder` made without a plugin manager)."""
    from .._plugin_system.registry import Registry

    registry = Registry("op", current_plugin="builtin:ops")
    w2s_register_ops(registry)
    registry.current_plugin = "<unknown>"
    return registry


def op_resources(ctx: RunContext, stage: Stage) -> dict[str, Any]:
    """What the stage's op declares it needs (:meth:`StageOp.resources`): any of ``num_cpus``, ``num_gpus``,
    ``memory``; empty for the built-in ops (the executor's defaults apply)."""
    declared = ctx.op(stage).resources() or {}
    return {k: v for k, v in declared.items() if k in ("num_cpus", "num_gpus", "memory")}


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory error: Python's, torch's (``torch.OutOfMemoryError``, a RuntimeError
    subclass) or an older torch's ``RuntimeError("CUDA out of memory ...")``."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def check_output(stage: Stage, op: StageOp, result: Any) -> tuple[dict, dict]:
    """``result`` if it is ``(metrics dict, {"indices", "probs", ...})`` as the op's output artifact must be, else
    a one-line error naming the op and the stage."""
    import numpy as np

    where = f"op {stage.op!r} (stage {stage.name!r})"
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], dict)
            and isinstance(result[1], dict)):
        raise PluginError(f"{where} must return (metrics dict, arrays dict), got {type(result).__name__}")
    metrics, arrays = result
    if "indices" not in arrays or "probs" not in arrays:
        raise PluginError(f"{where} returned no {op.output} table: its arrays need 'indices' and 'probs', got "
                          f"{sorted(arrays)}")
    idx, probs = np.asarray(arrays["indices"]), np.asarray(arrays["probs"])
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or probs.ndim != 2 or len(probs) != len(idx):
        raise PluginError(f"{where}: 'indices' must be (M,) integer row ids and 'probs' (M, k), got shapes "
                          f"{idx.shape} {idx.dtype} and {probs.shape}")
    if op.output == "labels" and len(np.unique(idx)) != len(idx):
        raise PluginError(f"{where}: its labels name a row twice; each row must be labelled once")
    if op.output == "model":  # a model may be a result row's weak, ceiling or transfer: rows read its test_acc
        acc = metrics.get("test_acc")
        if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0.0 <= acc <= 1.0:
            raise PluginError(f"{where} produces a model: its metrics need 'test_acc', the test accuracy in [0, 1] "
                              f"(as the train op's), got {acc!r}")
    return metrics, arrays


def execute(ctx: RunContext, stage: Stage, upstream: list[tuple[StageRecord, dict]]) -> tuple[StageRecord, dict]:
    """Run one stage: its :class:`StageRecord` (metrics, seconds) and its arrays."""
    start = time.perf_counter()
    try:
        op = ctx.op(stage)
        octx = OpContext(ctx, stage, upstream, tuple(op.inputs))
        metrics, arrays = check_output(stage, op, op.run(octx, octx.inputs()))
    except Exception as exc:
        if is_out_of_memory(exc):
            raise ResourceError(
                f"stage {stage.name!r} ran out of {'GPU ' if 'cuda' in str(exc).lower() else ''}memory; lower the "
                f"model's batch_size (e.g. [strong] batch_size = 8; embed_batch_size for hf: encoders) or use a "
                f"smaller model; finished stages are kept") from None
        raise
    record = StageRecord(stage.id, stage.op, str(stage.kind), stage.name, stage.seed, stage.spec, metrics,
                         time.perf_counter() - start, cached=False)
    return record, arrays


__all__ = ["BUILTIN_OPS", "OpContext", "RunContext", "execute", "op_resources"]
