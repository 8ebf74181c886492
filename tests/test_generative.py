"""Generative fine-tuning (docs/elicitation.md, ``generative``): the LM step on the unlabelled train1 + train2 texts,
its content-keyed cache, and the ``generative`` strategy end to end. Tiny random causal LMs built locally
(test_elicitation's), nothing downloaded."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from test_elicitation import _artifact, _choice_config, _config, _save_lm, _stages
from w2s_harness.plugins.models.hf import hf_model
from w2s_harness.plugins.models.hf.generative import (
    LM_INFO,
    GenerativeTrain,
    check_lm_loss,
    lm_adapted,
    lm_key,
    lm_loss,
    lm_texts,
    load_lm,
)

from w2s_harness import ConfigError, StageKind, StageOp, StopRequested, TrainingError, hookimpl
from w2s_harness._cli.cli import main

TEXTS = ["the movie was good", "i hate it", "boring!", "this is not very fun at all, really!", "great fun",
         "what a waste of time", "loved every minute", "meh"] * 2
LM = {"lm_epochs": 3, "lm_lr": 3e-3, "lm_max_length": None, "lm_batch_size": 4}


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> Path:
    return _save_lm(tmp_path_factory.mktemp("tiny-lm") / "gpt2", "gpt2")


def _weights(path: Path) -> dict:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path)).state_dict()


def test_the_lm_step_lowers_the_lm_loss_and_is_cached(gpt2, tmp_path):
    m = hf_model(str(gpt2))
    lm, tok = load_lm(m, "cpu")
    before = lm_loss(lm, tok, TEXTS)
    path, info = lm_adapted(m, TEXTS, LM, seed=0, device="cpu", root=tmp_path)
    assert not info["cached"] and info["steps"] == 3 * 4
    assert info["lm_loss_before"] == pytest.approx(before, rel=1e-5)
    after_lm, after_tok = load_lm(hf_model(str(path)), "cpu")
    after = lm_loss(after_lm, after_tok, TEXTS)
    assert after == pytest.approx(info["lm_loss_after"], rel=1e-4)
    assert after < before - 0.1, (before, after)  # real numbers: a random LM's byte loss drops
    # the second use reads the checkpoint back: no training, the same files, the same weights
    files = {p: p.stat().st_mtime_ns for p in path.iterdir()}
    again, info2 = lm_adapted(m, TEXTS, LM, seed=0, device="cpu", root=tmp_path)
    assert again == path and info2["cached"] and info2["lm_loss_after"] == info["lm_loss_after"]
    assert {p: p.stat().st_mtime_ns for p in path.iterdir()} == files
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [path.name]  # no temporary directory left
    assert (path / LM_INFO).is_file()
    a, b = _weights(path), _weights(again)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_lm_step_reproduces_with_its_seed(gpt2, tmp_path):
    m = hf_model(str(gpt2))
    p1, _ = lm_adapted(m, TEXTS, LM, seed=3, device="cpu", root=tmp_path / "a")
    p2, _ = lm_adapted(m, TEXTS, LM, seed=3, device="cpu", root=tmp_path / "b")
    a, b = _weights(p1), _weights(p2)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_cache_key_follows_texts_params_seed_and_lora(gpt2):
    m = hf_model(str(gpt2))
    key = lm_key(m, TEXTS, LM, 0)
    assert key == lm_key(hf_model(str(gpt2), max_length=32), TEXTS, LM, 0)  # fine-tune params: the same pass
    assert key != lm_key(m, TEXTS[:-1], LM, 0)
    assert key != lm_key(m, ["ab", "c"], LM, 0) != lm_key(m, ["a", "bc"], LM, 0)
    for change in ({"lm_epochs": 4}, {"lm_lr": 1e-3}, {"lm_max_length": 16}, {"lm_batch_size": 2}):
        assert key != lm_key(m, TEXTS, {**LM, **change}, 0), change
    assert key != lm_key(m, TEXTS, LM, 1)
    assert key != lm_key(hf_model(str(gpt2), linear_probe=False, lora=True), TEXTS, LM, 0)


def test_lora_lm_step_merges_into_plain_weights(gpt2, tmp_path):
    m = hf_model(str(gpt2), linear_probe=False, lora=True, lora_r=2)
    path, info = lm_adapted(m, TEXTS, {**LM, "lm_lr": 1e-2}, seed=0, device="cpu", root=tmp_path)
    assert info["lora"] and info["lm_loss_after"] < info["lm_loss_before"]
    w = _weights(path)
    assert not any("lora" in k for k in w)
    base = _weights(gpt2)
    assert any(not torch.equal(w[k], base[k]) for k in base)


def test_bad_params_are_one_line_errors(gpt2, tmp_path):
    from w2s_harness.plugins.strategies.generative import Generative

    for kwargs, msg in (({"lm_epochs": 0}, "lm_epochs must be an integer >= 1"),
                        ({"lm_lr": 0.0}, "lm_lr must be"), ({"lm_batch_size": "8"}, "lm_batch_size must be"),
                        ({"lm_max_length": 1}, "lm_max_length must be")):
        with pytest.raises(ConfigError, match=f"strategy 'generative': {msg}") as e:
            Generative(**kwargs)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="op 'generative-train': on must be one of train1, train2"):
        GenerativeTrain({"name": "m"}, on="test")
    with pytest.raises(ConfigError, match="op 'generative-train': lm_epochs must be an integer >= 1"):
        GenerativeTrain({"name": "m"}, lm_epochs=0)


@pytest.mark.parametrize("bad", [{"lm_epochs": 0}, {"lm_lr": 2.0}, {"lm_max_length": 1}, {"lm_batch_size": 0},
                                 {"n_search": 1}, {"n_context": 0}, {"steps": -1}, {"alpha": 0.0}, {"t0": -1.0},
                                 {"t_min": 0}, {"beta": -0.5}, {"init": "anneal"}, {"n_seed": 0},
                                 {"init": "grow", "n_seed": 40}])
def test_strategies_check_their_options_as_their_ops_do(bad):
    """The icm and generative strategies repeat their ops' parameter checks (plugin packages do not import each
    other) so that a bad option names the strategy: the two messages must say the same after the owner."""
    from w2s_harness.plugins.models.hf.elicit import ICMLabels
    from w2s_harness.plugins.strategies.generative import Generative
    from w2s_harness.plugins.strategies.icm import ICM

    strategy, op = (Generative, GenerativeTrain) if next(iter(bad)).startswith("lm_") else (ICM, ICMLabels)
    with pytest.raises(ConfigError) as by_strategy:
        strategy(**bad)
    with pytest.raises(ConfigError) as by_op:
        op({"name": "m"}, **bad)
    assert str(by_strategy.value).split(": ", 1)[1] == str(by_op.value).split(": ", 1)[1]


def test_an_encoder_strong_model_fails_before_anything_trains(tmp_path, capsys):
    from test_causal_lm import _save_bert

    bert = _save_bert(tmp_path / "bert")
    cfg = _config(tmp_path, bert, "generative")
    assert main(["run", "--config", str(cfg)]) != 0
    err = capsys.readouterr().err
    assert "is not an hf: causal LM (generative fine-tuning trains the LM's next-token head)" in err
    assert not (tmp_path / "out" / "stages").exists() or not any((tmp_path / "out" / "stages").iterdir())


def _pgr_rows(results) -> dict:
    return {e["name"]: e for e in results["experiments"]}


def test_generative_strategy_end_to_end_and_seeds_reproduce(gpt2, tmp_path, capsys):
    extra = "lm_epochs = 1\nlm_lr = 0.003\nlm_max_length = 32"
    cfg = _config(tmp_path, gpt2, "generative", extra)
    assert main(["run", "--config", str(cfg)]) == 0
    captured = capsys.readouterr()
    table = captured.out + captured.err  # the results table goes to stderr
    out = tmp_path / "out"
    results, stages = _stages(out)
    rows = _pgr_rows(results)
    assert set(rows) == {"naive/xent", "generative/xent", "generative/lm-adapted ceiling"}
    assert "generative/xent" in table and "generative/xent - naive/xent" in table
    # the op's progress, piped: lines on stderr (80 train1 + train2 texts, batches of 8)
    assert f"LM step of hf:{gpt2.as_posix()} on 80 texts: started (10 batches)" in captured.err
    assert "Writing model shards" not in captured.err  # transformers' own bar, silenced when the LM step saves
    ceil, transfer = stages[("generative ceiling", 0)], stages[("generative transfer[xent]", 0)]
    # one LM pass shared by the ceiling and the transfer: one checkpoint, read back by the second stage
    adapted = [p for p in (out / "lm-adapted").iterdir() if p.is_dir()]
    assert len(adapted) == 1
    assert ceil["metrics"]["lm"]["key"] == transfer["metrics"]["lm"]["key"] == adapted[0].name
    assert sorted([ceil["metrics"]["lm"]["cached"], transfer["metrics"]["lm"]["cached"]]) == [False, True]
    lm = ceil["metrics"]["lm"]
    assert lm["lm_loss_after"] < lm["lm_loss_before"]
    # the LM step saw train1 + train2 texts only
    split = ceil["metrics"]["split_rows"]
    assert lm["n_texts"] == split["train1"] + split["train2"]
    assert 0.0 <= ceil["metrics"]["test_acc"] <= 1.0 and ceil["metrics"]["n_train"] == split["train2"]
    first = {k: v["metrics"].get("test_acc", v["metrics"].get("label_acc")) for k, v in stages.items()}
    # a fresh output directory, the same seed: the same numbers
    (tmp_path / "again").mkdir()
    cfg2 = _config(tmp_path / "again", gpt2, "generative", extra)
    assert main(["run", "--config", str(cfg2)]) == 0
    _, stages2 = _stages(tmp_path / "again" / "out")
    assert {k: v["metrics"].get("test_acc", v["metrics"].get("label_acc")) for k, v in stages2.items()} == first
    assert stages2[("generative ceiling", 0)]["metrics"]["lm"]["lm_loss_after"] == lm["lm_loss_after"]


class _TrainViaContext:
    """A plugin: op ``ctx-train`` trains its model through ``OpContext.train``; strategy ``ctx-train`` declares it
    beside the reference, so its predictions can be checked against the built-in train op's ceiling."""

    class Op(StageOp):
        inputs = ()
        output = "model"
        kinds = (StageKind.TRAIN_CEILING,)

        def __init__(self, model):
            pass

        def identity(self, spec, builder):
            return {"model": builder.identify(spec["model"])}

        def run(self, ctx, inputs):
            return ctx.train(ctx.params["model"], on="train2")

    class Strategy:
        def plan(self, b):
            ref = b.reference()
            via = b.op("ctx-train", params={"model": b.config.strong.as_dict()}, name="ceiling via ctx.train")
            b.experiment("ctx/ceiling", strategy="ctx", loss="-", weak=ref.weak, ceiling=ref.ceiling, transfer=via)

    @hookimpl
    def w2s_register_ops(self, registry):
        registry.add("ctx-train", _TrainViaContext.Op, description="train through OpContext.train")

    @hookimpl
    def w2s_register_strategies(self, registry):
        registry.add("ctx-train", _TrainViaContext.Strategy, description="ctx.train beside the ceiling")


