"""Report views (the ``w2s_report_views`` hook): a plugin's own tables and figures in ``w2s-harness report`` for
the results it recognises; the built-in grid view uses the same hook, and the core names no strategy."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path

import pytest
from rich.console import Console

import w2s_harness
from w2s_harness import (
    ExperimentResult,
    ReportTable,
    ReportView,
    Results,
    Summary,
    headless_pyplot,
    hookimpl,
    save_figure,
)
from w2s_harness._cli.cli import main
from w2s_harness._results.report import render
from w2s_harness._results.views import report_views

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "src" / "w2s_harness"


def row(strategy, weak, strong, pgr, na=None, dataset="d", loss="xent"):
    return ExperimentResult(name=f"{strategy}/{weak}->{strong}/{loss}", dataset=dataset, strategy=strategy,
                            loss=loss, weak=weak, strong=strong, rungs=[weak, strong], seeds=[0],
                            weak_acc=Summary(mean=0.6, per_seed=[0.6], n=1, n_run=1),
                            ceiling_acc=Summary(mean=0.8, per_seed=[0.8], n=1, n_run=1),
                            transfer_acc=Summary(mean=0.6 + 0.2 * pgr, per_seed=[0.6 + 0.2 * pgr], n=1, n_run=1),
                            pgr=Summary(mean=pgr, median=pgr, per_seed=[pgr], n=1, n_run=1, na=na))


def write_results(tmp_path: Path, experiments) -> Path:
    res = Results(status="complete", config={}, environment={}, experiments=list(experiments), comparisons=[],
                  stages=[])
    out = tmp_path / "run"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(res.to_json(), encoding="utf-8")
    return out


class Views:
    """A third-party plugin with a view for its own strategy's rows: a table of rows, a rich table, a figure."""

    def __init__(self):
        self.calls = 0

    @hookimpl
    def w2s_report_views(self, results):
        self.calls += 1
        mine = [e for e in results.experiments if e.strategy == "acme"]
        if not mine:
            return None
        from rich.table import Table

        rich_table = Table(title="acme rich table")
        rich_table.add_column("rows")
        rich_table.add_row(str(len(mine)))

        def figures(out_dir):
            plt = headless_pyplot()
            fig, ax = plt.subplots()
            ax.bar(range(len(mine)), [e.pgr.mean for e in mine])
            return [save_figure(fig, Path(out_dir) / "acme.png")]

        rows = ReportTable("acme: PGR per row", ["row", "PGR", "[not markup]"],
                           [[e.name, f"{e.pgr.mean:.3f}", None] for e in mine], justify=("left", "right", "left"),
                           notes=["acme: [1 note]"])
        return [ReportView("acme", tables=[rows, rich_table], figures=figures)]


def test_a_plugin_view_shows_its_tables_and_writes_its_figures_in_report(tmp_path, capsys):
    out = write_results(tmp_path, [row("naive", "w", "s", 0.5), row("acme", "w", "s", 0.25)])
    plugin = Views()
    assert main(["report", str(out)], plugins=[plugin]) == 0
    err = capsys.readouterr().err
    assert "acme: PGR per row" in err and "┃ rows ┃" in err and "[not markup]" in err
    assert "acme/w->s/xent" in err and "0.250" in err and "acme: [1 note]" in err
    assert err.index("Weak-to-strong results") < err.index("acme: PGR per row") < err.index("┃ rows ┃")
    assert f"wrote {out / 'acme.png'}" in err and (out / "acme.png").read_bytes()[:4] == b"\x89PNG"
    assert "Grid summary" not in err  # no grid rows: the built-in grid view says nothing
    # --no-plots: the tables, no figure
    (out / "acme.png").unlink()
    assert main(["report", str(out), "--no-plots"], plugins=[plugin]) == 0
    assert "acme: PGR per row" in capsys.readouterr().err and not (out / "acme.png").exists()


def test_a_view_is_silent_on_results_it_does_not_recognise(tmp_path, capsys):
    out = write_results(tmp_path, [row("naive", "w", "s", 0.5)])
    plugin = Views()
    assert main(["report", str(out)], plugins=[plugin]) == 0
    err = capsys.readouterr().err
    assert plugin.calls == 2  # the tables, then the figures
    assert "acme" not in err and not (out / "acme.png").exists()


