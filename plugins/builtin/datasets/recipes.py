"""Named dataset recipes: the binary tasks of openai/weak-to-strong and EleutherAI/w2s, as data.

A :class:`Recipe` says where a dataset lives (hub id, config, revision, split names), which raw columns it reads,
and how a raw row becomes a labelled text. One generic loader, :class:`RecipeDataset`, handles them all: each
registered dataset (``sciq``, ``boolq``, ...) is a subclass of it bound to one recipe.

**Formats.** The texts and labels follow the references exactly (docs/datasets.md lists each one). Recipes that
pair a question with a candidate answer draw a seeded coin per row, as the references do: one
``random.Random(format_seed)`` per split, walked in the split's row order over the *whole* split (as
openai/weak-to-strong's ``load_dataset`` formats a split with ``Random(seed)``), so the text of a row never depends
on which rows a run samples. Only the coin decisions of the rows before the last one used are replayed (from the
few columns they read); only the rows used are formatted. A row the reference could not format (its answer missing
from its choices, a missing label) is dropped and draws nothing.

**Rows used.** ``n_test`` rows of the recipe's test split (default: all of them) and ``n_train`` rows of its
training split(s) (default: all) are sampled from ``test_seed`` by :class:`w2s_harness.BaseDataset`; only those are
loaded and formatted. ``balance`` undersamples both to 50/50; ``max_ctx`` drops rows whose text is too long.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from w2s_harness import BaseDataset, ConfigError, DataError, TextData, fingerprint_examples

from .hfsource import PARQUET_BRANCH, load_tokenizer
from .hubtables import HubTables

OPENAI = "openai/weak-to-strong"
ELEUTHER = "EleutherAI/w2s"
#: Rows of coin decisions replayed per block (only the columns the decisions read).
REPLAY_BLOCK = 65_536

Row = dict[str, Any]
#: ``pick(row, rng) -> (label, extra)``, or None for a row that cannot be formatted (nothing drawn then).
Pick = Callable[[Row, random.Random], "tuple[int, Any] | None"]


@dataclass(frozen=True)
class Recipe:
    """One named dataset, as data.

    :param name: the registered name.
    :param hub_id: Hugging Face hub dataset id.
    :param train_splits: hub split(s) the training pool is drawn from.
    :param test_split: hub split the test split is drawn from; ``None``: drawn from the training rows.
    :param columns: raw columns :attr:`render` reads.
    :param render: ``render(row, label, extra) -> text``; ``extra`` is what :attr:`pick` returned (else None).
    :param label: ``label(row) -> 0/1`` (None: unusable row) for recipes without a coin.
    :param label_columns: raw columns :attr:`label` reads.
    :param pick: ``pick(row, rng) -> (label, extra)`` for recipes with a seeded coin (see the module docstring).
    :param pick_columns: raw columns :attr:`pick` reads (replayed for every row up to the last one used).
    :param config: HF config name (``load_dataset(hub_id, config)``); on the parquet branch, the config directory
        (``None`` there: any, for single-config datasets).
    :param revision: hub revision; :data:`~.hfsource.PARQUET_BRANCH` for datasets that were loading scripts.
    :param class_names: names of labels 0 and 1.
    :param source: the reference the format comes from.
    :param summary: one line for ``w2s-harness list datasets``.
    :param balance: default of the ``balance`` parameter.
    :param default_n_test: default ``n_test`` when the test split is drawn from the training rows.
    """

    name: str
    hub_id: str
    train_splits: tuple[str, ...]
    test_split: str | None
    columns: tuple[str, ...]
    render: Callable[[Row, int, Any], str]
    label: Callable[[Row], int | None] | None = None
    label_columns: tuple[str, ...] = ()
    pick: Pick | None = None
    pick_columns: tuple[str, ...] = ()
    config: str | None = None
    revision: str | None = None
    class_names: tuple[str, str] = ("false", "true")
    source: str = ELEUTHER
    summary: str = ""
    balance: bool = False
    default_n_test: int | None = None

    @property
    def splits(self) -> list[str]:
        return list(self.train_splits) + ([self.test_split] if self.test_split else [])

    @property
    def raw_columns(self) -> list[str]:
        out: list[str] = []
        for c in (*self.columns, *self.label_columns, *self.pick_columns):
            if c not in out:
                out.append(c)
        return out

    def description(self) -> str:
        test = self.test_split or "drawn from " + "+".join(self.train_splits)
        rev = f"@{self.revision}" if self.revision else ""
        cfg = f":{self.config}" if self.config else ""
        return f"{self.summary} (from {self.source}; hub {self.hub_id}{cfg}{rev}; test split: {test})"


# --------------------------------------------------------------------------------------------- helpers


def _coin(rng: random.Random) -> int:
    """The references' coin: label 1 (show the true answer) with probability 1/2."""
    return int(rng.random() < 0.5)


