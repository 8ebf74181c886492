"""Choice tasks (src/w2s_harness/_choice.py): the n-way softmax over shared scores is Bradley-Terry for n = 2 (value
and gradient), n = 4 works, the candidate shuffle is seeded and carries no label, the L-BFGS solve matches
scikit-learn, the pairwise datasets read their raw schemas, and every built-in loss and strategy runs on a pairwise
dataset through the CLI.

Models: ``toy-hash`` (hashed bag of words, ``tests/toy_hash.py``), so the runs take seconds and need no downloaded weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from toy_hash import PLUGINS, ToyHash
from w2s_harness.plugins.datasets.local import local_dataset
from w2s_harness.plugins.datasets.pairwise import AnthropicHHPairwise, split_dialogues

from w2s_harness import (
    Choice,
    ChoiceData,
    ChoiceDataset,
    ConfigError,
    DataError,
    check_train_config,
    create_loss,
)
from w2s_harness._cli.cli import main
from w2s_harness._data.choice import choice_module, shuffle_order
from w2s_harness._engine.probe import fit_lbfgs
from w2s_harness._engine.training import fit, predict_proba

# ------------------------------------------------------------------------------------ Bradley-Terry


def bt_loss(s: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry negative log-likelihood written from its definition: P(0 over 1) = sigmoid(s0 - s1), with a
    soft label p = P(candidate 0 is preferred)."""
    d = s[:, 0] - s[:, 1]
    return -(p * torch.log(torch.sigmoid(d)) + (1 - p) * torch.log(torch.sigmoid(-d))).mean()


def test_two_candidates_is_bradley_terry_value_and_gradient():
    s = torch.tensor([[1.5, -0.25], [0.0, 2.0], [-1.0, -1.5], [3.0, 3.0]], dtype=torch.float64)
    p = torch.tensor([1.0, 0.0, 0.7, 0.2], dtype=torch.float64)
    targets = torch.stack([p, 1 - p], dim=1)
    s1 = s.clone().requires_grad_(True)
    ours = create_loss("xent")(s1, targets)
    ours.backward()
    s2 = s.clone().requires_grad_(True)
    ref = bt_loss(s2, p)
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    # by hand: d/ds0 = -(p - sigmoid(s0 - s1)) / N and d/ds1 = -d/ds0
    hand = -(p - torch.sigmoid(s[:, 0] - s[:, 1])) / len(p)
    assert torch.allclose(s1.grad[:, 0], hand) and torch.allclose(s1.grad[:, 1], -hand)
    assert torch.allclose(s1.grad, s2.grad)


def test_shared_head_gradient_is_bradley_terry_on_feature_differences():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(6, 2, 5)))
    w = torch.as_tensor(rng.normal(size=5))
    y = torch.tensor([0, 1, 1, 0, 0, 1])
    head = choice_module(ToyHash(), 2, 5, "cpu").double()
    with torch.no_grad():
        head.scorer.weight.copy_(w.reshape(1, 5))
        head.scorer.bias.fill_(0.3)  # the same for every candidate: cancels
    loss = create_loss("xent")(head(x), torch.nn.functional.one_hot(y, 2).double())
    loss.backward()
    # BT with the correct candidate c and the other o: -log sigmoid(w.(x_c - x_o)); gradient -(1 - sigma) (x_c - x_o)
    xc, xo = x[torch.arange(6), y], x[torch.arange(6), 1 - y]
    z = (xc - xo) @ w
    assert loss.item() == pytest.approx(float(-torch.log(torch.sigmoid(z)).mean()), rel=1e-12)
    want = (-(1 - torch.sigmoid(z))[:, None] * (xc - xo)).mean(dim=0)
    assert torch.allclose(head.scorer.weight.grad[0], want)
    assert float(head.scorer.bias.grad[0]) == pytest.approx(0.0, abs=1e-12)