def test_op_context_train_is_the_train_op(gpt2, tmp_path):
    cfg = _config(tmp_path, gpt2, "ctx-train")
    assert main(["run", "--config", str(cfg)], plugins=[_TrainViaContext()]) == 0
    _, stages = _stages(tmp_path / "out")
    a, b = stages[("ceiling", 0)], stages[("ceiling via ctx.train", 0)]
    assert a["metrics"]["test_acc"] == b["metrics"]["test_acc"]
    for x, y in zip(_artifact(tmp_path / "out", a), _artifact(tmp_path / "out", b)):
        np.testing.assert_array_equal(x, y)


def test_generative_fine_tunes_with_lora(gpt2, tmp_path):
    """linear_probe = false, lora = true: the LM step trains adapters and merges them, the fine-tune adds fresh ones."""
    cfg = _config(tmp_path, gpt2, "generative", "lm_epochs = 1\nlm_lr = 0.003\nlm_max_length = 32")
    text = cfg.read_text().replace(f'name = "hf:{gpt2.as_posix()}"',
                                   f'name = "hf:{gpt2.as_posix()}"\nlinear_probe = false\nlora = true\n'
                                   'lora_r = 2\nepochs = 1\nmax_length = 32')
    cfg.write_text(text)
    assert main(["run", "--config", str(cfg)]) == 0
    _, stages = _stages(tmp_path / "out")
    ceil = stages[("generative ceiling", 0)]["metrics"]
    assert ceil["lm"]["lora"] and ceil["lm"]["lm_loss_after"] < ceil["lm"]["lm_loss_before"]
    assert 0.0 <= stages[("generative transfer[xent]", 0)]["metrics"]["test_acc"] <= 1.0