def _draw_index(rng: random.Random, n: int) -> int:
    """``rng.choice`` over a list of ``n`` items, as an index: ``choice`` draws ``_randbelow(len(seq))`` whatever
    the items are, so this consumes the generator exactly as the references' ``rng.choice(list)`` does."""
    return rng.choice(range(n))


def _binary(value: Any) -> int | None:
    """0/1 from an int, bool or integral float label; None for anything else (e.g. -1 on an unlabelled split)."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer, float, np.floating)) and value in (0, 1):
        return int(value)
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _label_column(row: Row) -> int | None:
    return _binary(row["label"])


# ---------------------------------------------------------------------------------- openai/weak-to-strong


def _render_amazon(row: Row, label: int, extra: Any) -> str:
    return f"{row['title']} {row['content']}"


def _pick_sciq(row: Row, rng: random.Random):
    if _coin(rng):
        return 1, None
    return 0, _draw_index(rng, 3)  # one of distractor1..3


def _sciq_answer(row: Row, label: int, extra: Any) -> str:
    return row["correct_answer"] if label else (row["distractor1"], row["distractor2"], row["distractor3"])[extra]


def _render_sciq(row: Row, label: int, extra: Any) -> str:
    return f"Q: {row['question']} A: {_sciq_answer(row, label, extra)}"


def _pick_anthropic(row: Row, rng: random.Random):
    return _coin(rng), None


def _render_anthropic(row: Row, label: int, extra: Any) -> str:
    return row["chosen"] if label else row["rejected"]


COSMOS_NONE = "None of the above choices ."


def _pick_cosmos(row: Row, rng: random.Random):
    answers = [row[f"answer{i}"] for i in range(4)]
    correct = _int(row["label"])
    if correct is None or not 0 <= correct < 4:
        return None
    true = answers[correct]
    others = [i for i, a in enumerate(answers) if a != true]
    if not others:  # every candidate is the true answer: the reference's rng.choice([]) fails
        return None
    # a true answer "None of the above choices ." is always shown wrong (label 0), without a coin
    label = 0 if COSMOS_NONE in str(true) else _coin(rng)
    if label:
        return 1, correct
    return 0, others[_draw_index(rng, len(others))]


def _render_cosmos(row: Row, label: int, extra: Any) -> str:
    return f"Context: {row['context']}\nQuestion: {row['question']}\nAnswer: {row[f'answer{extra}']}"


def _label_boolq(row: Row) -> int | None:
    return _binary(row["answer"])


def _render_boolq(row: Row, label: int, extra: Any) -> str:
    return f"Passage: {row['passage']}\nQuestion: {row['question']}"


# ------------------------------------------------------------------------------------------ EleutherAI/w2s


def _label_anli(row: Row) -> int | None:
    value = _int(row["label"])
    return None if value is None or value not in (0, 1, 2) else int(value == 0)  # 0 = entailment


def _render_anli(row: Row, label: int, extra: Any) -> str:
    return (f"Premise: {row['premise']}\nHypothesis: {row['hypothesis']}\n\n"
            "Does the premise entail the hypothesis?")


def _render_sentence(row: Row, label: int, extra: Any) -> str:
    return row["sentence"]


def _pick_dream(row: Row, rng: random.Random):
    choices = list(row["choice"] or [])
    if row["answer"] not in choices or len(choices) < 2:
        return None
    if _coin(rng):
        return 1, None
    return 0, _draw_index(rng, len(choices) - 1)  # among the choices without (the first copy of) the answer


def _render_dream(row: Row, label: int, extra: Any) -> str:
    if label:
        answer = row["answer"]
    else:
        distractors = list(row["choice"])
        distractors.remove(row["answer"])
        answer = distractors[extra]
    dialogue = "\n".join(row["dialogue"])
    return f"{dialogue}\n\nQ: {row['question']} A: {answer}"


def _render_deontology(row: Row, label: int, extra: Any) -> str:
    return f"Q: Is the following a morally valid excuse?\n\n{row['scenario']}\n\n{row['excuse']}\n\nA:"


def _render_justice(row: Row, label: int, extra: Any) -> str:
    return f"Q: Does this statement exemplify justice?\n\n{row['scenario']}\n\nA:"


def _render_virtue(row: Row, label: int, extra: Any) -> str:
    return f"Q: Does this behavior match the adjective that follows?\n\n{row['scenario']}\n\nA:"


def _pick_utilitarianism(row: Row, rng: random.Random):
    label = _coin(rng)
    order = [0, 1]  # [baseline, less_pleasant], shuffled as the reference shuffles the two texts
    rng.shuffle(order)
    return label, tuple(order)


def _render_utilitarianism(row: Row, label: int, extra: Any) -> str:
    pair = (row["baseline"], row["less_pleasant"])
    choices = [pair[extra[0]], pair[extra[1]]]
    correct = choices.index(row["baseline"])
    response = correct if label else 1 - correct
    return f"Which is more pleasant?\n1) {choices[0]}\n2) {choices[1]} A: {response + 1}"


def _pick_hellaswag(row: Row, rng: random.Random):
    endings = list(row["endings"] or [])
    correct = _int(row["label"])
    if correct is None or not 0 <= correct < len(endings) or len(endings) < 2:
        return None
    if _coin(rng):
        return 1, correct
    others = [i for i in range(len(endings)) if i != correct]
    return 0, others[_draw_index(rng, len(others))]


def _render_hellaswag(row: Row, label: int, extra: Any) -> str:
    endings = "\n".join(row["endings"])
    return (f"Context:\n{row['ctx']}\n\nContinuations:\n\n{endings}\n\n"
            f"Q: Is \"{row['endings'][extra]}\" the best continuation?")


def _render_mc_taco(row: Row, label: int, extra: Any) -> str:
    return f"{row['sentence']}\n\nGiven the above, {row['question']} Is the answer {row['answer']}?"


def _render_multirc(row: Row, label: int, extra: Any) -> str:
    return f"Passage:\n\n{row['paragraph']}\n\nQ: \"{row['question']}\" Is the answer \"{row['answer']}\"?"


def _pick_openbookqa(row: Row, rng: random.Random):
    choices = row["choices"] or {}
    letters, texts = list(choices.get("label") or []), list(choices.get("text") or [])
    if row["answerKey"] not in letters or len(letters) != len(texts) or len(texts) < 2:
        return None
    if _coin(rng):
        return 1, None
    return 0, _draw_index(rng, len(texts) - 1)


def _render_openbookqa(row: Row, label: int, extra: Any) -> str:
    letters, texts = list(row["choices"]["label"]), list(row["choices"]["text"])
    correct = letters.index(row["answerKey"])
    if label:
        answer = texts[correct]  # EleutherAI/w2s shows the letter here (a bug: see docs/datasets.md)
    else:
        answer = (texts[:correct] + texts[correct + 1:])[extra]
    listed = "\n".join(f"{a}) {t}" for a, t in zip(letters, texts))
    return f"Q: {row['question_stem']}\n\nChoices:\n{listed}\n\nAnswer: {answer}"


def _render_paws(row: Row, label: int, extra: Any) -> str:
    return (f"Sent 1: {row['sentence1']}\nSent 2: {row['sentence2']}\n\n"
            "Q: Are these sentences semantically equivalent?")


def _pick_piqa(row: Row, rng: random.Random):
    if _binary(row["label"]) is None:
        return None
    return _coin(rng), None


def _render_piqa(row: Row, label: int, extra: Any) -> str:
    correct, wrong = (row["sol2"], row["sol1"]) if row["label"] else (row["sol1"], row["sol2"])
    return f"Q: {row['goal']} A: {correct if label else wrong}"


def _pick_quail(row: Row, rng: random.Random):
    answers = list(row["answers"] or [])
    correct = _int(row["correct_answer_id"])
    if correct is None or not 0 <= correct < len(answers) or len(answers) < 2:
        return None
    if _coin(rng):
        return 1, correct
    others = [i for i in range(len(answers)) if i != correct]
    return 0, others[_draw_index(rng, len(others))]


def _render_quail(row: Row, label: int, extra: Any) -> str:
    return (f"Passage:\n\n{row['context']}\n\nQ: \"{row['question']}\" "
            f"Is the answer \"{row['answers'][extra]}\"?")


def _pick_quartz(row: Row, rng: random.Random):
    choices = row["choices"] or {}
    letters, texts = list(choices.get("label") or []), list(choices.get("text") or [])
    if row["answerKey"] not in letters or len(texts) != 2 or len(letters) != 2:
        return None
    return _coin(rng), None


def _render_quartz(row: Row, label: int, extra: Any) -> str:
    correct = list(row["choices"]["label"]).index(row["answerKey"])
    answer = row["choices"]["text"][correct if label else 1 - correct]
    return f"Passage:\n{row['para']}\n\nQ: \"{row['question']}\" Is the answer \"{answer}\"?"


def _pick_social_i_qa(row: Row, rng: random.Random):
    value = _int(row["label"])
    if value is None or not 1 <= value <= 3:
        return None
    correct = value - 1
    if _coin(rng):
        return 1, correct
    others = [i for i in range(3) if i != correct]
    return 0, others[_draw_index(rng, 2)]


def _render_social_i_qa(row: Row, label: int, extra: Any) -> str:
    answer = (row["answerA"], row["answerB"], row["answerC"])[extra]
    return (f"Context:\n{row['context']}\n\nQuestion: \"{row['question']}\"\n\nChoices:\n{row['answerA']}\n"
            f"{row['answerB']}\n{row['answerC']}\n\nIs the answer \"{answer}\"?")


def _render_wic(row: Row, label: int, extra: Any) -> str:
    return (f"Sentence 1:\n{row['sentence1']}\n\nSentence 2:\n{row['sentence2']}\n\n"
            f"Q: Does \"{row['word']}\" have the same meaning in the above sentences?")


def _render_sciq_support(row: Row, label: int, extra: Any) -> str:
    return (f"Name: Bob\n\nPassage 1:\n{row['support']}\n\nQ1: \"{row['question']}\" "
            f"Is the answer \"{_sciq_answer(row, label, extra)}\"?")


SCIQ_COLUMNS = ("question", "correct_answer", "distractor1", "distractor2", "distractor3")


def _ethics(name: str, config: str, columns: tuple[str, ...], render, summary: str) -> Recipe:
    return Recipe(name, "hendrycks/ethics", ("train",), "test", columns, render, label=_label_column,
                  label_columns=("label",), config=config, revision=PARQUET_BRANCH, summary=summary, balance=True)


#: Every recipe by name, in catalogue order (openai/weak-to-strong's five first).
RECIPES: dict[str, Recipe] = {r.name: r for r in [
    # ---- openai/weak-to-strong
    Recipe("amazon_polarity", "fancyzhx/amazon_polarity", ("train",), "test", ("title", "content"),
           _render_amazon, label=_label_column, label_columns=("label",), class_names=("negative", "positive"),
           source=OPENAI, summary="Amazon reviews, '{title} {content}', negative/positive"),
    Recipe("sciq", "allenai/sciq", ("train",), "test", SCIQ_COLUMNS, _render_sciq, pick=_pick_sciq,
           source=OPENAI, summary="SciQ, 'Q: {question} A: {answer}', correct answer or a random distractor"),
    Recipe("cosmos_qa", "allenai/cosmos_qa", ("train",), "validation",
           ("context", "question", "answer0", "answer1", "answer2", "answer3"), _render_cosmos, pick=_pick_cosmos,
           pick_columns=("answer0", "answer1", "answer2", "answer3", "label"), revision=PARQUET_BRANCH,
           source=OPENAI, summary="Cosmos QA, context + question + the true or another candidate answer"),
    Recipe("boolq", "google/boolq", ("train",), "validation", ("passage", "question"), _render_boolq,
           label=_label_boolq, label_columns=("answer",), source=OPENAI,
           summary="BoolQ, 'Passage: ...\\nQuestion: ...', answer false/true"),
    Recipe("anthropic_hh", "Anthropic/hh-rlhf", ("train",), "test", ("chosen", "rejected"), _render_anthropic,
           pick=_pick_anthropic, class_names=("rejected", "chosen"), source=OPENAI,
           summary="HH-RLHF single-text form: the chosen (1) or the rejected (0) dialogue; the reference's own "
                   "ceiling here is at chance (~0.49): use anthropic_hh_pairwise"),
    # ---- EleutherAI/w2s
    Recipe("anli-r2", "facebook/anli", ("train_r2",), "test_r2", ("premise", "hypothesis"), _render_anli,
           label=_label_anli, label_columns=("label",), balance=True,
           summary="ANLI round 2: does the premise entail the hypothesis"),
    Recipe("cola", "nyu-mll/glue", ("train",), "validation", ("sentence",), _render_sentence, label=_label_column,
           label_columns=("label",), config="cola", class_names=("unacceptable", "acceptable"), balance=True,
           summary="CoLA grammatical acceptability, the bare sentence"),
    Recipe("dream", "dataset-org/dream", ("train",), "test", ("dialogue", "question", "choice", "answer"),
           _render_dream, pick=_pick_dream, pick_columns=("choice", "answer"), revision=PARQUET_BRANCH, balance=True,
           summary="DREAM dialogues + question + the true answer or a distractor"),
    _ethics("ethics-deontology", "deontology", ("scenario", "excuse"), _render_deontology,
            "ETHICS deontology: is the excuse morally valid"),
    _ethics("ethics-justice", "justice", ("scenario",), _render_justice,
            "ETHICS justice: does the statement exemplify justice"),
    _ethics("ethics-virtue", "virtue", ("scenario",), _render_virtue,
            "ETHICS virtue: does the behaviour match the adjective"),
    Recipe("ethics-utilitarianism", "hendrycks/ethics", ("train",), "test", ("baseline", "less_pleasant"),
           _render_utilitarianism, pick=_pick_utilitarianism, config="utilitarianism", revision=PARQUET_BRANCH,
           balance=True, summary="ETHICS utilitarianism: which of two shuffled scenarios is more pleasant, answered "
                                 "right or wrong"),
    Recipe("hellaswag", "Rowan/hellaswag", ("train",), "validation", ("ctx", "endings"), _render_hellaswag,
           pick=_pick_hellaswag, pick_columns=("endings", "label"), balance=True,
           summary="HellaSwag: is the true or a random other ending the best continuation"),
    Recipe("mc_taco", "CogComp/mc_taco", ("test",), "validation", ("sentence", "question", "answer"),
           _render_mc_taco, label=_label_column, label_columns=("label",), revision=PARQUET_BRANCH, balance=True,
           summary="MC-TACO temporal QA: is the answer plausible (trains on the larger hub test split)"),
    Recipe("multirc", "aps/super_glue", ("train",), "validation", ("paragraph", "question", "answer"),
           _render_multirc, label=_label_column, label_columns=("label",), config="multirc",
           revision=PARQUET_BRANCH, balance=True, summary="MultiRC: is the answer to the question correct"),
    Recipe("openbookqa", "allenai/openbookqa", ("train",), "test", ("question_stem", "choices", "answerKey"),
           _render_openbookqa, pick=_pick_openbookqa, pick_columns=("choices", "answerKey"), config="main",
           balance=True, summary="OpenBookQA: question + lettered choices + the true or a wrong answer text"),
    Recipe("paws", "google-research-datasets/paws", ("train",), "test", ("sentence1", "sentence2"), _render_paws,
           label=_label_column, label_columns=("label",), config="labeled_final", balance=True,
           summary="PAWS: are the two sentences paraphrases"),
    Recipe("piqa", "ybisk/piqa", ("train",), "validation", ("goal", "sol1", "sol2", "label"), _render_piqa,
           pick=_pick_piqa, pick_columns=("label",), revision=PARQUET_BRANCH, balance=True,
           summary="PIQA: 'Q: {goal} A: {solution}', the right or the wrong solution"),
    Recipe("quail", "textmachinelab/quail", ("train",), "validation", ("context", "question", "answers"),
           _render_quail, pick=_pick_quail, pick_columns=("answers", "correct_answer_id"), revision=PARQUET_BRANCH,
           balance=True, summary="QuAIL: passage + question + the true or a random other answer"),
    Recipe("quartz", "allenai/quartz", ("train",), "test", ("para", "question", "choices", "answerKey"),
           _render_quartz, pick=_pick_quartz, pick_columns=("choices", "answerKey"), revision=PARQUET_BRANCH,
           balance=True, summary="QuaRTz: passage + question + the right or the wrong of two answers"),
    Recipe("social_i_qa", "allenai/social_i_qa", ("train",), "validation",
           ("context", "question", "answerA", "answerB", "answerC"), _render_social_i_qa, pick=_pick_social_i_qa,
           pick_columns=("label",), revision=PARQUET_BRANCH, balance=True,
           summary="Social IQa: context + question + three choices, is the shown one right"),
    Recipe("sst2", "stanfordnlp/sst2", ("train",), "validation", ("sentence",), _render_sentence,
           label=_label_column, label_columns=("label",), class_names=("negative", "positive"), balance=True,
           summary="SST-2 movie-review sentences, negative/positive"),
    Recipe("wic", "aps/super_glue", ("train",), "validation", ("word", "sentence1", "sentence2"), _render_wic,
           label=_label_column, label_columns=("label",), config="wic", revision=PARQUET_BRANCH, balance=True,
           summary="WiC: does the word mean the same in both sentences"),
    Recipe("sciq_with_support", "allenai/sciq", ("train", "validation", "test"), None, (*SCIQ_COLUMNS, "support"),
           _render_sciq_support, pick=_pick_sciq, balance=True, default_n_test=3000,
           summary="SciQ with its support passage: is the answer (true or a distractor) correct"),
]}


# -------------------------------------------------------------------------------------------------- loader


class RecipeDataset(BaseDataset):
    """A named recipe loaded from the hub, from local data files, or from a local copy of the hub repository.

    :param data_files: local files in the hub's raw schema instead of the hub: ``{split = path or [paths]}`` with
        the recipe's hub split names (e.g. ``{train = "train.parquet", validation = "validation.parquet"}`` for
        ``boolq``); a single path means the (first) training split. ``.parquet``, ``.jsonl``/``.json`` or
        ``.csv``/``.tsv``, optionally compressed (``.gz``). Without the test split, the test rows are drawn from
        the training rows.
    :param path: a local copy of the hub repository (its main branch, or its ``refs/convert/parquet`` branch).
    :param hub_id: another hub id with the same schema (e.g. a mirror); default: the recipe's.
    :param revision: hub revision (branch, tag or commit); default: the recipe's (``refs/convert/parquet`` for
        datasets that were loading scripts).
    :param cache_dir: HF ``datasets`` cache directory (default: the ``datasets`` default; local files without it
        are read into memory through a temporary cache).
    :param format_seed: seed of the per-row coin flips (true or wrong answer) of the recipes that have them.
    :param balance: undersample the test split and the training pool to 50/50 (default: true for the
        EleutherAI/w2s recipes, as EleutherAI/w2s does, false for the openai/weak-to-strong ones).
    :param max_ctx: drop rows whose formatted text has ``max_ctx`` or more tokens of ``tokenizer`` (characters if no
        tokenizer is given), as the reference keeps ``len(input_ids) < max_ctx``.
    :param tokenizer: a ``transformers`` tokenizer (local directory or hub id) that ``max_ctx`` counts tokens of.
    :param n_train, n_test, test_seed: rows used, see :class:`w2s_harness.BaseDataset` (``n_test=None``: the whole
        test split).
    """

    recipe: Recipe

    def __init__(
        self,
        *,
        data_files: Any = None,
        path: str | None = None,
        hub_id: str | None = None,
        revision: str | None = None,
        cache_dir: str | None = None,
        format_seed: int = 0,
        balance: bool | None = None,
        max_ctx: int | None = None,
        tokenizer: str | None = None,
        n_train: int | None = None,
        n_test: int | None = None,
        test_seed: int = 0,
    ):
        r = self.recipe
        if n_test is None and r.test_split is None and r.default_n_test is not None:
            n_test = r.default_n_test
        super().__init__(n_train=n_train, n_test=n_test, test_seed=test_seed)
        owner = self.name
        self.source = HubTables(owner, hub=r.hub_id, config=r.config, splits=r.splits,
                                train_splits=list(r.train_splits), columns=list(r.raw_columns),
                                data_files=data_files, path=path, hub_id=hub_id, revision=revision,
                                default_revision=r.revision, cache_dir=cache_dir)
        if isinstance(format_seed, bool) or not isinstance(format_seed, (int, np.integer)) or format_seed < 0:
            raise ConfigError(f"dataset {owner!r}: format_seed must be an integer >= 0, got {format_seed!r}")
        self.format_seed = int(format_seed)
        if balance is not None and not isinstance(balance, bool):
            raise ConfigError(f"dataset {owner!r}: balance must be true or false, got {balance!r}")
        self.balance = r.balance if balance is None else balance
        self.balance_classes = self.balance
        if max_ctx is not None and (isinstance(max_ctx, bool) or not isinstance(max_ctx, (int, np.integer))
                                    or max_ctx < 1):
            raise ConfigError(f"dataset {owner!r}: max_ctx must be an integer >= 1 or omitted, got {max_ctx!r}")
        self.max_ctx = None if max_ctx is None else int(max_ctx)
        if tokenizer is not None and (not isinstance(tokenizer, (str, os.PathLike)) or not str(tokenizer)):
            raise ConfigError(f"dataset {owner!r}: tokenizer must be a string, got {tokenizer!r}")
        self.tokenizer = None if tokenizer is None else str(tokenizer)
        if self.tokenizer is not None and self.max_ctx is None:
            raise ConfigError(f"dataset {owner!r}: tokenizer is only used with max_ctx; set max_ctx too")
        self._replays: dict[str, tuple[random.Random, list]] = {}
        self._texts: dict[int, str] = {}
        self._tok = None

    def params(self) -> dict[str, Any]:
        source = self.source.params()
        return {**source, "format_seed": self.format_seed, "balance": self.balance, "max_ctx": self.max_ctx,
                "tokenizer": self.tokenizer}

    def _num_rows(self) -> int:
        return self.source.num_rows()

    def _test_candidates(self) -> np.ndarray | None:
        return self.source.split_rows(self.recipe.test_split)

    def _outcomes(self, rows: np.ndarray) -> list:
        """``(label, extra)`` or None per row (see :class:`Recipe`)."""
        r = self.recipe
        out: list = [None] * len(rows)
        for split, pos, local in self.source.groups(rows):
            if r.pick is None:
                values = [r.label(row) for row in self.source.read(split, local, list(r.label_columns))]
                got = [None if v is None else (int(v), None) for v in values]
            else:
                done = self._replay(split, int(local.max()) + 1)
                got = [done[i] for i in local]
            for p, g in zip(pos, got):
                out[p] = g
        return out

    def _replay(self, split: str, upto: int) -> list:
        """The coin decisions of rows ``[0, upto)`` of ``split``: one ``Random(format_seed)`` walked in row order."""
        r = self.recipe
        if split not in self._replays:
            self._replays[split] = (random.Random(self.format_seed), [])
        rng, done = self._replays[split]
        table = self.source.open()[split].select_columns(list(r.pick_columns)) if r.pick_columns else None
        while len(done) < upto:
            a = len(done)
            b = min(upto, a + REPLAY_BLOCK)
            batch = table[a:b] if table is not None else None
            for i in range(b - a):
                row = {c: batch[c][i] for c in r.pick_columns} if batch is not None else {}
                done.append(r.pick(row, rng))
        return done

    def _format(self, rows: np.ndarray, outcomes: list) -> list[str]:
        """Texts of ``rows`` (each with its outcome), formatting only those not formatted before."""
        r = self.recipe
        texts: list[str | None] = [self._texts.get(int(row)) for row in rows]
        todo = np.array([i for i, t in enumerate(texts) if t is None], dtype=np.int64)
        if len(todo):
            for split, pos, local in self.source.groups(np.asarray(rows)[todo]):
                for p, row in zip(pos, self.source.read(split, local, list(r.columns))):
                    i = todo[p]
                    label, extra = outcomes[i]
                    texts[i] = r.render(row, label, extra)
        return texts  # type: ignore[return-value]

    # ------------------------------------------------------------------------------- BaseDataset hooks

    def _keep_rows(self, rows: np.ndarray) -> np.ndarray:
        outcomes = self._outcomes(rows)
        keep = np.array([o is not None for o in outcomes], dtype=bool)
        if self.max_ctx is not None and keep.any():
            idx = np.flatnonzero(keep)
            sub = np.asarray(rows)[idx]
            texts = self._format(sub, [outcomes[i] for i in idx])
            for row, t in zip(sub, texts):
                self._texts[int(row)] = t
            keep[idx] = self._lengths(texts) < self.max_ctx
        return keep

    def _lengths(self, texts: list[str]) -> np.ndarray:
        if self.tokenizer is None:
            return np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        if self._tok is None:
            self._tok = load_tokenizer(self.tokenizer, self.name)
        ids = self._tok(list(texts))["input_ids"]
        return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))

    def _row_labels(self, rows: np.ndarray) -> np.ndarray:
        return np.array([o[0] for o in self._outcomes(rows)], dtype=np.int64)

    def _num_classes(self) -> int:
        return len(self.recipe.class_names)

    def _load_rows(self, rows: np.ndarray) -> TextData:
        outcomes = self._outcomes(rows)
        bad = [int(row) for row, o in zip(rows, outcomes) if o is None]
        if bad:  # only reachable if a subclass bypasses _keep_rows
            raise DataError(f"dataset {self.name!r}: row {bad[0]} cannot be formatted")
        texts = self._format(rows, outcomes)
        labels = np.array([o[0] for o in outcomes], dtype=np.int64)
        names = list(self.recipe.class_names)
        return TextData(texts, labels, names, fingerprint_examples(texts, labels, names))


def _class_name(name: str) -> str:
    return "Recipe_" + "".join(ch if ch.isalnum() else "_" for ch in name)


def recipe_class(recipe: Recipe) -> type[RecipeDataset]:
    """The registered factory of ``recipe``: a :class:`RecipeDataset` subclass bound to it."""
    qual = _class_name(recipe.name)
    cls = type(qual, (RecipeDataset,), {"recipe": recipe, "name": recipe.name, "__module__": __name__,
                                        "__qualname__": qual, "__doc__": f"{recipe.name}: {recipe.description()}"})
    return cls


#: One class per recipe, also module attributes (so instances pickle by reference).
RECIPE_CLASSES: dict[str, type[RecipeDataset]] = {}
for _recipe in RECIPES.values():
    RECIPE_CLASSES[_recipe.name] = globals()[_class_name(_recipe.name)] = recipe_class(_recipe)
del _recipe
