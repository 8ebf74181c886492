"""Rich tables for results.json: the PGR table, ladder rows and paired comparisons (to stderr)."""

from __future__ import annotations

from ._results import Results, Summary


def _fmt_acc(summary: Summary) -> str:
    if summary.mean is None:
        return "-"
    return f"{summary.mean:.3f}"


def fmt_ci(summary: Summary, signed: bool = False) -> str:
    if summary.mean is None:
        return "n/a"
    sign = "+" if signed else ""
    text = f"{summary.mean:{sign}.3f}"
    if summary.ci95:
        lo, hi = summary.ci95
        text += f" [{lo:{sign}.2f}, {hi:{sign}.2f}]"
    return text


def render(results: Results, console) -> None:
    """Print the PGR table (one row per experiment, plus one per rung of a ladder) and comparisons."""
    from rich.table import Table

    status = results.status
    n_seeds = max((len(e.seeds) for e in results.experiments), default=0)
    table = Table(title=f"Weak-to-strong results ({status}, {n_seeds} seeds; mean [95% bootstrap CI])")
    for col in ("dataset", "strategy", "loss", "weak", "strong", "weak acc", "transfer acc", "ceiling acc", "PGR"):
        table.add_column(col, justify="right" if "acc" in col or col == "PGR" else "left")
    for e in results.experiments:
        table.add_row(e.dataset, e.strategy, e.loss, e.weak, e.strong, _fmt_acc(e.weak_acc),
                      _fmt_acc(e.transfer_acc), _fmt_acc(e.ceiling_acc), fmt_ci(e.pgr))
        for i, rung in enumerate(e.rung_acc):
            table.add_row("", "", f"  rung {i}", rung.model, "", "", fmt_ci(rung.acc), "", "",
                          style="dim")
    console.print(table)
    comps = results.comparisons
    if comps:
        ct = Table(title="Paired per-seed PGR differences (same seed, same split)")
        for col in ("comparison", "PGR difference [95% CI]", "wins / seeds"):
            ct.add_column(col)
        for c in comps:
            ct.add_row(f"{c.a} - {c.b}", fmt_ci(c, signed=True), f"{c.wins} / {c.seeds}")
        console.print(ct)
    t = results.timings
    if t:
        console.print(f"stages: {t.get('stages_computed', 0)} computed, {t.get('stages_cached', 0)} cached; "
                      f"{t.get('total_seconds', 0):.1f} s total")
    if results.error:
        console.print(f"[bold red]run {status}:[/] {results.error}")
