"""The recipes' reproduction modes (plugins/builtin/datasets/recipes.py): ``openai`` (per run seed, as
openai/weak-to-strong), ``eleuther`` (as EleutherAI/w2s) and ``fixed`` (the same texts for every seed).

The expected rows are recomputed here from the documented order of operations (docs/datasets.md), with HF
``datasets``' own ``shuffle`` / ``train_test_split`` where the reference uses them; the references' own code is
run by tests/test_reference_parity.py (marked ``reference``). Nothing here touches the network.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from test_recipes import CountingPlugin, counting_run, ref_openbookqa, ref_sciq, sciq_rows, write
from w2s_harness.plugins.datasets import recipes as R

from w2s_harness import ConfigError, DataError, create_plugin_manager, hookimpl, load_config, make_plan
from w2s_harness._engine.ops import RunContext

pytestmark = pytest.mark.usefixtures("offline_hub")


def sciq_files(n_train=50, n_test=20):
    train, test = sciq_rows(n_train), sciq_rows(n_test, tag="t")
    return {"train": write(Path("train.parquet"), train), "test": write(Path("test.parquet"), test)}, train, test


def texts_of(ds, idx) -> list[tuple[str, int]]:
    data = ds.load()
    return sorted((data.texts[i], int(data.labels[i])) for i in idx)


def test_shuffle_and_split_are_the_librarys():
    from datasets import Dataset

    for n in (2, 3, 10, 57):
        table = Dataset.from_dict({"i": list(range(100, 100 + n))})
        values = np.arange(100, 100 + n)
        for seed in (0, 1, 42):
            assert R.shuffled(values, seed).tolist() == table.shuffle(seed=seed)["i"][:]
            for size in (0.5, 0.2, 1):
                parts = table.train_test_split(test_size=size, seed=seed)
                train, test = R.train_test_split(values, size, seed)
                assert (train.tolist(), test.tolist()) == (parts["train"]["i"][:], parts["test"]["i"][:])


# ------------------------------------------------------------------------------------------------- openai


def test_openai_mode_is_the_default_of_the_openai_recipes_and_follows_the_run_seed():
    from datasets import Dataset

    files, train, test = sciq_files()
    ds = R.RECIPE_CLASSES["sciq"](data_files=files, n_train=30, n_test=12)
    assert ds.mode == "openai" and R.RECIPE_CLASSES["piqa"](data_files=files["train"]).mode == "eleuther"
    ds.use_seeds([0, 1, 2])
    for seed in (0, 1, 2):
        # load_dataset: the first n rows, coins from Random(seed) over them in order, shuffle(seed);
        # train_simple.py: train_test_split(test_size=0.5, seed=seed), train1 = "train", train2 = "test"
        rng = random.Random(seed)
        rows = [dict(zip(("txt", "hard_label"), ref_sciq(r, rng))) for r in train[:30]]
        halves = Dataset.from_list(rows).shuffle(seed=seed).train_test_split(test_size=0.5, seed=seed)
        s = ds.splits(seed)
        assert texts_of(ds, s.train1) == sorted(zip(halves["train"]["txt"], halves["train"]["hard_label"]))
        assert texts_of(ds, s.train2) == sorted(zip(halves["test"]["txt"], halves["test"]["hard_label"]))
        rng = random.Random(seed)
        assert texts_of(ds, s.test) == sorted(ref_sciq(r, rng) for r in test[:12])
    # the union of the seeds' examples, each (row, coin outcome) once
    assert len(ds.load()) == len({(row, t) for row, t in zip(ds.source_rows(), ds.load().texts)})
    assert len(ds.load()) > 42 and set(ds.source_rows()) == {("train", i) for i in range(30)} | {
        ("test", i) for i in range(12)}
    assert ds.identity()["data_seeds"] == [0, 1, 2]
    one = R.RECIPE_CLASSES["sciq"](data_files=files, n_train=30, n_test=12)
    one.use_seeds([0])
    assert one.identity()["fingerprint"] != ds.identity()["fingerprint"]  # adding seeds changes the identity
    assert texts_of(one, one.splits(0).train1) == texts_of(ds, ds.splits(0).train1)
    with pytest.raises(ConfigError, match=r"prepared for seeds 0, not 1: .*use_seeds"):
        one.splits(1)


def test_openai_mode_without_coins_costs_nothing_per_seed():
    train = [{"question": f"q{i}", "answer": bool(i % 3), "passage": f"p{i}"} for i in range(40)]
    val = [{"question": f"v{i}", "answer": bool(i % 2), "passage": f"vp{i}"} for i in range(10)]
    files = {"train": write(Path("train.jsonl"), train), "validation": write(Path("val.jsonl"), val)}
    ds = R.RECIPE_CLASSES["boolq"](data_files=files, n_train=20, n_test=5)
    ds.use_seeds(range(5))
    assert len(ds.load()) == 25  # the same 25 rows whatever the seeds
    assert ds.split_sizes(3) == (10, 10, 5)


def test_openai_mode_takes_every_row_of_a_short_split_with_one_warning_line(capsys):
    files, _, _ = sciq_files(50, 20)
    ds = R.RECIPE_CLASSES["sciq"](data_files=files, n_train=20000, n_test=10000)
    ds.use_seeds([0, 1])
    assert ds.split_sizes(0) == (25, 25, 20) and ds.split_sizes(1) == (25, 25, 20)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("warning: dataset 'sciq': ")
    assert "n_train=20000 but only 50 rows in split 'train'; n_test=10000 but only 20 rows in split 'test'" in err


def test_openai_mode_max_ctx_filters_each_part_after_the_halves():
    train = [{"question": "q" * (i % 30), "answer": bool(i % 2), "passage": f"p{i}"} for i in range(60)]
    val = [{"question": "v" * (i % 30), "answer": bool(i % 2), "passage": f"v{i}"} for i in range(20)]
    files = {"train": write(Path("train.jsonl"), train), "validation": write(Path("val.jsonl"), val)}
    full = R.RECIPE_CLASSES["boolq"](data_files=files)
    ds = R.RECIPE_CLASSES["boolq"](data_files=files, max_ctx=35)
    full.use_seeds([4]), ds.use_seeds([4])
    a, b = full.splits(4), ds.splits(4)
    for part in ("train1", "train2", "test"):
        want = [t for t in (full.load().texts[i] for i in getattr(a, part)) if len(t) < 35]
        assert sorted(want) == sorted(ds.load().texts[i] for i in getattr(b, part))
    assert len(b.train1) < len(a.train1)  # the halves are cut before filtering: sizes shrink, unequal
    with pytest.raises(ConfigError, match="never balances"):
        R.RECIPE_CLASSES["boolq"](data_files=files, balance=True)


# ----------------------------------------------------------------------------------------------- eleuther


def piqa_files(n_train=120, n_val=40):
    rows = lambda n, tag: [{"goal": f"{tag}goal {i}", "sol1": f"a{i}", "sol2": f"b{i}",
                            "label": int(i % 3 == 0)} for i in range(n)]
    return {"train": write(Path("p/train.jsonl"), rows(n_train, "")),
            "validation": write(Path("p/val.jsonl"), rows(n_val, "v"))}


def test_eleuther_mode_one_data_seed_for_every_run_and_a_validation_set():
    files = piqa_files()
    ds = R.RECIPE_CLASSES["piqa"](data_files=files, n_train=30, n_val=10, n_test=16)
    assert ds.mode == "eleuther" and ds.balance is True and ds.data_seed == 0 and ds.n_val == 10
    ds.use_seeds([0, 1, 2])
    s0 = ds.splits(0)
    for seed in (1, 2):  # EleutherAI's run.py passes no seed: the same data for every run
        s = ds.splits(seed)
        assert all(np.array_equal(getattr(s0, p), getattr(s, p)) for p in ("train1", "train2", "test"))
    assert ds.split_sizes() == (15, 15, 16)
    val = ds.val(0)
    assert len(val) == 10 and s0.val is not None and len(s0.val) == 10
    data = ds.load()  # the val rows are examples of load() (embedded with the rest), in no half and not in test
    assert sorted(zip(val.texts, val.labels.tolist())) == texts_of(ds, s0.val)
    assert not set(s0.val) & (set(s0.train1) | set(s0.train2) | set(s0.test))
    assert not {data.texts[i] for i in s0.val} & {data.texts[i] for i in np.concatenate([s0.train1, s0.train2])}
    assert ds.identity()["data_seeds"] == [0]
    labels = ds.load().labels
    assert labels[s0.test].sum() * 2 != 0  # both classes present
    by_run = R.RECIPE_CLASSES["piqa"](data_files=files, n_train=30, n_val=10, n_test=16, data_seed="run")
    by_run.use_seeds([0, 1])
    assert by_run.identity()["data_seeds"] == [0, 1]
    assert texts_of(by_run, by_run.splits(0).train1) == texts_of(ds, s0.train1)
    assert texts_of(by_run, by_run.splits(1).train1) != texts_of(ds, s0.train1)


def test_eleuther_mode_order_of_operations():
    """shuffle(seed) the whole split, coins Random(seed) in that order, drop empty texts, balance(seed), first n,
    val = the first n_val, halves train_test_split(0.5, seed=42)."""
    from datasets import Dataset, concatenate_datasets

    train = [{"idx": i, "sentence": "" if i % 11 == 3 else f"s{i}", "label": int(i % 4 == 0)} for i in range(90)]
    val = [{"idx": i, "sentence": f"v{i}", "label": int(i % 3 == 0)} for i in range(30)]
    files = {"train": write(Path("s/train.parquet"), train), "validation": write(Path("s/val.parquet"), val)}
    ds = R.RECIPE_CLASSES["sst2"](data_files=files, n_train=20, n_val=4, n_test=10, data_seed=5)
    ds.use_seeds([0])

    def reference_split(rows, n):
        table = Dataset.from_list([{"txt": r["sentence"], "hard_label": r["label"]} for r in rows]).shuffle(seed=5)
        table = table.filter(lambda ex: ex["txt"] != "")
        labels = table["hard_label"][:]
        counts = {c: labels.count(c) for c in dict.fromkeys(labels)}
        major = max(counts, key=counts.get)
        minority = table.filter(lambda ex: ex["hard_label"] != major)
        majority = table.filter(lambda ex: ex["hard_label"] == major).shuffle(seed=5).select(range(len(minority)))
        table = concatenate_datasets([minority, majority]).shuffle(seed=5)
        return table.select(range(min(n, len(table))))

    pool, test = reference_split(train, 24), reference_split(val, 10)
    halves = pool.select(range(4, len(pool))).train_test_split(test_size=0.5, seed=42)
    s = ds.splits(0)
    pairs = lambda t: sorted(zip(t["txt"], t["hard_label"]))
    assert texts_of(ds, s.train1) == pairs(halves["train"]) and texts_of(ds, s.train2) == pairs(halves["test"])
    assert texts_of(ds, s.test) == pairs(test)
    assert sorted(zip(ds.val(0).texts, ds.val(0).labels.tolist())) == pairs(pool.select(range(4)))
    assert "" not in ds.load().texts


def test_eleuther_mode_shows_openbookqa_as_eleutherai_does():
    obqa = [{"id": str(i), "question_stem": f"stem {i}", "choices": {"text": [f"t{i}{k}" for k in "ABCD"],
             "label": list("ABCD")}, "answerKey": "ABCD"[i % 4]} for i in range(40)]
    files = {"train": write(Path("o/train.jsonl"), obqa), "test": write(Path("o/test.jsonl"), obqa[:10])}
    eleuther = R.RECIPE_CLASSES["openbookqa"](data_files=files, n_val=0)
    fixed = R.RECIPE_CLASSES["openbookqa"](data_files=files, mode="fixed", balance=False)
    heads = [t for t, y in zip(eleuther.load().texts, eleuther.load().labels) if y == 1]
    assert heads and all(t[-1] in "ABCD" and t.endswith(f"Answer: {t[-1]}") for t in heads)  # the letter
    rng = random.Random(0)
    letters = {ref_openbookqa(r, rng)[0] for r in obqa}  # the text form (tests/test_recipes.py's reference)
    assert {t for t, y in zip(fixed.load().texts, fixed.load().labels) if y == 1} <= letters


def test_sciq_with_support_test_pool_is_eleutherais():
    splits = {"train": sciq_rows(3100), "validation": sciq_rows(50, tag="v"), "test": sciq_rows(50, tag="t")}
    files = {s: write(Path(f"w/{s}.parquet"), rows) for s, rows in splits.items()}
    ds = R.RECIPE_CLASSES["sciq_with_support"](data_files=files, n_train=100, n_val=20, n_test=40)
    ds.use_seeds([0])
    offsets = {"train": 0, "validation": 3100, "test": 3150}
    train, pool = R.train_test_split(np.arange(3200), 3000, 0)  # train_test_split(test_size=3000, seed=0)
    s = ds.splits(0)
    rows = ds.source_rows()
    assert {offsets[rows[i][0]] + rows[i][1] for i in s.test} <= set(pool.tolist())
    assert {offsets[rows[i][0]] + rows[i][1] for i in np.concatenate([s.train1, s.train2])} <= set(train.tolist())
    assert ds.split_sizes() == (50, 50, 40)


# ---------------------------------------------------------------------------------------- fixed and checks


def test_fixed_mode_keeps_the_texts_constant_across_seeds():
    files, train, _ = sciq_files()
    ds = R.RECIPE_CLASSES["sciq"](data_files=files, mode="fixed", n_train=30, n_test=12, format_seed=3)
    ds.use_seeds([0, 1])  # ignored: the rows come from test_seed, the coins from format_seed
    pools = {frozenset(texts_of(ds, np.concatenate([ds.splits(s).train1, ds.splits(s).train2]))) for s in (0, 1)}
    assert len(pools) == 1 and len(ds.load()) == 42
    rng = random.Random(3)
    allowed = {ref_sciq(r, rng) for r in train}
    assert set(texts_of(ds, np.concatenate([ds.splits(0).train1, ds.splits(0).train2]))) <= allowed


def test_mode_parameters_are_checked():
    files, _, _ = sciq_files(10, 5)
    make = R.RECIPE_CLASSES["sciq"]
    with pytest.raises(ConfigError, match="mode must be one of openai, eleuther, fixed, got 'paper'"):
        make(data_files=files, mode="paper")
    with pytest.raises(ConfigError, match="format_seed is a setting of mode = 'fixed', not of mode = 'openai'"):
        make(data_files=files, format_seed=1)
    with pytest.raises(ConfigError, match="test_seed is a setting of mode = 'fixed'"):
        make(data_files=files, mode="eleuther", test_seed=1)
    with pytest.raises(ConfigError, match="n_val is a setting of mode = 'eleuther'"):
        make(data_files=files, n_val=10)
    with pytest.raises(ConfigError, match="data_seed must be an integer >= 0 or \"run\""):
        R.RECIPE_CLASSES["piqa"](data_files=piqa_files(), data_seed="each")
    with pytest.raises(DataError, match="has no difficulty"):
        make(data_files=files).difficulty()


# --------------------------------------------------------------------------------------- planner and runs


def config(tmp_path: Path, dataset: str, seeds: str):
    return load_config(counting_run(tmp_path, dataset, seeds=seeds, name=f"run-{abs(hash((dataset, seeds)))}.toml"))


def test_the_planner_and_each_run_context_prepare_the_runs_seeds(tmp_path):
    files, _, _ = sciq_files(40, 10)
    sciq = f'name = "sciq"\ndata_files = {{train = "{files["train"]}", test = "{files["test"]}"}}\nn_train = 20'
    pm = create_plugin_manager([CountingPlugin()])
    cfg = config(tmp_path, sciq, "[0, 1]")
    plan = make_plan(cfg, pm)
    assert plan.dataset.identity()["data_seeds"] == [0, 1]
    ctx = RunContext(pm=pm, config=cfg, output_dir=tmp_path / "out")  # a worker's: re-created from the config
    assert ctx.dataset is not plan.dataset and ctx.data.fingerprint == plan.dataset.load().fingerprint
    for seed in (0, 1):
        mine, planned = ctx.splits(seed).train1, plan.dataset.splits(seed).train1
        assert texts_of(ctx.dataset, mine) == texts_of(plan.dataset, planned)
    ids = lambda c: {(s.seed, s.name): s.id for s in make_plan(c, pm).stages}
    # openai mode draws coins per seed: adding a seed adds examples, so every stage id changes (documented)
    assert set(ids(cfg).values()).isdisjoint(ids(config(tmp_path, sciq, "[0, 1, 2]")).values())
    # eleuther mode with its fixed data seed: another run seed changes no dataset identity
    piqa = piqa_files()
    eleuther = (f'name = "piqa"\ndata_files = {{train = "{piqa["train"]}", validation = "{piqa["validation"]}"}}'
                '\nn_val = 10')
    a, b = ids(config(tmp_path, eleuther, "[0]")), ids(config(tmp_path, eleuther, "[0, 1]"))
    assert all(b[key] == sid for key, sid in a.items())


def test_a_run_with_more_rows_than_a_split_prints_one_warning_line_and_records_the_rows(tmp_path, capsys):
    import json

    from w2s_harness._cli.cli import main

    files, _, _ = sciq_files(40, 10)
    cfg = counting_run(tmp_path, f'name = "sciq"\ndata_files = {{train = "{files["train"]}", '
                             f'test = "{files["test"]}"}}\nn_train = 20000\nn_test = 10000', name="short.toml")
    assert main(["run", "--config", str(cfg), "--json"], plugins=[CountingPlugin()]) == 0
    out = capsys.readouterr()
    # one line about the dataset (the table's own "fewer than 5 seeds" warning is another matter)
    warnings = [line for line in out.err.splitlines() if line.startswith("warning:") and "seeds" not in line]
    assert len(warnings) == 1 and "dataset 'sciq'" in warnings[0] and "n_train=20000" in warnings[0]
    results = json.loads(out.out)
    rows = {json.dumps(st["metrics"]["split_rows"]) for st in results["stages"] if st["op"] == "train"}
    assert rows == {json.dumps({"train1": 20, "train2": 20, "test": 10})}


# ------------------------------------------------------------------- the dataset's validation rows in training


class ValCountingPlugin:
    """The counting feature model with EleutherAI/w2s's checkpoint selection (``early_stop = "weak_val"``)."""

    @hookimpl
    def w2s_register_models(self, registry):
        from test_recipes import CountingModel

        from w2s_harness import check_train_config

        class ValCounting(CountingModel):
            name = "valcounting"

            def __init__(self, dim: int = 8):
                super().__init__(dim)
                self.train_config = check_train_config("model 'valcounting'", lr=0.05, epochs=3, batch_size=8,
                                                       early_stop="weak_val")

        registry.add("valcounting", ValCounting, description="counting + weak_val checkpoints (tests)")


