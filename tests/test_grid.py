"""The ``grid`` strategy (every weak <= strong pair of a model list) and runs over several datasets: plans,
a real tiny run, the grid summary (median PGR over pairs) and the figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_pipeline import make_csv, write_config
from w2s_harness.plugins.strategies.grid_view import summary

from w2s_harness import ConfigError, create_plugin_manager, load_config, make_plan
from w2s_harness._cli.cli import main
from w2s_harness._results.results import Results

MODELS = ('[{name = "glove-bow", epochs = 2}, {name = "glove-bow", epochs = 5}, '
          '{name = "glove-bow", epochs = 20, lr = 0.01}]')


def grid_config(tmp_path: Path, extra: str = "", seeds: str = "[0, 1]") -> Path:
    cfg = write_config(tmp_path, seeds=seeds)  # xent + logconf, naive
    text = cfg.read_text().replace('[strategy]\nname = "naive"\n', f'[strategy]\nname = "grid"\nmodels = {MODELS}\n{extra}')
    cfg.write_text(text)
    return cfg


def test_grid_plans_every_pair_once_per_loss_and_shares_ground_truth_stages(tmp_path):
    plan = make_plan(load_config(grid_config(tmp_path, seeds="[0]")), create_plugin_manager())
    rows = [e.name for e in plan.experiments[0]]
    labels = ["glove-bow(epochs=2)", "glove-bow(epochs=5)", "glove-bow(epochs=20,lr=0.01)"]
    pairs = [(i, j) for i in range(3) for j in range(i, 3)]
    assert rows == [f"grid/{labels[i]}->{labels[j]}/{loss}" for i, j in pairs for loss in ("xent", "logconf")]
    kinds = [s.kind for s in plan.stages]
    # one ground-truth model per size and role, shared by every pair; one label stage per weak model
    assert kinds.count("train_weak") == 3 and kinds.count("train_ceiling") == 3 and kinds.count("label") == 3
    assert kinds.count("train_transfer") == len(pairs) * 2
    exps = {e.name: e for e in plan.experiments[0]}
    a, b = exps[f"grid/{labels[0]}->{labels[1]}/xent"], exps[f"grid/{labels[0]}->{labels[2]}/logconf"]
    assert a.weak.id == b.weak.id and a.ceiling.id != b.ceiling.id
    assert exps[f"grid/{labels[1]}->{labels[2]}/xent"].ceiling.id == b.ceiling.id


def test_grid_without_diagonal_and_its_errors(tmp_path):
    pm = create_plugin_manager()
    plan = make_plan(load_config(grid_config(tmp_path, "diagonal = false\n", seeds="[0]")), pm)
    assert len(plan.experiments[0]) == 3 * 2
    with pytest.raises(ConfigError, match="models must be a list of >= 2 models"):
        make_plan(load_config(grid_config(tmp_path, seeds="[0]"), sets=['strategy.models=["glove-bow"]']), pm)


def test_default_grid_on_the_default_strong_model_is_glove_then_minilm_layers():
    cfg = load_config(shortcuts={"strategy": "grid"}, run={"seeds": [0]})
    plan = make_plan(cfg, create_plugin_manager())
    strongs = list(dict.fromkeys(e.strong_model for e in plan.experiments[0]))
    assert strongs == ["glove-bow", "all-MiniLM-L6-v2@L1", "all-MiniLM-L6-v2@L3", "all-MiniLM-L6-v2"]


def test_a_grid_run_reports_the_median_over_pairs_and_draws_both_figures(tmp_path, capsys):
    cfg = grid_config(tmp_path)
    assert main(["run", "--config", str(cfg), "--workers", "1"]) == 0
    out = tmp_path / "out"
    results = Results.read(out / "results.json")
    items = {s.loss: s for s in summary(results)}
    for loss in ("xent", "logconf"):
        rows = [e for e in results.experiments if e.loss == loss]
        used = [e.pgr.mean for e in rows if e.weak != e.strong and not e.pgr.na and e.pgr.mean is not None]
        assert items[loss].pairs == 6 and items[loss].pairs_used == len(used) <= 3
        assert items[loss].median_pgr == pytest.approx(float(np.median(used)))
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    err = capsys.readouterr().err
    assert "Grid summary" in err and f"{items['xent'].median_pgr:.3f}" in err
    data = (out / "grid_local.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_summary_leaves_out_weak_equals_strong_and_undefined_pairs():
    from w2s_harness._results.results import ExperimentResult, Summary

    def row(weak, strong, pgr, na=None):
        return ExperimentResult(name=f"grid/{weak}->{strong}/xent", dataset="d", strategy="grid", loss="xent",
                                weak=weak, strong=strong, rungs=[weak, strong], seeds=[0], weak_acc=Summary(),
                                ceiling_acc=Summary(), transfer_acc=Summary(), pgr=Summary(mean=pgr, na=na))

    res = Results(status="complete", config={}, environment={}, experiments=[
        row("a", "a", 0.9), row("a", "b", 0.1), row("a", "c", 0.5), row("b", "c", 0.2),
        row("b", "b", 0.8), row("c", "d", 0.7, na="weak >= ceiling")], comparisons=[], stages=[])
    (s,) = summary(res)
    assert (s.median_pgr, s.pairs_used, s.pairs) == (0.2, 3, 6)
    assert "c->d: weak >= ceiling" in s.excluded and "a->a: weak == strong" in s.excluded


def test_a_run_over_two_datasets_prefixes_rows_and_shares_one_store(tmp_path, capsys):
    cfg = write_config(tmp_path, seeds="[0]", loss_block='[loss]\nname = "xent"\n')
    other = make_csv(tmp_path / "other.csv", seed=7)
    text = cfg.read_text()
    first = text[text.index("[dataset]"):text.index("[weak]")]
    second = first.replace(str(tmp_path / "reviews.csv"), str(other))
    cfg.write_text(text.replace(first, "[[dataset]]" + first[len("[dataset]"):] + "[[dataset]]" +
                                second[len("[dataset]"):]))
    assert main(["validate", "--config", str(cfg)]) == 0
    assert "8 stages over 1 seeds and 2 datasets" in capsys.readouterr().out
    assert main(["run", "--config", str(cfg), "--workers", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in res["experiments"]] == ["local#1:naive/xent", "local#2:naive/xent"]
    assert [e["dataset"] for e in res["experiments"]] == ["local#1", "local#2"]
    assert len(res["stages"]) == 8 and len({s["id"] for s in res["stages"]}) == 8
    assert [d["path"] for d in res["config"]["dataset"]] == [str(tmp_path / "reviews.csv"), str(other)]
    # the two datasets' numbers differ (different data), each equals a one-dataset run of it
    (tmp_path / "single").mkdir()
    single = write_config(tmp_path / "single", seeds="[0]", loss_block='[loss]\nname = "xent"\n')
    assert main(["run", "--config", str(single), "--workers", "1", "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["experiments"][0]["pgr"]["per_seed"] == res["experiments"][0]["pgr"]["per_seed"]
    # --set dataset.KEY applies to every dataset that takes it; --dataset NAME names the one dataset
    cfg2 = load_config(cfg, sets=["dataset.n_test=50"])
    assert [d.params["n_test"] for d in cfg2.datasets] == [50, 50]
    assert load_config(cfg, shortcuts={"dataset": "tweets-sentiment"}).per_dataset()[0].dataset.name == \
        "tweets-sentiment"
