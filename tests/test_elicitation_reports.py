"""The three elicitation strategies (docs/elicitation.md) in ``report`` and ``compare``: one run each on the same
tiny random GPT-2 (test_elicitation's), two seeds, read back through the CLI's JSON tables and checked against
the runs' own stage metrics."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
from test_elicitation import _config, _save_lm, _stages

from w2s_harness._cli.cli import main

RUNS = {  # strategy: (options, the transfer stage of its main row, that row)
    "prompt": ("k = 1", "prompt 1-shot weak", "prompt/k-shot-weak"),
    "icm": ("n_search = 6\nn_context = 2\nsteps = 12", "icm transfer[xent]", "icm/xent"),
    "generative": ("lm_epochs = 1\nlm_lr = 0.003\nlm_max_length = 32", "generative transfer[xent]",
                   "generative/xent"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("elicit-runs")
    lm = _save_lm(root / "gpt2", "gpt2")
    outs = {}
    for strategy, (extra, _, _) in RUNS.items():
        d = root / strategy
        d.mkdir()
        assert main(["run", "--config", str(_config(d, lm, strategy, extra, seeds="[0, 1]"))]) == 0
        outs[strategy] = d / "out"
    return outs


def _tables(capsys, argv) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return {t["name"]: t["rows"] for t in json.loads(capsys.readouterr().out)["tables"]}


def _mean_acc(stages: dict, name: str) -> float:
    return float(np.mean([stages[(name, seed)]["metrics"]["test_acc"] for seed in (0, 1)]))


@pytest.mark.parametrize("strategy", list(RUNS))
def test_report_shows_each_strategys_rows_with_the_stages_numbers(runs, capsys, strategy):
    _, transfer, row = RUNS[strategy]
    tables = _tables(capsys, ["report", str(runs[strategy]), "--format", "json", "--no-plots"])
    rows = {r["name"]: r for r in tables["summary"]}
    assert row in rows and "naive/xent" in rows
    _, stages = _stages(runs[strategy])
    assert rows[row]["transfer_acc"] == pytest.approx(_mean_acc(stages, transfer))
    assert rows[row]["weak_acc"] == pytest.approx(_mean_acc(stages, "weak"))
    ceiling = "generative ceiling" if strategy == "generative" else "ceiling"
    assert rows[row]["ceiling_acc"] == pytest.approx(_mean_acc(stages, ceiling))
    assert rows[row]["pgr_seeds_run"] == 2
    # the paired comparison against the naive control, per seed
    pairs = {(c["a"], c["b"]) for c in tables["comparisons"]}
    assert (row, "naive/xent") in pairs


def test_compare_puts_the_three_runs_in_one_table(runs, capsys):
    order = list(RUNS)
    argv = ["compare", *(str(runs[s]) for s in order), *(a for s in order for a in ("--label", s)),
            "--format", "json"]
    tables = _tables(capsys, argv)
    summary = {(r["run"], r["name"]) for r in tables["summary"]}
    for strategy, (_, _, row) in RUNS.items():
        assert (strategy, row) in summary and (strategy, "naive/xent") in summary
    # the control row is the same experiment in every run (same data, models and seeds): it differs by exactly 0
    cross = [r for r in tables["cross-run"] if r["a"] == r["b"] == "naive/xent"]
    assert {r["a_run"] for r in cross} == {"icm", "generative"} and {r["b_run"] for r in cross} == {"prompt"}
    assert all(r["transfer_acc_diff_mean"] == 0.0 and r["pgr_diff_mean"] == 0.0 for r in cross)
    # and each strategy's row against the baseline run's naive row: the difference of the two runs' accuracies
    _, base = _stages(runs["prompt"])
    for strategy in ("icm", "generative"):
        _, transfer, row = RUNS[strategy]
        (r,) = [r for r in tables["cross-run"] if r["a_run"] == strategy and r["a"] == row]
        _, stages = _stages(runs[strategy])
        want = _mean_acc(stages, transfer) - _mean_acc(base, "transfer[xent]")
        assert r["transfer_acc_diff_mean"] == pytest.approx(want, abs=1e-12)
    md = capsys.readouterr().out if main([*argv[:-2], "--format", "md"]) == 0 else ""
    assert all(f"| {row} " in md or f"| {row} |" in md for _, _, row in RUNS.values()), md[:2000]
