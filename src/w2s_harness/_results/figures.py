"""The summary figures of ``w2s-harness report``, drawn for a paper reader: ``accuracy`` (transfer accuracy with
its 95% CI on an axis that starts at 0, the weak model and the ceiling as reference marks with their CIs),
``pgr`` (horizontal bars, so long row names never overlap, with the PGR = 0 and PGR = 1 lines) and
``comparisons`` (a forest plot of the paired differences: mean, CI, wins).

Every figure has a title that says what the interval is and how many seeds it is over, and a legend. Each
function draws with the ``pyplot`` it is given and returns the figure (``None`` when there is nothing to draw);
:func:`.plots.write_figures` saves it, so ``report --fig-format`` applies and this module needs nothing from
:mod:`._plots`."""

from __future__ import annotations

from math import isnan

from .results import Results, Summary

#: colours shared by the figures: a reader who learns "red dashed = weak" on one reads it on the others.
WEAK, CEILING, TRANSFER = "tab:red", "tab:green", "tab:blue"


def _mean(s: Summary) -> float:
    return s.mean if s.mean is not None else float("nan")


def _ci(s: Summary) -> tuple[float, float] | None:
    return (float(s.ci95[0]), float(s.ci95[1])) if s.ci95 else None


def _height(rows: int) -> float:
    """Figure height for ``rows`` horizontal rows: a fixed frame (title, axis, legend) plus a band per row."""
    return 1.9 + 0.45 * rows


def _seeds_run(results: Results) -> int:
    return max((e.pgr.n_run or 0 for e in results.experiments), default=0)


def _shared(values: list[tuple[float, tuple[float, float] | None]]) -> bool:
    """Whether every row has the same (defined) reference value: drawn once across the plot, not per row."""
    first = values[0][0]
    return not isnan(first) and all(abs(v - first) < 1e-12 for v, _ in values)


def accuracy_figure(results: Results, plt):
    """``accuracy``: per row, the transfer's mean test accuracy (a bar from 0) with its 95% bootstrap CI and the
    value written on the bar; the weak model and the ceiling as vertical reference lines with their CI shaded,
    drawn once across all rows when the rows share them (the usual case: one weak model, one ceiling), else per
    row. ``None`` when there are no rows."""
    import numpy as np

    exps = results.experiments
    if not exps:
        return None
    n = len(exps)
    fig, ax = plt.subplots(figsize=(8.5, _height(n)), layout="constrained")
    y = np.arange(n)[::-1]  # first row on top, as in the table
    means = np.array([_mean(e.transfer_acc) for e in exps])
    err = np.array([[m - c[0], c[1] - m] if (c := _ci(e.transfer_acc)) and not isnan(m) else [0.0, 0.0]
                    for m, e in zip(means, exps)]).T
    ax.barh(y, np.nan_to_num(means), xerr=err, height=0.55, color=TRANSFER, alpha=0.85, capsize=3,
            error_kw={"lw": 1.2}, label="transfer (mean, 95% CI)")
    for yi, m, e in zip(y, means, exps):
        if isnan(m):
            ax.text(0.01, yi, "transfer not finished", va="center", fontsize=8)
            continue
        c = _ci(e.transfer_acc)
        text = f"{m:.3f}" + (f" [{c[0]:.3f}, {c[1]:.3f}]" if c else "")
        # inside the bar when it is long enough to hold the text, else after the whisker
        inside = m > 0.35
        ax.text(0.015 if inside else (c[1] if c else m) + 0.015, yi, text, va="center", fontsize=8,
                color="white" if inside else "black")
    for key, color, ls, name in (("weak_acc", WEAK, "--", "weak"), ("ceiling_acc", CEILING, ":", "ceiling")):
        values = [(_mean(getattr(e, key)), _ci(getattr(e, key))) for e in exps]
        if _shared(values):
            v, c = values[0]
            ax.axvline(v, color=color, ls=ls, lw=1.6, label=f"{name} {v:.3f}" + (" (shaded: 95% CI)" if c else ""))
            if c:
                ax.axvspan(*c, color=color, alpha=0.12, lw=0)
            continue
        labelled = False
        for yi, (v, c) in zip(y, values):
            if isnan(v):
                continue
            ax.plot([v, v], [yi - 0.4, yi + 0.4], color=color, ls=ls, lw=1.8,
                    label=None if labelled else f"{name} (per row; shaded: 95% CI)")
            labelled = True
            if c:
                ax.fill_betweenx([yi - 0.4, yi + 0.4], *c, color=color, alpha=0.15, lw=0)
    ax.set_yticks(y, [e.name for e in exps])
    ax.set_xlim(0, 1)  # an honest axis: bar lengths are accuracies, gaps are not magnified
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel("test accuracy")
    ax.set_title(f"Test accuracy over {_seeds_run(results)} seeds (mean, 95% bootstrap CI)", fontsize=10)
    fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig


