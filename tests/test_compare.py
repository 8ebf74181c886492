"""``w2s-harness compare`` and the exports of ``report`` / ``compare`` (``--format md|csv|latex|json``,
``--output``), on real runs: the ``local`` CSV and GloVe models of test_pipeline, several strategies over one
stage store so their shared stages are shared. Every number an export prints is checked against results.json."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from test_pipeline import write_config
from test_summaries import build, pgr_values, render_text

from w2s_harness._cli.cli import main

STRATEGIES = {"naive": "", "filter": "keep_frac = 0.5\n", "ensemble": "bags = 2\n"}


@pytest.fixture(autouse=True)
def _plain(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One run folder per strategy (same data, seeds 0 and 1), plus ``long``: naive with a strong model trained
    longer (its rows share names with ``naive``'s, and only the weak stages)."""
    root = tmp_path_factory.mktemp("compare")
    base = write_config(root, loss_block='[loss]\nname = "xent"\n').read_text()
    out = {}
    for name, extra in [*STRATEGIES.items(), ("long", None)]:
        text = base.replace((root / "out").as_posix(), (root / name).as_posix())
        if extra is None:
            text = text.replace("epochs = 20", "epochs = 40")
        else:
            text = text.replace('name = "naive"', f'name = "{name}"\n{extra}')
        cfg = root / f"{name}.toml"
        cfg.write_text(text)
        assert main(["run", "--config", str(cfg)]) == 0
        out[name] = root / name
    return out


