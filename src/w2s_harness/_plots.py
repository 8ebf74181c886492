"""Matplotlib figures for ``w2s-harness report``: accuracies, PGR (mean with CI whiskers, median
markers, seeds used per row, ``n/a`` where weak >= ceiling), accuracy along a ladder."""

from __future__ import annotations

from pathlib import Path

from ._results import Results, Summary


def _value(v: float | None) -> float:
    return v if v is not None else float("nan")


def _mean(s: Summary) -> float:
    return _value(s.mean)


def write_plots(results: Results, out_dir: Path) -> list[Path]:
    """Write PNG plots next to results.json; return their paths."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir = Path(out_dir)
    exps = results.experiments
    if not exps:
        return []
    written = []
    labels = [e.name for e in exps]
    x = np.arange(len(exps))

    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(exps)), 4))
    for j, (key, name) in enumerate([("weak_acc", "weak"), ("transfer_acc", "transfer"), ("ceiling_acc", "ceiling")]):
        ax.bar(x + (j - 1) * 0.27, [_mean(getattr(e, key)) for e in exps], width=0.27, label=name)
    weak_means = [_mean(e.weak_acc) for e in exps]
    lo = np.nanmin(weak_means) if not np.all(np.isnan(weak_means)) else 0.05  # a failed run has no accuracy
    ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.legend()
    fig.tight_layout()
    written.append(out_dir / "accuracy.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(exps)), 4))
    # a row whose PGR does not apply (weak >= ceiling) gets no bar, only an "n/a" mark
    means = np.array([float("nan") if e.pgr.na else _mean(e.pgr) for e in exps])
    medians = np.array([float("nan") if e.pgr.na else _value(e.pgr.median) for e in exps])
    err = np.array([[m - e.pgr.ci95[0], e.pgr.ci95[1] - m] if e.pgr.ci95 and not e.pgr.na else [0, 0]
                    for m, e in zip(means, exps)]).T
    ax.bar(x, np.nan_to_num(means), yerr=err, capsize=4, color="tab:purple", label="mean, 95% CI")
    ax.scatter(x[~np.isnan(medians)], medians[~np.isnan(medians)], marker="D", color="k", zorder=3, label="median")
    for xi, e, m in zip(x, exps, means):
        if np.isnan(m):
            ax.annotate("n/a: " + e.pgr.na if e.pgr.na else "n/a", (xi, 0), ha="center", va="bottom", fontsize=8)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, [f"{e.name}\n{e.pgr.n}/{e.pgr.n_run} seeds" for e in exps], rotation=20, ha="right")
    ax.set_ylabel("PGR over the seeds used")
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(out_dir / "pgr.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    ladders = [e for e in exps if len(e.rung_acc) > 2]
    if ladders:
        fig, ax = plt.subplots(figsize=(6, 4))
        for e in ladders:
            ys = [_mean(r.acc) for r in e.rung_acc]
            ax.plot(range(len(ys)), ys, marker="o", label=e.name)
        first = ladders[0]
        ax.axhline(_mean(first.weak_acc), ls="--", color="gray", label="weak")
        ax.axhline(_mean(first.ceiling_acc), ls=":", color="k", label="ceiling")
        ax.set_xticks(range(len(first.rung_acc)), [r.model for r in first.rung_acc], rotation=20, ha="right")
        ax.set_ylabel("test accuracy")
        ax.set_xlabel("rung")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out_dir / "ladder.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    from ._grid import write_figures

    written += write_figures(results, out_dir)
    return written