def test_a_gguf_loaded_lm_saves_as_a_plain_checkpoint(gpt2, tmp_path):
    """transformers marks a model loaded from a GGUF file with its GGUF quantizer (the weights themselves are
    dequantized floats) and refuses to save it; the LM step drops the marker first, and the saved directory loads
    as a plain checkpoint with the same weights (the offline SmolLM2 demo's path)."""
    from transformers import AutoModelForCausalLM
    from transformers.quantizers.quantizer_gguf import GgufHfQuantizer
    from transformers.utils.quantization_config import GgufConfig
    from w2s_harness.plugins.models.hf.generative import forget_gguf

    lm = AutoModelForCausalLM.from_pretrained(str(gpt2))
    lm.hf_quantizer = GgufHfQuantizer(GgufConfig(gguf_file="model.gguf"))
    lm.config.quantization_config = lm.hf_quantizer.quantization_config
    with pytest.raises(ValueError, match="not serializable"):
        lm.save_pretrained(str(tmp_path / "refused"))
    forget_gguf(lm)
    lm.save_pretrained(str(tmp_path / "plain"))
    again = AutoModelForCausalLM.from_pretrained(str(tmp_path / "plain"))
    assert getattr(again, "hf_quantizer", None) is None
    before, after = lm.state_dict(), again.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after)
    forget_gguf(again)  # a model from a plain checkpoint: nothing to drop


