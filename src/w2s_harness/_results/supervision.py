"""What supervised a row's transfer, read back from the stage records of ``results.json``.

A row records only its weak, ceiling and transfer stage ids; the stages in between (an ensemble's supervisors and
their combined labels, a filter's kept labels, a learnability reference) are found by walking the transfer
stage's ``deps`` (every stage's spec lists them). Nothing here names a strategy: it looks at stage kinds, so a
plugin strategy built from the same stage kinds gets the same columns.

Each figure is a mean over the seeds where the stage finished (``None`` where no seed has one):

* ``supervisor_acc``: test accuracy of the extra models that produced labels (``train_supervisor``: an ensemble's
  members x bags; ``train_reference``: a filter's reference model), averaged over those models, then over seeds.
* ``n_supervisors``: how many such models a seed has.
* ``label_acc``: accuracy against ground truth of the labels the transfer trained on (train2; diagnosis only):
  an ensemble's combined labels, a filter's kept labels, a plain weak label stage's.
* ``kept_frac``: the fraction of the weak labels a filter kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean
from typing import Any

#: Stage kinds of the extra models that label (or score labels) for a transfer.
SUPERVISOR_KINDS = ("train_supervisor", "train_reference")
#: Stage kinds whose ``label_acc`` is the accuracy of the labels a transfer trains on.
LABEL_KINDS = ("label", "combine", "filter", "op")


@dataclass(frozen=True)
class Supervision:
    """Means over seeds of what supervised one row's transfer (see the module docstring)."""

    supervisor_acc: float | None = None
    n_supervisors: int = 0
    label_acc: float | None = None
    kept_frac: float | None = None
    seeds: int = 0  # seeds whose transfer stage was found

    @property
    def empty(self) -> bool:
        return self.supervisor_acc is None and self.kept_frac is None


def _mean(values: list[float]) -> float | None:
    return fmean(values) if values else None


def supervision(results, e, records: dict | None = None) -> Supervision:
    """The :class:`Supervision` of row ``e`` (an :class:`~w2s_harness.ExperimentResult`) of ``results``
    (``records``: its stage records by id, when the caller has them: a large sweep has thousands)."""
    records = records if records is not None else {s.id: s for s in results.stages}
    sup_acc, n_sup, label_acc, kept = [], [], [], []
    seeds = 0
    for tid in e.stage_ids.get("transfer") or []:
        transfer = records.get(tid) if tid else None
        if transfer is None:
            continue
        seeds += 1
        deps = list(transfer.spec.get("deps") or [])
        # the labels the transfer trained on: its first dep that is a label-producing stage
        direct = next((records[d] for d in deps if d in records and records[d].kind in LABEL_KINDS), None)
        if direct is not None and direct.metrics and direct.metrics.get("label_acc") is not None:
            label_acc.append(float(direct.metrics["label_acc"]))
        seen, stack, accs = set(), deps, []
        while stack:  # every stage upstream of the transfer
            sid = stack.pop()
            rec = records.get(sid)
            if sid in seen or rec is None:
                continue
            seen.add(sid)
            stack.extend(rec.spec.get("deps") or [])
            metrics = rec.metrics or {}
            if rec.kind in SUPERVISOR_KINDS and metrics.get("test_acc") is not None:
                accs.append(float(metrics["test_acc"]))
            if rec.kind == "filter" and metrics.get("kept_frac") is not None:
                kept.append(float(metrics["kept_frac"]))
        if accs:
            sup_acc.append(fmean(accs))
            n_sup.append(len(accs))
    return Supervision(_mean(sup_acc), max(n_sup, default=0), _mean(label_acc), _mean(kept), seeds)


def supervisions(results) -> dict[str, Supervision]:
    """Per row name, its :class:`Supervision`."""
    records = {s.id: s for s in results.stages}
    return {e.name: supervision(results, e, records) for e in results.experiments}


def extra_columns(sups: dict[str, Supervision]) -> list[tuple[str, str, Any]]:
    """The supervision columns worth showing for these rows: ``(key, header, cell(sup) -> text)``; none when no
    row has supervisors or a filter (a plain ``naive`` run keeps its table as it was)."""
    cols: list[tuple[str, str, Any]] = []
    if any(s.supervisor_acc is not None for s in sups.values()):
        cols.append(("supervisor_acc", "supervisors acc\n(test, mean)",
                     lambda s: "-" if s.supervisor_acc is None else f"{s.supervisor_acc:.3f} (x{s.n_supervisors})"))
    if any(s.kept_frac is not None for s in sups.values()):
        cols.append(("kept_frac", "kept\nfrac", lambda s: "-" if s.kept_frac is None else f"{s.kept_frac:.2f}"))
    if cols:
        cols.append(("label_acc", "label acc\n(train2)",
                     lambda s: "-" if s.label_acc is None else f"{s.label_acc:.3f}"))
    return cols