def test_four_candidates_softmax_and_training():
    rng = np.random.default_rng(1)
    n, k, d = 240, 4, 6
    w_true = rng.normal(size=d)
    x = rng.normal(size=(n, k, d)).astype(np.float32)
    y = (x @ w_true).argmax(axis=1)
    head = choice_module(ToyHash(), k, d, "cpu")
    probs = predict_proba(head, x, device="cpu")
    assert probs.shape == (n, k) and np.allclose(probs, 0.25)  # zero head: uniform over the candidates
    cfg = check_train_config("test", lr=0.05, epochs=30, batch_size=32)
    targets = np.eye(k, dtype=np.float32)[y]
    hist = fit(head, x[:200], targets[:200], create_loss("xent"), cfg, seed=0, device="cpu", eval_inputs=x[200:],
               eval_labels=y[200:])
    assert hist["epoch_test_acc"][-1] >= 0.85
    with torch.no_grad():
        scores = torch.as_tensor(x) @ head.scorer.weight[0] + head.scorer.bias[0]
    assert np.allclose(predict_proba(head, x, device="cpu"), torch.softmax(scores, dim=1).numpy(), atol=1e-6)


def test_lbfgs_two_candidates_matches_sklearn_without_intercept():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    n, d, C = 300, 5, 0.5
    x = (rng.normal(size=(n, 2, d)) * [1.0, 2.0, 0.5, 1.0, 3.0] + [0.0, 1.0, -2.0, 0.5, 0.0]).astype(np.float32)
    y = ((x[:, 1] - x[:, 0]) @ rng.normal(size=d) + rng.normal(size=n) > 0).astype(np.int64)
    cfg = check_train_config("test", lr=1e-3, epochs=1, batch_size=32, solver="lbfgs", C=C, tol=1e-6)
    head = choice_module(ToyHash(), 2, d, "cpu")
    hist = fit_lbfgs(head, x, np.eye(2, dtype=np.float32)[y], create_loss("xent"), cfg, seed=0, device="cpu")
    assert hist["converged"] and hist["solver"] == "lbfgs"
    # the same model: logistic regression (no intercept) on the standardised differences x_1 - x_0
    x64 = x.astype(np.float64)
    flat = x64.reshape(-1, d)
    z = (x64[:, 1] - x64[:, 0]) / flat.std(axis=0)
    ref = LogisticRegression(C=C, fit_intercept=False, tol=1e-12, max_iter=10_000).fit(z, y)
    w = head.scorer.weight.detach().double().numpy()[0] * flat.std(axis=0)
    assert np.allclose(w, ref.coef_[0], atol=1e-5)
    assert np.allclose(predict_proba(head, x, device="cpu")[:, 1], ref.predict_proba(z)[:, 1], atol=1e-5)


def test_lbfgs_four_candidates_is_stationary_for_its_objective():
    rng = np.random.default_rng(3)
    n, k, d, C = 200, 4, 5, 0.3
    x = rng.normal(size=(n, k, d)).astype(np.float32)
    y = (x @ rng.normal(size=d) + rng.gumbel(size=(n, k))).argmax(axis=1)
    cfg = check_train_config("test", lr=1e-3, epochs=1, batch_size=32, solver="lbfgs", C=C, tol=1e-6)
    head = choice_module(ToyHash(), k, d, "cpu")
    fit_lbfgs(head, x, np.eye(k, dtype=np.float32)[y], create_loss("xent"), cfg, seed=0, device="cpu")
    # C * sum_i CE_i + ||v||^2 / 2 on standardised features, v = w * scale: its gradient vanishes at the solution
    x64 = torch.as_tensor(x, dtype=torch.float64)
    scale = x64.reshape(-1, d).std(dim=0, unbiased=False)
    v = (head.scorer.weight.detach().double()[0] * scale).requires_grad_(True)
    obj = C * torch.nn.functional.cross_entropy((x64 / scale) @ v, torch.as_tensor(y), reduction="sum")
    (obj + 0.5 * v.pow(2).sum()).backward()
    assert float(v.grad.abs().max()) < 1e-5 * n


# ------------------------------------------------------------------------------------ shuffling


