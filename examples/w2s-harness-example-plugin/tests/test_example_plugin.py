"""Tests of the example plugin: every component with real numbers, and real runs through the CLI.

They use only the public API (``from w2s_harness import ...``), so they are also a template for a plugin's own
tests. Run them with ``pytest`` in this folder once the plugin is installed (``pip install -e .``).
In-process runs pass the plugin module to ``main(argv, plugins=[...])``; that works whether or not the
distribution is installed (a module already loaded through its entry point is registered once).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
import w2s_example_plugin
from w2s_example_plugin.model import VERSION

from w2s_harness import (
    Component,
    ConfigError,
    InputError,
    PlanBuilder,
    Results,
    RunConfig,
    StageKind,
    StageRecord,
    create_plugin_manager,
    main,
    make_plan,
)

PLUGIN = w2s_example_plugin.__name__


@pytest.fixture(scope="module")
def pm():
    """A plugin manager with the built-ins and this plugin only (entry points off: the same whether installed)."""
    return create_plugin_manager(plugins=[w2s_example_plugin], entry_points=False)


# ------------------------------------------------------------------------------------------ the plugin


def test_registers_one_component_of_each_kind_and_the_observer_hooks(pm):
    assert pm.registered_by(PLUGIN) == {"dataset": ["example-parity"], "model": ["example-charhash"],
                                        "loss": ["example-smoothed-xent"],
                                        "strategy": ["example-agreement", "example-naive-twice"],
                                        "op": ["example-agree"],
                                        "executor": ["example-threads"]}
    assert pm.other_hooks(PLUGIN) == ["w2s_add_options", "w2s_configure", "w2s_report_views"]
    assert pm.load_errors == []


def test_loading_the_plugin_does_not_import_torch():
    """``w2s-harness list`` imports every plugin: importing and registering this one must stay instant."""
    script = ("import sys, w2s_example_plugin\n"
              "from w2s_harness import create_plugin_manager\n"
              "pm = create_plugin_manager(plugins=[w2s_example_plugin], entry_points=False)\n"
              "assert 'example-charhash' in pm.registry('model')\n"
              "print(sorted(m for m in ('torch', 'transformers', 'triton') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------- dataset


def test_dataset_labels_are_the_parity_and_splits_are_seeded(pm):
    ds = pm.create("dataset", "example-parity")
    data = ds.load()
    assert len(data) == 400 and data.class_names == ["even", "odd"] and data.n_classes == 2
    assert [int(text.split()[2]) % 2 for text in data.texts] == data.labels.tolist()
    s0, s1 = ds.splits(0), ds.splits(1)
    assert (len(s0.train1), len(s0.train2), len(s0.test)) == (160, 160, 80)
    assert not set(s0.train1) & set(s0.train2) and not set(s0.train2) & set(s0.test)
    assert list(s0.test) == list(s1.test) and list(s0.train1) != list(s1.train1)  # test split fixed across seeds
    ident = ds.identity()
    assert ident["name"] == "example-parity" and ident["n"] == 400 and len(ident["fingerprint"]) == 64
    assert pm.create("dataset", "example-parity", seed=1).identity()["fingerprint"] != ident["fingerprint"]
    assert pm.create("dataset", "example-parity", n=50, n_test=10).split_sizes() == (20, 20, 10)
    with pytest.raises(ConfigError, match=r"dataset 'example-parity' has no parameter 'size'\. Did you mean: seed\?"):
        pm.create("dataset", "example-parity", size=3)


# ------------------------------------------------------------------------------------------------ model


def test_model_features_are_hashed_trigram_counts(pm):
    model = pm.create("model", "example-charhash", dim=64)
    key = model.feature_key()
    [(got_key, feats)] = model.features(["ab", "the number 7 is here", "ab"]).items()
    assert got_key == key and feats.shape == (3, 64) and feats.dtype == np.float32
    # "ab" padded is " ab ": trigrams " ab" and "ab ", one count each, L2-normalised
    expected = np.zeros(64, dtype=np.float32)
    for gram in (" ab", "ab "):
        expected[zlib.crc32(gram.encode()) % 64] += 1.0
    np.testing.assert_allclose(feats[0], expected / np.linalg.norm(expected), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-6)
    # deterministic: a fresh instance (or another process: crc32, not hash()) gives the same array
    np.testing.assert_array_equal(pm.create("model", "example-charhash", dim=64).features(["ab"])[key], feats[:1])
    np.testing.assert_array_equal(feats[0], feats[2])

    advanced = []
    model.features(["a", "b", "c"], progress=advanced.append)
    assert sum(advanced) == 3


def test_model_identity_and_feature_key_name_their_parameters(pm):
    model = pm.create("model", "example-charhash", dim=32, ngram=2, lr=0.1)
    assert model.feature_key() == f"example-charhash|v{VERSION}|dim=32|ngram=2"
    ident = model.identity()
    assert ident["features"] == model.feature_key() and ident["train"]["lr"] == 0.1
    other_lr = pm.create("model", "example-charhash", dim=32, ngram=2, lr=0.2)
    assert other_lr.feature_key() == model.feature_key()  # same cached features...
    assert other_lr.identity() != ident  # ...but other trained heads
    assert pm.create("model", "example-charhash", dim=33, ngram=2).feature_key() != model.feature_key()
    with pytest.raises(ConfigError, match=r"model 'example-charhash': dim must be an integer >= 1, got 0"):
        pm.create("model", "example-charhash", dim=0)
    with pytest.raises(ConfigError, match=r"model 'example-charhash': lr must be a number > 0, got 0"):
        pm.create("model", "example-charhash", lr=0)


def test_model_head_is_a_zero_linear_layer(pm):
    torch = pytest.importorskip("torch")
    head = pm.create("model", "example-charhash").head(2, 16, "cpu")
    assert isinstance(head, torch.nn.Linear) and (head.in_features, head.out_features) == (16, 2)
    assert not head.weight.any() and not head.bias.any()


# ------------------------------------------------------------------------------------------------- loss


def _smoothed_ce(logits, targets, s):
    """The reference formula, written out: mean_i -sum_c ((1 - s) y_ic + s / k) log softmax(z_i)_c."""
    import torch

    k = logits.shape[1]
    return -(((1 - s) * targets + s / k) * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


def test_loss_equals_hand_computed_label_smoothed_cross_entropy(pm):
    torch = pytest.importorskip("torch")
    rows, ids, s = [[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]], [0, 2], 0.1
    by_hand = 0.0
    for z, y in zip(rows, ids):
        log_z = math.log(sum(math.exp(v) for v in z))
        by_hand += -sum(((1 - s) * (c == y) + s / 3) * (z[c] - log_z) for c in range(3)) / 2
    logits = torch.tensor(rows, requires_grad=True)
    loss = pm.create("loss", "example-smoothed-xent")
    assert loss.smoothing == 0.1 and repr(loss) == "example-smoothed-xent(smoothing=0.1)"
    value = loss(logits, torch.tensor(ids))
    assert value.item() == pytest.approx(by_hand, rel=1e-6)
    torch.testing.assert_close(value, torch.nn.functional.cross_entropy(logits, torch.tensor(ids), label_smoothing=s))

    # gradient: the closed form (softmax(z) - smoothed target) / N, and autograd of the reference formula
    value.backward()
    onehot = torch.nn.functional.one_hot(torch.tensor(ids), 3).float()
    closed = (torch.softmax(logits.detach(), dim=1) - ((1 - s) * onehot + s / 3)) / 2
    torch.testing.assert_close(logits.grad, closed)
    ref_logits = logits.detach().clone().requires_grad_(True)
    _smoothed_ce(ref_logits, onehot, s).backward()
    torch.testing.assert_close(logits.grad, ref_logits.grad)


def test_loss_on_soft_labels_and_its_fast_path(pm):
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 3, generator=gen, requires_grad=True)
    soft = torch.softmax(torch.randn(16, 3, generator=gen), dim=-1)
    loss = pm.create("loss", "example-smoothed-xent", smoothing=0.25)
    value = loss(logits, soft, step_frac=0.5)
    torch.testing.assert_close(value, _smoothed_ce(logits, soft, 0.25))
    (grad,) = torch.autograd.grad(value, logits)
    (ref_grad,) = torch.autograd.grad(_smoothed_ce(logits, soft, 0.25), logits)
    torch.testing.assert_close(grad, ref_grad)
    plain = pm.create("loss", "example-smoothed-xent", smoothing=0.0)
    torch.testing.assert_close(plain(logits, soft), torch.nn.functional.cross_entropy(logits, soft))
    # the training loop's fast path: targets checked once (prevalidate), then compute() per batch
    ids = soft.argmax(dim=1)
    checked = loss.prevalidate(ids, 3)
    assert checked.shape == (16, 3)
    torch.testing.assert_close(loss.compute(logits[:4], checked[:4], 0.0), loss(logits[:4], ids[:4]))


def test_loss_rejects_bad_inputs_and_parameters(pm):
    torch = pytest.importorskip("torch")
    loss = pm.create("loss", "example-smoothed-xent")
    with pytest.raises(InputError, match=r"loss 'example-smoothed-xent': targets shape \(2,\) contain class id 3 "
                                         r"outside \[0, 3\)"):
        loss(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(InputError, match=r"step_frac 2\.0 is outside \[0, 1\]"):
        loss(torch.zeros(2, 3), torch.tensor([0, 1]), step_frac=2.0)
    with pytest.raises(ConfigError, match=r"loss 'example-smoothed-xent': smoothing must be a number in \[0, 1\], got 1\.5"):
        pm.create("loss", "example-smoothed-xent", smoothing=1.5)


# --------------------------------------------------------------------------------------------- strategy


def _config(losses=None, rounds=None, seeds=(0, 1)) -> RunConfig:
    cfg = RunConfig.default()
    cfg.dataset = Component("example-parity", {"n": 60})
    cfg.weak, cfg.strong = Component("example-charhash", {"dim": 8}), Component("example-charhash")
    cfg.losses = losses or [Component("example-smoothed-xent")]
    cfg.strategy = Component("example-naive-twice", {} if rounds is None else {"rounds": rounds})
    cfg.run.seeds = list(seeds)
    return cfg


def test_strategy_declares_the_naive_rows_and_a_relabelling_chain():
    from w2s_example_plugin.strategy import NaiveTwice

    cfg = _config([Component("example-smoothed-xent"), Component("example-smoothed-xent", {"smoothing": 0.2})])
    b = PlanBuilder(cfg, seed=0, context={})
    NaiveTwice().plan(b)
    smooth, smooth2 = "example-smoothed-xent", "example-smoothed-xent(smoothing=0.2)"
    assert [e.name for e in b.experiments] == [f"naive/{smooth}", f"naive/{smooth2}",
                                               f"example-naive-twice/{smooth}", f"example-naive-twice/{smooth2}"]
    assert [(c.a, c.b) for c in b.comparisons] == [
        (f"naive/{smooth2}", f"naive/{smooth}"),
        (f"example-naive-twice/{smooth}", f"naive/{smooth}"),
        (f"example-naive-twice/{smooth2}", f"naive/{smooth2}")]
    # weak, weak labels, ceiling + per loss: student1 (= the naive transfer), its labels, student2
    assert len(b.stages) == 3 + 2 * 3
    kinds = [s.kind for s in b.stages.values()]
    assert kinds.count(StageKind.TRAIN_TRANSFER) == 4 and kinds.count(StageKind.LABEL) == 3

    naive, twice = b.experiments[0], b.experiments[2]
    assert (twice.weak, twice.ceiling, twice.baseline) == (naive.weak, naive.ceiling, naive.name)
    assert [label for label, _ in twice.rungs] == ["example-charhash", "student1", "student2"]
    assert twice.rungs[1][1].id == naive.transfer.id  # round 1 is the naive row's transfer: trained once
    student2 = b.stages[twice.transfer.id]
    [labels] = student2.deps
    assert b.stages[labels].op == "label" and b.stages[labels].deps == (naive.transfer.id,)
    assert student2.spec["loss"] == {"name": "example-smoothed-xent"} and student2.spec["on"]["split"] == "train2"


def test_strategy_plans_every_seed_and_checks_rounds(pm):
    plan = make_plan(_config(), pm)
    assert len(plan.stages) == 2 * (3 + 3) and sorted(plan.experiments) == [0, 1]
    one_round = make_plan(_config(rounds=1, seeds=[0]), pm)
    [naive, twice] = one_round.experiments[0]
    assert len(one_round.stages) == 4 and twice.transfer.id == naive.transfer.id  # rounds=1 is naive
    with pytest.raises(ConfigError, match="strategy 'example-naive-twice': rounds must be an integer >= 1, got 0"):
        make_plan(_config(rounds=0), pm)


# -------------------------------------------------------------------------------------- observer and CLI


def test_observer_counts_stages_and_writes_one_line(pm, tmp_path, capsys):
    log = tmp_path / "runs.jsonl"
    cfg = _config()
    cfg.extra["example_log"] = str(log)
    results = Results(status="partial", config=cfg.to_dict(), environment={}, experiments=[], comparisons=[],
                      stages=[])
    pm.hook.w2s_configure(config=cfg, pm=pm)
    pm.hook.w2s_run_start(config=cfg)
    for i, cached in enumerate([True, False, False]):
        record = StageRecord(id=str(i), op="train", kind="train_weak", name="weak", seed=0, metrics={},
                             cached=cached)
        pm.hook.w2s_stage_end(stage=None, result=record)
    pm.hook.w2s_run_end(results=results)
    assert json.loads(log.read_text()) == {"status": "partial", "output_dir": cfg.run.output_dir,
                                           "stages": {"computed": 2, "cached": 1}, "experiments": {}}

    cfg.extra["example_log"] = str(tmp_path)  # a directory: the write fails, the run must not
    pm.hook.w2s_configure(config=cfg, pm=pm)
    pm.hook.w2s_run_start(config=cfg)
    pm.hook.w2s_run_end(results=results)
    assert "warning: w2s-harness-example-plugin could not write" in capsys.readouterr().out


def test_configure_reads_the_option_then_the_environment(pm, tmp_path, monkeypatch):
    monkeypatch.delenv("W2S_EXAMPLE_RUN_LOG", raising=False)
    cfg = RunConfig.default()
    pm.hook.w2s_configure(config=cfg, pm=pm)
    assert cfg.extra == {"example_log": None}
    monkeypatch.setenv("W2S_EXAMPLE_RUN_LOG", str(tmp_path / "env.jsonl"))
    pm.hook.w2s_configure(config=cfg, pm=pm)
    assert cfg.extra == {"example_log": str(tmp_path / "env.jsonl")}
    cfg.extra["example_log"] = str(tmp_path / "flag.jsonl")  # the option wins
    pm.hook.w2s_configure(config=cfg, pm=pm)
    assert cfg.extra == {"example_log": str(tmp_path / "flag.jsonl")}


RUN = ["--dataset", "example-parity", "--weak", "example-charhash", "--set", "weak.dim=8",
       "--strong", "example-charhash", "--loss", "example-smoothed-xent", "--strategy", "example-naive-twice",
       "--seeds", "0,1", "--workers", "1", "--device", "cpu"]


def test_validate_accepts_the_option_and_checks_it(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("W2S_EXAMPLE_RUN_LOG", raising=False)
    assert main(["validate", *RUN, "--example-log", str(tmp_path / "runs.jsonl")], plugins=[w2s_example_plugin]) == 0
    out = capsys.readouterr().out
    assert "config OK: 12 stages over 2 seeds" in out and "example-naive-twice/example-smoothed-xent" in out
    missing = tmp_path / "missing" / "runs.jsonl"
    assert main(["validate", *RUN, "--example-log", str(missing)], plugins=[w2s_example_plugin]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --example-log {missing}: the directory {str(missing.parent)!r} does not exist")
    assert not (tmp_path / "missing").exists()


def test_run_end_to_end_separates_parity_and_logs_each_run(tmp_path, monkeypatch):
    monkeypatch.delenv("W2S_EXAMPLE_RUN_LOG", raising=False)
    out, log = tmp_path / "run", tmp_path / "runs.jsonl"
    argv = ["run", *RUN, "--output-dir", str(out), "--example-log", str(log)]
    assert main(argv, plugins=[w2s_example_plugin]) == 0
    results = Results.read(out)
    assert results.status == "complete"
    assert results.config["extra"] == {"example_log": str(log)}  # the option, recorded in results.json
    assert [e.name for e in results.experiments] == ["naive/example-smoothed-xent",
                                                     "example-naive-twice/example-smoothed-xent"]
    twice = results.experiment("example-naive-twice/example-smoothed-xent")
    # the strong charhash model (256 buckets) separates even from odd on every seed; the weak one (8 buckets,
    # many collisions) does worse
    assert all(acc >= 0.9 for acc in twice.ceiling_acc.per_seed), twice.ceiling_acc
    assert twice.weak_acc.mean < twice.ceiling_acc.mean
    assert twice.rungs == ["example-charhash", "student1", "student2"] and len(twice.rung_acc) == 3
    assert [c.a for c in results.comparisons] == ["example-naive-twice/example-smoothed-xent"]

    n = len(results.stages)
    assert n == 2 * 6 and all(not s.cached for s in results.stages)
    assert main(argv, plugins=[w2s_example_plugin]) == 0  # again: every stage comes from the cache
    first, second = (json.loads(line) for line in log.read_text().splitlines())
    assert first == {"status": "complete", "output_dir": str(out), "stages": {"computed": n, "cached": 0},
                     "experiments": {e.name: e.pgr.mean for e in results.experiments}}
    assert second == {**first, "stages": {"computed": 0, "cached": n}}
    assert os.path.isfile(out / "results.json")


def test_report_shows_the_strategy_view(tmp_path, monkeypatch, capsys):
    """``w2s-harness report`` prints the plugin's table for its own rows and writes its figure."""
    monkeypatch.delenv("W2S_EXAMPLE_RUN_LOG", raising=False)
    out = tmp_path / "run"
    assert main(["run", *RUN, "--seeds", "0", "--output-dir", str(out)], plugins=[w2s_example_plugin]) == 0
    capsys.readouterr()
    assert main(["report", str(out)], plugins=[w2s_example_plugin]) == 0
    err = capsys.readouterr().err
    assert "example-naive-twice: test accuracy after each round" in err
    twice = Results.read(out).experiment("example-naive-twice/example-smoothed-xent")
    [cells] = [[c.strip() for c in ln.split("│")[1:-1]] for ln in err.splitlines()
               if ln.startswith("│") and ln.split("│")[1].strip() == twice.name]
    assert cells == [twice.name, *(f"{r.acc.mean:.3f}" for r in twice.rung_acc), f"{twice.ceiling_acc.mean:.3f}"]
    assert "round 1 is the naive transfer" in err
    figure = out / "example_naive_twice.png"
    assert f"wrote {figure}" in err and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # results without this strategy's rows: no table, no figure
    naive = tmp_path / "naive"
    assert main(["run", *RUN, "--strategy", "naive", "--seeds", "0", "--output-dir", str(naive)],
                plugins=[w2s_example_plugin]) == 0
    assert main(["report", str(naive)], plugins=[w2s_example_plugin]) == 0
    assert "example-naive-twice" not in capsys.readouterr().err and not (naive / "example_naive_twice.png").exists()
