"""``ensemble``: several weak supervisors combined into one soft label before the transfer."""

from __future__ import annotations

from w2s_harness import ConfigError, StageKind, Subset, check_choice, check_int

HOW = ("mean", "weighted", "accuracy")


class Ensemble:
    """Supervisors = ``members`` x ``bags``, each trained on train1 ground truth; their soft labels of train2 are
    averaged (``mean``) or weighted (``weighted``) into one label, on which the strong model is trained.

    Options (``[strategy]`` keys):

    * ``members``: models, each a name, ``"weak"``/``"strong"`` or a table (default ``["weak"]``).
    * ``bags``: copies of each member, copy j trained on train1 without its j-th of ``bags`` folds
      (default 5; 1 = each member on all of train1). Bagging is how "several seeds" of one model differ here:
      a stage's seed also fixes the data split, so a second seed of the same stage would see other rows.
    * ``how``: ``mean`` (default); ``accuracy``: each supervisor weighted by its accuracy on its own out-of-bag
      fold of train1 (ground truth the weak side may use; never test or train2), weights proportional to
      accuracy, reported as ``held_out_acc`` / ``weights`` in the combine stage (needs ``bags >= 2``); or
      ``weighted`` with explicit ``weights``.
    * ``weights``: one non-negative number per supervisor (members-major order: member 0 bag 0, member 0 bag 1,
      ...); required for ``weighted``.

    PGR is measured against the run's weak model on train1 (the ``naive`` weak), so the row shows what the
    ensemble adds over a single weak supervisor. Rows: ``ensemble/<loss>`` per run loss beside ``naive/<loss>``
    (computed once), with the paired differences ``ensemble/<loss> - naive/<loss>``. Each supervisor's test
    accuracy and the combined labels' accuracy on train2 (``label_acc``, diagnosis only) are in ``stages``.
    """

    name = "ensemble"

    def __init__(self, members: list | None = None, bags: int = 5, how: str = "mean", weights: list | None = None):
        if members is not None and (not isinstance(members, list) or not members):
            raise ConfigError(f"strategy 'ensemble': members must be a non-empty list of models, got {members!r}")
        bags = check_int(bags, "bags", owner="strategy 'ensemble'", lo=1)
        how = check_choice(how, "how", HOW, owner="strategy 'ensemble'")
        n = len(members or ["weak"]) * bags
        if n < 2:
            raise ConfigError("strategy 'ensemble': needs >= 2 supervisors (several members, or bags >= 2)")
        if how == "weighted":
            if (not isinstance(weights, list) or len(weights) != n
                    or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights)
                    or not sum(weights) > 0):
                raise ConfigError(f"strategy 'ensemble': how='weighted' needs weights = {n} non-negative numbers "
                                  f"(one per supervisor, members-major), got {weights!r}")
        elif weights is not None:
            raise ConfigError("strategy 'ensemble': weights only apply with how='weighted'")
        if how == "accuracy" and bags < 2:
            raise ConfigError("strategy 'ensemble': how='accuracy' scores each supervisor on its out-of-bag fold "
                              "of train1, so it needs bags >= 2")
        self.members, self.bags, self.how, self.weights = members or ["weak"], bags, how, weights

    def plan(self, b) -> None:
        ref, naive_rows = b.naive_rows()
        sources, scored_by = [], []
        for m in self.members:
            model = b.model_ref(m, "strategy.members")
            for j in range(self.bags):
                on = Subset("train1", j, self.bags, complement=True) if self.bags > 1 else Subset("train1")
                tag = f"{b.model_label(model)}" + (f" bag {j}/{self.bags}" if self.bags > 1 else "")
                sup = b.train(model, on=on, kind=StageKind.TRAIN_SUPERVISOR, name=f"supervisor[{tag}]")
                sources.append(b.label(sup, on="train2", name=f"supervisor labels[{tag}]"))
                scored_by.append((sup, Subset("train1", j, self.bags)))  # the fold this bag never saw
        combined = b.combine(sources, how=self.how, weights=self.weights,
                             scored_by=scored_by if self.how == "accuracy" else None, name=f"ensemble:{self.how}")
        b.transfers(self.name, ref, combined, baseline=naive_rows)
