"""Rich tables for results.json: the PGR table, ladder rows and paired comparisons (to stderr).

Every PGR figure comes with the seeds it is over (``used/run``), its mean with the 95% bootstrap CI and its
median; the seeds left out are named below the table with the reason, and a row whose weak model is at or above
the ceiling prints ``n/a: weak >= ceiling`` instead of a number. ``metrics`` adds analysis columns (agreement,
misfit, AUROC and PGR on AUROC, see :class:`~w2s_harness._results.results.Analysis`).

Plugins add their own tables (and figures, :mod:`w2s_harness._results.plots`) for the results they recognise through the
``w2s_report_views`` hook: each returns :class:`~w2s_harness.ReportView` objects, printed after the comparisons table by
:func:`render` (:func:`~w2s_harness._results.views.report_views` collects them). The core names no strategy: a
built-in strategy's view (the weak x strong pairs of a model list, for instance) registers through the same hook as
a third party's."""

from __future__ import annotations

from collections.abc import Sequence

from .cells import ANALYSIS_COLUMNS, analysis_cells, notes, parse_metrics
from .results import Results
from .views import ReportTable, report_views


def render_analysis(results: Results, console, metrics: Sequence[str]) -> None:
    """The analysis columns of ``metrics`` (:data:`METRICS` groups), one row per experiment (means over the seeds
    used; ``-`` where a row has no analysis), and the seeds PGR(AUROC) leaves out."""
    from rich.markup import escape  # names are text: "local[easy-to-hard]" must show, not be read as markup
    from rich.table import Table

    metrics = parse_metrics(metrics)
    table = Table(title="Why it generalised (means over seeds; agreement and misfit against the weak model)")
    table.add_column("experiment")
    for group in metrics:
        for header, _ in ANALYSIS_COLUMNS[group]:
            table.add_column(header, justify="right", no_wrap=True)
    lines = []
    for e in results.experiments:
        table.add_row(escape(e.name), *analysis_cells(e, metrics))
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
    from .export import comparisons_table, print_rich, summary_table, summary_title

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
