"""Pieces strategies share: the reference weak/ceiling stages, one transfer row per configured loss, model
references in strategy options, and label chains (ladders) with in-sample, sliced or cross-fitted labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from w2s_harness._config import Component
from w2s_harness._errors import ConfigError
from w2s_harness._plan import PlanBuilder, StageRef, Subset

#: How rung i gets its labels from rung i-1 (see :func:`chain`).
SCHEMES = ("same", "slices", "crossfit")


def weak_and_ceiling(b: PlanBuilder, weak=None, strong=None) -> tuple[StageRef, StageRef, StageRef]:
    """The reference protocol's fixed part: weak on train1 (gt), its labels on train2, ceiling on train2 (gt).

    ``weak``/``strong`` default to the run's ``[weak]``/``[strong]`` models."""
    weak_ref = b.train(b.config.weak if weak is None else weak, on="train1", kind="train_weak", name="weak")
    labels = b.label(weak_ref, on="train2", name="weak labels")
    ceiling = b.train(b.config.strong if strong is None else strong, on="train2", kind="train_ceiling",
                      name="ceiling")
    return weak_ref, labels, ceiling


def loss_label(loss) -> str:
    """A short display name: the loss name plus its non-default parameters."""
    params = ",".join(f"{k}={v}" for k, v in sorted(loss.params.items()))
    return f"{loss.name}({params})" if params else loss.name


def as_loss(ref: Any, owner: str) -> Component:
    """A loss given in strategy options: a name or a table ``{name = "logconf", aux_coef = 0.3}``."""
    try:
        return Component.from_dict(owner, ref)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (a loss in strategy options is a name or a table with a 'name')") from None


def resolve_model(b: PlanBuilder, ref: Any, owner: str) -> dict[str, Any]:
    """A model given in strategy options: ``"weak"``/``"strong"`` (the run's models, with their parameters),
    a registered name, or a table ``{name = "hf:...", layers = 1}``."""
    if ref == "weak":
        return b.config.weak.as_dict()
    if ref == "strong":
        return b.config.strong.as_dict()
    if isinstance(ref, str) and ref:
        return {"name": ref}
    if isinstance(ref, dict) and isinstance(ref.get("name"), str) and ref["name"]:
        return dict(ref)
    raise ConfigError(f"{owner}: a model is a name (or 'weak'/'strong') or a table with a 'name', got {ref!r}")


def check_scheme(scheme: str, folds: int, owner: str) -> None:
    if scheme not in SCHEMES:
        raise ConfigError(f"strategy {owner!r}: scheme={scheme!r}; use one of {', '.join(SCHEMES)}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"strategy {owner!r}: folds must be an integer >= 2, got {folds!r}")


def chain(b: PlanBuilder, models: Sequence[dict], losses: Sequence[Component], *, scheme: str, folds: int,
          names: Sequence[str] | None = None) -> list[tuple[str, StageRef]]:
    """A label chain ``models[0] -> models[1] -> ... -> models[-1]``; returns ``(label, train stage)`` per rung.

    Rung 0 is the weak model trained on train1 ground truth; it labels train2 (out-of-sample). Rung i >= 1
    trains with ``losses[i-1]`` on the labels of rung i-1; the last rung's stage is the transfer stage.
    How an inner rung (0 < i < n-1) labels train2 for the next rung:

    * ``same``: rung i trains on all of train2 and labels it in-sample.
    * ``slices``: train2 is cut into n-1 disjoint slices; rung i trains on slice i-1 and labels slice i
      (out-of-sample). The last rung trains on only the last slice.
    * ``crossfit``: K = ``folds`` copies of rung i train on the complement of fold k of train2 and label
      fold k; the next rung trains on the union (every label out-of-sample). The rung's *reported* stage is
      rung i trained on all of train2 (the ``same`` model), which labels nothing.

    With two models every scheme is the naive protocol (same stages as :func:`weak_and_ceiling` + transfer).
    """
    n = len(models)
    assert len(losses) == n - 1 and n >= 2
    names = list(names) if names is not None else [b.model_label(m) for m in models]
    on = (lambda i: Subset("train2", i, n - 1)) if scheme == "slices" else (lambda i: Subset("train2"))
    weak = b.train(models[0], on="train1", kind="train_weak", name="weak")
    rungs = [(names[0], weak)]
    labels: list[StageRef] = [b.label(weak, on=on(0), name="weak labels" if n == 2 or scheme != "slices"
                                      else "weak labels [slice 0]")]
    for i in range(1, n):
        last = i == n - 1
        kind = "train_transfer" if last else "train_rung"
        ref = b.train(models[i], on=on(i - 1), labels=labels, loss=losses[i - 1], kind=kind,
                      name=f"{'transfer' if last else 'rung'}[{names[i]}<-{names[i - 1]}, {loss_label(losses[i - 1])}]")
        rungs.append((names[i], ref))
        if last:
            break
        if scheme == "crossfit":
            fold_labels = []
            for k in range(folds):
                fk = b.train(models[i], on=Subset("train2", k, folds, complement=True), labels=labels,
                             loss=losses[i - 1], kind="train_rung_fold",
                             name=f"rung[{names[i]}<-{names[i - 1]}, fold {k}/{folds}]")
                fold_labels.append(b.label(fk, on=Subset("train2", k, folds)))
            labels = fold_labels
        else:
            labels = [b.label(ref, on=on(i))]
    return rungs


def transfer_rows(b: PlanBuilder, strategy: str, weak: StageRef, ceiling: StageRef, labels, *,
                  rows_prefix: str | None = None, losses: Sequence[Component] | None = None,
                  compare_losses: bool = True, baseline: str | dict[str, str] | None = None) -> list[str]:
    """One strong transfer stage + experiment row per loss (default: the configured losses); returns the
    experiment names.

    With ``compare_losses`` every row after the first is compared per seed with the first (e.g. logconf - xent);
    with ``baseline`` (a row name, or ``{loss tag: row name}``) every row is compared with its baseline instead."""
    names = []
    for loss in b.config.losses if losses is None else losses:
        tag = loss_label(loss)
        transfer = b.train(b.config.strong, on="train2", labels=labels, loss=loss, kind="train_transfer",
                           name=f"transfer[{tag}]" if strategy == "naive" else f"{strategy} transfer[{tag}]")
        name = f"{rows_prefix or strategy}/{tag}"
        base = baseline.get(tag) if isinstance(baseline, dict) else baseline
        b.experiment(name, strategy=strategy, loss=tag, weak=weak, ceiling=ceiling, transfer=transfer,
                     weak_model=b.model_label(b.config.weak), strong_model=b.model_label(b.config.strong),
                     baseline=base)
        names.append(name)
        if base is not None:
            b.compare(name, base)
    if baseline is None and compare_losses:
        for other in names[1:]:
            b.compare(other, names[0])
    return names


def naive_baseline(b: PlanBuilder) -> tuple[StageRef, StageRef, StageRef, dict[str, str]]:
    """The reference stages + a ``naive/<loss>`` row per configured loss (same stage ids as the ``naive``
    strategy, so they are computed once); returns weak, weak labels, ceiling and ``{loss tag: row name}``."""
    weak, labels, ceiling = weak_and_ceiling(b)
    rows = transfer_rows(b, "naive", weak, ceiling, labels)
    return weak, labels, ceiling, {loss_label(loss): row for loss, row in zip(b.config.losses, rows)}
