"""Named dataset recipes: the binary tasks of openai/weak-to-strong and EleutherAI/w2s, as a data catalogue.

A :class:`Recipe` says where a dataset lives (hub id, config, revision, split names), which raw columns it reads,
and how a raw row becomes a labelled text (its ``render`` and ``pick``/``label`` functions). One generic loader,
:class:`RecipeDataset`, handles them all: each registered dataset (``sciq``, ``boolq``, ...) is a subclass of it
bound to one recipe. Each recipe has its own code fingerprint (its row and the functions it calls, see
:meth:`Recipe.fingerprint`), so editing one recipe reruns only the stages of that dataset.

**Formats.** Per row, the texts and labels are the references' (docs/datasets.md lists each one): a recipe that
pairs a question with a candidate answer draws a coin (and a distractor) from a ``random.Random`` walked over the
rows in order, as the references' ``ds.map(formatter)`` does. A row the reference could not format (its answer
missing from its choices, a missing label) is dropped and draws nothing.

**Modes.** Which rows are used, in which order the coins are drawn and how the splits are cut is the ``mode``
parameter, one per reference (default: the recipe's own reference's):

* ``openai``: openai/weak-to-strong's ``load_dataset`` + ``train_simple.py``, per run seed ``s``: the first
  ``n_train`` / ``n_test`` rows of the training / test split, coins from ``Random(s)`` walked over those rows (one
  per split), ``shuffle(seed=s)``, halves ``train_test_split(test_size=0.5, seed=s)`` (train1 = its "train"),
  then ``max_ctx`` drops long texts from each part;
* ``eleuther``: EleutherAI/w2s's ``load_and_process_train_test`` as its ``run.py`` calls it, with data seed ``d``
  (0, or each run seed with ``data_seed = "run"``): ``shuffle(seed=d)`` of each whole split, coins from
  ``Random(d)`` in that order over every row, empty texts dropped, ``balance``, the first ``n_train + n_val`` /
  ``n_test`` rows, the first ``n_val`` held out (:meth:`RecipeDataset.val`), halves
  ``train_test_split(test_size=0.5, seed=42)``;
* ``fixed``: the rows are sampled once from ``test_seed`` by :class:`w2s_harness.BaseDataset` and the coins come
  from one ``Random(format_seed)`` per split over the whole split in row order, so the texts are the same for
  every run seed (only the halves change).

``shuffle`` and ``train_test_split`` are HF ``datasets``' permutations (:func:`shuffled`, :func:`train_test_split`,
checked against the library by the tests). In the two reference modes the texts and splits depend on the run seed:
the planner tells the dataset the run's seeds (:meth:`RecipeDataset.use_seeds`) and :meth:`RecipeDataset.load`
returns the union of their examples, each ``(row, coin outcome)`` once; :meth:`RecipeDataset.splits` indexes one
seed's parts into it. Only the rows used are formatted (``eleuther`` mode formats a whole split to drop its empty
texts, as EleutherAI/w2s does). Counts larger than a split take all of it, with one warning line.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from w2s_harness import (
    BaseDataset,
    ConfigError,
    DataError,
    Splits,
    TextData,
    check_bool,
    check_choice,
    check_int,
    check_path,
    fingerprint_examples,
)

from .hfsource import PARQUET_BRANCH, load_tokenizer
from .hubtables import HubTables
from .prompts import Prompt

OPENAI = "openai/weak-to-strong"
ELEUTHER = "EleutherAI/w2s"
#: Rows of coin decisions replayed per block (only the columns the decisions read).
REPLAY_BLOCK = 65_536

#: The reproduction modes (the ``mode`` parameter): as each reference chooses rows, coins and splits, or fixed.
OPENAI_MODE, ELEUTHER_MODE, FIXED = "openai", "eleuther", "fixed"
MODES = (OPENAI_MODE, ELEUTHER_MODE, FIXED)
#: ``data_seed = "run"``: EleutherAI mode with each run's seed instead of a fixed one.
RUN = "run"
#: EleutherAI/w2s's validation rows (``sft_config.py`` ``n_val``).
ELEUTHER_N_VAL = 1000
#: EleutherAI/w2s's seed of the train1/train2 halves (``run.py``: ``train_test_split(test_size=0.5, seed=42)``).
ELEUTHER_HALVES_SEED = 42
#: Seed of a test pool drawn from the training splits (EleutherAI/w2s's ``hf_loader(n_test=...)``: ``seed=0``).
POOL_SEED = 0
#: A test pool's size when neither the recipe nor ``n_test`` gives one (``datasets``' ``test_size`` fraction).
DEFAULT_POOL_FRAC = 0.2
#: The parts of one seed's data in ``openai`` / ``eleuther`` mode.
PARTS = ("train1", "train2", "test", "val")

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
    :param default_n_test: default ``n_test`` when the test split is drawn from the training rows; in ``openai`` /
        ``eleuther`` mode, the size of the test pool drawn from them (EleutherAI/w2s's fixed 3000 for sciq).
    :param eleuther_render: the ``render`` of ``eleuther`` mode, where EleutherAI/w2s's text differs (None: the
        same).
    :param eleuther_splits: ``eleuther`` mode: EleutherAI/w2s's registration of this name pools these splits and
        draws its test pool (``default_n_test`` rows) from them (``sciq``).
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
    eleuther_render: Callable[[Row, int, Any], str] | None = None
    eleuther_splits: tuple[str, ...] | None = None
    #: How a causal LM is prompted for this dataset (None: the default :class:`Prompt` over the class names).
    prompt: Prompt | None = None

    def fingerprint(self, function_digest: Callable[[Callable], str]) -> str:
        """Digest of this recipe: every field, a function as ``function_digest(fn)`` (its code and the module's
        functions and constants it uses), so editing this recipe's row or functions changes it, and another
        recipe's edit does not."""
        h = hashlib.sha256()
        for f in fields(self):
            if f.name == "prompt":
                # the prompt is not data: it changes no row or text, and the prompting stages hash it themselves
                # (their parameters), so editing it must not rerun the dataset's other stages
                continue
            value = getattr(self, f.name)
            text = f"fn:{function_digest(value)}" if callable(value) else repr(value)
            h.update(f"{f.name}={text}\n".encode())
        return h.hexdigest()[:16]

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


