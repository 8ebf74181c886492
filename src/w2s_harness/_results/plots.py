"""Matplotlib figures for ``w2s-harness report``: accuracies, PGR and the paired comparisons (drawn by
:mod:`._figures`), accuracy along a ladder, the gain against the misfit
per seed (``misfit.png``) and the transfers' training curves (``curves.png``); then the figures of the plugins'
report views (``w2s_report_views``, :func:`~w2s_harness._results.views.report_views`). :func:`pyplot` and :func:`save`
are public (``headless_pyplot``, ``save_figure``) for those views."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path

from .results import Results, Summary

#: the formats ``report --fig-format`` writes
FORMATS = ("png", "svg", "pdf")
#: the format :func:`save` writes, set by :func:`write_figures` for the figures of one report
_FORMAT: ContextVar[str] = ContextVar("w2s_fig_format", default="png")
#: no creation date or software version in the files: the same results give the same bytes
_METADATA = {".svg": {"Date": None}, ".pdf": {"CreationDate": None, "Producer": None}, ".png": {"Software": None}}


def _value(v: float | None) -> float:
    return v if v is not None else float("nan")


def _mean(s: Summary) -> float:
    return _value(s.mean)


def headless_pyplot():
    """``matplotlib.pyplot`` on the headless Agg backend (report never needs a display): draw a report view's
    figures with it, ``plt = headless_pyplot(); fig, ax = plt.subplots()``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Lay out, write (PNG at 110 dpi, or the format ``report --fig-format`` chose: a ``.png`` path becomes
    ``.svg`` / ``.pdf``) and close ``fig``; its path as written (as :class:`~pathlib.Path`)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fmt = _FORMAT.get()
    if fmt != "png" and path.suffix == ".png":  # a view names its figure .png; the report's format wins
        path = path.with_suffix(f".{fmt}")
    if fig.get_layout_engine() is None:  # a figure made with layout="constrained" is laid out already
        fig.tight_layout()
    # bbox "tight" keeps what sits outside the axes (a legend below the plot, text in the right margin)
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata=_METADATA.get(path.suffix, {}))
    plt.close(fig)
    return path


def write_figures(results: Results, out_dir: Path, pm=None, fmt: str = "png",
                note: Callable[[str], None] | None = None) -> list[Path]:
    """Write the figures next to results.json (``fmt``: png, svg or pdf), then the figures of the report views
    of ``pm``'s plugins (default: the process-wide plugin manager); return their paths. ``note`` receives one line
    for a figure left out on purpose (e.g. training curves with too few points to draw)."""
    if fmt not in FORMATS:
        from .._contracts.errors import ConfigError

        raise ConfigError(f"unknown figure format {fmt!r}; use one of {', '.join(FORMATS)}")
    token = _FORMAT.set(fmt)
    try:
        return _write_figures(results, Path(out_dir), pm, note or (lambda line: None))
    finally:
        _FORMAT.reset(token)


def _write_figures(results: Results, out_dir: Path, pm, note: Callable[[str], None]) -> list[Path]:
    from .figures import accuracy_figure, comparisons_figure, pgr_figure

    plt = headless_pyplot()
    exps = results.experiments
    if not exps:
        return []
    written = []
    for figure, name in ((accuracy_figure, "accuracy.png"), (pgr_figure, "pgr.png"),
                         (comparisons_figure, "comparisons.png")):
        fig = figure(results, plt)
        if fig is not None:
            written.append(save_figure(fig, out_dir / name))

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
        ax.set_title("Test accuracy along the ladder (mean over seeds)", fontsize=10)
        ax.legend(fontsize=8)
        written.append(save_figure(fig, out_dir / "ladder.png"))
    for path in (misfit_figure(results, out_dir), curves_figure(results, out_dir, note)):
        if path is not None:
            written.append(path)
    from .views import report_views

    for view in report_views(results, pm):
        if view.figures is not None:
            written += [Path(p) for p in view.figures(out_dir)]
    return written


def misfit_figure(results: Results, out_dir: Path) -> Path | None:
    """``misfit.png``: per seed and row, the gain (transfer acc - weak acc) against the misfit error on test and
    the misfit KL on train2 (Charikar et al. 2024); ``None`` when no row has an analysis."""
    plt = headless_pyplot()

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
        ax.legend(fontsize=7)  # every panel: a reader looking at one panel needs its key
    fig.suptitle("gain against misfit, one point per seed")
    return save_figure(fig, Path(out_dir) / "misfit.png")


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


