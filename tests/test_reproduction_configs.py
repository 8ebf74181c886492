"""The shipped reproduction configs (examples/configs/reference-nlp-sweep.toml and eleuther-default.toml) plan and
run end to end on files of the **real split sizes**, in each hub dataset's raw schema.

Nothing is downloaded: every dataset reads parquet files written here with the hub's row counts (sciq 11,679 train /
1,000 validation / 1,000 test; boolq 9,427 train / 3,270 validation, about 62% true; cosmos_qa 25,262 train / 2,985
validation; anthropic_hh 160,800 train / 8,552 test; amazon_polarity 400,000 test). Only amazon_polarity's
3.6M-row training split is written smaller (40,000 rows), larger than any ``n_train`` a config asks for. So the
configs meet what they meet on the hub: the sweep asks for 20,000 / 10,000 rows of every dataset, more than four
of the five test splits and two of the training splits hold; eleuther-default asks for more boolq rows than its
balanced splits hold.

The configs are used as shipped except for what a CPU test must change, through the config mechanism:

* a copy of the file adds a ``data_files`` line to each dataset table and lowers the counts of :data:`FEWER`, only
  counts the split holds (the run takes exactly that many either way, so no size behaviour is hidden); the copy is
  checked to differ from the shipped file by exactly that;
* on the command line: the models (``--weak`` / ``--strong`` / ``--set``: a tiny random BERT built here as linear
  probes with one AdamW epoch, its first layer the weak model, and the two as the grid's rungs, so one encoder pass
  serves both), the tokenizer ``max_ctx`` counts with (``--set dataset.tokenizer``: the tiny one's instead of
  GPT-2's), ``--device cpu``, ``--seeds 0``, one worker and one torch thread, and the output directory.

A ``n_train`` / ``n_test`` larger than what a split holds uses every row, with one ``warning:`` line per dataset
and command naming the counts; train stages record the rows they used (``split_rows``), which are checked against
the real sizes, in each config's modes (``openai`` for the sweep, ``eleuther`` for eleuther-default). About 30 s
on 2 cores.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from w2s_harness._cli.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "configs"
SWEEP = CONFIGS / "reference-nlp-sweep.toml"
ELEUTHER = CONFIGS / "eleuther-default.toml"

#: Rows of each hub split (the hub's dataset cards / the parquet branch), and the rows written here where fewer.
REAL = {
    "amazon_polarity": {"train": 3_600_000, "test": 400_000},
    "sciq": {"train": 11_679, "validation": 1_000, "test": 1_000},
    "cosmos_qa": {"train": 25_262, "validation": 2_985},
    "boolq": {"train": 9_427, "validation": 3_270},
    "anthropic_hh": {"train": 160_800, "test": 8_552},
}
WRITTEN = {"amazon_polarity": {"train": 40_000}}
#: The splits each recipe reads: its training split(s) and its test split (None: drawn from the training rows).
SPLITS = {
    "amazon_polarity": (("train",), "test"),
    "sciq": (("train",), "test"),
    "cosmos_qa": (("train",), "validation"),
    "boolq": (("train",), "validation"),
    "anthropic_hh": (("train",), "test"),
    "sciq_with_support": (("train", "validation", "test"), None),
}
SOURCE = {"sciq_with_support": "sciq"}  # the hub dataset a recipe reads, where the names differ

WORDS = ["the", "a", "movie", "was", "good", "bad", "great", "awful", "i", "love", "hate", "it", "this", "is", "not",
         "very", "fun", "boring", "answer", "question", "passage", "why", "what", "yes", "no"]


def rows_written(dataset: str, split: str) -> int:
    return WRITTEN.get(dataset, {}).get(split, REAL[dataset][split])


# ------------------------------------------------------------------------------------------- fixtures


def _phrases(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``n`` texts of ``k`` words each, drawn from a pool of 4,096 phrases (fast for 400,000 rows)."""
    pool = np.array([" ".join(rng.choice(WORDS, size=k)) for _ in range(4096)], dtype=object)
    return pool[rng.integers(0, len(pool), size=n)]


