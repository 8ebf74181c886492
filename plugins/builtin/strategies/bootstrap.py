"""``bootstrap``: a ladder of models, each trained on the labels of the one below (Burns et al. 2023, 4.3.1),
reported beside the controls that tell whether the *ladder* helped: direct transfer and a flat chain."""

from __future__ import annotations

from typing import Any

from w2s_harness import ConfigError, PlanBuilder, StageKind

#: The default ladder applies when the strong model is this 6-layer encoder (the embedded default's): its
#: inner rungs are the same encoder truncated to these layers.
MINILM = "hf:sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_INNER_LAYERS = (1, 3)


class Bootstrap:
    """Weak -> M2 -> ... -> strong: rung i trains on rung i-1's soft labels of train2.

    Options (``[strategy]`` keys):

    * ``rungs``: the ladder, weakest first, n >= 2 items, each a model name, ``"weak"``/``"strong"`` (the run's
      models with their parameters) or a table ``{name = "hf:...", layers = 1}``. Default: ``weak ->
      strong@L1 -> strong@L3 -> strong`` when the run's strong model is the default MiniLM
      (glove-bow -> MiniLM layer 1 -> layer 3 -> layer 6), otherwise ``[weak, strong]``.
      Rung 1 is the weak rung (trained on train1 ground truth) and the PGR reference; the last rung is the
      strong model, whose ground-truth fit on train2 is the ceiling (exactly as in ``naive``).
    * ``scheme``: how rung i gets labels from rung i-1: ``crossfit`` (default; K-fold, always out-of-sample),
      ``slices`` (disjoint slices of train2, one per trained rung; the last rung sees 1/(n-1) of train2) or
      ``same`` (every rung on all of train2, labels predicted in-sample). See ``PlanBuilder.chain``.
    * ``folds``: K for ``crossfit`` (default 3: every head costs seconds on CPU, and 3 folds already make
      every label out-of-sample).
    * ``inner_loss``: loss of the inner rungs (default ``xent``); a name or a table.
    * ``rung_losses``: optional list of n-2 losses, one per inner rung (overrides ``inner_loss``).
      The last rung uses each configured run loss (one row per loss).
    * ``controls``: also build the controls (default true).

    Rows per run loss ``L``: ``bootstrap/L`` (the ladder; ``rung_acc`` lists every rung, weak first),
    ``direct/L`` (weak -> strong with ``L``: the naive stages, computed once) and ``flat/L`` (the weak rung,
    then the strong model repeated on every other rung, same scheme and losses: the chain without a capacity
    gradient; omitted for n = 2, where it equals ``direct``). Paired per-seed PGR differences:
    ``bootstrap/L - direct/L``, ``flat/L - direct/L``, ``bootstrap/L - flat/L`` (the ladder's own effect
    beyond out-of-sample relabelling), and ``direct/L - direct/<first loss>``.

    An inner rung's reported accuracy is that rung trained on all of train2 with the previous rung's labels
    (with ``crossfit`` the fold models that label the next rung are not reported).
    """

    name = "bootstrap"

    def __init__(self, rungs: list | None = None, scheme: str = "crossfit", folds: int = 3,
                 inner_loss: Any = "xent", rung_losses: list | None = None, controls: bool = True):
        PlanBuilder.check_chain(scheme, folds, self.name)
        if rungs is not None and (not isinstance(rungs, list) or len(rungs) < 2):
            raise ConfigError(f"strategy 'bootstrap': rungs must be a list of >= 2 models, weakest first, got {rungs!r}")
        if rung_losses is not None:
            if not isinstance(rung_losses, list):
                raise ConfigError(f"strategy 'bootstrap': rung_losses must be a list, got {rung_losses!r}")
            if rungs is not None and len(rung_losses) != len(rungs) - 2:
                raise ConfigError(f"strategy 'bootstrap': rung_losses needs {len(rungs) - 2} losses "
                                  f"(one per inner rung), got {len(rung_losses)}")
        self.rungs, self.scheme, self.folds, self.controls = rungs, scheme, folds, bool(controls)
        self.inner_loss, self.rung_losses = inner_loss, rung_losses

    def ladder(self, b) -> list[dict]:
        if self.rungs is not None:
            return [b.model_ref(r, f"strategy.rungs[{i}]") for i, r in enumerate(self.rungs)]
        strong = b.config.strong.as_dict()
        if strong["name"] == MINILM and strong.get("layers") in (None, 6):
            return [b.config.weak.as_dict(), *({**strong, "layers": n} for n in DEFAULT_INNER_LAYERS), strong]
        return [b.config.weak.as_dict(), strong]

    def plan(self, b) -> None:
        models = self.ladder(b)
        n = len(models)
        if self.rung_losses is not None:
            inner = [b.loss_ref(x, f"strategy.rung_losses[{i}]") for i, x in enumerate(self.rung_losses)]
        else:
            inner = [b.loss_ref(self.inner_loss, "strategy.inner_loss")] * (n - 2)
        if len(inner) != n - 2:
            raise ConfigError(f"strategy 'bootstrap': rung_losses needs {n - 2} losses (one per inner rung), "
                              f"got {len(inner)}")
        weak_m, strong_m = models[0], models[-1]
        weak, labels, ceiling = b.reference(weak_m, strong_m)
        meta = {"weak": weak, "ceiling": ceiling, "weak_model": b.model_label(weak_m),
                "strong_model": b.model_label(strong_m)}
        first_direct = None
        for loss in b.config.losses:
            tag = b.loss_label(loss)
            direct = b.train(strong_m, on="train2", labels=labels, loss=loss, kind=StageKind.TRAIN_TRANSFER,
                             name=f"transfer[{tag}]") if self.controls else None  # first: naive's stage names
            ladder = b.chain(models, [*inner, loss], scheme=self.scheme, folds=self.folds)
            b.experiment(f"bootstrap/{tag}", strategy="bootstrap", loss=tag, transfer=ladder[-1][1], rungs=ladder,
                         baseline=f"direct/{tag}" if self.controls else None, **meta)
            if not self.controls:
                continue
            b.experiment(f"direct/{tag}", strategy="direct", loss=tag, transfer=direct, **meta)
            b.compare(f"bootstrap/{tag}", f"direct/{tag}")
            if n > 2:
                flat = b.chain([weak_m] + [strong_m] * (n - 1), [*inner, loss], scheme=self.scheme, folds=self.folds)
                b.experiment(f"flat/{tag}", strategy="flat", loss=tag, transfer=flat[-1][1], rungs=flat,
                             baseline=f"direct/{tag}", **meta)
                b.compare(f"flat/{tag}", f"direct/{tag}")
                b.compare(f"bootstrap/{tag}", f"flat/{tag}")
            if first_direct is None:
                first_direct = f"direct/{tag}"
            else:
                b.compare(f"direct/{tag}", first_direct)