class Synthetic(ChoiceDataset):
    name = "synthetic-choice"

    def __init__(self, rows: int = 4000, k: int = 4, **kw):
        super().__init__(**kw)
        self.rows, self.k = rows, k

    def _all_choices(self):
        return [Choice(f"q{i}", tuple(f"c{i}-{j}" for j in range(self.k)), 0) for i in range(self.rows)]


def test_shuffle_is_seeded_and_carries_no_label():
    a = Synthetic(shuffle_seed=0).load()
    b = Synthetic(shuffle_seed=0).load()
    c = Synthetic(shuffle_seed=1).load()
    assert isinstance(a, ChoiceData) and a.class_names == ["1", "2", "3", "4"]
    assert a.pairs == b.pairs and np.array_equal(a.labels, b.labels) and a.fingerprint == b.fingerprint
    assert not np.array_equal(a.labels, c.labels)
    # every raw row has its correct candidate first; after the shuffle its position is uniform
    counts = np.bincount(a.labels, minlength=4)
    expected = len(a) / 4
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 16.3, counts  # chi-square, 3 dof, p = 0.001
    # the label is the position of the correct text, and the shown texts are the row's candidates
    for i in range(0, len(a), 97):
        row = int(a.texts[i][1:])
        assert a.pairs[i][a.labels[i]] == f"q{row}\nc{row}-0"
        assert sorted(a.pairs[i]) == [f"q{row}\nc{row}-{j}" for j in range(4)]
    # a row's order does not depend on which other rows are loaded
    small = Synthetic(shuffle_seed=0, n_train=50, n_test=20, test_seed=3).load()
    for i in range(len(small)):
        row = int(small.texts[i][1:])
        assert small.pairs[i] == a.pairs[row]
        assert list(shuffle_order(4, 0, row)).index(0) == small.labels[i]


# --------------------------------------------------------------------------------------- local files


def test_local_preference_file(tmp_path):
    import pandas as pd

    path = tmp_path / "prefs.csv"
    good = {"Hi?": "hello there", "How?": "like this", "Why?": "because", "Who?": "me"}
    pd.DataFrame({"prompt": [*good, "Same?"], "chosen": [*good.values(), "x"],
                  "rejected": ["go away", "no idea", "dunno", "nobody", "x"]}).to_csv(path, index=False)
    ds = local_dataset(str(path), chosen_column="chosen", rejected_column="rejected", n_test=1)
    data = ds.load()
    assert len(data) == 4 and "Same?" not in data.texts  # the row with identical candidates is skipped
    for prompt, pair, label in zip(data.texts, data.pairs, data.labels):
        good = {"Hi?": "hello there", "How?": "like this", "Why?": "because", "Who?": "me"}[prompt]
        assert pair[label] == f"{prompt}\n{good}" and len(set(pair)) == 2


