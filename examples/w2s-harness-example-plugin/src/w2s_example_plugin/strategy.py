"""``example-naive-twice``: naive weak -> strong transfer, then the student relabels train2 and is retrained.

A strategy never trains anything itself: ``plan(builder)`` declares stages and result rows on a
:class:`w2s_harness.PlanBuilder`, once per seed. The runner hashes, caches and executes the stages, so the
strategy gets resume, multi-seed statistics and the results table for free, and a stage two strategies (or two
rows) declare alike is computed once.
"""

from __future__ import annotations

from w2s_harness import check_int


class NaiveTwice:
    """One ``example-naive-twice/<loss>`` row per configured loss, beside the ``naive/<loss>`` row it starts from.

    Round 1 is the naive transfer (the same stage as the naive row's, computed once); each later round trains a
    fresh strong student on train2 with the previous student's soft labels (in-sample, the ``same`` chain
    scheme). Every row is compared per seed with its naive row (``PGR(twice) - PGR(naive)``).

    :param rounds: how many times the strong student is trained on train2 (``1`` is the naive protocol).
    """

    name = "example-naive-twice"

    def __init__(self, rounds: int = 2):
        self.rounds = check_int(rounds, "rounds", owner=f"strategy {self.name!r}", lo=1)

    def plan(self, b) -> None:
        ref = b.reference()  # the weak model on train1, its soft labels of train2, the ceiling
        naive_rows = b.transfers("naive", ref)  # one naive/<loss> row per configured loss: the baselines
        weak, strong = b.config.weak.as_dict(), b.config.strong.as_dict()
        names = [b.model_label(weak)] + [f"student{r}" for r in range(1, self.rounds + 1)]
        for loss, naive_row in zip(b.config.losses, naive_rows):
            tag = b.loss_label(loss)
            # weak -> student1 -> ... -> student<rounds>, each trained on all of train2 with the labels of the one
            # before; student1 is the naive row's transfer stage (same id), so it trains once
            rungs = b.chain([weak] + [strong] * self.rounds, [loss] * self.rounds, scheme="same", names=names)
            row = f"{self.name}/{tag}"
            b.experiment(row, strategy=self.name, loss=tag, weak=ref.weak, ceiling=ref.ceiling,
                         transfer=rungs[-1][1], rungs=rungs, baseline=naive_row)
            b.compare(row, naive_row)
