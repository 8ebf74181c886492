"""Pieces strategies share: the reference weak/ceiling stages and one transfer row per configured loss."""

from __future__ import annotations

from w2s_harness.plan import PlanBuilder, StageRef


def weak_and_ceiling(b: PlanBuilder) -> tuple[StageRef, StageRef, StageRef]:
    """The reference protocol's fixed part: weak on train1 (gt), its labels on train2, ceiling on train2 (gt)."""
    weak = b.train(b.config.weak, on="train1", kind="train_weak", name="weak")
    labels = b.label(weak, on="train2", name="weak labels")
    ceiling = b.train(b.config.strong, on="train2", kind="train_ceiling", name="ceiling")
    return weak, labels, ceiling


def loss_label(loss) -> str:
    """A short display name: the loss name plus its non-default parameters."""
    params = ",".join(f"{k}={v}" for k, v in sorted(loss.params.items()))
    return f"{loss.name}({params})" if params else loss.name


def transfer_rows(b: PlanBuilder, strategy: str, weak: StageRef, ceiling: StageRef, labels, *,
                  rows_prefix: str | None = None) -> list[str]:
    """One strong transfer stage + experiment row per configured loss; returns the experiment names.

    Every row after the first is compared per seed with the first (e.g. logconf - xent)."""
    names = []
    for loss in b.config.losses:
        tag = loss_label(loss)
        transfer = b.train(b.config.strong, on="train2", labels=labels, loss=loss, kind="train_transfer",
                           name=f"transfer[{tag}]")
        name = f"{rows_prefix or strategy}/{tag}"
        b.experiment(name, strategy=strategy, loss=tag, weak=weak, ceiling=ceiling, transfer=transfer,
                     weak_model=b.model_label(b.config.weak), strong_model=b.model_label(b.config.strong))
        names.append(name)
    for other in names[1:]:
        b.compare(other, names[0])
    return names