def doc(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def row(run: Path, name: str) -> dict:
    return next(e for e in doc(run)["experiments"] if e["name"] == name)


def export(capsys, argv) -> str:
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def csv_blocks(text: str) -> dict[str, list[dict[str, str]]]:
    """``# name: title`` headed CSV blocks -> {name: rows}."""
    blocks = {}
    for block in text.strip().split("\n\n"):
        head, body = block.split("\n", 1)
        assert head.startswith("# ")
        blocks[head[2:].split(":", 1)[0]] = list(csv.DictReader(io.StringIO(body)))
    return blocks


def json_tables(text: str) -> dict[str, dict]:
    return {t["name"]: t for t in json.loads(text)["tables"]}


# ------------------------------------------------------------------------------------------------ compare


def test_compare_lists_every_row_of_every_run_labelled_by_run(runs, capsys):
    tables = json_tables(export(capsys, ["compare", str(runs["naive"]), str(runs["filter"]), str(runs["ensemble"]),
                                         "--format", "json"]))
    rows = tables["summary"]["rows"]
    expected = [(label, e["name"]) for label in ("naive", "filter", "ensemble") for e in doc(runs[label])["experiments"]]
    assert [(r["run"], r["name"]) for r in rows] == expected  # default labels: the folder names
    for r in rows:
        e = row(runs[r["run"]], r["name"])
        assert r["pgr_mean"] == e["pgr"]["mean"] and r["pgr_ci_low"] == e["pgr"]["ci95"][0]
        assert r["weak_acc"] == e["weak_acc"]["mean"] and r["transfer_acc"] == e["transfer_acc"]["mean"]
        assert (r["pgr_seeds_used"], r["pgr_seeds_run"]) == (e["pgr"]["n"], e["pgr"]["n_run"])


def test_compare_pairs_rows_of_different_runs_on_matching_seeds(runs, capsys):
    tables = json_tables(export(capsys, ["compare", str(runs["naive"]), str(runs["filter"]), "--format", "json"]))
    cross = tables["cross-run"]
    pairs = {(p["a_run"], p["a"], p["b_run"], p["b"]): p for p in cross["rows"]}
    # filter's own naive row is the same stages as naive's: named under the table, not listed as a zero
    assert ("filter", "naive/xent", "naive", "naive/xent") not in pairs
    assert any("filter: naive/xent and naive: naive/xent are the same stages" in n for n in cross["notes"])
    p = pairs[("filter", "filter/xent", "naive", "naive/xent")]
    assert p["shared_stages"] == "weak+ceiling"  # one stage store: the weak and ceiling stages are shared
    a, b = row(runs["filter"], "filter/xent"), row(runs["naive"], "naive/xent")
    diffs = [x - y for x, y in zip(a["pgr"]["per_seed"], b["pgr"]["per_seed"])]
    assert p["pgr_diff_mean"] == pytest.approx(statistics.fmean(diffs))
    assert p["seeds"] == 2 and p["wins"] == sum(d > 0 for d in diffs)
    acc = [x - y for x, y in zip(a["transfer_acc"]["per_seed"], b["transfer_acc"]["per_seed"])]
    assert p["transfer_acc_diff_mean"] == pytest.approx(statistics.fmean(acc))
    # each run's own planned comparisons, labelled by run
    own = tables["comparisons"]["rows"]
    assert [(c["run"], c["a"], c["b"]) for c in own] == [("filter", "filter/xent", "naive/xent")]
    assert own[0]["diff_mean"] == doc(runs["filter"])["comparisons"][0]["mean"]


def test_compare_keeps_rows_that_share_names_apart(runs, capsys):
    text = export(capsys, ["compare", str(runs["naive"] / "results.json"), str(runs["long"]), "--label", "short",
                           "--label", "long strong", "--format", "json"])
    tables = json_tables(text)
    assert [(r["run"], r["name"]) for r in tables["summary"]["rows"]] == [("short", "naive/xent"),
                                                                         ("long strong", "naive/xent")]
    (p,) = tables["cross-run"]["rows"]
    assert (p["a_run"], p["a"], p["b_run"], p["b"]) == ("long strong", "naive/xent", "short", "naive/xent")
    assert p["shared_stages"] == "weak"  # the strong model changed: its ceiling is another stage
    a, b = row(runs["long"], "naive/xent"), row(runs["naive"], "naive/xent")
    assert a["stage_ids"]["weak"] == b["stage_ids"]["weak"] and a["stage_ids"]["ceiling"] != b["stage_ids"]["ceiling"]
    defined = [(x, y) for x, y in zip(a["pgr"]["per_seed"], b["pgr"]["per_seed"]) if x is not None and y is not None]
    assert p["seeds"] == len(defined)
    if defined:
        assert p["pgr_diff_mean"] == pytest.approx(statistics.fmean(x - y for x, y in defined))
    assert any("different gaps" in n for n in tables["cross-run"]["notes"])


def test_compare_table_on_stderr_names_both_runs(runs, capsys):
    assert main(["compare", str(runs["naive"]), str(runs["long"]), "--label", "base", "--label", "longer"]) == 0
    err = capsys.readouterr().err
    assert "Paired per-seed differences across runs" in err
    assert "longer: naive/xent - base: naive/xent" in err
    assert "│ base " in err and "│ longer " in err


@pytest.mark.parametrize("argv, message", [
    (["compare", "{tmp}"], "needs at least two runs"),
    (["compare", "{tmp}", "{tmp}"], "has no results.json; pass a run's output directory"),
    (["compare", "{naive}", "{tmp}/nope"], "does not exist"),
    (["compare", "{naive}", "{filter}", "--label", "x"], "1 --label for 2 runs"),
    (["compare", "{naive}", "{filter}", "--label", "x", "--label", "x"], "--label 'x' is given twice"),
    (["compare", "{naive}", "{filter}", "--format", "markdown"], "unknown format 'markdown'"),
    (["report", "{naive}", "--format", "jsn"], "Did you mean: json?"),
    (["report", "{naive}", "--json", "--format", "csv"], "both write to stdout"),
    (["report", "{naive}", "--format", "csv", "--output", "{tmp}/no/such/file.csv"], "does not exist"),
])
def test_bad_input_is_one_line_naming_the_fix(runs, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, naive=runs["naive"], filter=runs["filter"]) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


# ------------------------------------------------------------------------------------------------ exports


def test_report_csv_numbers_equal_results_json(runs, capsys):
    blocks = csv_blocks(export(capsys, ["report", str(runs["filter"]), "--format", "csv", "--no-plots"]))
    assert list(blocks) == ["summary", "comparisons"]
    exps = doc(runs["filter"])["experiments"]
    assert [r["name"] for r in blocks["summary"]] == [e["name"] for e in exps]
    for r, e in zip(blocks["summary"], exps):
        # full precision: the CSV round-trips results.json's floats exactly
        assert float(r["pgr_mean"]) == e["pgr"]["mean"] and float(r["pgr_median"]) == e["pgr"]["median"]
        assert float(r["ceiling_acc"]) == e["ceiling_acc"]["mean"]
        assert int(r["pgr_seeds_used"]) == e["pgr"]["n"]
    (c,) = blocks["comparisons"]
    stored = doc(runs["filter"])["comparisons"][0]
    assert (c["a"], c["b"], float(c["diff_mean"]), int(c["wins"])) == (stored["a"], stored["b"], stored["mean"],
                                                                        stored["wins"])


def test_report_output_folder_gets_one_file_per_table(runs, tmp_path, capsys):
    out = tmp_path / "tables"
    out.mkdir()
    for fmt, ext in [("csv", "csv"), ("json", "json"), ("md", "md"), ("latex", "tex"), ("table", "txt")]:
        assert main(["report", str(runs["ensemble"]), "--format", fmt, "--output", str(out), "--no-plots"]) == 0
        assert {p.name for p in out.glob(f"*.{ext}")} == {f"summary.{ext}", f"comparisons.{ext}"}
    assert capsys.readouterr().out == ""  # files only
    rows = list(csv.DictReader((out / "summary.csv").open()))  # a plain CSV: no comment line
    table = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in rows] == [r["name"] for r in table["rows"]] == ["naive/xent", "ensemble/xent"]
    assert float(rows[1]["pgr_mean"]) == table["rows"][1]["pgr_mean"] == row(runs["ensemble"], "ensemble/xent")["pgr"]["mean"]
    assert "Weak-to-strong results" in (out / "summary.txt").read_text()