def test_a_stop_request_ends_the_lm_step_and_leaves_no_checkpoint(gpt2, tmp_path):
    """The LM step advances the op's progress once per batch, and each advance is a point where a stop request
    (Ctrl-C, SIGTERM) ends the step: nothing is published, the lock is free, and the next call trains from scratch."""
    calls = []

    def progress(description, total, unit):
        calls.append((description, total, unit))

        def advance(n):
            calls.append(n)
            if len(calls) > 3:  # the description, then two batches done, the third asks to stop
                raise StopRequested("SIGTERM")
        return advance

    m = hf_model(str(gpt2))
    with pytest.raises(StopRequested):
        lm_adapted(m, TEXTS, LM, seed=0, device="cpu", root=tmp_path, progress=progress)
    assert calls[0] == (f"LM step of {m.name} on {len(TEXTS)} texts", 3 * 4, "batches")  # 3 epochs of 4 batches
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # no checkpoint, no temporary directory
    path, info = lm_adapted(m, TEXTS, LM, seed=0, device="cpu", root=tmp_path)
    assert not info["cached"] and info["steps"] == 12 and (path / LM_INFO).is_file()


_CONTENDER = """
import json, sys
from w2s_harness.plugins.models.hf import hf_model
from w2s_harness.plugins.models.hf.generative import lm_adapted
texts, params = json.loads(sys.argv[3]), json.loads(sys.argv[4])
print("ready", flush=True)
path, info = lm_adapted(hf_model(sys.argv[1]), texts, params, seed=0, device="cpu", root=sys.argv[2])
print(json.dumps({"path": str(path), "cached": info["cached"]}), flush=True)
"""


