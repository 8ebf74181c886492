"""The report view of the ``grid`` strategy: its rows (every weak <= strong pair of a model list) regrouped per
dataset and loss, as the paper's figure and the reference notebook's summary show them. It reaches
``w2s-harness report`` through the ``w2s_report_views`` hook (registered in this package's ``__init__``), exactly
as a third-party strategy's view does.

* :func:`summary`: the median over pairs of each pair's PGR (its mean over seeds), per dataset and loss, leaving
  out the pairs with weak == strong (nothing to recover) and the pairs whose ceiling is not above the weak model
  (PGR undefined): the reference's summary statistic.
* :func:`write_figures`: one figure per dataset: test accuracy against the strong model (one line per weak
  model, the strong models' ceilings dashed) and PGR against the strong model, one column per loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from w2s_harness import ExperimentResult, ReportTable, ReportView, Results, headless_pyplot, save_figure

from .grid import Grid

STRATEGY = Grid.name


@dataclass
class GridSummary:
    """Median PGR over the pairs of one dataset and loss."""

    dataset: str
    loss: str
    median_pgr: float | None
    pairs_used: int
    pairs: int
    excluded: list[str]


def rows(results: Results) -> list[ExperimentResult]:
    return [e for e in results.experiments if e.strategy == STRATEGY]


def _order(exps: list[ExperimentResult]) -> list[str]:
    """Models in grid order (the strategy declares pairs smallest weak first, then increasing strong)."""
    seen: dict[str, None] = {}
    for e in exps:
        seen.setdefault(e.weak, None)
        seen.setdefault(e.strong, None)
    return list(seen)


def summary(results: Results) -> list[GridSummary]:
    """Median PGR per (dataset, loss) over the grid's pairs, in results order."""
    import numpy as np

    groups: dict[tuple[str, str], list[ExperimentResult]] = {}
    for e in rows(results):
        groups.setdefault((e.dataset, e.loss), []).append(e)
    out = []
    for (dataset, loss), exps in groups.items():
        used, excluded = [], []
        for e in exps:
            if e.weak == e.strong:
                excluded.append(f"{e.weak}->{e.strong}: weak == strong")
            elif e.pgr.na or e.pgr.mean is None:
                excluded.append(f"{e.weak}->{e.strong}: {e.pgr.na or 'no PGR (not finished)'}")
            else:
                used.append(e.pgr.mean)
        median = float(np.median(used)) if used else None
        out.append(GridSummary(dataset, loss, median, len(used), len(exps), excluded))
    return out


def summary_table(results: Results) -> ReportTable | None:
    """The grid summary table (``None`` when the results have no grid rows)."""
    items = summary(results)
    if not items:
        return None
    return ReportTable(
        title="Grid summary: median over pairs of each pair's mean PGR (weak == strong and pairs with "
              "ceiling <= weak left out)",
        columns=("dataset", "loss", "median PGR", "pairs used / pairs"),
        justify=("left", "left", "right", "right"),
        rows=[(s.dataset, s.loss, "n/a" if s.median_pgr is None else f"{s.median_pgr:.3f}",
               f"{s.pairs_used} / {s.pairs}") for s in items])


def write_figures(results: Results, out_dir: Path) -> list[Path]:
    """One PNG per dataset with grid rows (``grid_<dataset>.png``): accuracy and PGR against the strong model;
    their paths."""
    import numpy as np

    plt = headless_pyplot()

    written = []
    by_dataset: dict[str, list[ExperimentResult]] = {}
    for e in rows(results):
        by_dataset.setdefault(e.dataset, []).append(e)
    for dataset, exps in by_dataset.items():
        models = _order(exps)
        short = [m.rsplit("/", 1)[-1] for m in models]
        losses = list(dict.fromkeys(e.loss for e in exps))
        fig, axes = plt.subplots(2, len(losses), figsize=(4.5 * len(losses), 7), squeeze=False)
        for col, loss in enumerate(losses):
            sel = [e for e in exps if e.loss == loss]
            acc_ax, pgr_ax = axes[0][col], axes[1][col]
            ceilings = {}
            for e in sel:
                if e.ceiling_acc.mean is not None:
                    ceilings[models.index(e.strong)] = e.ceiling_acc.mean
            xs = sorted(ceilings)
            acc_ax.plot(xs, [ceilings[x] for x in xs], ls="--", color="k", marker="s", label="ceiling (strong on GT)")
            for wi, weak in enumerate(models):
                mine = sorted((models.index(e.strong), e) for e in sel if e.weak == weak)
                if not mine:
                    continue
                color = plt.cm.viridis(wi / max(1, len(models) - 1))
                acc_ax.plot([x for x, _ in mine], [np.nan if e.transfer_acc.mean is None else e.transfer_acc.mean
                                                   for _, e in mine], marker="o", color=color,
                            label=f"weak {short[wi]}")
                pts = [(x, e.pgr.mean) for x, e in mine if e.weak != e.strong and not e.pgr.na
                       and e.pgr.mean is not None]
                if pts:
                    pgr_ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", color=color,
                                label=f"weak {short[wi]}")
            for ax in (acc_ax, pgr_ax):
                ax.set_xticks(range(len(models)), short, rotation=25, ha="right", fontsize=8)
                ax.set_xlabel("strong model")
            acc_ax.set_title(f"{dataset}: {loss}")
            acc_ax.set_ylabel("test accuracy (mean over seeds)")
            pgr_ax.axhline(0, color="k", lw=0.8)
            pgr_ax.set_ylabel("PGR (mean over seeds)")
            acc_ax.legend(fontsize=7)
            pgr_ax.legend(fontsize=7)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset)
        written.append(save_figure(fig, Path(out_dir) / f"grid_{safe}.png"))
    return written


def grid_view(results: Results) -> ReportView | None:
    """The grid's report view: the summary table and one figure per dataset; ``None`` without grid rows."""
    table = summary_table(results)
    if table is None:
        return None
    return ReportView(STRATEGY, tables=[table], figures=lambda out_dir: write_figures(results, out_dir))


__all__ = ["GridSummary", "grid_view", "rows", "summary", "summary_table", "write_figures"]