def test_markdown_and_latex_are_one_line_per_row_with_escaped_underscores(runs, capsys):
    exps = doc(runs["filter"])["experiments"]
    md = export(capsys, ["report", str(runs["filter"]), "--format", "md", "--no-plots"])
    lines = md.splitlines()
    head = lines.index(next(line for line in lines if line.startswith("| dataset |")))
    assert set(lines[head + 1].replace("|", "").split()) <= {":---", "---:"}
    body = lines[head + 2: head + 2 + len(exps)]
    assert all(line.startswith("| local | ") and line.endswith(" |") for line in body)
    assert [line.split(" | ")[1] for line in body] == [e["strategy"] for e in exps]
    assert f"{exps[0]['pgr']['mean']:.3f}" in body[0]
    assert r"seeds used/run" in lines[head] and "supervisors" not in lines[head] and "kept frac" in lines[head]
    # an underscore in a name would start emphasis: escaped
    assert r"label acc (train2)" in lines[head]
    tex = export(capsys, ["report", str(runs["filter"]), "--format", "latex", "--no-plots"])
    first = tex.split(r"\end{table}")[0]
    assert r"\begin{tabular}{lllllrrrrrrrr}" in first and r"\toprule" in first
    rows = first.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(rows) == len(exps) and all(r.endswith(r" \\") and r.count(" & ") == 12 for r in rows)
    md_names = export(capsys, ["compare", str(runs["naive"]), str(runs["filter"]), "--format", "md"])
    assert r"shared\_stages" not in md_names and r"weak+ceiling" in md_names
    tex_cross = export(capsys, ["compare", str(runs["naive"]), str(runs["filter"]), "--format", "latex"])
    assert r"\caption{Paired per-seed differences across runs" in tex_cross
    assert not re.search(r"(?<!\\)_", tex_cross)  # every underscore (in the notes' stage names too) escaped