def test_local_candidates_and_answer_index(tmp_path):
    path = tmp_path / "mc.jsonl"
    rows = [{"question": f"q{i}", "options": [f"a{i}", f"b{i}", f"c{i}"], "answer": i % 3} for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = local_dataset(str(path), prompt_column="question", candidates_column="options", answer_column="answer",
                         pair_template="Q: {prompt} A: {candidate}").load()
    assert data.n_candidates == 3 and len(data) == 12
    for prompt, pair, label in zip(data.texts, data.pairs, data.labels):
        i = int(prompt[1:])
        assert pair[label] == f"Q: {prompt} A: {'abc'[i % 3]}{i}"


@pytest.mark.parametrize("params,message", [
    ({"chosen_column": "chosen"}, "needs both chosen_column and rejected_column"),
    ({"chosen_column": "chosen", "rejected_column": "rejected", "template": "{x}"}, "are for labelled texts"),
    ({"pair_template": "{prompt}"}, "only apply to a choice file"),
])
def test_local_choice_config_errors(tmp_path, params, message):
    with pytest.raises(ConfigError, match=message):
        local_dataset(str(tmp_path / "x.csv"), **params)


def test_local_choice_data_errors(tmp_path):
    path = tmp_path / "mc.jsonl"
    path.write_text(json.dumps({"prompt": "p", "options": ["a", "b"], "answer": 2}) + "\n")
    with pytest.raises(DataError, match="'answer' = 2 is not an index into its 2 candidates"):
        local_dataset(str(path), candidates_column="options", answer_column="answer").load()
    with pytest.raises(DataError, match="no column 'chosen'"):
        local_dataset(str(path), chosen_column="chosen", rejected_column="rejected").load()


# ------------------------------------------------------------------------------------ HH-RLHF pairwise


def test_split_dialogues():
    shared = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: tell me a joke"
    assert split_dialogues(shared + "\n\nAssistant: a joke", shared + "\n\nAssistant: no") == (
        shared.strip() + "\n\nAssistant:", "a joke", "no")
    # dialogues that diverge before the last turn: the common part up to an earlier Assistant: marker
    a = "\n\nHuman: hi\n\nAssistant: one\n\nHuman: x\n\nAssistant: y"
    b = "\n\nHuman: hi\n\nAssistant: two\n\nHuman: x\n\nAssistant: y"
    assert split_dialogues(a, b) == ("Human: hi\n\nAssistant:", "one\n\nHuman: x\n\nAssistant: y",
                                     "two\n\nHuman: x\n\nAssistant: y")
    assert split_dialogues("\n\nHuman: a", "\n\nHuman: b") is None


def test_anthropic_hh_pairwise_from_raw_schema_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import pyarrow as pa
    import pyarrow.parquet as pq

    def dialogue(i, reply):
        return f"\n\nHuman: question {i}?\n\nAssistant: {reply}"

    train = [{"chosen": dialogue(i, f"good answer {i}"), "rejected": dialogue(i, f"bad answer {i}")}
             for i in range(20)]
    train.append({"chosen": dialogue(99, "same"), "rejected": dialogue(99, "same")})  # no preference: skipped
    test = [{"chosen": dialogue(i, f"fine {i}"), "rejected": dialogue(i, f"rude {i}")} for i in range(100, 106)]
    for name, rows in (("train", train), ("test", test)):
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"{name}.parquet")
    ds = AnthropicHHPairwise(data_files={"train": str(tmp_path / "train.parquet"),
                                         "test": str(tmp_path / "test.parquet")})
    data = ds.load()
    assert len(data) == 26 and ds.split_sizes() == (10, 10, 6)
    test_rows = ds.splits(0).test
    for i in range(len(data)):
        prompt = data.texts[i]
        q = int(prompt.split("question ")[1].split("?")[0])
        assert prompt == f"Human: question {q}?\n\nAssistant:"
        good = f"fine {q}" if q >= 100 else f"good answer {q}"
        assert data.pairs[i][data.labels[i]] == f"{prompt} {good}"
        assert (i in test_rows) == (q >= 100)
    with pytest.raises(DataError, match="no column 'rejected'"):
        pq.write_table(pa.Table.from_pylist([{"chosen": "x"}]), tmp_path / "bad.parquet")
        AnthropicHHPairwise(data_files=str(tmp_path / "bad.parquet")).load()


# ---------------------------------------------------------------------------------- end to end (CLI)


@pytest.fixture(scope="module")
def prefs(tmp_path_factory):
    """200 preference pairs: the chosen reply holds more 'good' signal words than the rejected one."""
    rng = np.random.default_rng(0)
    good, bad = [f"good{i}" for i in range(20)], [f"bad{i}" for i in range(20)]
    filler = [f"w{i}" for i in range(60)]

    def reply(n_good):
        words = list(rng.choice(good, n_good)) + list(rng.choice(bad, 3 - n_good)) + list(rng.choice(filler, 5))
        rng.shuffle(words)
        return " ".join(words)

    rows = []
    for i in range(200):
        hi = int(rng.choice([2, 3]))
        rows.append({"prompt": f"question {i % 7} which reply is better", "chosen": reply(hi),
                     "rejected": reply(int(rng.choice([0, 1])))})
    path = tmp_path_factory.mktemp("prefs") / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(path, out, strategy, *sets, seeds="0", loss="xent"):
    argv = ["run", "--strategy", strategy, "--dataset", "local", "--set", f'dataset.path="{path}"',
            "--set", 'dataset.chosen_column="chosen"', "--set", 'dataset.rejected_column="rejected"',
            "--set", "dataset.n_test=60", "--weak", "toy-hash", "--set", "weak.dim=32", "--strong", "toy-hash",
            "--set", "strong.dim=256", "--loss", loss, "--seeds", seeds, "--output-dir", str(out), "--json",
            "--workers", "1"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv, plugins=PLUGINS) == 0
    return json.loads((out / "results.json").read_text())


