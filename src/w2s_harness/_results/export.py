"""Every table of ``report`` / ``compare`` as data, and its export: ``--format table|md|csv|latex|json``.

A :class:`Table` keeps two views of the same rows: *data* (``columns`` / ``rows``: the numbers exactly as
``results.json`` holds them, for CSV and JSON, where a reader computes on them) and *text* (``text_columns`` /
``text_rows``: the cells as the terminal table prints them, ``0.512 [0.40, 0.61]``, for Markdown and LaTeX, where
a reader reads them). The rich terminal table is built from the text view as well.

Where the tables go (``--output``): nothing means stdout (``table``: the rich tables on stderr, as before); a path
that is an existing directory, or ends in ``/``, gets one file per table, ``<table name>.<ext>``; any other path
gets all the tables in one file. A file or stream with several CSV tables has one block per table, each headed by
a ``# <name>: <title>`` line, blocks separated by a blank line.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._contracts.errors import ConfigError, did_you_mean

FORMATS = ("table", "md", "csv", "latex", "json")
EXTENSIONS = {"table": "txt", "md": "md", "csv": "csv", "latex": "tex", "json": "json"}
#: Fewer seeds used than this and a row's CI is flagged under the table: a bootstrap CI over 2-4 values is
#: mostly noise (with 2 values it is the range of the two).
MIN_SEEDS_FOR_CI = 5


@dataclass
class Table:
    """One table: data for CSV/JSON, text for the terminal, Markdown and LaTeX (see the module docstring).

    :ivar name: a file-name-safe identifier (``summary``, ``comparisons``, ``view-<view name>-1``).
    """

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    text_columns: list[str]
    text_rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    justify: list[str] = field(default_factory=list)
    #: per text row, a rich style ("dim" for the rung rows under their experiment)
    styles: list[str | None] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


def check_format(name: str) -> str:
    """``name`` if it is a known format; a one-line :class:`ConfigError` with a did-you-mean otherwise."""
    if name not in FORMATS:
        raise ConfigError(f"--format: unknown format {name!r}.{did_you_mean(name, FORMATS)} "
                          f"Use one of {', '.join(FORMATS)}")
    return name


# --------------------------------------------------------------------------------------------- cell helpers


def _num(x: float | None) -> float | None:
    """A JSON-safe number: NaN and infinities become ``None`` (as ``results.json``'s summaries store them)."""
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def summary_data(prefix: str, s, signed: bool = False) -> dict[str, Any]:
    """The data columns of a :class:`~w2s_harness.Summary`: mean, CI bounds, median, seeds used/run, n/a."""
    lo, hi = (s.ci95 or [None, None])[:2]
    return {f"{prefix}_mean": _num(s.mean), f"{prefix}_ci_low": _num(lo), f"{prefix}_ci_high": _num(hi),
            f"{prefix}_median": _num(s.median), f"{prefix}_seeds_used": s.n, f"{prefix}_seeds_run": s.n_run,
            f"{prefix}_na": s.na}


def few_seeds_note(items: Sequence[tuple[str, Any]], what: str = "PGR") -> str | None:
    """One warning line under a table naming its figures over fewer than :data:`MIN_SEEDS_FOR_CI` seeds
    (``items``: ``(label, summary)``; a figure that is ``n/a`` or undefined has its own note instead)."""
    few = [f"{label} ({s.n}/{s.n_run})" for label, s in items
           if not s.na and s.mean is not None and s.n < MIN_SEEDS_FOR_CI]
    if not few:
        return None
    return (f"warning: {what} over fewer than {MIN_SEEDS_FOR_CI} seeds, CI unreliable: {', '.join(few)}; "
            f"run more seeds (--seeds)")


# --------------------------------------------------------------------------------------------- results -> tables


def summary_table(runs: Sequence[tuple[str | None, Any]], title: str) -> Table:
    """The PGR table of one run (``runs = [(None, results)]``) or of several (``[(label, results), ...]``: a
    ``run`` column first). One row per experiment, then its rungs (a ladder) as dim rows under it; the supervision
    columns (:mod:`._supervision`) appear when a row has supervisors or a filter."""
    from .cells import fmt_acc, fmt_ci, fmt_median, fmt_seeds, notes, oracle_note
    from .supervision import extra_columns, supervisions

    labelled = any(label is not None for label, _ in runs)
    sups = {(label, name): s for label, results in runs for name, s in supervisions(results).items()}
    extras = extra_columns({f"{k[0]}:{k[1]}": s for k, s in sups.items()})
    text_columns = (["run"] if labelled else []) + [
        "dataset", "strategy", "loss", "weak", "strong", "weak acc", "transfer acc", "ceiling acc",
        "PGR mean [95% CI]", "PGR median", "seeds used/run"] + [h for _, h, _ in extras]
    justify = ["left"] * ((1 if labelled else 0) + 5) + ["right"] * (6 + len(extras))
    table = Table("summary", title, [], [], text_columns, [], justify=justify)
    data_cols: list[str] | None = None
    few = []
    for label, results in runs:
        for e in results.experiments:
            sup = sups[(label, e.name)]
            data = ({"run": label} if labelled else {}) | {
                "name": e.name, "dataset": e.dataset, "strategy": e.strategy, "loss": e.loss, "weak": e.weak,
                "strong": e.strong, "split": e.split, "weak_acc": _num(e.weak_acc.mean),
                "transfer_acc": _num(e.transfer_acc.mean), "ceiling_acc": _num(e.ceiling_acc.mean),
                **summary_data("pgr", e.pgr), "oracle": e.oracle,
                "supervisor_acc": _num(sup.supervisor_acc), "n_supervisors": sup.n_supervisors,
                "label_acc_train2": _num(sup.label_acc), "kept_frac": _num(sup.kept_frac)}
            data_cols = data_cols or list(data)
            table.rows.append([data[c] for c in data_cols])
            table.text_rows.append(([label] if labelled else []) + [
                e.dataset, e.strategy, e.loss, e.weak, e.strong, fmt_acc(e.weak_acc), fmt_acc(e.transfer_acc),
                fmt_acc(e.ceiling_acc), fmt_ci(e.pgr), fmt_median(e.pgr), fmt_seeds(e.pgr)]
                + [cell(sup) for _, _, cell in extras])
            table.styles.append(None)
            name = f"{label}: {e.name}" if labelled else e.name
            means = (f"mean weak acc {e.weak_acc.mean:.3f}, mean ceiling acc {e.ceiling_acc.mean:.3f}"
                     if e.weak_acc.mean is not None and e.ceiling_acc.mean is not None else None)
            oracle = oracle_note(e)  # names the row without its run
            oracle = f"{label}: {oracle}" if oracle and labelled else oracle
            table.notes.extend(n for n in (notes(name, e.pgr, detail=means), oracle) if n)
            few.append((name, e.pgr))
            for i, rung in enumerate(e.rung_acc):
                table.text_rows.append(([""] if labelled else []) + [
                    "", "", f"  rung {i}", rung.model, "", "", fmt_ci(rung.acc), "", "", "", fmt_seeds(rung.acc)]
                    + [""] * len(extras))
                table.styles.append("dim")
    table.columns = data_cols or (["run"] if labelled else []) + ["name"]
    table.notes.extend(n for n in (few_seeds_note(few),) if n)
    return table


def rungs_table(runs: Sequence[tuple[str | None, Any]]) -> Table | None:
    """The rungs of every ladder row as data (the summary's text shows them as dim rows); ``None`` without any."""
    from .cells import fmt_ci, fmt_seeds

    labelled = any(label is not None for label, _ in runs)
    cols = (["run"] if labelled else []) + ["name", "rung", "model"] + list(summary_data("acc", _Empty()))
    text_cols = (["run"] if labelled else []) + ["experiment", "rung", "model", "test acc mean [95% CI]",
                                                 "seeds used/run"]
    table = Table("rungs", "Label-chain rungs: test accuracy of each rung", cols, [], text_cols, [])
    for label, results in runs:
        for e in results.experiments:
            for i, rung in enumerate(e.rung_acc):
                head = [label] if labelled else []
                table.rows.append(head + [e.name, i, rung.model, *summary_data("acc", rung.acc).values()])
                table.text_rows.append(head + [e.name, str(i), rung.model, fmt_ci(rung.acc), fmt_seeds(rung.acc)])
    return table if table.rows else None


class _Empty:
    mean = median = ci95 = na = None
    n = n_run = 0


def comparisons_table(results) -> Table | None:
    """The paired per-seed PGR differences a run planned; ``None`` when it has none."""
    from .cells import fmt_ci, fmt_median, fmt_seeds, notes

    comps = results.comparisons
    if not comps:
        return None
    table = Table("comparisons", "Paired per-seed PGR differences (same seed, same split)",
                  ["a", "b", "metric", *summary_data("diff", _Empty()), "wins", "seeds"], [],
                  ["comparison", "PGR difference mean [95% CI]", "median", "wins / seeds", "seeds used/run"], [])
    for c in comps:
        table.rows.append([c.a, c.b, c.metric, *summary_data("diff", c).values(), c.wins, c.seeds])
        table.text_rows.append([f"{c.a} - {c.b}", fmt_ci(c, signed=True), fmt_median(c, signed=True),
                                f"{c.wins} / {c.seeds}", fmt_seeds(c)])
        table.notes.extend(n for n in (notes(f"{c.a} - {c.b}", c, what="difference"),) if n)
    table.notes.extend(n for n in (few_seeds_note([(f"{c.a} - {c.b}", c) for c in comps], "difference"),) if n)
    return table


def analysis_table(results, metrics: Sequence[str]) -> Table | None:
    """The ``--metrics`` analysis columns: means over the seeds used, one row per experiment."""
    from .cells import ANALYSIS_COLUMNS, analysis_cells, notes
    from .results import ANALYSIS_KEYS

    if not metrics:
        return None
    keys = {"agreement": ANALYSIS_KEYS[:3], "misfit": ("label_acc_train2", "misfit_err_train2", "misfit_err_test",
                                                       "misfit_kl_train2", "misfit_kl_test", "gain"),
            "auroc": ("weak_auroc", "transfer_auroc", "ceiling_auroc", "pgr_auroc")}
    cols = ["name"] + [k for g in metrics for k in keys[g]]
    table = Table("analysis", "Why it generalised (means over seeds; agreement and misfit against the weak model)",
                  cols, [], ["experiment"] + [h.replace("\n", " ") for g in metrics for h, _ in ANALYSIS_COLUMNS[g]], [],
                  justify=["left"] + ["right"] * sum(len(ANALYSIS_COLUMNS[g]) for g in metrics))
    for e in results.experiments:
        a = e.analysis
        table.rows.append([e.name] + [None if a is None else _num(getattr(a, k).mean)
                                      for g in metrics for k in keys[g]])
        table.text_rows.append([e.name, *analysis_cells(e, metrics)])
        if "auroc" in metrics and a is not None:
            table.notes.extend(n for n in (notes(e.name, a.pgr_auroc, what="PGR(AUROC)"),) if n)
    return table


def _slug(text: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(p for p in out.split("-") if p) or "view"


def view_tables(results, pm=None) -> list[Table]:
    """The tables of the plugins' report views (:func:`~w2s_harness._results.views.report_views`) as :class:`Table` s.

    A :class:`~w2s_harness.ReportTable` keeps its cells as data (numbers stay numbers); a ``rich.table.Table``
    gives its rendered cells; any other renderable (a string) is not a table and is left to ``--format table``.
    """
    from .views import ReportTable, report_views

    out = []
    for view in report_views(results, pm):
        for i, t in enumerate(view.tables):
            name = f"view-{_slug(view.name)}-{i + 1}"
            if isinstance(t, ReportTable):
                rows = [[None if c is None else (_num(c) if isinstance(c, (int, float, bool)) else str(c))
                         for c in row] for row in t.rows]
                out.append(Table(name, t.title, list(t.columns), rows, list(t.columns),
                                 [["-" if c is None else str(c) for c in row] for row in t.rows], list(t.notes),
                                 list(t.justify)))
                continue
            rich_table = _from_rich(name, t)
            if rich_table is not None:
                out.append(rich_table)
    return out


def _from_rich(name: str, t) -> Table | None:
    try:
        from rich.table import Table as RichTable
    except ImportError:  # pragma: no cover - rich is a dependency
        return None
    if not isinstance(t, RichTable):
        return None
    headers = [str(c.header) for c in t.columns]
    # rich keeps a table's cells per column (``Column._cells``) and has no public accessor; a cell that is itself a
    # renderable (a Text, a nested table) exports as its str()
    cells = [[str(cell) for cell in c._cells] for c in t.columns]
    rows = [list(r) for r in zip(*cells)] if cells else []
    return Table(name, str(t.title or name), headers, rows, headers, [list(r) for r in rows])


def summary_title(results) -> str:
    n_seeds = max((len(e.seeds) for e in results.experiments), default=0)
    return (f"Weak-to-strong results ({results.status}, {n_seeds} seeds run; PGR mean [95% bootstrap CI] and median "
            f"over the seeds used)")


def report_tables(results, metrics: Sequence[str] = (), pm=None) -> list[Table]:
    """Every table ``w2s-harness report`` shows for one run, in order."""
    tables = [summary_table([(None, results)], summary_title(results))]
    tables += [t for t in (rungs_table([(None, results)]), analysis_table(results, metrics),
                           comparisons_table(results)) if t is not None]
    return tables + view_tables(results, pm)


# --------------------------------------------------------------------------------------------- writers


def _md_cell(text: str) -> str:
    # Markdown: "|" ends a cell and "_" / "*" start emphasis; newlines would break the row
    return (text.replace("\\", "\\\\").replace("|", "\\|").replace("_", "\\_").replace("*", "\\*")
            .replace("\n", " "))


def to_markdown(tables: Sequence[Table]) -> str:
    parts = []
    for t in tables:
        lines = [f"### {_md_cell(t.title)}", ""]
        lines.append("| " + " | ".join(_md_cell(c) for c in t.text_columns) + " |")
        align = {"left": ":---", "right": "---:", "center": ":---:"}
        lines.append("| " + " | ".join(align[j] for j in (t.justify or ["left"] * len(t.text_columns))) + " |")
        for row in t.text_rows:
            lines.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
        if t.notes:
            lines.append("")
            lines.extend(f"- {_md_cell(n)}" for n in t.notes)
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\n": " "}


def _tex(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def to_latex(tables: Sequence[Table]) -> str:
    """One ``table`` float per table (booktabs rules: ``\\usepackage{booktabs}``); notes as ``%`` comments."""
    parts = []
    for t in tables:
        spec = "".join({"left": "l", "right": "r", "center": "c"}[j]
                       for j in (t.justify or ["left"] * len(t.text_columns)))
        lines = [r"\begin{table}", r"\centering", rf"\caption{{{_tex(t.title)}}}", rf"\begin{{tabular}}{{{spec}}}",
                 r"\toprule", " & ".join(_tex(c) for c in t.text_columns) + r" \\", r"\midrule"]
        # "{}" keeps a row that starts with "[" from being read as the optional argument of the "\\" before it
        lines += [" & ".join(("{}" if i == 0 and c.startswith("[") else "") + _tex(c) for i, c in enumerate(row))
                  + r" \\" for row in t.text_rows]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        lines += [f"% {_tex(n)}" for n in t.notes]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _csv_one(t: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(t.columns)
    # repr-exact floats: a reader gets results.json's numbers back, not the 3 decimals the terminal shows
    writer.writerows([["" if c is None else c for c in row] for row in t.rows])
    return buf.getvalue()


def to_csv(tables: Sequence[Table], headed: bool = True) -> str:
    if not headed:
        return "\n".join(_csv_one(t) for t in tables)
    return "\n".join(f"# {t.name}: {t.title.replace(chr(10), ' ')}\n{_csv_one(t)}" for t in tables)


def _json_one(t: Table) -> dict[str, Any]:
    return {"name": t.name, "title": t.title, "columns": t.columns, "rows": t.records(), "notes": t.notes}


def to_json(tables: Sequence[Table]) -> str:
    return json.dumps({"tables": [_json_one(t) for t in tables]}, indent=2, allow_nan=False) + "\n"


def to_rich(t: Table, fold: bool = True):
    """A rich table of ``t``'s text view. ``fold``: cells too long for their column wrap onto the next line
    instead of ending in an ellipsis (a name cut to ``naive/lo…`` in a log cannot be read back)."""
    from rich.markup import escape
    from rich.table import Table as RichTable

    table = RichTable(title=escape(t.title))
    for i, col in enumerate(t.text_columns):
        table.add_column(escape(col), justify=t.justify[i] if t.justify else "left",
                         overflow="fold" if fold else "ellipsis")
    for i, row in enumerate(t.text_rows):
        table.add_row(*(escape(c) for c in row), style=t.styles[i] if i < len(t.styles) else None)
    return table


def print_rich(tables: Sequence[Table], console) -> None:
    for t in tables:
        console.print(to_rich(t))
        for line in t.notes:
            console.print(line, markup=False, highlight=False, soft_wrap=True)


def render_text(tables: Sequence[Table], fmt: str) -> str:
    """All ``tables`` in one text of format ``fmt`` (not ``table``)."""
    return {"md": to_markdown, "csv": to_csv, "latex": to_latex, "json": to_json}[fmt](tables)


def write(tables: Sequence[Table], fmt: str, output: str | None, console=None, stdout=None) -> list[Path]:
    """Write ``tables`` as ``fmt`` to ``output`` (see the module docstring); returns the files written.

    ``fmt == "table"`` without ``output`` prints the rich tables on ``console``; to a file it writes their plain
    text (no colours)."""
    import sys

    check_format(fmt)
    if output is None:
        if fmt == "table":
            print_rich(tables, console)
        else:
            (stdout or sys.stdout).write(render_text(tables, fmt))
        return []
    out = Path(output)
    if out.is_dir() or output.endswith(("/", "\\")):
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for t in tables:
            p = out / f"{t.name}.{EXTENSIONS[fmt]}"
            p.write_text(_plain(t, fmt), encoding="utf-8")
            paths.append(p)
        return paths
    if not out.parent.is_dir():
        raise ConfigError(f"--output {output!r}: folder {str(out.parent)!r} does not exist; create it or pass an "
                          f"existing folder")
    out.write_text(_plain_all(tables, fmt), encoding="utf-8")
    return [out]


def _plain_all(tables: Sequence[Table], fmt: str) -> str:
    if fmt != "table":
        return render_text(tables, fmt)
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200, color_system=None, highlight=False, record=True)
    print_rich(tables, console)
    return console.export_text()


def _plain(t: Table, fmt: str) -> str:
    if fmt == "csv":
        return to_csv([t], headed=False)  # one table per file: a plain CSV any reader opens
    if fmt == "json":
        return json.dumps(_json_one(t), indent=2, allow_nan=False) + "\n"
    return _plain_all([t], fmt)


def check_export_args(args) -> None:
    """``--format`` is known, and stdout is not asked for twice (``--json`` writes results.json there)."""
    check_format(args.format)
    if getattr(args, "json", False) and args.format != "table" and args.output is None:
        raise ConfigError(f"--json and --format {args.format} both write to stdout; add --output FILE for the "
                          f"tables")