def test_train_stages_select_checkpoints_on_the_datasets_validation_rows(tmp_path, monkeypatch):
    """eleuther mode: the weak model and the ceiling score their checkpoints on the n_val rows against ground
    truth, the transfer against the weak model's predictions on those rows (run.py's weak-labelled val split);
    nothing is held out of the halves (val_frac does not apply)."""
    import json

    from w2s_harness._cli.cli import main
    from w2s_harness._engine import training as _training
    from w2s_harness._execution.store import StageStore

    seen: dict[str, dict] = {}
    real_fit = _training.fit

    def spy(module, inputs, targets, loss, cfg, **kw):  # records what the real fit is given, changes nothing
        seen[kw["where"]] = {"n": len(inputs), "val_inputs": np.array(kw.get("val_inputs")),
                             "val_targets": np.array(kw.get("val_targets"))}
        return real_fit(module, inputs, targets, loss, cfg, **kw)

    monkeypatch.setattr(_training, "fit", spy)
    piqa = piqa_files()
    cfg = counting_run(tmp_path, f'name = "piqa"\ndata_files = {{train = "{piqa["train"]}", validation = '
                             f'"{piqa["validation"]}"}}\nn_train = 30\nn_val = 10\nn_test = 16', seeds="[0]",
                       model="valcounting", name="val.toml")
    pm = create_plugin_manager([CountingPlugin(), ValCountingPlugin()])
    ds = make_plan(load_config(cfg), pm).dataset
    s0, data = ds.splits(0), ds.load()
    val_texts = [data.texts[i] for i in s0.val]
    assert main(["run", "--config", str(cfg), "--json"], plugins=[CountingPlugin(), ValCountingPlugin()]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    trains = {st["name"]: st for st in results["stages"] if st["op"] == "train"}
    assert set(seen) == set(trains) and len(trains) == 3  # weak, ceiling, transfer
    gt = np.eye(2, dtype=np.float32)[data.labels[s0.val]]
    for name, got in seen.items():
        dim = 8 if name.startswith("weak") else 16
        feats = np.zeros((len(val_texts), dim), dtype=np.float32)
        feats[np.arange(len(val_texts)), [hash(t) % dim for t in val_texts]] = 1.0
        np.testing.assert_array_equal(got["val_inputs"], feats)  # exactly the dataset's val rows
        assert got["n"] == 15  # the whole half trains: nothing held out of it
        assert trains[name]["metrics"]["early_stop"]["val_rows"] == {"source": "dataset", "n": 10}
    weak_name = next(n for n in trains if n.startswith("weak"))
    transfer = next(n for n in trains if n.startswith("transfer"))
    _, weak_arrays = StageStore(tmp_path / "out").load(trains[weak_name]["id"])
    pos = {int(r): i for i, r in enumerate(weak_arrays["indices"])}
    weak_on_val = weak_arrays["probs"][[pos[int(r)] for r in s0.val]]
    np.testing.assert_allclose(seen[transfer]["val_targets"], weak_on_val, rtol=0, atol=0)
    assert not np.allclose(weak_on_val, gt)  # the transfer does not see ground truth
    for name in set(trains) - {transfer}:
        np.testing.assert_array_equal(seen[name]["val_targets"], gt)
