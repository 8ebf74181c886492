"""The report's figures, checked as a reader would look at them: every kind is drawn from a real small run (L-BFGS
heads on a tiny CSV, a weak model well below its ceiling, two losses, so there is a comparison, misfit points and training curves), is not blank in
PNG, parses as SVG and PDF, and carries what makes it readable (an accuracy axis from 0, PGR 0 / 1 lines, a legend
on every panel). Curves too short to draw give one line instead of a figure."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from run_config import local_run_config
from test_pipeline import make_csv

from w2s_harness import Results
from w2s_harness._cli.cli import main

KINDS = ("accuracy", "pgr", "comparisons", "misfit", "curves")


def lbfgs_toml(tmp: Path, seeds: str = "[0, 1]") -> Path:
    return local_run_config(tmp / "run.toml", make_csv(tmp / "reviews.csv"), seeds=seeds, out=tmp / "out",
                            weak='name = "glove-bow"\nsolver = "lbfgs"\nC = 0.001', strong='name = "glove-bow"',
                            losses='[[loss]]\nname = "xent"\n[[loss]]\nname = "logconf"')


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished real run (no figures written yet); tests copy its results.json where they write figures."""
    tmp = tmp_path_factory.mktemp("fig")
    assert main(["run", "--config", str(lbfgs_toml(tmp))]) == 0
    return tmp / "out"


def fresh(run_dir: Path, tmp_path: Path, edit=None) -> Path:
    """A folder holding only the run's results.json (optionally edited), so each test sees its own figures."""
    out = tmp_path / "report"
    out.mkdir()
    doc = json.loads((run_dir / "results.json").read_text())
    if edit is not None:
        edit(doc)
    (out / "results.json").write_text(json.dumps(doc))
    return out


def not_blank(png: Path) -> None:
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[0] > 200 and img.shape[1] > 400, png
    # a blank (single-colour) image has no variance; a drawn figure has text, bars and lines
    assert img[..., :3].std() > 0.05, f"{png.name} looks blank"


def test_report_writes_every_figure_kind_and_none_is_blank(run_dir, tmp_path, capsys):
    out = fresh(run_dir, tmp_path)
    assert main(["report", str(out)]) == 0
    err = capsys.readouterr().err
    for kind in KINDS:
        assert f"wrote {out / f'{kind}.png'}" in err
        not_blank(out / f"{kind}.png")


@pytest.mark.parametrize("fmt", ["svg", "pdf"])
def test_fig_format_writes_vector_files_that_parse(run_dir, tmp_path, capsys, fmt):
    out = fresh(run_dir, tmp_path)
    assert main(["report", str(out), "--fig-format", fmt]) == 0
    assert not list(out.glob("*.png"))
    for kind in KINDS:
        path = out / f"{kind}.{fmt}"
        data = path.read_bytes()
        if fmt == "svg":
            root = ET.fromstring(data)
            assert root.tag.endswith("svg")
            # drawn content: many path elements (glyphs, bars, lines), not an empty canvas
            assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) > 20, kind
        else:
            assert data[:5] == b"%PDF-" and data.rstrip().endswith(b"%%EOF") and len(data) > 5000, kind


def test_unknown_fig_format_is_a_usage_error(run_dir, tmp_path, capsys):
    assert main(["report", str(fresh(run_dir, tmp_path)), "--fig-format", "gif"]) == 2
    assert "invalid choice: 'gif'" in capsys.readouterr().err


@pytest.fixture
def drawn(monkeypatch):
    """The figures as drawn, captured at save time: ``{file stem: figure}`` (the files are still written)."""
    from w2s_harness._results import plots

    real, seen = plots.save_figure, {}

    def capture(fig, path):
        seen[Path(path).stem] = fig
        return real(fig, path)

    monkeypatch.setattr(plots, "save_figure", capture)
    return seen


def legends(fig) -> int:
    return len(fig.legends) + sum(ax.get_legend() is not None for ax in fig.axes)