def test_the_grid_view_comes_through_the_hook(tmp_path, capsys):
    exps = [row("grid", "a", "a", 0.9), row("grid", "a", "b", 0.1), row("grid", "a", "c", 0.5),
            row("grid", "b", "c", 0.2), row("grid", "c", "d", 0.7, na="weak >= ceiling")]
    res = Results(status="complete", config={}, environment={}, experiments=exps, comparisons=[], stages=[])
    (view,) = report_views(res, w2s_harness.create_plugin_manager(entry_points=False))
    assert view.name == "grid" and view.figures is not None
    (table,) = view.tables
    assert isinstance(table, ReportTable) and table.rows == [("d", "xent", "0.200", "3 / 5")]
    # render() without a plugin manager uses the process-wide one (the built-ins included)
    console = Console(file=io.StringIO(), width=240, record=True, color_system=None)
    render(res, console)
    assert "Grid summary" in console.export_text()
    out = write_results(tmp_path, exps)
    assert main(["report", str(out)]) == 0
    err = capsys.readouterr().err
    assert "Grid summary" in err and f"wrote {out / 'grid_d.png'}" in err


def test_a_view_of_the_wrong_type_is_a_plugin_error(tmp_path, capsys):
    class Bad:
        @hookimpl
        def w2s_report_views(self, results):
            return {"tables": []}

    out = write_results(tmp_path, [row("naive", "w", "s", 0.5)])
    assert main(["report", str(out)], plugins=[Bad()]) == 2
    assert "error: w2s_report_views returned dict" in capsys.readouterr().err
    with pytest.raises(ValueError, match="a row has 1 cells for 2 columns"):
        ReportTable("t", ["a", "b"], [["x"]])
    with pytest.raises(ValueError, match="justify must be left, right or center"):
        ReportTable("t", ["a"], [], justify=["middle"])


# ---------------------------------------------------------------- the core names no built-in strategy


def _core_files():
    return sorted(CORE.rglob("*.py"))


def test_the_core_never_names_the_grid_strategy_or_imports_its_view():
    """The grid strategy's tables and figures live in its plugin (``plugins/builtin/strategies/grid_view.py``) and
    reach the report through ``w2s_report_views``: nothing in ``src/w2s_harness/`` mentions ``grid`` (a string,
    docstrings included, a name, an attribute, an import), or imports a plugin module."""
    word = re.compile(r"\bgrid", re.IGNORECASE)
    bad = []
    for path in _core_files():
        rel = path.relative_to(ROOT)
        if word.search(path.stem):
            bad.append(f"{rel}: the module's name")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            line = getattr(node, "lineno", 0)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and word.search(node.value):
                bad.append(f"{rel}:{line}: string {node.value[:60]!r}")
            elif isinstance(node, ast.Name) and word.search(node.id):
                bad.append(f"{rel}:{line}: name {node.id}")
            elif isinstance(node, ast.Attribute) and word.search(node.attr):
                bad.append(f"{rel}:{line}: attribute {node.attr}")
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)) and word.search(node.name):
                bad.append(f"{rel}:{line}: definition {node.name}")
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
                if any(word.search(n) for n in names) or (node.module or "").startswith("w2s_harness.plugins.") \
                        or (node.level and (node.module or "").startswith("plugins.")):
                    bad.append(f"{rel}:{line}: imports {'.' * node.level}{node.module} {names[1:]}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if word.search(a.name) or a.name.startswith("w2s_harness.plugins."):
                        bad.append(f"{rel}:{line}: imports {a.name}")
    assert not bad, "\n".join(bad)


def test_the_grid_view_registers_like_a_third_party_view():
    """The built-in strategies' plugin module implements the hook; the view module imports public names only
    (tests/test_public_api.py checks every plugin file), so a third-party strategy can do the same."""
    pm = w2s_harness.create_plugin_manager(entry_points=False)
    impls = {impl.plugin_name for impl in pm.hook.w2s_report_views.get_hookimpls()}
    assert impls == {"builtin:strategies"}
    assert "w2s_report_views" in pm.other_hooks("builtin:strategies")
