"""Report views: the tables and figures a plugin contributes to ``report`` for the results it recognises
(the ``w2s_report_views`` hook). The core names no strategy: a built-in strategy's view registers through the same
hook as a third party's."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._contracts.errors import PluginError
from .results import Results


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
        from .._plugin_system.manager import plugin_manager

        pm = plugin_manager()
    views = []
    for out in pm.hook.w2s_report_views(results=results):
        for view in (out if isinstance(out, (list, tuple)) else [out]):
            if not isinstance(view, ReportView):
                raise PluginError(f"w2s_report_views returned {type(view).__name__} {view!r}; return a ReportView, "
                                  f"a list of them, or None")
            views.append(view)
    return views
