"""What each stage operation does: train, label, combine, filter.

Each op takes the :class:`RunContext`, the stage and the finished upstream stages (``(StageRecord, arrays)``
pairs), and returns ``(metrics, arrays)``: JSON-able metrics and numpy arrays stored in the stage cache. Soft labels travel
between stages as ``{"indices": (M,) int64 row ids, "probs": (M, k) float32}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._components import check_model, is_feature_model
from ._datasets import split_rows
from ._errors import ConfigError, DataError, ResourceError
from ._plan import Stage, Subset, ref_key
from ._results import StageRecord


@dataclass
class RunContext:
    """Per-run state the ops share: components (created once), data, splits, features and the device."""

    pm: Any
    config: Any
    output_dir: Path
    progress: Callable[..., Any] | None = None  # progress(description, total) -> advance(n) callable
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

    @property
    def dataset(self):
        if self._dataset is None:
            c = self.config.dataset
            from ._difficulty import create

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
            from ._features import FeatureCache

            self._features = FeatureCache(self.output_dir / "features", chunk_rows=self.config.run.feature_chunk)
        return self._features

    def _feature_data(self, model, data=None):
        """The data, its fingerprint salted with the code fingerprint of the model's class: the feature cache is
        keyed by (feature key, fingerprint), and a model whose ``features`` code changed must not be served the
        features its old code computed (its stages rerun because their ids hash that code, see ``_codehash``)."""
        import dataclasses
        import hashlib
        import json

        from ._codehash import CodeHasher

        cls = type(model)
        if cls not in self._feature_salts:
            code = CodeHasher().component(cls)
            self._feature_salts[cls] = hashlib.sha256(json.dumps(code, sort_keys=True).encode()).hexdigest()[:16]
        data = self.data if data is None else data
        return dataclasses.replace(data, fingerprint=f"{data.fingerprint}|code={self._feature_salts[cls]}")

    def inputs(self, spec_model, rows):
        """Model inputs for ``rows``: cached features (a :class:`FeatureModel`) or the texts (fine-tuning). A choice
        task (:mod:`._choice`): ``(R, n, d)`` features of its (prompt, candidate) texts, or ``R`` tuples of them."""
        from ._choice import is_choice

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

    from . import _training as training
    from ._choice import choice_module, is_choice

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


def _val_labels(stage: Stage, upstream, val_rows):
    """The weak labels of the dataset's validation rows, carried by the (first) upstream label stage."""
    for _, arrays in upstream:
        if "val_indices" in arrays:
            return take_rows({"indices": arrays["val_indices"], "probs": arrays["val_probs"]}, val_rows)
    raise ConfigError(f"stage {stage.name!r}: early_stop = \"weak_val\" needs the weak labels of the dataset's "
                      f"validation rows, and no upstream label stage carries them; use early_stop = \"gt_val\"")


def _with_val(stage_splits, source: dict, out: dict) -> dict:
    """``out`` plus the labels of the dataset's validation rows taken from ``source`` (a train stage's predictions
    or a label table that carries them), so that a transfer can select its checkpoint on them."""
    import numpy as np

    val_rows = dataset_val(stage_splits)
    if not len(val_rows):
        return out
    table = {"indices": source["val_indices"], "probs": source["val_probs"]} if "val_indices" in source else source
    if not np.isin(val_rows, table["indices"]).all():  # a source that never predicted them: nothing to carry
        return out
    out["val_indices"] = val_rows.astype(np.int64)
    out["val_probs"] = take_rows(table, val_rows).astype(np.float32)
    return out


def op_label(ctx: RunContext, stage: Stage, upstream):
    import numpy as np

    from . import _training as training

    (_, arrays), = upstream
    rows = Subset(**stage.spec["on"]).indices(ctx.splits(stage.seed), stage.seed)
    probs = take_rows(arrays, rows)
    # Accuracy of the labels against ground truth is reported for diagnosis only; nothing trains on it.
    metrics = {"n": len(rows), "label_acc": training.accuracy(probs, ctx.data.labels[rows])}
    out = {"indices": rows.astype(np.int64), "probs": probs.astype(np.float32)}
    return metrics, _with_val(ctx.splits(stage.seed), arrays, out)


def op_combine(ctx: RunContext, stage: Stage, upstream):
    import numpy as np

    from . import _training as training

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
    if all("val_indices" in t for t in tables):  # the validation rows' labels, combined with the same weights
        val_rows = tables[0]["val_indices"]
        out["val_indices"] = val_rows
        out["val_probs"] = sum(wi * take_rows({"indices": t["val_indices"], "probs": t["val_probs"]}, val_rows)
                               for wi, t in zip(w, tables)).astype(np.float32)
    return metrics, out


def op_filter(ctx: RunContext, stage: Stage, upstream):
    import numpy as np

    from . import _training as training

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
    out = {"indices": idx[keep].astype(np.int64), "probs": probs[keep].astype(np.float32)}
    if "val_indices" in labels:  # validation rows are never filtered: they only score checkpoints
        out["val_indices"], out["val_probs"] = labels["val_indices"], labels["val_probs"]
    return metrics, out


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory error: Python's, torch's (``torch.OutOfMemoryError``, a RuntimeError
    subclass) or an older torch's ``RuntimeError("CUDA out of memory ...")``."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


OPS = {"train": op_train, "label": op_label, "combine": op_combine, "filter": op_filter}


def execute(ctx: RunContext, stage: Stage, upstream: list[tuple[StageRecord, dict]]) -> tuple[StageRecord, dict]:
    """Run one stage: its :class:`StageRecord` (metrics, seconds) and its arrays."""
    start = time.perf_counter()
    try:
        metrics, arrays = OPS[stage.op](ctx, stage, upstream)
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

