"""``example-naive-twice``: weak -> strong transfer, then the student relabels train2 and is retrained.

Strategies never train anything themselves: they declare stages with the
:class:`~w2s_harness._plan.PlanBuilder` (``train``, ``label``, ...). The runner hashes, caches and executes
them, so this strategy gets resume, multi-seed and the results table for free.
"""

from __future__ import annotations

from w2s_harness._errors import ConfigError


def _loss_tag(loss) -> str:
    params = ",".join(f"{k}={v}" for k, v in sorted(loss.params.items()))
    return f"{loss.name}({params})" if params else loss.name


class NaiveTwice:
    """One experiment row per configured loss.

    :param rounds: how many times the strong student is trained on train2 (``1`` is the naive protocol;
        each later round trains a fresh student on the previous student's soft labels).
    """

    name = "example-naive-twice"

    def __init__(self, rounds: int = 2):
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ConfigError(f"strategy {self.name!r}: rounds must be a positive integer, got {rounds!r}")
        self.rounds = rounds

    def plan(self, b) -> None:
        cfg = b.config
        weak = b.train(cfg.weak, on="train1", kind="train_weak", name="weak")
        weak_labels = b.label(weak, on="train2", name="weak labels")
        ceiling = b.train(cfg.strong, on="train2", kind="train_ceiling", name="ceiling")
        names = []
        for loss in cfg.losses:
            tag = _loss_tag(loss)
            labels, student = weak_labels, None
            for r in range(1, self.rounds + 1):
                student = b.train(cfg.strong, on="train2", labels=labels, loss=loss, kind="train_transfer",
                                  name=f"student{r}[{tag}]")
                if r < self.rounds:
                    labels = b.label(student, on="train2", name=f"student{r} labels[{tag}]")
            name = f"{self.name}/{tag}"
            b.experiment(name, strategy=self.name, loss=tag, weak=weak, ceiling=ceiling, transfer=student,
                         weak_model=b.model_label(cfg.weak), strong_model=b.model_label(cfg.strong))
            names.append(name)
        for other in names[1:]:
            b.compare(other, names[0])
