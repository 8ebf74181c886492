"""``relabel``: strong-to-strong rounds after the transfer (as EleutherAI/w2s does)."""

from __future__ import annotations

from typing import Any

from w2s_harness import PlanBuilder, check_choice, check_int

SCHEMES = ("same", "crossfit")


class Relabel:
    """Weak -> strong transfer, then ``iterations`` rounds: the last strong model relabels train2 and a fresh
    strong model trains on those labels.

    Options (``[strategy]`` keys):

    * ``iterations``: strong-to-strong rounds after the transfer (default 1; 0 = naive).
    * ``scheme``: ``same`` (default; the strong model labels its own training data, in-sample, as in
      EleutherAI/w2s) or ``crossfit`` (K strong models trained on fold complements label the held-out folds).
    * ``folds``: K for ``crossfit`` (default 3).
    * ``round_loss``: loss of every round after the first transfer (default: the row's loss).

    Rows: ``relabel/<loss>`` per run loss (``rung_acc``: weak, the transfer, then each round) beside
    ``naive/<loss>`` (the same transfer stage, computed once), with paired differences ``relabel - naive``.
    """

    name = "relabel"

    def __init__(self, iterations: int = 1, scheme: str = "same", folds: int = 3, round_loss: Any = None):
        iterations = check_int(iterations, "iterations", owner="strategy 'relabel'", lo=0)
        scheme = check_choice(scheme, "scheme", SCHEMES, owner="strategy 'relabel'")
        PlanBuilder.check_chain(scheme, folds, self.name)
        self.iterations, self.scheme, self.folds, self.round_loss = iterations, scheme, folds, round_loss

    def plan(self, b) -> None:
        (weak, _, ceiling), naive_rows = b.naive_rows()
        round_loss = None if self.round_loss is None else b.loss_ref(self.round_loss, "strategy.round_loss")
        weak_m, strong_m = b.config.weak.as_dict(), b.config.strong.as_dict()
        strong_label = b.model_label(strong_m)
        names = [b.model_label(weak_m), strong_label] + [f"{strong_label} r{r}" for r in range(1, self.iterations + 1)]
        for loss in b.config.losses:
            tag = b.loss_label(loss)
            losses = [loss] + [round_loss or loss] * self.iterations
            rungs = b.chain([weak_m] + [strong_m] * (self.iterations + 1), losses, scheme=self.scheme,
                          folds=self.folds, names=names)
            b.experiment(f"relabel/{tag}", strategy=self.name, loss=tag, weak=weak, ceiling=ceiling,
                         transfer=rungs[-1][1], rungs=rungs, baseline=naive_rows[tag],
                         weak_model=names[0], strong_model=strong_label)
            b.compare(f"relabel/{tag}", naive_rows[tag])
