"""Rich tables for results.json: the PGR table, ladder rows and paired comparisons (to stderr).

Every PGR figure comes with the seeds it is over (``used/run``), its mean with the 95% bootstrap CI and its
median; the seeds left out are named below the table with the reason, and a row whose weak model is at or above
the ceiling prints ``n/a: weak >= ceiling`` instead of a number. ``metrics`` adds analysis columns (agreement,
misfit, AUROC and PGR on AUROC, see :class:`~w2s_harness._results.Analysis`).

Plugins add their own tables (and figures, :mod:`._plots`) for the results they recognise through the
``w2s_report_views`` hook: each returns :class:`ReportView` objects, printed after the comparisons table by
:func:`render` (:func:`report_views` collects them). The core names no strategy: a built-in strategy's view (the
weak x strong pairs of a model list, for instance) registers through the same hook as a third party's."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import ConfigError, PluginError
from ._results import ExperimentResult, Results, Summary

#: Groups of analysis columns ``render`` adds (``w2s-harness report --metrics agreement,misfit,auroc``).
METRICS = ("agreement", "misfit", "auroc")

#: Per group: (column header, cell of a row).
_COLUMNS = {
    "agreement": [
        ("agree\n(test)", lambda a: _fmt_acc(a.agreement)),
        ("agree |\nweak right", lambda a: _fmt_acc(a.agreement_weak_right)),
        ("agree |\nweak wrong", lambda a: _fmt_acc(a.agreement_weak_wrong)),
    ],
    "misfit": [
        ("label acc\n(train2)", lambda a: _fmt_acc(a.label_acc_train2)),
        ("misfit err\ntrain2/test", lambda a: f"{_fmt_acc(a.misfit_err_train2)}/{_fmt_acc(a.misfit_err_test)}"),
        ("misfit KL\ntrain2/test", lambda a: f"{_fmt_acc(a.misfit_kl_train2)}/{_fmt_acc(a.misfit_kl_test)}"),
        ("gain", lambda a: _fmt_acc(a.gain, signed=True)),
    ],
    "auroc": [
        ("AUROC weak/\ntransfer/ceiling", lambda a: "/".join(
            _fmt_acc(x) for x in (a.weak_auroc, a.transfer_auroc, a.ceiling_auroc))),
        ("PGR(AUROC)\nmean [95% CI]", lambda a: fmt_ci(a.pgr_auroc)),
    ],
}


@dataclass(frozen=True)
class ReportTable:
    """A table given as rows, for a :class:`ReportView` that does not build a rich table itself.

    Titles, headers and cells are plain text, never read as rich markup (``[easy-to-hard]`` shows as written).

    :param title: the table's title.
    :param columns: the column headers.
    :param rows: one sequence of cells per row, as many as ``columns``; a cell is shown as ``str(cell)``, ``None``
        as ``-``.
    :param justify: per column ``"left"``, ``"right"`` or ``"center"`` (default: every column left).
    :param notes: lines printed under the table (plain text), e.g. what the rows leave out.
    """

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    justify: Sequence[str] = ()
    notes: Sequence[str] = ()

    def __post_init__(self):
        if self.justify and len(self.justify) != len(self.columns):
            raise ValueError(f"ReportTable {self.title!r}: {len(self.justify)} justify values for "
                             f"{len(self.columns)} columns")
        bad = [j for j in self.justify if j not in ("left", "right", "center")]
        if bad:
            raise ValueError(f"ReportTable {self.title!r}: justify must be left, right or center, got {bad[0]!r}")
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"ReportTable {self.title!r}: a row has {len(row)} cells for {len(self.columns)} "
                                 f"columns: {list(row)!r}")

    def __rich__(self):
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=escape(self.title))
        for i, col in enumerate(self.columns):
            table.add_column(escape(col), justify=self.justify[i] if self.justify else "left")
        for row in self.rows:
            table.add_row(*(escape("-" if cell is None else str(cell)) for cell in row))
        return table


@dataclass(frozen=True)
class ReportView:
    """What a plugin adds to ``w2s-harness report`` (and to the table ``run`` prints) for some results: returned
    by its ``w2s_report_views(results)`` hook.

    :param name: the view's name (in error messages), e.g. the strategy it shows.
    :param tables: printed after the comparisons table, in order: :class:`ReportTable` objects or any rich
        renderable (a ``rich.table.Table``, a string: printed as rich prints it).
    :param figures: ``figures(out_dir) -> [paths]``: writes the view's PNGs into ``out_dir`` (the folder of
        ``results.json``) and returns their paths; called by ``report`` unless ``--no-plots``. Draw with
        :func:`~w2s_harness.headless_pyplot` and write with :func:`~w2s_harness.save_figure`.
    """

    name: str
    tables: Sequence[Any] = ()
    figures: Callable[[Path], Iterable[Path]] | None = None


def report_views(results: Results, pm=None) -> list[ReportView]:
    """Every :class:`ReportView` the plugins of ``pm`` (default: the process-wide plugin manager) return for
    ``results``, in pluggy's order (the last registered plugin's first). A hook may return one view, a list of
    them, or ``None``."""
    if pm is None:
        from ._pluginmanager import plugin_manager

        pm = plugin_manager()
    views = []
    for out in pm.hook.w2s_report_views(results=results):
        for view in (out if isinstance(out, (list, tuple)) else [out]):
            if not isinstance(view, ReportView):
                raise PluginError(f"w2s_report_views returned {type(view).__name__} {view!r}; return a ReportView, "
                                  f"a list of them, or None")
            views.append(view)
    return views


def parse_metrics(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """The analysis column groups of a comma-separated list (``"agreement,misfit"``, ``"all"``); a one-line
    :class:`~w2s_harness.ConfigError` for an unknown name."""
    if not text:
        return ()
    names = [m.strip() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    if "all" in names:
        return METRICS
    bad = [m for m in names if m not in METRICS]
    if bad:
        raise ConfigError(f"--metrics: unknown {', '.join(repr(m) for m in bad)}; use a comma-separated list of "
                          f"{', '.join(METRICS)} (or all)")
    return tuple(dict.fromkeys(names))


def _fmt_acc(summary: Summary, signed: bool = False) -> str:
    if summary.mean is None:
        return "-"
    return f"{summary.mean:{'+' if signed else ''}.3f}"


def fmt_ci(summary: Summary, signed: bool = False) -> str:
    """``mean [lo, hi]``; ``n/a: <why>`` where the summary says it does not apply, ``n/a`` with no value."""
    if summary.na:
        return f"n/a: {summary.na}"
    if summary.mean is None:
        return "n/a"
    sign = "+" if signed else ""
    text = f"{summary.mean:{sign}.3f}"
    if summary.ci95:
        lo, hi = summary.ci95
        text += f" [{lo:{sign}.2f}, {hi:{sign}.2f}]"
    return text


def fmt_median(summary: Summary, signed: bool = False) -> str:
    if summary.na or summary.median is None:
        return "-"
    return f"{summary.median:{'+' if signed else ''}.3f}"


def fmt_seeds(summary: Summary) -> str:
    """Seeds used / seeds run, e.g. ``9/10``."""
    return f"{summary.n}/{summary.n_run}"


def dropped_text(summary: Summary) -> str:
    """The dropped seeds grouped by reason: ``seed 3: ceiling 0.712 <= weak 0.720 (no gap to recover); seeds 5,
    7: not finished (transfer)``; empty when none was dropped."""
    groups: dict[str, list] = {}
    for d in summary.dropped:
        groups.setdefault(str(d.get("reason")), []).append(d.get("seed"))
    parts = []
    for reason, seeds in groups.items():
        label = "seed" if len(seeds) == 1 else "seeds"
        parts.append(f"{label} {', '.join(str(s) for s in seeds)}: {reason}")
    return "; ".join(parts)


def notes(name: str, summary: Summary, what: str = "PGR", detail: str | None = None) -> str | None:
    """One line on what ``summary`` leaves out (``None`` when it uses every seed and applies)."""
    if not summary.dropped and not summary.na:
        return None
    if summary.na:
        head = f"{name}: {what} n/a ({summary.na}{': ' + detail if detail else ''})"
    else:
        head = f"{name}: {what} over {summary.n} of {summary.n_run} seeds"
    dropped = dropped_text(summary)
    return head + (f"; dropped {dropped}" if dropped else "")


def _analysis_cells(e: ExperimentResult, metrics: Sequence[str]) -> list[str]:
    cells = []
    for group in metrics:
        for _, cell in _COLUMNS[group]:
            cells.append(cell(e.analysis) if e.analysis is not None else "-")
    return cells


def oracle_note(e: ExperimentResult) -> str | None:
    """The line under the table for a row whose transfer selected its checkpoint on ground truth."""
    if not e.oracle:
        return None
    return (f'{e.name}: the transfer is early-stopped on ground-truth validation labels (early_stop = "gt_val"): '
            f"an oracle, not a weak-to-strong result")


def render_analysis(results: Results, console, metrics: Sequence[str]) -> None:
    """The analysis columns of ``metrics`` (:data:`METRICS` groups), one row per experiment (means over the seeds
    used; ``-`` where a row has no analysis), and the seeds PGR(AUROC) leaves out."""
    from rich.markup import escape  # names are text: "local[easy-to-hard]" must show, not be read as markup
    from rich.table import Table

    metrics = parse_metrics(metrics)
    table = Table(title="Why it generalised (means over seeds; agreement and misfit against the weak model)")
    table.add_column("experiment")
    for group in metrics:
        for header, _ in _COLUMNS[group]:
            table.add_column(header, justify="right", no_wrap=True)
    lines = []
    for e in results.experiments:
        table.add_row(escape(e.name), *_analysis_cells(e, metrics))
        if "auroc" in metrics and e.analysis is not None:
            lines.append(notes(e.name, e.analysis.pgr_auroc, what="PGR(AUROC)"))
    console.print(table)
    for line in lines:
        if line:
            console.print(line, markup=False, highlight=False)


def render(results: Results, console, metrics: Sequence[str] = (), pm=None) -> None:
    """Print the PGR table (one row per experiment, plus one per rung of a ladder) and comparisons; ``metrics``
    (:data:`METRICS` groups) adds the analysis columns in a table of their own, one row per experiment
    (:func:`render_analysis`); then the tables of the plugins' report views (:func:`report_views`, from ``pm``:
    default the process-wide plugin manager)."""
    from ._export import comparisons_table, print_rich, summary_table, summary_title

    metrics = parse_metrics(metrics)
    status = results.status
    # The terminal tables are built from the same data the exports write (report --format md|csv|latex|json),
    # so a printed and an exported table cannot disagree.
    print_rich([summary_table([(None, results)], summary_title(results))], console)
    if metrics:
        render_analysis(results, console, metrics)
    comps = comparisons_table(results)
    if comps is not None:
        print_rich([comps], console)
    for view in report_views(results, pm):
        for table in view.tables:
            console.print(table)
            for line in table.notes if isinstance(table, ReportTable) else ():
                console.print(line, markup=False, highlight=False)
    t = results.timings
    if t:
        console.print(f"stages: {t.get('stages_computed', 0)} computed, {t.get('stages_cached', 0)} cached; "
                      f"{t.get('total_seconds', 0):.1f} s total")
    if results.error:
        console.print(f"[bold red]run {status}:[/] {results.error}")