def shuffled(values: np.ndarray, seed: int) -> np.ndarray:
    """``values`` in the order ``datasets.Dataset.shuffle(seed=seed)`` gives a table's rows:
    ``np.random.default_rng(seed).permutation(len)`` (tests/test_reproduction_modes.py checks it against the
    library)."""
    values = np.asarray(values)
    return values[np.random.default_rng(seed).permutation(len(values))]


def train_test_split(values: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` as ``datasets.Dataset.train_test_split(test_size=test_size, seed=seed)`` cuts a table:
    ``ceil(test_size * n)`` rows (a float) or ``test_size`` rows (an int) of ``default_rng(seed).permutation(n)``
    for test, the rest for train, each in that permutation's order."""
    values = np.asarray(values)
    n = len(values)
    n_test = math.ceil(test_size * n) if isinstance(test_size, float) else int(test_size)
    perm = np.random.default_rng(seed).permutation(n)
    return values[perm[n_test:]], values[perm[:n_test]]


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


def _openbookqa(row: Row, label: int, extra: Any, letter: bool) -> str:
    letters, texts = list(row["choices"]["label"]), list(row["choices"]["text"])
    correct = letters.index(row["answerKey"])
    if label:
        answer = row["answerKey"] if letter else texts[correct]
    else:
        answer = (texts[:correct] + texts[correct + 1:])[extra]
    listed = "\n".join(f"{a}) {t}" for a, t in zip(letters, texts))
    return f"Q: {row['question_stem']}\n\nChoices:\n{listed}\n\nAnswer: {answer}"


def _render_openbookqa(row: Row, label: int, extra: Any) -> str:
    """The true answer shown as its text (``fixed`` and ``openai`` modes)."""
    return _openbookqa(row, label, extra, letter=False)


def _render_openbookqa_letter(row: Row, label: int, extra: Any) -> str:
    """EleutherAI/w2s's form (``eleuther`` mode): the true answer shown as its letter, a wrong one as its text, which
    gives the label away (docs/datasets.md)."""
    return _openbookqa(row, label, extra, letter=True)


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
           source=OPENAI, summary="Amazon reviews, '{title} {content}', negative/positive",
           prompt=Prompt("Review: {text}\nSentiment:", (" negative", " positive"))),
    Recipe("sciq", "allenai/sciq", ("train",), "test", SCIQ_COLUMNS, _render_sciq, pick=_pick_sciq,
           source=OPENAI, default_n_test=3000, eleuther_splits=("train", "validation", "test"), summary="SciQ, 'Q: {question} A: {answer}', correct answer or a random distractor",
           prompt=Prompt("{text}\nIs the answer correct? Answer:", (" no", " yes"))),
    Recipe("cosmos_qa", "allenai/cosmos_qa", ("train",), "validation",
           ("context", "question", "answer0", "answer1", "answer2", "answer3"), _render_cosmos, pick=_pick_cosmos,
           pick_columns=("answer0", "answer1", "answer2", "answer3", "label"), revision=PARQUET_BRANCH,
           source=OPENAI, summary="Cosmos QA, context + question + the true or another candidate answer"),
    Recipe("boolq", "google/boolq", ("train",), "validation", ("passage", "question"), _render_boolq,
           label=_label_boolq, label_columns=("answer",), source=OPENAI,
           summary="BoolQ, 'Passage: ...\\nQuestion: ...', answer false/true",
           prompt=Prompt("{text}\nAnswer:", (" no", " yes"))),
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
           summary="CoLA grammatical acceptability, the bare sentence",
           prompt=Prompt("Sentence: {text}\nIs this sentence grammatical? Answer:", (" no", " yes"))),
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
           balance=True, eleuther_render=_render_openbookqa_letter, summary="OpenBookQA: question + lettered choices + the true or a wrong answer text"),
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

    :param mode: how the rows, coins and splits are chosen (see the module docstring): ``"openai"`` (as
        openai/weak-to-strong, per run seed), ``"eleuther"`` (as EleutherAI/w2s) or ``"fixed"`` (rows sampled
        from ``test_seed``, coins from ``format_seed``: the same texts for every run seed). Default: the mode of
        the reference the recipe comes from.
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
    :param format_seed: ``fixed`` mode: seed of the per-row coin flips (default 0).
    :param data_seed: ``eleuther`` mode: the seed of the shuffle, the coins and the balancing: an integer (default
        0, as EleutherAI/w2s's ``run.py``, which passes none), or ``"run"`` for each run's seed.
    :param n_val: ``eleuther`` mode: rows held out of the training pool before the halves, as EleutherAI/w2s's
        validation set (default 1000); :meth:`val` returns them.
    :param balance: undersample to 50/50: ``fixed`` mode: the test split and the training pool (default: true for
        the EleutherAI/w2s recipes, false for the openai/weak-to-strong ones); ``eleuther`` mode: each whole split
        as EleutherAI/w2s does (default true); ``openai`` mode never balances.
    :param max_ctx: drop rows whose formatted text has ``max_ctx`` or more tokens of ``tokenizer`` (characters if no
        tokenizer is given), as openai/weak-to-strong keeps ``len(input_ids) < max_ctx``: from each of train1,
        train2 and test after the halves (``openai``, ``eleuther``), or while sampling (``fixed``).
    :param tokenizer: a ``transformers`` tokenizer (local directory or hub id) that ``max_ctx`` counts tokens of.
    :param n_train, n_test: rows used: ``openai``: the first ``n_train`` / ``n_test`` rows of the training / test
        split; ``eleuther``: the first ones after shuffling and balancing (``n_train`` besides the ``n_val``
        rows); ``fixed``: sampled from ``test_seed``, see :class:`w2s_harness.BaseDataset`. Default: all of them;
        more than a split has: all of them, with one warning line.
    :param test_seed: ``fixed`` mode: seed of the row sampling (default 0).
    """

    recipe: Recipe
    #: The top-level name of this module whose definition is the catalogue: each recipe's row and functions are
    #: fingerprinted on their own (:meth:`code_entry`), so editing one recipe reruns only its stages.
    code_catalogue = "RECIPES"

    def __init__(
        self,
        *,
        mode: str | None = None,
        data_files: Any = None,
        path: str | None = None,
        hub_id: str | None = None,
        revision: str | None = None,
        cache_dir: str | None = None,
        format_seed: int | None = None,
        data_seed: int | str | None = None,
        n_val: int | None = None,
        balance: bool | None = None,
        max_ctx: int | None = None,
        tokenizer: str | None = None,
        n_train: int | None = None,
        n_test: int | None = None,
        test_seed: int | None = None,
    ):
        r = self.recipe
        owner = self.name
        who = f"dataset {owner!r}"
        self.mode = check_choice(self.default_mode() if mode is None else mode, "mode", MODES, owner=who)
        fixed = self.mode == FIXED
        for key, value, where in (("format_seed", format_seed, FIXED), ("test_seed", test_seed, FIXED),
                                  ("data_seed", data_seed, ELEUTHER_MODE), ("n_val", n_val, ELEUTHER_MODE)):
            if value is not None and self.mode != where:
                raise ConfigError(f"dataset {owner!r}: {key} is a setting of mode = {where!r}, not of mode = "
                                  f"{self.mode!r}")
        if fixed and n_test is None and r.test_split is None and r.default_n_test is not None:
            n_test = r.default_n_test
        super().__init__(n_train=n_train, n_test=n_test, test_seed=0 if test_seed is None else test_seed)
        self.pooled = self.mode == ELEUTHER_MODE and r.eleuther_splits is not None
        train_splits = r.eleuther_splits if self.pooled else r.train_splits
        test_split = None if self.pooled else r.test_split
        self.train_splits, self.test_split = list(train_splits), test_split
        self.source = HubTables(owner, hub=r.hub_id, config=r.config,
                                splits=self.train_splits + ([test_split] if test_split else []),
                                train_splits=self.train_splits, columns=list(r.raw_columns),
                                data_files=data_files, path=path, hub_id=hub_id, revision=revision,
                                default_revision=r.revision, cache_dir=cache_dir)
        fs = check_int(0 if format_seed is None else format_seed, "format_seed", owner=who, lo=0)
        self.format_seed = fs if fixed else None
        ds = 0 if data_seed is None else data_seed
        if ds != RUN and (isinstance(ds, bool) or not isinstance(ds, (int, np.integer)) or ds < 0):
            raise ConfigError(f"dataset {owner!r}: data_seed must be an integer >= 0 or \"run\" (each run's seed), "
                              f"got {data_seed!r}")
        self.data_seed = (ds if ds == RUN else int(ds)) if self.mode == ELEUTHER_MODE else None
        nv = check_int(ELEUTHER_N_VAL if n_val is None else n_val, "n_val", owner=who, lo=0)
        self.n_val = nv if self.mode == ELEUTHER_MODE else None
        check_bool(balance, "balance", owner=who, optional=True)
        if balance and self.mode == OPENAI_MODE:
            raise ConfigError(f"dataset {owner!r}: mode = 'openai' never balances (openai/weak-to-strong does not); "
                              f"use mode = 'eleuther' or 'fixed' to balance")
        defaults = {FIXED: r.balance, OPENAI_MODE: False, ELEUTHER_MODE: True}
        self.balance = defaults[self.mode] if balance is None else balance
        self.balance_classes = self.balance and fixed
        self.max_ctx = check_int(max_ctx, "max_ctx", owner=who, lo=1, optional=True)
        self.tokenizer = check_path(tokenizer, "tokenizer", owner=who, optional=True,
                                    what="a tokenizer name or path")
        if self.tokenizer is not None and self.max_ctx is None:
            raise ConfigError(f"dataset {owner!r}: tokenizer is only used with max_ctx; set max_ctx too")
        self.render = (r.eleuther_render or r.render) if self.mode == ELEUTHER_MODE else r.render
        self._replays: dict[str, tuple[random.Random, list]] = {}
        self._texts: dict[Any, str] = {}
        self._tok = None
        # openai / eleuther modes: the data seeds prepared, each one's parts, their union
        self._seeds: list[int] | None = None
        self._parts: dict[int, dict[str, list[tuple[int, Any]]]] = {}
        self._union: list[tuple[int, Any]] | None = None
        self._index: dict[tuple[int, Any], int] = {}
        self._n_tokens: dict[tuple[int, Any], int] = {}

    @classmethod
    def default_mode(cls) -> str:
        """The mode of the reference a catalogue recipe comes from; ``fixed`` for another recipe (a subclass with
        its own recipe and fixed-mode hooks, e.g. ``lichess_puzzles_binary``)."""
        if RECIPES.get(cls.recipe.name) is not cls.recipe:
            return FIXED
        return OPENAI_MODE if cls.recipe.source == OPENAI else ELEUTHER_MODE

    @classmethod
    def code_entry(cls, hasher) -> dict[str, str]:
        """This recipe's own code fingerprint (its row and the functions it calls), for stage identities."""
        return {f"recipe:{cls.recipe.name}": cls.recipe.fingerprint(hasher.function)}

    def params(self) -> dict[str, Any]:
        source = self.source.params()
        return {**source, "mode": self.mode, "format_seed": self.format_seed, "data_seed": self.data_seed,
                "n_val": self.n_val, "balance": self.balance, "max_ctx": self.max_ctx, "tokenizer": self.tokenizer}

    # ----------------------------------------------------------------------------------- the run's seeds

    def use_seeds(self, seeds) -> None:
        if self.mode == FIXED:
            return
        wanted = sorted({self._data_seed(int(s)) for s in seeds})
        if wanted != self._seeds:
            self._seeds = wanted
            self._union, self._data = None, None

    def _data_seed(self, seed: int) -> int:
        if self.mode == OPENAI_MODE or self.data_seed == RUN:
            return seed
        return int(self.data_seed)

    def _prepared(self) -> list[int]:
        if self._seeds is None:  # not told: the seed a lone instance would use
            self._seeds = [self._data_seed(0)]
        return self._seeds

    def _check_seed(self, seed: int) -> int:
        d = self._data_seed(check_int(seed, "seed", owner=f"dataset {self.name!r}", lo=0))
        if d not in self._prepared():
            raise ConfigError(f"dataset {self.name!r} (mode {self.mode!r}) was prepared for seeds "
                              f"{', '.join(map(str, self._prepared()))}, not {seed}: its rows depend on the run seed; "
                              f"call use_seeds() with every run seed before load()")
        return d

    # ------------------------------------------------------------------------------- the protocol

    def load(self) -> TextData:
        if self.mode == FIXED:
            return super().load()
        if self._data is None:
            union = self._build()
            texts = self._texts_of(union)
            labels = np.array([o[0] for _, o in union], dtype=np.int64)
            names = list(self.recipe.class_names)
            data = TextData(texts, labels, names, fingerprint_examples(texts, labels, names))
            self._validate(data)
            self._data = data
        return self._data

    def splits(self, seed: int) -> Splits:
        if self.mode == FIXED:
            return super().splits(seed)
        d = self._check_seed(seed)
        self._build()
        parts = {p: np.sort(np.array([self._index[k] for k in self._parts[d].get(p, ())], dtype=np.int64))
                 for p in PARTS}
        if not len(parts["val"]):
            parts["val"] = None
        return Splits(**parts)

    def val(self, seed: int) -> TextData:
        """``eleuther`` mode: the ``n_val`` rows EleutherAI/w2s holds out of the training pool for validation
        (the first ones after balancing), formatted; they are in neither half nor the test split. They are also
        examples of :meth:`load` (at :attr:`Splits.val` of :meth:`splits`), so a feature model embeds them with the
        rest and the train stages select checkpoints on them. Other modes have none (an empty set)."""
        names = list(self.recipe.class_names)
        keys: list = []
        if self.mode == ELEUTHER_MODE:
            d = self._check_seed(seed)
            self._build()
            keys = list(self._parts[d]["val"])
        texts = self._texts_of(keys)
        labels = np.array([o[0] for _, o in keys], dtype=np.int64)
        return TextData(texts, labels, names, fingerprint_examples(texts, labels, names))

    def identity(self) -> dict[str, Any]:
        if self.mode == FIXED:
            return super().identity()
        self.load()
        h = hashlib.sha256()
        for d in self._prepared():
            for part in PARTS:
                idx = [self._index[k] for k in self._parts[d].get(part, ())]
                h.update(f"{d}:{part}:{idx!r}\n".encode())
        return {"name": self.name, **self.params(), "n_train": self.n_train, "n_test": self.n_test,
                "data_seeds": list(self._prepared()), "fingerprint": self.load().fingerprint,
                "splits": h.hexdigest()}

    def split_sizes(self, seed: int | None = None) -> tuple[int, int, int]:
        """``(n_train1, n_train2, n_test)``; in ``openai`` / ``eleuther`` mode, of ``seed`` (default: the first
        prepared one)."""
        if self.mode == FIXED:
            return super().split_sizes()
        s = self.splits(self._prepared()[0] if seed is None else seed)
        return len(s.train1), len(s.train2), len(s.test)

    def difficulty(self) -> np.ndarray:
        if self.mode == FIXED:
            return super().difficulty()
        raise DataError(f"dataset {self.name!r} has no difficulty values; set its difficulty_column (a numeric "
                        f"column) for an easy-to-hard split")

    def source_rows(self, val_seed: int | None = None) -> list[tuple[str, int]]:
        """``(hub split, row in that split)`` of every example of :meth:`load`, in order; with ``val_seed``, of
        :meth:`val` of that seed instead."""
        if val_seed is not None:
            keys = self._parts[self._check_seed(val_seed)]["val"] if self.mode == ELEUTHER_MODE else []
            rows = np.array([row for row, _ in keys], dtype=np.int64)
        elif self.mode == FIXED:
            rows = self._sampled()[0]
        else:
            rows = np.array([row for row, _ in self._build()], dtype=np.int64)
        out: list = [None] * len(rows)
        for split, pos, local in self.source.groups(rows):
            for p, i in zip(pos, local):
                out[p] = (split, int(i))
        return out

    # ------------------------------------------------------------------- openai / eleuther: the parts per seed

    def _build(self) -> list[tuple[int, Any]]:
        """The union of the prepared seeds' examples, ``(row, outcome)`` sorted by row, then outcome."""
        if self._union is None:
            notes: list[str] = []
            for d in self._prepared():
                if d not in self._parts:
                    self._parts[d] = self._seed_parts(d, notes)
            keys = {k for d in self._prepared() for p in PARTS for k in self._parts[d].get(p, ())}
            self._union = sorted(keys, key=lambda k: (k[0], repr(k[1])))
            self._index = {k: i for i, k in enumerate(self._union)}
            self.warn_short(list(dict.fromkeys(notes)))
        return self._union

    def _orders(self) -> tuple[tuple[str, np.ndarray], tuple[str, np.ndarray]]:
        """``((name, rows), (name, rows))`` of the training and the test split, global row ids in their order: the
        hub's, or, without a test split, EleutherAI/w2s's pool: ``train_test_split(test_size, seed=0)`` of the
        training splits concatenated (the test pool's size: the recipe's, else ``n_test``, else 20%)."""
        train = np.concatenate([self.source.split_rows(s) for s in self.train_splits])
        name = "+".join(self.train_splits)
        test = self.source.split_rows(self.test_split)
        if test is not None:
            return (name, train), (self.test_split, test)
        size = self.recipe.default_n_test or self.n_test or DEFAULT_POOL_FRAC
        if isinstance(size, int) and size + 2 > len(train):
            raise DataError(f"dataset {self.name!r}: a test pool of {size} rows leaves fewer than 2 of its "
                            f"{len(train)} rows for training")
        rest, pool = train_test_split(train, size, POOL_SEED)
        return (f"{name} without the test pool", rest), (f"test pool drawn from {name}", pool)

    def _seed_parts(self, seed: int, notes: list[str]) -> dict[str, list[tuple[int, Any]]]:
        """``{"train1", "train2", "test", "val": [(row, outcome), ...]}`` of data seed ``seed``."""
        (train_name, train), (test_name, test) = self._orders()
        if self.mode == OPENAI_MODE:
            train_rows = self._first(train, self.n_train, "n_train", f"rows in split {train_name!r}", notes)
            test_rows = self._first(test, self.n_test, "n_test", f"rows in split {test_name!r}", notes)
            train_rows, train_out = self._formatted(train_rows, seed)
            test_rows, test_out = self._formatted(test_rows, seed)
            train_rows = shuffled(train_rows, seed)  # load_dataset's ds.shuffle(seed=seed)
            t1, t2 = train_test_split(self._enough(train_rows), 0.5, seed)  # train_simple.py's halves
            val = train_rows[:0]
        else:
            n = None if self.n_train is None else self.n_train + self.n_val
            key = "n_train" if not self.n_val else f"n_train + n_val = {n}, n_train"
            train_rows, train_out = self._eleuther_split(train, seed, n, key, train_name, notes)
            test_rows, test_out = self._eleuther_split(test, seed, self.n_test, "n_test", test_name, notes)
            val, rest = train_rows[: self.n_val], train_rows[self.n_val:]
            if len(val) < self.n_val:
                notes.append(f"n_val={self.n_val} but only {len(val)} rows of split {train_name!r}")
            t1, t2 = train_test_split(self._enough(rest), 0.5, ELEUTHER_HALVES_SEED)  # run.py's halves
        outcomes = {**train_out, **test_out}
        parts = {"train1": t1, "train2": t2, "test": test_rows, "val": val}
        out = {p: [(int(r), outcomes[int(r)]) for r in rows] for p, rows in parts.items()}
        if self.max_ctx is not None:  # from each part, after the halves (train_simple.py's tokenize_dataset)
            for p in ("train1", "train2", "test"):
                keys = out[p]
                todo = [k for k in keys if k not in self._n_tokens]
                if todo:
                    self._n_tokens.update(zip(todo, self._lengths(self._texts_of(todo)).tolist()))
                out[p] = [k for k in keys if self._n_tokens[k] < self.max_ctx]
        for p in ("train1", "train2", "test"):
            if not out[p]:
                raise DataError(f"dataset {self.name!r}: {p} is empty for data seed {seed}"
                                + (f" after max_ctx={self.max_ctx}" if self.max_ctx is not None else ""))
        return out

    def _enough(self, rows: np.ndarray) -> np.ndarray:
        if len(rows) < 2:
            raise DataError(f"dataset {self.name!r}: fewer than 2 usable training rows ({len(rows)})")
        return rows

    @staticmethod
    def _first(order: np.ndarray, n: int | None, key: str, what: str, notes: list[str]) -> np.ndarray:
        if n is not None and n > len(order):
            notes.append(f"{key}={n} but only {len(order)} {what}")
        return order if n is None else order[:n]

    def _formatted(self, rows: np.ndarray, seed: int) -> tuple[np.ndarray, dict[int, Any]]:
        """``rows`` with their coins, one ``Random(seed)`` walked in their order; unformattable rows dropped."""
        outcomes = self._walk(rows, seed)
        keep = np.array([o is not None for o in outcomes], dtype=bool)
        return rows[keep], {int(r): o for r, o in zip(rows, outcomes) if o is not None}

    def _eleuther_split(self, order: np.ndarray, seed: int, n: int | None, key: str, name: str,
                        notes: list[str]) -> tuple[np.ndarray, dict[int, Any]]:
        """EleutherAI/w2s's ``load_and_process_train_test`` for one split: shuffle, coins in the shuffled order over
        every row, drop empty texts, balance, first ``n``."""
        rows, outcomes = self._formatted(shuffled(order, seed), seed)
        texts = self._texts_of([(int(r), outcomes[int(r)]) for r in rows], keep=False)
        rows = rows[np.array([t != "" for t in texts], dtype=bool)] if len(rows) else rows
        if self.balance:
            rows = self._balanced(rows, np.array([outcomes[int(r)][0] for r in rows], dtype=np.int64), seed, name)
        return self._first(rows, n, key, f"rows of split {name!r} after balancing" if self.balance else
                           f"rows in split {name!r}", notes), outcomes

    def _balanced(self, rows: np.ndarray, labels: np.ndarray, seed: int, name: str) -> np.ndarray:
        """EleutherAI/w2s's ``balance``: the minority class's rows in order, then as many of the majority's,
        shuffled, and the two shuffled together."""
        first = list(dict.fromkeys(labels.tolist()))  # classes in order of first appearance (a Counter's order)
        if len(first) != 2:
            raise DataError(f"dataset {self.name!r}: split {name!r} has {len(first)} class(es) "
                            f"({', '.join(map(str, first))}); balancing needs both")
        counts = {c: int((labels == c).sum()) for c in first}
        majority = max(first, key=lambda c: counts[c])
        minority = 1 - majority
        kept = shuffled(rows[labels == majority], seed)[: counts[minority]]
        return shuffled(np.concatenate([rows[labels == minority], kept]), seed)

    def _walk(self, rows: np.ndarray, seed: int) -> list:
        """The outcome ``(label, extra)`` or None of each of ``rows`` (global ids, in this order): one
        ``random.Random(seed)`` walked over them in order, as the references' ``ds.map(formatter)``."""
        r = self.recipe
        if r.pick is None:
            return [None if v is None else (int(v), None) for v in
                    (r.label(row) for row in self._read(rows, list(r.label_columns)))]
        rng = random.Random(seed)
        return [r.pick(row, rng) for row in self._read(rows, list(r.pick_columns))]

    def _read(self, rows: np.ndarray, columns: list[str]) -> Iterator[Row]:
        """The raw ``columns`` of ``rows`` (global ids), in that order, read in blocks."""
        rows = np.asarray(rows, dtype=np.int64)
        for a in range(0, len(rows), REPLAY_BLOCK):
            block = rows[a:a + REPLAY_BLOCK]
            out: list = [{} for _ in block]
            if columns:
                for split, pos, local in self.source.groups(block):
                    for p, row in zip(pos, self.source.read(split, local, columns)):
                        out[p] = row
            yield from out

    def _texts_of(self, keys: list, keep: bool = True) -> list[str]:
        """Texts of ``(row, outcome)`` examples (memoised when ``keep``)."""
        texts: list = [self._texts.get(k) for k in keys]
        todo = [i for i, t in enumerate(texts) if t is None]
        if todo:
            rows = np.array([keys[i][0] for i in todo], dtype=np.int64)
            for i, row in zip(todo, self._read(rows, list(self.recipe.columns))):
                label, extra = keys[i][1]
                texts[i] = self.render(row, label, extra)
                if keep:
                    self._texts[keys[i]] = texts[i]
        return texts

    # ------------------------------------------------------------------------ fixed mode (BaseDataset hooks)

    def _num_rows(self) -> int:
        return self.source.num_rows()

    def _test_candidates(self) -> np.ndarray | None:
        return self.source.split_rows(self.test_split)

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
                    texts[i] = self.render(row, label, extra)
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
    cls = type(qual, (RecipeDataset,), {"recipe": recipe, "name": recipe.name, "prompt": recipe.prompt,
                                        "__module__": __name__,
                                        "__qualname__": qual, "__doc__": f"{recipe.name}: {recipe.description()}"})
    return cls


#: One class per recipe, also module attributes (so instances pickle by reference).
RECIPE_CLASSES: dict[str, type[RecipeDataset]] = {}
for _recipe in RECIPES.values():
    RECIPE_CLASSES[_recipe.name] = globals()[_class_name(_recipe.name)] = recipe_class(_recipe)
del _recipe
