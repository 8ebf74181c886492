"""Matplotlib figures for ``w2s-harness report``: accuracies, PGR (mean with CI whiskers, median
markers, seeds used per row, ``n/a`` where weak >= ceiling), accuracy along a ladder, the gain against the misfit
per seed (``misfit.png``) and the transfers' training curves (``curves.png``); then the figures of the plugins'
report views (``w2s_report_views``, :func:`~w2s_harness._results.report.report_views`). :func:`pyplot` and :func:`save`
are public (``headless_pyplot``, ``save_figure``) for those views."""

from __future__ import annotations

from pathlib import Path

from .results import Results, Summary


def _value(v: float | None) -> float:
    return v if v is not None else float("nan")


def _mean(s: Summary) -> float:
    return _value(s.mean)


def pyplot():
    """``matplotlib.pyplot`` on the headless Agg backend (report never needs a display): draw a report view's
    figures with it, ``plt = headless_pyplot(); fig, ax = plt.subplots()``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    """Lay out, write (PNG, 110 dpi) and close ``fig``; its path (as :class:`~pathlib.Path`)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_plots(results: Results, out_dir: Path, pm=None) -> list[Path]:
    """Write PNG plots next to results.json, then the figures of the report views of ``pm``'s plugins (default:
    the process-wide plugin manager); return their paths."""
    plt = pyplot()
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
    written.append(save(fig, out_dir / "accuracy.png"))

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
    written.append(save(fig, out_dir / "pgr.png"))

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
        written.append(save(fig, out_dir / "ladder.png"))
    for figure in (misfit_figure, curves_figure):
        path = figure(results, out_dir)
        if path is not None:
            written.append(path)
    from .report import report_views

    for view in report_views(results, pm):
        if view.figures is not None:
            written += [Path(p) for p in view.figures(out_dir)]
    return written


def misfit_figure(results: Results, out_dir: Path) -> Path | None:
    """``misfit.png``: per seed and row, the gain (transfer acc - weak acc) against the misfit error on test and
    the misfit KL on train2 (Charikar et al. 2024); ``None`` when no row has an analysis."""
    plt = pyplot()

    rows = [e for e in results.experiments if e.analysis is not None and e.analysis.gain_misfit]
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = (("misfit_err_test", "misfit error on test (1 - agreement with weak)"),
              ("misfit_kl_train2", "misfit KL(labels || student) on train2 (nats)"))
    for ax, (key, xlabel) in zip(axes, panels):
        top = 0.0
        for e in rows:
            pts = [p for p in e.analysis.gain_misfit if p.get(key) is not None]
            if pts:
                ax.scatter([p[key] for p in pts], [p["gain"] for p in pts], label=e.name, alpha=0.8)
                top = max(top, max(p[key] for p in pts))
        if key == "misfit_err_test" and top > 0:  # gain <= misfit error always holds on accuracy
            ax.plot([0, top], [0, top], ls="--", color="gray", lw=0.8, label="gain = misfit")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("gain: transfer acc - weak acc (test)")
    axes[0].legend(fontsize=7)
    fig.suptitle("gain against misfit, one point per seed")
    return save(fig, Path(out_dir) / "misfit.png")


def _transfer_curves(results: Results):
    """``[(row name, [curve per seed], [selected step per seed or None])]`` of the rows whose transfer stages
    recorded a training curve."""
    by_id = {s.id: s for s in results.stages}
    out = []
    for e in results.experiments:
        curves, chosen = [], []
        for sid in e.stage_ids.get("transfer", []):
            metrics = (by_id[sid].metrics or {}) if sid in by_id else {}
            if metrics.get("curve"):
                curves.append(metrics["curve"])
                chosen.append((metrics.get("early_stop") or {}).get("selected_step"))
        if curves:
            out.append((e.name, curves, chosen))
    return out


def curves_figure(results: Results, out_dir: Path) -> Path | None:
    """``curves.png``: every row's transfer test accuracy, agreement with its training labels and train loss
    against the optimiser step (AdamW steps or L-BFGS iterations; mean over seeds at the steps every seed
    recorded, thin lines per seed, a marker at an early-stopped step); ``None`` when no transfer recorded a
    curve."""
    plt = pyplot()
    import numpy as np

    rows = _transfer_curves(results)
    if not rows:
        return None
    panels = (("test_acc", "test accuracy"), ("agreement", "agreement with training labels"),
              ("train_loss", "train loss"))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for i, (name, curves, chosen) in enumerate(rows):
        color = f"C{i % 10}"
        if all("epoch" in c[0] for c in curves):  # AdamW: the n-th point of every seed is the same epoch/step
            length = min(len(c) for c in curves)
            aligned = [c[:length] for c in curves]
        else:  # L-BFGS seeds stop after different iteration counts: the steps every seed recorded
            steps = sorted(set.intersection(*({p["step"] for p in c} for c in curves)))
            aligned = [[p for p in c if p["step"] in steps] for c in curves]
        for ax, (key, label) in zip(axes, panels):
            for c in curves:
                ax.plot([p["step"] for p in c], [_value(p.get(key)) for p in c], color=color, alpha=0.2, lw=0.8)
            ax.set_xlabel("optimiser step (AdamW) or iteration (L-BFGS)")
            ax.set_ylabel(label)
            if aligned[0]:
                mean = np.nanmean([[_value(p.get(key)) for p in c] for c in aligned], axis=0)
                ax.plot([p["step"] for p in aligned[0]], mean, color=color, lw=1.8, label=name,
                        marker="o" if len(aligned[0]) < 30 else None, ms=3)
        for c, step in zip(curves, chosen):
            hit = [p for p in c if step is not None and p["step"] == step]
            if hit:
                axes[0].scatter([step], [_value(hit[0].get("test_acc"))], color=color, marker="*", s=60, zorder=3)
    axes[0].legend(fontsize=7)
    fig.suptitle("transfer training curves (mean over seeds; * = early-stopped checkpoint)")
    return save(fig, Path(out_dir) / "curves.png")