def test_every_loss_runs_on_pairwise_data(prefs, tmp_path):
    from w2s_harness import plugin_manager

    losses = plugin_manager().registry("loss").names()
    assert {"xent", "logconf", "product", "kl", "entropy", "window"} <= set(losses)
    res = run(prefs, tmp_path / "losses", "naive", seeds="0,1", loss=",".join(losses))
    assert res["status"] == "complete"
    exps = {e["name"]: e for e in res["experiments"]}
    assert set(exps) == {f"naive/{name}" for name in losses}
    for e in exps.values():
        assert e["pgr"]["n"] == 2
        assert 0.5 < e["ceiling_acc"]["mean"] <= 1.0 and 0.0 <= e["transfer_acc"]["mean"] <= 1.0
        assert e["weak_acc"]["mean"] < e["ceiling_acc"]["mean"]
    weak = [s for s in res["stages"] if s["kind"] == "train_weak"]
    assert all(s["metrics"]["test_acc"] > 0.5 for s in weak)


@pytest.mark.parametrize("strategy,sets", [
    ("confidence", []),
    ("ensemble", ["strategy.bags=2"]),
    ("filter", ["strategy.keep_frac=0.6"]),
    ("filter", ['strategy.by="learnability"']),
    ("relabel", ["strategy.iterations=1"]),
    ("bootstrap", ['strategy.rungs=["weak", {name = "toy-hash", dim = 96}, "strong"]', "strategy.folds=2"]),
    ("grid", ['strategy.models=["weak", {name = "toy-hash", dim = 96}, "strong"]']),
    ("naive", ['strong.solver="lbfgs"', "strong.C=1.0"]),
])
def test_every_strategy_runs_on_pairwise_data(prefs, tmp_path, strategy, sets):
    res = run(prefs, tmp_path / strategy, strategy, *sets)
    assert res["status"] == "complete" and res["experiments"]
    for e in res["experiments"]:
        if e.get("transfer_acc", {}).get("mean") is not None:
            assert 0.0 <= e["transfer_acc"]["mean"] <= 1.0
    trained = [s for s in res["stages"] if s["op"] == "train"]
    assert trained and all(0.0 <= s["metrics"]["test_acc"] <= 1.0 for s in trained)
    if "strong.solver" in " ".join(sets):
        strong = [s for s in trained if s["kind"] in ("train_ceiling", "train_transfer")]
        assert strong and all(s["metrics"]["solver"] == "lbfgs" for s in strong)


def test_pair_features_are_cached_per_pair_text(prefs, tmp_path):
    out = tmp_path / "cache"
    run(prefs, out, "naive")
    files = sorted((out / "features").glob("*.npy"))
    assert len(files) == 2  # one per model (dim 32, dim 256)
    rows = [json.loads(line) for line in prefs.read_text().splitlines()]
    distinct = {f"{r['prompt']}\n{r[c]}" for r in rows for c in ("chosen", "rejected")}
    # each distinct (prompt, reply) text embedded once, by each model
    assert sorted(np.load(f).shape for f in files) == [(len(distinct), 32), (len(distinct), 256)]
    again = run(prefs, out, "naive")
    assert all(s["cached"] for s in again["stages"])


def test_tweets_pairwise_pairs_opposite_sentiments():
    from w2s_harness import create_dataset

    ds = create_dataset("tweets-pairwise", n_train=40, n_test=10)
    data = ds.load()
    tweets = create_dataset("tweets-sentiment").load()
    sentiment: dict[str, set[int]] = {}
    for t, y in zip(tweets.texts, tweets.labels):
        sentiment.setdefault(t, set()).add(int(y))
    for pair, label in zip(data.pairs, data.labels):
        texts = [p.split("\n", 1)[1] for p in pair]
        assert all(p.startswith("Which tweet is more positive?\n") for p in pair)
        assert 1 in sentiment[texts[label]] and 0 in sentiment[texts[1 - label]]


