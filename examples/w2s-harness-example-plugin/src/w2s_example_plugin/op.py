"""``example-agree``: a stage op that keeps the rows on which several label stages' hard labels agree.

A stage op is one kind of cached stage computation (the built-in ``train``, ``label``, ``combine`` and ``filter``
are ops too). It declares its inputs (the upstream stages it takes and what they must produce), its output, its
parameters (the factory's signature: checked, and hashed into the stage id with their defaults) and computes the
stage in ``run``. The code of this module is hashed into the id of every ``example-agree`` stage, so editing it
reruns those stages (and what trains on them) and nothing else. Keep the op in its own module for that reason.
"""

from __future__ import annotations

from w2s_harness import ConfigError, DataError, OpInput, StageKind, StageOp

SOFT = ("first", "mean")


class AgreementFilter(StageOp):
    """Keep the rows where every input label stage's argmax agrees; drop the others.

    :param soft: the soft labels of the kept rows: ``first`` (default: the first input's, e.g. the weak model's)
        or ``mean`` (the inputs' average).
    """

    inputs = (OpInput("labels", artifact="labels", min=2, max=None),)  # two or more label stages
    output = "labels"  # trainable: builder.train(..., labels=<this stage>)
    kinds = (StageKind.FILTER,)

    def __init__(self, soft: str = "first"):
        if soft not in SOFT:
            raise ConfigError(f"op 'example-agree': soft={soft!r}; use one of {', '.join(SOFT)}")
        self.soft = soft

    def run(self, ctx, inputs):
        import numpy as np

        tables = inputs["labels"]
        rows = tables[0]["indices"]
        for t in tables[1:]:
            if not np.array_equal(np.sort(t["indices"]), np.sort(rows)):
                raise DataError(f"stage {ctx.stage.name!r}: the label stages must label the same rows")
        probs = [ctx.take(t, rows) for t in tables]  # aligned on the first table's rows
        hard = np.stack([p.argmax(axis=1) for p in probs])
        agree = (hard == hard[0]).all(axis=0)
        if not agree.any():
            raise DataError(f"stage {ctx.stage.name!r}: the label stages agree on no row")
        soft = probs[0] if self.soft == "first" else np.mean(probs, axis=0)
        kept = rows[agree]
        truth = ctx.data.labels[kept]  # ground truth: a diagnostic in the metrics only, never used to select
        metrics = {"n": int(agree.sum()), "kept_frac": float(agree.mean()),
                   "label_acc": float((soft[agree].argmax(axis=1) == truth).mean())}
        return metrics, ctx.labels(kept, soft[agree], carry=tables[0])