def test_two_processes_wanting_one_lm_pass_train_it_once(gpt2, tmp_path):
    """Two workers of a run (processes) reach the same LM pass at the same time: the file lock lets one train
    while the other waits, then reads the published checkpoint. The test holds the lock itself until both are
    waiting on it, so they really contend (without the lock both would train)."""
    import json
    import subprocess
    import sys

    from filelock import FileLock

    key = lm_key(hf_model(str(gpt2)), TEXTS, LM, 0)
    root = tmp_path / "lm-adapted"
    root.mkdir()
    args = [sys.executable, "-c", _CONTENDER, str(gpt2), str(root), json.dumps(TEXTS), json.dumps(LM)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with FileLock(str(root / f"{key}.lock")):
        procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(2)]
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(o["cached"] for o in outs) == [False, True]
    assert outs[0]["path"] == outs[1]["path"] == str(root / key)
    assert [p.name for p in root.iterdir() if p.is_dir()] == [key]


def test_a_choice_tasks_lm_texts_are_its_pair_texts(gpt2, tmp_path):
    """A choice task LM-adapts on each row's prompt with each candidate (both, unlabelled), then fine-tunes and
    is reported like a classification task."""
    from w2s_harness import create_dataset

    cfg, csv = _choice_config(tmp_path, gpt2, "generative", "lm_epochs = 1\nlm_lr = 0.003\nlm_max_length = 32")
    data = create_dataset("local", path=str(csv), chosen_column="chosen", rejected_column="rejected",
                          n_test=10).load()
    texts = lm_texts(data, [3, 1])
    assert texts == [*data.pairs[3], *data.pairs[1]] and len(texts) == 4
    assert all(t.startswith(data.texts[3]) for t in texts[:2]) and texts[0] != texts[1]
    assert main(["run", "--config", str(cfg)]) == 0
    results, stages = _stages(tmp_path / "out")
    assert {e["name"] for e in results["experiments"]} == {"naive/xent", "generative/xent",
                                                          "generative/lm-adapted ceiling"}
    ceil = stages[("generative ceiling", 0)]["metrics"]
    split = ceil["split_rows"]
    assert ceil["lm"]["n_texts"] == 2 * (split["train1"] + split["train2"])
    assert 0.0 <= ceil["test_acc"] <= 1.0 and 0.0 <= stages[("generative transfer[xent]", 0)]["metrics"]["test_acc"] <= 1.0


def test_a_non_finite_lm_loss_is_a_one_line_error_naming_the_batch(gpt2, tmp_path):
    """NaN weights fail before the LM step trains (its loss on the texts is already NaN), naming the checkpoint;
    a loss that turns NaN/inf while training names the epoch, the batch and a lower lm_lr."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    broken = tmp_path / "broken"
    lm = AutoModelForCausalLM.from_pretrained(str(gpt2))
    with torch.no_grad():
        next(lm.parameters()).fill_(float("nan"))
    lm.save_pretrained(str(broken))
    AutoTokenizer.from_pretrained(str(gpt2)).save_pretrained(str(broken))
    with pytest.raises(TrainingError, match=r"the next-token loss on the texts is nan before any training") as e:
        lm_adapted(hf_model(str(broken)), TEXTS, LM, seed=0, device="cpu", root=tmp_path / "lm")
    assert "\n" not in str(e.value) and not any(p.is_dir() for p in (tmp_path / "lm").iterdir())
    check_lm_loss(torch.tensor(2.5), "m", epoch=0, epochs=2, batch=0, n_batches=4, lr=1e-4)  # finite: nothing
    for bad in (float("nan"), float("inf")):
        with pytest.raises(TrainingError, match=rf"generative LM step of m: loss is {bad} at epoch 2/2, batch 3/4 "
                                                 r"\(lm_lr 0.001\); lower the learning rate \(e.g. --set "
                                                 r"strategy.lm_lr=0.0001\)"):
            check_lm_loss(torch.tensor(bad), "m", epoch=1, epochs=2, batch=2, n_batches=4, lr=1e-3)