# ------------------------------------------------------------------------------- fine-tuning an hf: model


def test_finetuned_causal_lm_scores_each_candidate_at_its_last_token(tmp_path):
    from test_causal_lm import CORPUS, _save_causal
    from transformers import AutoModel, AutoTokenizer
    from w2s_harness.plugins.models.hf import hf_model

    ckpt = _save_causal(tmp_path / "gpt2", "gpt2")
    m = hf_model(str(ckpt), linear_probe=False, lr=1e-2, batch_size=4, epochs=1)
    module = choice_module(m, 2, None, "cpu")
    with torch.no_grad():  # a non-zero scorer, so the scores differ
        module.scorer.head.weight.copy_(torch.randn(module.scorer.head.weight.shape,
                                                    generator=torch.Generator().manual_seed(0)))
    items = [(f"Q{i}\n{CORPUS[i]}", f"Q{i}\n{CORPUS[i + 1]}") for i in range(4)]
    module.eval()
    with torch.no_grad():
        scores = module(items)
    # by hand: each text alone (no padding), the hidden state of its last token times the head
    tok = AutoTokenizer.from_pretrained(str(ckpt))
    base = AutoModel.from_pretrained(str(ckpt)).eval()
    with torch.no_grad():
        want = torch.tensor([[float(base(**tok([t], return_tensors="pt")).last_hidden_state[0, -1]
                                    @ module.scorer.head.weight[0]) for t in pair] for pair in items])
    assert scores.shape == (4, 2) and torch.allclose(scores, want, atol=1e-4)
    labels = np.array([0, 1, 1, 0])
    out = fit(module, items, np.eye(2, dtype=np.float32)[labels], create_loss("xent"), m.train_config, seed=0,
              device="cpu", eval_inputs=items, eval_labels=labels)
    assert out["steps"] == 1 and np.isfinite(out["final_train_loss"])
    probs = predict_proba(module, items, device="cpu")
    assert probs.shape == (4, 2) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def test_lbfgs_choice_curve_and_early_stopping():
    rng = np.random.default_rng(4)
    n, k, d = 300, 3, 6
    x = rng.normal(size=(n, k, d)).astype(np.float32)
    y = (x @ rng.normal(size=d) + rng.gumbel(size=(n, k))).argmax(axis=1)
    targets = np.eye(k, dtype=np.float32)[y]
    cfg = check_train_config("test", lr=1e-3, epochs=1, batch_size=32, solver="lbfgs", C=1.0, curve_every=2)
    plain = choice_module(ToyHash(), k, d, "cpu")
    hist = fit_lbfgs(plain, x[:200], targets[:200], create_loss("xent"), cfg, seed=0, device="cpu",
                     eval_inputs=x[200:], eval_labels=y[200:])
    steps = [p["step"] for p in hist["curve"]]
    assert len(steps) >= 2 and steps == sorted(steps) and steps[-1] == hist["steps"]
    assert hist["curve"][-1]["test_acc"] == hist["epoch_test_acc"][-1]
    # early stopping on a validation slice: the head ends at the point with the best validation accuracy
    es = check_train_config("test", lr=1e-3, epochs=1, batch_size=32, solver="lbfgs", C=1.0, curve_every=2,
                            early_stop="weak_val")
    head = choice_module(ToyHash(), k, d, "cpu")
    out = fit_lbfgs(head, x[:150], targets[:150], create_loss("xent"), es, seed=0, device="cpu",
                    val_inputs=x[150:200], val_targets=targets[150:200])
    best = max(p["val_acc"] for p in out["curve"])
    assert out["early_stop"]["val_acc"] == best
    assert float(np.mean(predict_proba(head, x[150:200], device="cpu").argmax(axis=1) == y[150:200])) == best