def test_markdown_escapes_underscores_in_names(tmp_path, capsys):
    results = build({"naive/log_conf": {s: (0.6, 0.8, 0.7) for s in range(5)}})
    (tmp_path / "results.json").write_text(results.to_json())
    md = export(capsys, ["report", str(tmp_path), "--format", "md", "--no-plots"])
    assert r"log\_conf" in md and "log_conf" not in md
    tex = export(capsys, ["report", str(tmp_path), "--format", "latex", "--no-plots"])
    assert r"log\_conf" in tex and "log_conf" not in tex.replace(r"log\_conf", "")


# ------------------------------------------------------------------------------------------- table content


def test_ensemble_and_filter_rows_show_their_supervision(runs, capsys):
    stages = doc(runs["ensemble"])["stages"]
    per_seed = {}
    for s in stages:
        if s["kind"] == "train_supervisor":
            per_seed.setdefault(s["seed"], []).append(s["metrics"]["test_acc"])
    assert all(len(v) == 2 for v in per_seed.values())  # bags = 2
    combined = [s["metrics"]["label_acc"] for s in stages if s["kind"] == "combine"]
    rows = {r["name"]: r for r in json_tables(export(capsys, ["report", str(runs["ensemble"]), "--format", "json",
                                                                  "--no-plots"]))["summary"]["rows"]}
    ens = rows["ensemble/xent"]
    assert ens["supervisor_acc"] == pytest.approx(statistics.fmean(statistics.fmean(v) for v in per_seed.values()))
    assert ens["n_supervisors"] == 2 and ens["label_acc_train2"] == pytest.approx(statistics.fmean(combined))
    assert rows["naive/xent"]["supervisor_acc"] is None and ens["kept_frac"] is None

    filt = [s["metrics"] for s in doc(runs["filter"])["stages"] if s["kind"] == "filter"]
    rows = {r["name"]: r for r in json_tables(export(capsys, ["report", str(runs["filter"]), "--format", "json",
                                                                  "--no-plots"]))["summary"]["rows"]}
    assert rows["filter/xent"]["kept_frac"] == pytest.approx(statistics.fmean(m["kept_frac"] for m in filt))
    assert rows["filter/xent"]["label_acc_train2"] == pytest.approx(statistics.fmean(m["label_acc"] for m in filt))
    assert rows["naive/xent"]["kept_frac"] is None
    # the terminal table shows them too
    assert main(["report", str(runs["ensemble"]), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert f"{ens['supervisor_acc']:.3f} (x2)" in err and "supervisors acc" in err


def test_fewer_than_five_seeds_warns_that_the_ci_is_unreliable():
    five = build({"naive/xent": {s: (0.7, 0.8, t) for s, t in enumerate(pgr_values(0.7, 0.8, [.1, .2, .3, .4, .5]))}})
    assert "CI unreliable" not in render_text(five)
    four = build({"naive/xent": {s: (0.7, 0.8, t) for s, t in enumerate(pgr_values(0.7, 0.8, [.1, .2, .3, .4]))}})
    assert ("warning: PGR over fewer than 5 seeds, CI unreliable: naive/xent (4/4); run more seeds (--seeds)"
            in render_text(four))
    # one line for the table, naming every such row
    two = build({"naive/xent": {s: (0.7, 0.8, 0.75) for s in range(2)},
                 "naive/logconf": {s: (0.7, 0.8, 0.78) for s in range(2)}}, comparisons=[("naive/logconf",
                                                                                         "naive/xent")])
    lines = [line for line in render_text(two).splitlines() if "CI unreliable" in line]
    assert lines == [("warning: PGR over fewer than 5 seeds, CI unreliable: naive/xent (2/2), naive/logconf (2/2); "
                      "run more seeds (--seeds)"),
                     ("warning: difference over fewer than 5 seeds, CI unreliable: naive/logconf - naive/xent (2/2); "
                      "run more seeds (--seeds)")]


# --------------------------------------------------------------------------------------------- subprocess


def test_compare_subprocess_with_pipes(runs):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run([sys.executable, "-m", "w2s_harness", "compare", str(runs["naive"]), str(runs["filter"]),
                           "--format", "csv"], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    blocks = csv_blocks(proc.stdout)
    assert [(r["run"], r["name"]) for r in blocks["summary"]] == [("naive", "naive/xent"), ("filter", "naive/xent"),
                                                                  ("filter", "filter/xent")]
    proc = subprocess.run([sys.executable, "-m", "w2s_harness", "compare", str(runs["naive"]), str(runs["filter"])],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stderr and "…" not in proc.stderr  # piped: no escape codes, nothing truncated
    assert "filter: filter/xent - naive: naive/xent" in proc.stderr


def test_report_view_tables_are_exported_too(tmp_path, capsys):
    from test_report_views import Views, write_results
    from test_report_views import row as view_row

    run = write_results(tmp_path, [view_row("acme", "w", "s", 0.25), view_row("acme", "w", "m", 0.75)])
    code = main(["report", str(run), "--format", "json", "--no-plots"], plugins=[Views()])
    out = capsys.readouterr()
    assert code == 0, out.err
    tables = json_tables(out.out)
    assert list(tables) == ["summary", "view-acme-1", "view-acme-2"]
    acme = tables["view-acme-1"]
    assert acme["title"] == "acme: PGR per row" and acme["notes"] == ["acme: [1 note]"]
    assert acme["rows"] == [{"row": "acme/w->s/xent", "PGR": "0.250", "[not markup]": None},
                            {"row": "acme/w->m/xent", "PGR": "0.750", "[not markup]": None}]
    assert tables["view-acme-2"]["rows"] == [{"rows": "2"}]  # a rich table: its rendered cells
    code = main(["compare", str(run), str(run / "results.json"), "--label", "a", "--label", "b", "--format", "csv"],
                plugins=[Views()])
    out = capsys.readouterr()
    assert code == 0, out.err
    blocks = csv_blocks(out.out)
    assert {"view-acme-1-a", "view-acme-1-b", "view-acme-2-a"} <= set(blocks)
    assert [r["PGR"] for r in blocks["view-acme-1-b"]] == ["0.250", "0.750"]


def test_metrics_analysis_table_is_exported(runs, capsys):
    tables = json_tables(export(capsys, ["report", str(runs["filter"]), "--metrics", "agreement,auroc", "--format",
                                         "json", "--no-plots"]))
    assert list(tables) == ["summary", "analysis", "comparisons"]
    rows = tables["analysis"]["rows"]
    exps = doc(runs["filter"])["experiments"]
    assert [r["name"] for r in rows] == [e["name"] for e in exps]
    for r, e in zip(rows, exps):
        assert r["agreement"] == e["analysis"]["agreement"]["mean"]
        assert r["pgr_auroc"] == e["analysis"]["pgr_auroc"]["mean"]
        assert "misfit_err_test" not in r  # only the groups asked for


def test_latex_row_starting_with_a_bracket_is_not_an_optional_argument():
    from w2s_harness._results.export import Table, to_latex

    tex = to_latex([Table("t", "t", ["a", "b"], [["[x]", 1]], ["a", "b"], [["[x]", "1"], ["y", "[2]"]])])
    assert "\\\\\n{}[x] & 1 \\\\\ny & [2] \\\\" in tex.replace(r"\midrule", "\\\\")


def test_runs_with_nothing_in_common_say_so(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, loss in ((a, "xent"), (b, "logconf")):
        d.mkdir()
        (d / "results.json").write_text(build({f"naive/{loss}": {s: (0.6, 0.8, 0.7) for s in range(5)}}).to_json())
    cross = json_tables(export(capsys, ["compare", str(a), str(b), "--format", "json"]))["cross-run"]
    assert cross["rows"] == [] and cross["notes"] == ["no row of b has the dataset and loss of a row of a: nothing to pair"]
