"""``filter``: train the strong model only on the weak labels worth learning from (by confidence or learnability)."""

from __future__ import annotations

from typing import Any

from w2s_harness import StageKind, check_choice, check_number

BY = ("confidence", "learnability")
REFERENCES = ("transfer", "train1")


class Filter:
    """Keep the ``keep_frac`` most useful weak labels of train2, drop the rest, then transfer as ``naive``.

    Options (``[strategy]`` keys):

    * ``by``: ``confidence`` (default; max probability, i.e. ``0.5 + |p - 0.5|`` for two classes) or
      ``learnability`` (the JEST idea: CE of the weak label's class under the weak model minus CE under a strong
      reference model; rows the reference finds easy but the weak model found hard are kept).
    * ``keep_frac``: fraction of train2 kept, in (0, 1] (default 0.5).
    * ``reference`` (``learnability`` only): ``transfer`` (default; the strong model trained on all weak labels
      of train2, i.e. the naive xent transfer, predicting train2 in-sample: no extra ground truth) or
      ``train1`` (``reference_model`` trained on train1 ground truth, predicting train2 out-of-sample: a cleaner
      reference, but the filter then uses a strong model fitted to ground truth, so the PGR is no longer a pure
      weak-supervision number).
    * ``reference_model``: the reference model (default ``"strong"``: the run's strong model).

    Soft down-weighting instead of dropping is a loss, not a filter: ``--loss window --set loss.mode=weight``
    (works with every strategy). Rows: ``filter/<loss>`` per run loss beside ``naive/<loss>`` (computed once),
    with the paired differences ``filter/<loss> - naive/<loss>``.
    """

    name = "filter"

    def __init__(self, by: str = "confidence", keep_frac: float = 0.5, reference: str = "transfer",
                 reference_model: Any = "strong"):
        owner = "strategy 'filter'"
        by = check_choice(by, "by", BY, owner=owner)
        reference = check_choice(reference, "reference", REFERENCES, owner=owner)
        keep_frac = check_number(keep_frac, "keep_frac", owner=owner, lo=0, hi=1, lo_open=True)
        self.by, self.keep_frac, self.reference, self.reference_model = by, keep_frac, reference, reference_model

    def plan(self, b) -> None:
        ref0, naive_rows = b.naive_rows()
        labels = ref0.labels
        ref_labels = None
        if self.by == "learnability":
            model = b.model_ref(self.reference_model, "strategy.reference_model")
            if self.reference == "train1":
                ref = b.train(model, on="train1", kind=StageKind.TRAIN_REFERENCE, name="reference[train1 gt]")
            else:
                ref = b.train(model, on="train2", labels=labels, kind=StageKind.TRAIN_REFERENCE, name="reference[weak labels]")
            ref_labels = b.label(ref, on="train2", name="reference labels")
        kept = b.filter(labels, keep_frac=self.keep_frac, by=self.by, reference=ref_labels,
                        name=f"filter:{self.by}@{self.keep_frac:g}")
        b.transfers(self.name, ref0, kept, baseline=naive_rows)