def pgr_figure(results: Results, plt):
    """``pgr``: per row a horizontal bar of the mean PGR with its 95% CI, a diamond at the median, the seeds used
    beside the row's name, and ``n/a: <reason>`` instead of a bar where PGR does not apply; vertical lines at PGR 0
    (the weak model) and PGR 1 (the ceiling). ``None`` when there are no rows."""
    import numpy as np

    exps = results.experiments
    if not exps:
        return None
    n = len(exps)
    fig, ax = plt.subplots(figsize=(8.5, _height(n)), layout="constrained")
    y = np.arange(n)[::-1]
    means = np.array([float("nan") if e.pgr.na else _mean(e.pgr) for e in exps])
    medians = np.array([float("nan") if e.pgr.na or e.pgr.median is None else e.pgr.median for e in exps])
    err = np.array([[m - c[0], c[1] - m] if (c := _ci(e.pgr)) and not isnan(m) else [0.0, 0.0]
                    for m, e in zip(means, exps)]).T
    ax.barh(y, np.nan_to_num(means), xerr=err, height=0.55, color="tab:purple", alpha=0.85, capsize=3,
            label="PGR mean, 95% CI")
    ok = ~np.isnan(medians)
    ax.scatter(medians[ok], y[ok], marker="D", color="k", s=22, zorder=3, label="median")
    for yi, m, e in zip(y, means, exps):
        if isnan(m):
            ax.text(0.02, yi, f"n/a: {e.pgr.na}" if e.pgr.na else "n/a: no seed has a PGR", va="center",
                    fontsize=8, color="dimgray")
    ax.axvline(0, color=WEAK, ls="--", lw=1.2, label="PGR 0: weak model")
    ax.axvline(1, color=CEILING, ls=":", lw=1.6, label="PGR 1: ceiling")
    ends = [v for c in (_ci(e.pgr) for e in exps if not e.pgr.na) if c for v in c] + list(means[~np.isnan(means)])
    ax.set_xlim(min([-0.1, *(v - 0.1 for v in ends)]), max([1.1, *(v + 0.1 for v in ends)]))
    ax.set_yticks(y, [f"{e.name}  ({e.pgr.n}/{e.pgr.n_run} seeds)" for e in exps])
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel("PGR = (transfer - weak) / (ceiling - weak)")
    ax.set_title("Performance gap recovered (mean over the seeds used, 95% bootstrap CI)", fontsize=10)
    fig.legend(loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    return fig


def comparisons_figure(results: Results, plt):
    """``comparisons``: a forest plot of the paired comparisons, one row per ``a - b``: the mean per-seed
    difference with its 95% bootstrap CI (dark where the CI excludes 0), a diamond at the median, and at the right
    the seeds ``a`` won out of the seeds used; a vertical line at 0 (no difference). ``None`` when the run has no
    comparisons."""
    import numpy as np

    comps = results.comparisons
    if not comps:
        return None
    n = len(comps)
    fig, ax = plt.subplots(figsize=(8.5, _height(n)), layout="constrained")
    y = np.arange(n)[::-1]
    labelled = set()
    for yi, c in zip(y, comps):
        ci = _ci(c)
        if c.na or c.mean is None:
            ax.text(0, yi, f"n/a: {c.na}" if c.na else "n/a: no seed with both rows defined", va="center",
                    ha="center", fontsize=8, color="dimgray")
            continue
        clear = ci is not None and (ci[0] > 0 or ci[1] < 0)
        kind = "mean, 95% CI excludes 0" if clear else "mean, 95% CI"
        color = "tab:blue" if clear else "gray"
        if ci:
            ax.plot(ci, [yi, yi], color=color, lw=2)
        ax.scatter([c.mean], [yi], marker="s", s=40, color=color, zorder=3,
                   label=None if kind in labelled else kind)
        labelled.add(kind)
        if c.median is not None:
            ax.scatter([c.median], [yi], marker="D", s=18, facecolor="white", edgecolor="k", zorder=4,
                       label=None if "median" in labelled else "median")
            labelled.add("median")
    for yi, c in zip(y, comps):
        # the right margin, in axes coordinates: readable whatever the x range
        ax.text(1.02, yi, f"wins {c.wins}/{c.n}" + (f" ({c.n_run} run)" if c.n_run != c.n else ""),
                transform=ax.get_yaxis_transform(), va="center", fontsize=8)
    ax.axvline(0, color="k", lw=1, label="no difference")
    ends = [v for c in comps if not c.na and c.ci95 for v in c.ci95] + [c.mean for c in comps
                                                                        if not c.na and c.mean is not None]
    span = max([0.1, *(abs(v) for v in ends)]) * 1.15
    ax.set_xlim(-span, span)
    ax.set_yticks(y, [f"{c.a} - {c.b}" for c in comps])
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(f"paired difference of {comps[0].metric.upper()} per seed (same seed, same split)")
    ax.set_title("Paired comparisons (mean difference, 95% bootstrap CI; wins = seeds where a > b)", fontsize=10)
    fig.legend(loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    return fig
