"""End-to-end runs of every built-in strategy through the CLI (``main([..., '--json'])``) on a tiny CSV.

Models: ``toy-hash`` (``tests/toy_hash.py``), a hashed bag-of-words linear probe (``dim`` buckets: few buckets collide and
make a weak model, many make a strong one), so these runs take seconds and need no downloaded weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from toy_hash import PLUGINS, majority_words_csv

from w2s_harness._cli.cli import main


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    """400 'reviews': the label is the majority among 3 signal words (20 per class), plus 6 filler words."""
    return majority_words_csv(tmp_path_factory.mktemp("data") / "tiny.csv", 400)


def run(csv_path, out, strategy, *sets, seeds="0,1", loss="xent,logconf", capsys=None, plugins=PLUGINS):
    argv = ["run", "--strategy", strategy, "--dataset", "local", "--set", f'dataset.path="{csv_path}"',
            "--set", "dataset.n_test=100", "--weak", "toy-hash", "--set", "weak.dim=4", "--strong", "toy-hash",
            "--set", "strong.dim=256", "--loss", loss, "--seeds", seeds, "--output-dir", str(out), "--json"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv, plugins=plugins) == 0, capsys.readouterr().err if capsys else ""
    if capsys is not None:
        captured = capsys.readouterr()
        return json.loads(captured.out)
    return json.loads((out / "results.json").read_text())


def rows(results):
    return {e["name"]: e for e in results["experiments"]}


def comps(results):
    return {(c["a"], c["b"]): c for c in results["comparisons"]}


LADDER = 'strategy.rungs=["weak", {name = "toy-hash", dim = 16}, "strong"]'


def test_bootstrap_run(csv_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps narrow tables when not on a TTY
    res = run(csv_path, tmp_path / "b", "bootstrap", LADDER, capsys=capsys)  # default folds = 3
    assert res["status"] == "complete"
    r = rows(res)
    assert set(r) == {f"{p}/{l}" for p in ("bootstrap", "direct", "flat") for l in ("xent", "logconf")}
    lad = r["bootstrap/logconf"]
    assert lad["strategy"] == "bootstrap" and lad["rungs"] == ["toy-hash", "toy-hash", "toy-hash"]
    assert len(lad["rung_acc"]) == 3 and all(x["acc"]["n"] == 2 for x in lad["rung_acc"])
    # the ladder's PGR uses the same weak and ceiling as direct (= naive); the last rung is the transfer
    for key in ("weak_acc", "ceiling_acc"):
        assert lad[key]["per_seed"] == r["direct/logconf"][key]["per_seed"] == r["flat/logconf"][key]["per_seed"]
    assert lad["rung_acc"][0]["acc"]["per_seed"] == lad["weak_acc"]["per_seed"]
    assert lad["rung_acc"][-1]["acc"]["per_seed"] == lad["transfer_acc"]["per_seed"]
    assert lad["weak_acc"]["mean"] < lad["ceiling_acc"]["mean"]
    assert all(v is not None for v in lad["pgr"]["per_seed"]) and lad["pgr"]["ci95"] is not None
    c = comps(res)
    for tag in ("xent", "logconf"):
        for a, b in ((f"bootstrap/{tag}", f"direct/{tag}"), (f"flat/{tag}", f"direct/{tag}"),
                     (f"bootstrap/{tag}", f"flat/{tag}")):
            assert c[(a, b)]["seeds"] == 2 and 0 <= c[(a, b)]["wins"] <= 2
            want = np.subtract(rows(res)[a]["pgr"]["per_seed"], rows(res)[b]["pgr"]["per_seed"])
            assert c[(a, b)]["per_seed"] == pytest.approx(list(want))
    kinds = {s["kind"] for s in res["stages"]}
    assert {"train_weak", "train_ceiling", "train_transfer", "train_rung", "train_rung_fold", "label"} <= kinds
    # 1 seed: 3 reference + inner rung (1 + 3 folds + 3 labels) + 2 final + 2 direct + flat (6 + 2) = 22
    assert len(res["stages"]) == 2 * 22
    # report: table + ladder plot
    assert main(["report", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "ladder.png").is_file()
    err = capsys.readouterr().err
    assert "rung 1" in err and "bootstrap/xent - direct/xent" in err


def test_bootstrap_two_rungs_equals_naive(csv_path, tmp_path):
    naive = run(csv_path, tmp_path / "n", "naive")
    boot = run(csv_path, tmp_path / "b", "bootstrap", 'strategy.rungs=["weak", "strong"]')
    assert {s["id"] for s in boot["stages"]} == {s["id"] for s in naive["stages"]}
    for tag in ("xent", "logconf"):
        n, b = rows(naive)[f"naive/{tag}"], rows(boot)[f"bootstrap/{tag}"]
        for key in ("weak_acc", "ceiling_acc", "transfer_acc", "pgr"):
            assert b[key]["per_seed"] == n[key]["per_seed"], key
        assert rows(boot)[f"direct/{tag}"]["pgr"] == b["pgr"]
    assert "flat/xent" not in rows(boot)  # n = 2: flat would equal direct


@pytest.mark.parametrize("strategy,sets,expect", [
    ("naive", [], ["naive/xent", "naive/logconf"]),
    ("confidence", ["strategy.aux_coef=0.3", 'strategy.warmup="openai"'],
     ["naive/xent", "confidence/logconf(aux_coef=0.3,warmup=openai)"]),
    ("ensemble", ["strategy.bags=3"], ["naive/xent", "naive/logconf", "ensemble/xent", "ensemble/logconf"]),
    ("filter", ["strategy.keep_frac=0.6"], ["naive/xent", "naive/logconf", "filter/xent", "filter/logconf"]),
    ("filter", ['strategy.by="learnability"'], ["naive/xent", "naive/logconf", "filter/xent", "filter/logconf"]),
    ("relabel", ["strategy.iterations=2"], ["naive/xent", "naive/logconf", "relabel/xent", "relabel/logconf"]),
])
def test_strategy_runs(csv_path, tmp_path_factory, strategy, sets, expect):
    out = tmp_path_factory.mktemp(strategy)
    res = run(csv_path, out, strategy, *sets)
    assert res["status"] == "complete" and res["config"]["strategy"]["name"] == strategy
    assert [e["name"] for e in res["experiments"]] == expect
    for e in res["experiments"]:
        assert e["seeds"] == [0, 1] and e["pgr"]["n"] == 2 and e["transfer_acc"]["mean"] is not None
    new = [e for e in res["experiments"] if not e["name"].startswith("naive/")]
    c = comps(res)
    for e in new:
        assert e["baseline"] and (e["name"], e["baseline"]) in c and c[(e["name"], e["baseline"])]["seeds"] == 2
    ops = {s["op"] for s in res["stages"]}
    if strategy == "ensemble":
        assert "combine" in ops
        sup = [s for s in res["stages"] if s["kind"] == "train_supervisor"]
        assert len(sup) == 2 * 3 and all(s["metrics"]["n_train"] < 150 for s in sup)  # bagged: 2/3 of train1
    if strategy == "filter":
        (f0, _) = [s for s in res["stages"] if s["op"] == "filter"]
        keep = 0.6 if sets == ["strategy.keep_frac=0.6"] else 0.5
        assert f0["metrics"]["kept_frac"] == pytest.approx(keep, abs=0.01)
        transfers = [s for s in res["stages"] if s["name"].startswith("filter transfer")]
        assert transfers and all(s["metrics"]["n_train"] == f0["metrics"]["n"] for s in transfers if s["seed"] == 0)
    if strategy == "relabel":
        assert [len(e["rung_acc"]) for e in new] == [4, 4]


def test_strategies_share_cached_stages(csv_path, tmp_path):
    out = tmp_path / "shared"
    run(csv_path, out, "naive", seeds="0")
    res = run(csv_path, out, "filter", seeds="0")
    assert res["timings"]["stages_cached"] == 5  # the naive stages, computed once
    assert res["timings"]["stages_computed"] == 3  # filter + 2 transfers


@pytest.mark.parametrize("sets", [["strategy.scheme=\"bogus\""], ["strategy.rungs=3"], ["strategy.nope=1"],
                                  ['strategy.rungs=["weak", "no-such-model", "strong"]']])
def test_bootstrap_bad_options_are_user_errors(csv_path, tmp_path, sets, capsys):
    argv = ["run", "--strategy", "bootstrap", "--dataset", "local", "--set", f'dataset.path="{csv_path}"',
            "--weak", "toy-hash", "--strong", "toy-hash", "--seeds", "0", "--output-dir", str(tmp_path)]
    for s in sets:
        argv += ["--set", s]
    assert main(argv, plugins=PLUGINS) == 2
    assert "error:" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, csv_path):
    """A randomly initialised 2-layer BERT (hidden 32) with a word-level vocabulary of the tiny CSV, saved locally."""
    transformers = pytest.importorskip("transformers")
    words = sorted({w for line in csv_path.read_text().splitlines()[1:] for w in line.split(",")[0].split()})
    d = tmp_path_factory.mktemp("tiny-bert")
    (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    transformers.BertTokenizerFast.from_pretrained(d, do_lower_case=True).save_pretrained(d)
    cfg = transformers.BertConfig(vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    transformers.set_seed(0)
    transformers.BertModel(cfg).save_pretrained(d)
    return d


def test_bootstrap_glove_to_tiny_bert_layers(csv_path, tiny_bert, tmp_path):
    """The real models: glove-bow weak, a local BERT truncated by ``layers`` as the middle rung (hf:<dir>)."""
    strong = f"hf:{tiny_bert}"
    argv = ["run", "--strategy", "bootstrap", "--dataset", "local", "--set", f'dataset.path="{csv_path}"',
            "--set", "dataset.n_test=100", "--weak", "glove-bow", "--strong", strong, "--loss", "xent",
            "--set", "strong.epochs=2", "--set", "weak.epochs=2", "--seeds", "0", "--output-dir", str(tmp_path),
            "--set", f'strategy.rungs=["weak", {{name = "{strong}", layers = 1, epochs = 2}}, "strong"]']
    assert main(argv) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    lad = rows(res)["bootstrap/xent"]
    assert lad["rungs"] == ["glove-bow", f"{strong}@L1", strong]
    assert all(x["acc"]["mean"] is not None for x in lad["rung_acc"])
    by_model = {}
    for s in res["stages"]:
        if s["kind"] in ("train_rung", "train_rung_fold"):
            by_model.setdefault(s["name"].split("<-")[0], []).append(s)
    # the L1 rung: its model + 3 fold models; flat: the strong model's 3 fold models (its rung model is direct's)
    assert sorted(len(v) for v in by_model.values()) == [3, 4]
    assert set(rows(res)) == {"bootstrap/xent", "direct/xent", "flat/xent"}
    assert len(list((tmp_path / "features").glob("*.npy"))) == 3  # glove + BERT layers 1 and 2 from one pass


def test_ensemble_weighted_by_out_of_bag_accuracy(csv_path, tmp_path):
    """how='accuracy': each bag's weight is its accuracy on the train1 fold it never trained on, recomputed here
    from its stored predictions and the dataset's labels."""
    import numpy as np

    from w2s_harness import create_dataset
    from w2s_harness._execution.store import StageStore
    from w2s_harness._plan.planner import Subset

    out = tmp_path / "acc"
    res = run(csv_path, out, "ensemble", "strategy.bags=3", 'strategy.how="accuracy"', seeds="0")
    assert res["status"] == "complete"
    (comb,) = [s for s in res["stages"] if s["op"] == "combine"]
    acc, w = comb["metrics"]["held_out_acc"], comb["metrics"]["weights"]
    assert len(acc) == 3 and all(0.3 < a <= 1.0 for a in acc)
    assert w == pytest.approx([a / sum(acc) for a in acc])
    cfg = res["config"]["dataset"]
    ds = create_dataset(cfg["name"], **{k: v for k, v in cfg.items() if k != "name"})
    data, splits = ds.load(), ds.splits(0)
    store = StageStore(out)
    sups = [s for s in res["stages"] if s["kind"] == "train_supervisor"]
    for j, sup in enumerate(sups):
        _, arrays = store.load(sup["id"])
        rows = Subset("train1", j, 3).indices(splits, 0)
        pos = {int(r): i for i, r in enumerate(arrays["indices"])}
        pred = arrays["probs"][[pos[int(r)] for r in rows]].argmax(1)
        assert acc[j] == pytest.approx(float(np.mean(pred == data.labels[rows])))
        assert sup["metrics"]["n_train"] + len(rows) == len(splits.train1)  # held out = never trained on