def _raw_split(dataset: str, n: int, rng: np.random.Generator) -> dict[str, object]:
    """``n`` rows of ``dataset``'s raw hub schema (the columns and types of the hub files)."""
    p = lambda k: _phrases(rng, n, k).tolist()
    label = rng.integers(0, 2, size=n)
    if dataset == "amazon_polarity":
        return {"label": label, "title": p(2), "content": p(4)}
    if dataset == "sciq":
        return {"question": p(3), "distractor3": p(1), "distractor1": p(1), "distractor2": p(1),
                "correct_answer": p(1), "support": p(4)}
    if dataset == "cosmos_qa":
        return {"id": [f"id{i}" for i in range(n)], "context": p(3), "question": p(2),
                **{f"answer{i}": [f"{a} {WORDS[i]}" for a in p(1)] for i in range(4)},  # distinct answers
                "label": rng.integers(0, 4, size=n)}
    if dataset == "boolq":
        return {"question": p(3), "answer": rng.random(n) < 0.62, "passage": p(4)}  # ~62% true, as the hub's
    if dataset == "anthropic_hh":
        return {"chosen": p(5), "rejected": p(5)}
    raise AssertionError(dataset)  # pragma: no cover


@pytest.fixture(scope="module")
def hub_files(tmp_path_factory) -> dict[str, dict[str, str]]:
    """``{dataset: {split: parquet path}}`` in each hub dataset's raw schema, at the real split sizes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("hub-files")
    out: dict[str, dict[str, str]] = {}
    for k, (dataset, splits) in enumerate(REAL.items()):
        rng = np.random.default_rng(k)
        out[dataset] = {}
        for split in splits:
            path = root / dataset / f"{split}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(_raw_split(dataset, rows_written(dataset, split), rng)), path)
            out[dataset][split] = str(path)
    return out


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A tiny random BERT (2 layers, hidden size 32) with a word-level vocabulary of the fixture texts."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    vocab = d / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ","] + WORDS) + "\n")
    BertTokenizerFast.from_pretrained(str(d)).save_pretrained(str(d))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(WORDS) + 6, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(str(d))
    return d


pytestmark = pytest.mark.usefixtures("offline_hub")


#: Fewer rows used where that hides nothing: a count the config asks for that its split holds (so the run takes
#: exactly that many either way) is lowered; every count larger than its split stays as shipped.
FEWER = {"amazon_polarity": {"n_train": 2000, "n_test": 1000}, "cosmos_qa": {"n_train": 2000},
         "anthropic_hh": {"n_train": 2000}}


def split_size(name: str, key: str) -> int:
    """Rows of the split ``key`` (``n_train`` / ``n_test``) draws from, as written here."""
    train_splits, test_split = SPLITS[name]
    source = SOURCE.get(name, name)
    if key == "n_train":
        return sum(rows_written(source, s) for s in train_splits)
    return rows_written(source, test_split) if test_split else sum(rows_written(source, s) for s in train_splits)


def derived_config(config: Path, files: dict[str, dict[str, str]], out: Path, fewer: dict | None = None) -> Path:
    """A copy of ``config`` with a ``data_files`` line after the ``name`` of each dataset table and the counts of
    ``fewer`` lowered; nothing else changes (checked), and only counts its split holds are lowered (checked)."""
    fewer = fewer or {}
    written, in_dataset, name = [], False, None
    for line in config.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("["):
            in_dataset, name = line.strip() in ("[dataset]", "[[dataset]]"), None
        count = re.match(r"\s*(n_train|n_test)\s*=", line)
        if in_dataset and name in fewer and count and count.group(1) in fewer[name]:
            line = f"{count.group(1)} = {fewer[name][count.group(1)]}"
        written.append(line)
        m = re.match(r'\s*name\s*=\s*"([^"]+)"', line)
        if in_dataset and m:
            name = m.group(1)
            splits = files[SOURCE.get(name, name)]
            table = ", ".join(f'{split} = "{path}"' for split, path in splits.items()
                              if split in (*SPLITS[name][0], SPLITS[name][1]))
            written.append(f"data_files = {{{table}}}")
    out.write_text("\n".join(written) + "\n", encoding="utf-8")
    shipped, copy = tomllib.loads(config.read_text(encoding="utf-8")), tomllib.loads(out.read_text(encoding="utf-8"))
    tables = copy["dataset"] if isinstance(copy["dataset"], list) else [copy["dataset"]]
    originals = shipped["dataset"] if isinstance(shipped["dataset"], list) else [shipped["dataset"]]
    for t, o in zip(tables, originals):
        del t["data_files"]
        for key, value in fewer.get(t["name"], {}).items():
            assert value < o[key] <= split_size(t["name"], key), (t["name"], key)  # lowering hides nothing
            t[key] = o[key]
    assert copy == shipped, "the copy differs from the shipped config by more than data_files and FEWER"
    return out


#: The tiny model's settings: short texts, large embedding batches, one AdamW epoch per head (a linear probe; the
#: L-BFGS default solves ``product`` slowly, see docs/probes.md).
TINY = {"max_length": 16, "embed_batch_size": 1024, "solver": "adamw", "epochs": 1, "batch_size": 256}


def model_overrides(config: Path, tiny: Path) -> list[str]:
    """The models replaced on the command line: the tiny BERT as the strong model, its first layer as the weak one
    (one encoder pass serves both), and the two as a grid's rungs; the tokenizer a dataset counts ``max_ctx``
    tokens with (GPT-2's in the sweep) replaced by the tiny one's; CPU, one seed, one torch thread."""
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    name = f"hf:{tiny}"
    args = ["--weak", name, "--strong", name, "--device", "cpu", "--seeds", "0", "--workers", "1", "--threads", "1",
            "--set", "weak.layers=1"]
    for role in ("weak", "strong"):
        args += [a for key, value in TINY.items() for a in ("--set", f"{role}.{key}={json.dumps(value)}")]
    if data["strategy"]["name"] == "grid":
        args += ["--set", 'strategy.models=["weak", "strong"]']
    tables = data["dataset"] if isinstance(data["dataset"], list) else [data["dataset"]]
    if any("tokenizer" in t for t in tables):
        args += ["--set", f"dataset.tokenizer={json.dumps(str(tiny))}"]
    return args


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """Run the CLI in-process: exit code and stdout + stderr."""
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out + out.err


def warnings_for(text: str, dataset: str) -> list[str]:
    """The ``warning:`` lines that name ``dataset``."""
    return [ln for ln in text.splitlines() if ln.startswith("warning:") and f"dataset {dataset!r}" in ln]


def split_rows(results: dict, dataset: str) -> set[tuple[int, int, int]]:
    """``{(train1, train2, test)}``: the rows every train stage of ``dataset``'s rows recorded."""
    stages = {s["id"]: s for s in results["stages"]}
    ids = {i for e in results["experiments"] if e["dataset"] == dataset for ids in e["stage_ids"].values()
           for i in ids if i}
    out = set()
    for i in ids:
        rows = (stages[i].get("metrics") or {}).get("split_rows")
        assert rows is not None, f"stage {stages[i]['name']} of {dataset} recorded no split_rows"
        out.add((rows["train1"], rows["train2"], rows["test"]))
    return out


# ------------------------------------------------------------------------------------------------- tests


def test_shipped_configs_validate_offline(capsys):
    """As shipped (GPU presets, hub data): names, parameters and the stage graph check out with nothing read."""
    for config in (SWEEP, ELEUTHER):
        rc, out = run_cli(["validate", "--offline", "--config", str(config)], capsys)
        assert rc == 0, out
        assert "config OK" in out


def test_fixtures_have_the_real_split_sizes(hub_files):
    import pyarrow.parquet as pq

    for dataset, splits in hub_files.items():
        for split, path in splits.items():
            assert pq.ParquetFile(path).metadata.num_rows == rows_written(dataset, split)
            if rows_written(dataset, split) != REAL[dataset][split]:  # only a split larger than any n asked for
                assert rows_written(dataset, split) > 20_000 + 10_000


def _plan_and_run(config: Path, tiny: Path, out_dir: Path, capsys) -> tuple[str, str, dict]:
    """``validate`` (the stage graph over the real rows: every dataset loaded and sampled) then ``run``: both
    outputs and results.json."""
    common = ["--config", str(config), *model_overrides(config, tiny)]
    rc, planned = run_cli(["validate", *common], capsys)
    assert rc == 0, planned
    assert "config OK" in planned
    rc, ran = run_cli(["run", *common, "-o", str(out_dir)], capsys)
    assert rc == 0, ran
    results = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    assert results["status"] == "complete" and not results.get("failures"), results.get("failures")
    return planned, ran, results


def _check_warnings(planned: str, ran: str, name: str, short: dict[str, int]) -> None:
    """One warning line per command for a dataset asked for more rows than it has (naming each such count), none
    for the others. (``short``: ``{key: value asked}``.)"""
    for text in (planned, ran):
        lines = set(warnings_for(text, name))
        assert len(lines) == (1 if short else 0), (name, lines)
        assert all(f"{key}={value}" in next(iter(lines)) for key, value in short.items()), (name, lines)


def test_reference_nlp_sweep_runs_on_real_split_sizes(hub_files, tiny_bert, tmp_path, capsys):
    """openai/weak-to-strong's pipeline (the recipes' default ``openai`` mode): the first ``n_train`` / ``n_test``
    rows of each split, all of a split that has fewer, with one warning line per dataset and command."""
    config = derived_config(SWEEP, hub_files, tmp_path / "reference-nlp-sweep.toml", FEWER)
    datasets = tomllib.loads(config.read_text(encoding="utf-8"))["dataset"]
    planned, ran, results = _plan_and_run(config, tiny_bert, tmp_path / "sweep", capsys)
    assert {e["dataset"] for e in results["experiments"]} == {d["name"] for d in datasets}
    short_datasets = 0
    for ds in datasets:
        name = ds["name"]
        assert ds.get("mode", "openai") == "openai"
        have = {key: split_size(name, key) for key in ("n_train", "n_test")}
        (t1, t2, test), = split_rows(results, name)  # one seed: every stage saw the same parts
        assert (t1 + t2, test) == (min(ds["n_train"], have["n_train"]), min(ds["n_test"], have["n_test"])), name
        assert abs(t1 - t2) <= 1, (name, t1, t2)
        short = {key: ds[key] for key in have if ds[key] > have[key]}
        short_datasets += bool(short)
        _check_warnings(planned, ran, name, short)
    assert short_datasets == 4  # every dataset but amazon_polarity has a split smaller than the config asks for


def test_eleuther_default_runs_on_real_split_sizes(hub_files, tiny_bert, tmp_path, capsys):
    """EleutherAI/w2s's pipeline (``eleuther`` mode): each split shuffled and balanced 50/50, then the first
    ``n_train + n_val`` / ``n_test`` rows (``n_val`` held out for validation), every balanced row of a split that has
    fewer, with one warning line per command."""
    from w2s_harness.plugins.datasets.recipes import ELEUTHER_N_VAL, RECIPE_CLASSES

    config = derived_config(ELEUTHER, hub_files, tmp_path / "eleuther-default.toml")
    ds = tomllib.loads(config.read_text(encoding="utf-8"))["dataset"]
    name = ds["name"]
    assert ds.get("mode", RECIPE_CLASSES[name].default_mode()) == "eleuther"
    planned, ran, results = _plan_and_run(config, tiny_bert, tmp_path / "eleuther", capsys)
    (t1, t2, test), = split_rows(results, name)
    n_val = ds.get("n_val", ELEUTHER_N_VAL)
    n_train = None if ds.get("n_train") is None else ds["n_train"] + n_val
    n_test = ds.get("n_test")
    have = {"n_train": split_size(name, "n_train"), "n_test": split_size(name, "n_test")}
    if SPLITS[name][1] is None:  # a test pool drawn from the pooled splits (sciq: EleutherAI's 3,000 rows)
        pool = RECIPE_CLASSES[name].recipe.default_n_test
        have = {"n_train": have["n_train"] - pool, "n_test": pool}
    balanced = {key: have[key] for key in have}
    if name == "boolq":  # no coin: a balanced split keeps twice its minority class
        import pyarrow.parquet as pq

        for key, split in (("n_train", "train"), ("n_test", "validation")):
            answers = pq.read_table(hub_files["boolq"][split], columns=["answer"])["answer"].to_numpy()
            balanced[key] = 2 * int(min(answers.sum(), (~answers).sum()))
        assert t1 + t2 == min(n_train, balanced["n_train"]) - n_val and test == min(n_test or 10**9, balanced["n_test"])
    else:  # a coin per row: about half of each split is each class
        assert 0.9 * min(n_train, have["n_train"]) <= t1 + t2 + n_val <= min(n_train, have["n_train"])
        assert 0.9 * min(n_test or 10**9, have["n_test"]) <= test <= min(n_test or 10**9, have["n_test"])
    assert abs(t1 - t2) <= 1
    short = {"n_train": n_train} if n_train > balanced["n_train"] else {}
    if n_test is not None and n_test > balanced["n_test"]:
        short["n_test"] = n_test
    assert short, "the shipped config asks for more rows than the real splits hold"
    _check_warnings(planned, ran, name, short)
