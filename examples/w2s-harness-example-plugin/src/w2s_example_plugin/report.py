"""The report view of ``example-naive-twice``: what ``w2s-harness report`` adds for this plugin's own rows.

The ``w2s_report_views`` hook (in ``__init__``) calls :func:`naive_twice_view` with the run's
:class:`w2s_harness.Results`; it returns ``None`` for results without an ``example-naive-twice`` row, else a
:class:`w2s_harness.ReportView`: a table of the test accuracy after every round (printed after the harness's own
tables, by ``run`` too) and a figure of it (``example_naive_twice.png``, written by ``report`` next to
``results.json``).
"""

from __future__ import annotations

from pathlib import Path

from w2s_harness import ReportTable, ReportView, Results, headless_pyplot, save_figure

from .strategy import NaiveTwice

FIGURE = "example_naive_twice.png"
NOTE = (f"{NaiveTwice.name}: round 1 is the naive transfer; each later round retrains the strong student on the "
        f"previous one's labels")


def _mean(summary) -> float | None:
    return summary.mean


def _fmt(value: float | None) -> str | None:
    return None if value is None else f"{value:.3f}"  # None shows as "-"


def naive_twice_view(results: Results) -> ReportView | None:
    rows = [e for e in results.experiments if e.strategy == NaiveTwice.name]
    if not rows:
        return None
    # rung 0 is the weak model, rung r the student of round r (rung_acc: one accuracy summary per rung)
    rounds = max(len(e.rung_acc) for e in rows) - 1
    columns = ["row", "weak", *(f"round {r}" for r in range(1, rounds + 1)), "ceiling"]
    cells = []
    for e in rows:
        accs = [_mean(r.acc) for r in e.rung_acc] + [None] * (rounds + 1 - len(e.rung_acc))
        cells.append([e.name, *(_fmt(a) for a in accs), _fmt(_mean(e.ceiling_acc))])
    table = ReportTable(f"{NaiveTwice.name}: test accuracy after each round (mean over seeds)", columns, cells,
                        justify=["left"] + ["right"] * (len(columns) - 1),
                        notes=[NOTE])

    def figures(out_dir: Path) -> list[Path]:
        plt = headless_pyplot()  # matplotlib on the Agg backend: report never needs a display
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for i, e in enumerate(rows):
            accs = [_mean(r.acc) for r in e.rung_acc]
            ax.plot(range(len(accs)), [float("nan") if a is None else a for a in accs], marker="o",
                    color=f"C{i}", label=e.name)
            if e.ceiling_acc.mean is not None:
                ax.axhline(e.ceiling_acc.mean, ls="--", color=f"C{i}", lw=0.8)
        ax.set_xticks(range(rounds + 1), ["weak", *(f"round {r}" for r in range(1, rounds + 1))])
        ax.set_ylabel("test accuracy (mean over seeds)")
        ax.set_title("--- ceiling", fontsize=8, loc="right")
        ax.legend(fontsize=7)
        return [save_figure(fig, Path(out_dir) / FIGURE)]

    return ReportView(NaiveTwice.name, tables=[table], figures=figures)