def test_figures_carry_what_a_reader_needs(run_dir, tmp_path, capsys, drawn):
    out = fresh(run_dir, tmp_path)
    results = Results.read(out)
    assert main(["report", str(out)]) == 0
    assert set(KINDS) <= set(drawn)
    for kind in KINDS:
        fig = drawn[kind]
        title = fig._suptitle.get_text() if fig._suptitle else fig.axes[0].get_title()
        assert title, f"{kind} has no title"
        # a legend on every panel, or one legend for the figure's single panel
        assert all(ax.get_legend() is not None for ax in fig.axes) or (len(fig.axes) == 1 and fig.legends), kind

    (acc,) = drawn["accuracy"].axes
    assert acc.get_xlim() == (0.0, 1.0)  # the honest axis: bars start at 0
    weak = results.experiments[0].weak_acc.mean
    assert any(list(line.get_xdata()) == [weak, weak] for line in acc.lines), "no weak reference line"

    (pgr,) = drawn["pgr"].axes
    verticals = {line.get_xdata()[0] for line in pgr.lines if len(set(line.get_xdata())) == 1}
    assert {0, 1} <= verticals
    labels = [t.get_text() for t in pgr.get_yticklabels()]
    assert labels == [f"{e.name}  ({e.pgr.n}/{e.pgr.n_run} seeds)" for e in results.experiments]

    (forest,) = drawn["comparisons"].axes
    c = results.comparisons[0]
    assert [t.get_text() for t in forest.get_yticklabels()] == [f"{c.a} - {c.b}"]
    assert c.na is None and f"wins {c.wins}/{c.n}" in [t.get_text() for t in forest.texts]

    # curves: per panel one mean line per row over the union of the seeds' steps (L-BFGS seeds stop at different
    # iterations), not the 1-2 steps every seed shares
    curves = {e.name: [by_id[i].metrics["curve"] for i in e.stage_ids["transfer"]] for e in results.experiments
              for by_id in [{s.id: s for s in results.stages}]}
    long = [name for name, cs in curves.items() if max(len(c) for c in cs) >= 3]
    assert long, "the run should record a drawable curve"
    for ax in drawn["curves"].axes:
        means = {line.get_label(): line for line in ax.lines if "mean of" in line.get_label()}
        assert sorted(means) == sorted(f"{name} (mean of 2 seeds)" for name in long)
        for name in long:
            steps = sorted({p["step"] for c in curves[name] for p in c})
            assert list(means[f"{name} (mean of 2 seeds)"].get_xdata()) == steps
    err = capsys.readouterr().err
    short = [name for name in curves if name not in long]
    assert ("curves.png leaves out" in err) == bool(short)


def test_hand_built_rows_with_na_and_different_references(tmp_path, drawn):
    """Rows with different weak models get per-row reference marks; a row without a gap shows its n/a reason."""
    from test_summaries import build

    from w2s_harness._results.plots import write_figures

    res = build({"naive/xent": {s: (0.70, 0.80, 0.75 + s / 100) for s in range(3)},
                 "naive/logconf": {s: (0.60, 0.80, 0.70) for s in range(3)},
                 "naive/entropy": {s: (0.85, 0.80, 0.80) for s in range(3)}},
                comparisons=[("naive/logconf", "naive/xent"), ("naive/entropy", "naive/xent")])
    paths = write_figures(res, tmp_path)
    assert {p.stem for p in paths} == {"accuracy", "pgr", "comparisons"}
    for p in paths:
        not_blank(p)
    (acc,) = drawn["accuracy"].axes
    per_row = [line for line in acc.lines if line.get_label().startswith("weak (per row")]
    assert len(per_row) == 1 and len([ln for ln in acc.lines if ln.get_color() == "tab:red"]) == 3
    assert "n/a: weak >= ceiling" in [t.get_text() for t in drawn["pgr"].axes[0].texts]
    assert "n/a: naive/entropy: weak >= ceiling" in [t.get_text() for t in drawn["comparisons"].axes[0].texts]


def test_curves_too_short_to_draw_give_one_line_and_no_figure(run_dir, tmp_path, capsys):
    def two_points(doc):
        for st in doc["stages"]:
            if st["kind"] == "train_transfer":
                st["metrics"]["curve"] = st["metrics"]["curve"][:2]

    out = fresh(run_dir, tmp_path, two_points)
    assert main(["report", str(out)]) == 0
    err = capsys.readouterr().err
    assert not (out / "curves.png").exists()
    lines = [ln for ln in err.splitlines() if "curves.png not written" in ln]
    assert len(lines) == 1 and "at most 2 point(s)" in lines[0] and "curve_every" in lines[0]