#: fewer points than this along every transfer curve: no figure (a line through 1-2 points says nothing)
MIN_CURVE_POINTS = 3


def _carried(curve: list[dict], key: str, steps):
    """``curve``'s ``key`` at each of ``steps``: the value of its last point at or before the step (NaN before
    its first point), so seeds that stopped after different step counts (L-BFGS) share one x axis; a seed that
    stopped keeps its final value, which is the model it returned."""
    import numpy as np

    xs = np.array([p["step"] for p in curve])
    vs = np.array([_value(p.get(key)) for p in curve], dtype=float)
    idx = np.searchsorted(xs, steps, side="right") - 1
    return np.where(idx >= 0, vs[np.clip(idx, 0, None)], np.nan)


def curves_figure(results: Results, out_dir: Path, note: Callable[[str], None] | None = None) -> Path | None:
    """``curves.png``: every row's transfer test accuracy, agreement with its training labels and train loss
    against the optimiser step (AdamW) or iteration (L-BFGS): the mean over seeds as a line with the range over
    seeds as a band, each seed as a faint line, a star at an early-stopped checkpoint. ``None`` when no transfer
    recorded a curve, or when no row has a seed's curve of :data:`MIN_CURVE_POINTS` points (then ``note`` gets one line
    saying so and how to record more)."""
    import numpy as np

    rows = _transfer_curves(results)
    if not rows:
        return None
    drawn = [(name, curves, chosen, np.array(sorted({p["step"] for c in curves for p in c})))
             for name, curves, chosen in rows]
    # judged per seed: two seeds of 2 points each at different steps are still 2-point curves
    short = [r for r in drawn if max(len(c) for c in r[1]) < MIN_CURVE_POINTS]
    drawn = [r for r in drawn if r not in short]
    if short and note is not None:
        most = max(len(c) for _, curves, _, _ in short for c in curves)
        what = ("curves.png not written: the transfer curves have" if not drawn else
                f"curves.png leaves out {', '.join(r[0] for r in short)}: its transfer curves have")
        note(f"{what} at most {most} point(s), too few to draw; record more with the strong model's "
             f"curve_every (e.g. --set strong.curve_every=2)")
    if not drawn:
        return None
    plt = headless_pyplot()
    adamw = all("epoch" in c[0] for _, curves, _, _ in drawn for c in curves)
    lbfgs = not any("epoch" in c[0] for _, curves, _, _ in drawn for c in curves)
    xlabel = "optimiser step (AdamW)" if adamw else "L-BFGS iteration" if lbfgs else "AdamW step or L-BFGS iteration"
    panels = (("test_acc", "test accuracy"), ("agreement", "agreement with training labels"),
              ("train_loss", "train loss"))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), layout="constrained")
    starred = False
    for i, (name, curves, chosen, steps) in enumerate(drawn):
        color = f"C{i % 10}"
        for ax, (key, label) in zip(axes, panels):
            per_seed = np.array([_carried(c, key, steps) for c in curves])
            for c in curves:
                ax.plot([p["step"] for p in c], [_value(p.get(key)) for p in c], color=color, alpha=0.25, lw=0.7)
            with np.errstate(all="ignore"):  # a step before every seed's first point is NaN for all of them
                mean = np.nanmean(per_seed, axis=0)
                lo, hi = np.nanmin(per_seed, axis=0), np.nanmax(per_seed, axis=0)
            ax.fill_between(steps, lo, hi, color=color, alpha=0.15, lw=0)
            ax.plot(steps, mean, color=color, lw=2, label=f"{name} (mean of {len(curves)} seeds)")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
        for c, step in zip(curves, chosen):
            hit = [p for p in c if step is not None and p["step"] == step]
            if hit:
                axes[0].scatter([step], [_value(hit[0].get("test_acc"))], color=color, marker="*", s=70, zorder=3,
                                label=None if starred else "early-stopped checkpoint")
                starred = True
    for ax in axes:
        # the faint per-seed lines and the band have one key, shared by every row
        ax.plot([], [], color="gray", alpha=0.4, lw=0.7, label="each seed")
        ax.fill_between([], [], [], color="gray", alpha=0.2, lw=0, label="range over seeds")
        ax.legend(fontsize=7)
    fig.suptitle("Transfer training curves: mean over seeds, band = range over seeds, faint lines = each seed",
                 fontsize=10)
    return save_figure(fig, Path(out_dir) / "curves.png")
