"""Choice tasks: an example is a prompt and ``n`` candidates, and the model picks one.

The model scores each (prompt, candidate) pair with one scalar head shared by every candidate, and the ``n``
scores are the logits of an ``n``-way softmax (for ``n = 2`` this is the Bradley-Terry model of a preference:
``P(a over b) = sigmoid(s_a - s_b)``). The rest of the harness sees an ordinary ``n``-class task:

* :class:`ChoiceData` is a :class:`~w2s_harness.TextData` whose class ``j`` is "candidate ``j`` (in the order
  shown) is the correct one": ``labels`` are positions, ``class_names`` are ``1 .. n``, and weak labels are the
  weak scorer's candidate probabilities ``(N, n)``. So every loss, strategy, accuracy (the best-scored candidate is
  the correct one) and PGR applies unchanged.
* :class:`ChoiceDataset` (a :class:`~w2s_harness.BaseDataset`) turns a subclass's :class:`Choice` rows (prompt,
  candidates, index of the correct one) into that form, shuffling each row's candidates with a generator seeded
  by ``(shuffle_seed, row id)``: the correct candidate's position is uniform and carries no label.
* Frozen features: each (prompt, candidate) text is embedded once (:meth:`ChoiceData.pair_table` deduplicates
  them; the feature cache is keyed by their fingerprint) and the inputs of a stage are ``(N, n, d)``;
  :func:`choice_module` wraps the model's own head built with one output, so a candidate's score is that head on
  its pooled features. Fine-tuning: the model's own classifier with one output scores the flattened ``N * n``
  texts (a causal LM reads the last token, as it does for classification).
* ``solver = "lbfgs"``: ``_engine.probe.fit_lbfgs_choice`` (the training side: ``_engine.probe.fit_lbfgs``) minimises the configured loss of the softmax over the shared
  scores plus ``||w||^2 / 2`` in scikit-learn's ``C`` convention, on features standardised over every
  (example, candidate) row. A bias is the same for every candidate and cancels in the softmax, so the solve has
  none (for ``n = 2`` with ``xent`` this is logistic regression without intercept on the differences
  ``x_a - x_b``).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._contracts.components import TextData
from .._contracts.errors import ConfigError, DataError, InputError
from .._contracts.validate import check_int, check_str
from .datasets import BaseDataset

#: How a (prompt, candidate) pair becomes the one text the model scores, unless a dataset says otherwise.
DEFAULT_PAIR_TEMPLATE = "{prompt}\n{candidate}"
#: Salt of the per-row candidate shuffle (so it is independent of every other seeded draw of a row).
_SHUFFLE_SALT = 0x63686F


@dataclass(frozen=True)
class Choice:
    """One raw choice example, as a dataset reads it (before shuffling).

    :param prompt: the shared context (a question, a dialogue so far, a chess position).
    :param candidates: the ``n >= 2`` candidate continuations, distinct.
    :param correct: index of the correct (preferred) candidate in ``candidates``.
    :param difficulty: an optional number (e.g. a puzzle rating) for easy-to-hard splits.
    """

    prompt: str
    candidates: tuple[str, ...]
    correct: int
    difficulty: float | None = None


def choice_class_names(n: int) -> list[str]:
    """Class names of an ``n``-candidate task: the shown positions ``"1" .. "n"``."""
    return [str(i + 1) for i in range(n)]


def _hash_texts(h, texts: Sequence[str]) -> None:
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)


def choice_fingerprint(prompts: Sequence[str], pairs: Sequence[Sequence[str]], labels: np.ndarray,
                       class_names: Sequence[str]) -> str:
    """sha256 (hex) of the prompts, every scored pair text (in shown order), the labels and the class names."""
    h = hashlib.sha256(b"choice-v1")
    h.update(repr(list(class_names)).encode())
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    _hash_texts(h, prompts)
    for p in pairs:
        h.update(len(p).to_bytes(4, "little"))
        _hash_texts(h, p)
    return h.hexdigest()


@dataclass
class ChoiceData(TextData):
    """A choice task in the form every stage reads: ``texts[i]`` is example ``i``'s prompt, ``pairs[i]`` the ``n``
    texts the model scores (prompt and each candidate, in the order shown), ``labels[i]`` the position of the
    correct one, ``class_names`` the positions ``"1" .. "n"``. ``difficulty`` (optional, ``(N,)`` float, NaN where
    unknown) travels with the rows."""

    pairs: list[tuple[str, ...]] = field(default_factory=list)
    difficulty: np.ndarray | None = None

    @property
    def n_candidates(self) -> int:
        return len(self.class_names)

    def take(self, rows: np.ndarray) -> ChoiceData:
        """The examples ``rows``, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        texts = [self.texts[i] for i in rows]
        pairs = [self.pairs[i] for i in rows]
        labels = np.asarray(self.labels)[rows]
        diff = None if self.difficulty is None else np.asarray(self.difficulty)[rows]
        names = list(self.class_names)
        return ChoiceData(texts, labels, names, choice_fingerprint(texts, pairs, labels, names), pairs, diff)

    @functools.cached_property
    def _table(self) -> tuple[TextData, np.ndarray]:
        index: dict[str, int] = {}
        ids = np.empty((len(self.pairs), self.n_candidates), dtype=np.int64)
        for i, p in enumerate(self.pairs):
            for j, t in enumerate(p):
                ids[i, j] = index.setdefault(t, len(index))
        texts = list(index)
        h = hashlib.sha256(b"choice-pairs-v1")
        _hash_texts(h, texts)
        table = TextData(texts, np.zeros(len(texts), dtype=np.int64), ["pair"], h.hexdigest())
        return table, ids

    def pair_table(self) -> tuple[TextData, np.ndarray]:
        """``(distinct pair texts as a TextData, (N, n) index into it)``: what a frozen-feature model embeds (each
        distinct text once; its fingerprint keys the feature cache)."""
        return self._table


def is_choice(data: Any) -> bool:
    """Whether ``data`` is a choice task (:class:`ChoiceData`)."""
    return isinstance(data, ChoiceData)


def shuffle_order(n: int, seed: int, row: int) -> np.ndarray:
    """The shown order of row ``row``'s ``n`` candidates: ``order[j]`` is the raw candidate shown at position
    ``j``; a permutation drawn from ``(seed, row)`` alone, so a row's order does not depend on the other rows."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(row), _SHUFFLE_SALT]))
    return rng.permutation(n)


def check_template(owner: str, template: Any) -> str:
    """``template`` if it is a ``str.format`` template naming ``{prompt}`` and ``{candidate}``, else a ConfigError."""
    check_str(template, "pair_template", owner=f"dataset {owner!r}", non_empty=False)
    try:
        template.format(prompt="", candidate="")
    except (IndexError, KeyError, ValueError) as exc:
        raise ConfigError(f"dataset {owner!r}: pair_template {template!r} may only use {{prompt}} and "
                          f"{{candidate}} ({exc})") from None
    if "{candidate}" not in template:
        raise ConfigError(f"dataset {owner!r}: pair_template {template!r} must contain {{candidate}}")
    return template


class ChoiceDataset(BaseDataset):
    """A dataset of choice examples: a subclass reads :class:`Choice` rows, this class shuffles and formats them.

    A subclass implements either :meth:`_all_choices` (every row at once) or the row-level pair :meth:`_num_rows`
    + :meth:`_choices` (only the rows a run uses). A row the subclass cannot use returns ``None`` and is skipped,
    as is a row whose candidates are not distinct (a "preference" between identical texts carries no label).

    :param pair_template: how a (prompt, candidate) pair becomes the scored text (default
        :data:`DEFAULT_PAIR_TEMPLATE`, the prompt, a newline and the candidate).
    :param shuffle_seed: seed of the per-row candidate order.
    :param n_train: examples for train1 + train2, see :class:`~w2s_harness.BaseDataset` (also ``n_test``,
        ``test_seed``).
    """

    #: Candidates per example (``None``: taken from the rows; all rows must then have the same number).
    n_candidates: int | None = None
    default_pair_template: str = DEFAULT_PAIR_TEMPLATE

    def __init__(self, *, pair_template: str | None = None, shuffle_seed: int = 0, n_train: int | None = None,
                 n_test: int | None = None, test_seed: int = 0):
        super().__init__(n_train=n_train, n_test=n_test, test_seed=test_seed)
        self.pair_template = check_template(self.name, self.default_pair_template if pair_template is None
                                            else pair_template)
        self.shuffle_seed = check_int(shuffle_seed, "shuffle_seed", owner=f"dataset {self.name!r}", lo=0)
        self._rows_memo: dict[int, Choice | None] = {}
        self._every: list[Choice | None] | None = None

    # ---------------------------------------------------------------------------- for subclasses

    def _all_choices(self) -> list[Choice | None]:
        """Every row (``None`` for an unusable one). Implement this, or :meth:`_num_rows` + :meth:`_choices`."""
        raise NotImplementedError(f"{type(self).__name__} must implement _all_choices() (or _num_rows() and "
                                  f"_choices())")

    def _choices(self, rows: np.ndarray) -> list[Choice | None]:
        """The rows ``rows`` (sorted, distinct ids), ``None`` where unusable. Default: from :meth:`_all_choices`."""
        every = self._every_choice()
        return [every[int(r)] for r in rows]

    def _num_rows(self) -> int:
        return len(self._every_choice())

    def choice_params(self) -> dict[str, Any]:
        """The subclass's own content parameters (extend; :meth:`params` adds the template and shuffle seed)."""
        return {}

    # ---------------------------------------------------------------------------------- internals

    def params(self) -> dict[str, Any]:
        return {**self.choice_params(), "pair_template": self.pair_template, "shuffle_seed": self.shuffle_seed,
                "format": "choice-v1"}

    def _every_choice(self) -> list[Choice | None]:
        if self._every is None:
            self._every = list(self._all_choices())
        return self._every

    def _get(self, rows: np.ndarray) -> list[Choice | None]:
        rows = np.asarray(rows, dtype=np.int64)
        todo = np.array(sorted({int(r) for r in rows if int(r) not in self._rows_memo}), dtype=np.int64)
        if len(todo):
            got = self._choices(todo)
            if len(got) != len(todo):
                raise DataError(f"dataset {self.name!r}: _choices returned {len(got)} rows for {len(todo)}")
            for r, c in zip(todo, got):
                self._rows_memo[int(r)] = self._usable(c)
        return [self._rows_memo[int(r)] for r in rows]

    def _usable(self, c: Choice | None) -> Choice | None:
        if c is None:
            return None
        n = len(c.candidates)
        if n < 2 or len(set(c.candidates)) != n or not 0 <= int(c.correct) < n:
            return None
        if self.n_candidates is not None and n != self.n_candidates:
            return None
        return c

    def _keep_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.array([c is not None for c in self._get(rows)], dtype=bool)

    def _row_labels(self, rows: np.ndarray) -> np.ndarray:
        got = self._get(rows)
        return np.array([int(np.flatnonzero(shuffle_order(len(c.candidates), self.shuffle_seed, r) == c.correct)[0])
                         for r, c in zip(rows, got)], dtype=np.int64)

    def _num_classes(self) -> int:
        if self.n_candidates is not None:
            return self.n_candidates
        return self._load_all().n_classes  # pragma: no cover - balance needs a fixed n

    def _load(self) -> TextData:  # only reached through BaseDataset defaults a choice dataset overrides
        return self._load_rows(np.arange(self._num_rows()))

    def _load_rows(self, rows: np.ndarray) -> ChoiceData:
        rows = np.asarray(rows, dtype=np.int64)
        got = self._get(rows)
        bad = [int(r) for r, c in zip(rows, got) if c is None]
        if bad:
            raise DataError(f"dataset {self.name!r}: row {bad[0]} is not a usable choice (fewer than 2 distinct "
                            f"candidates, or no correct one)")
        sizes = {len(c.candidates) for c in got}
        if len(sizes) > 1:
            raise DataError(f"dataset {self.name!r}: rows have {sorted(sizes)} candidates; every example of a choice "
                            f"task needs the same number")
        n = sizes.pop() if sizes else (self.n_candidates or 2)
        prompts, pairs, labels, diff = [], [], np.empty(len(rows), dtype=np.int64), []
        for i, (r, c) in enumerate(zip(rows, got)):
            order = shuffle_order(n, self.shuffle_seed, int(r))
            prompts.append(c.prompt)
            pairs.append(tuple(self.pair_template.format(prompt=c.prompt, candidate=c.candidates[k]) for k in order))
            labels[i] = int(np.flatnonzero(order == int(c.correct))[0])
            diff.append(np.nan if c.difficulty is None else float(c.difficulty))
        names = choice_class_names(n)
        difficulty = np.asarray(diff, dtype=np.float64) if any(c.difficulty is not None for c in got) else None
        return ChoiceData(prompts, labels, names, choice_fingerprint(prompts, pairs, labels, names), pairs,
                          difficulty)

    def _row_difficulty(self, rows: np.ndarray) -> np.ndarray | None:
        """The :attr:`Choice.difficulty` of ``rows`` (NaN where unknown) for easy-to-hard splits; ``None`` when no
        row has one."""
        got = self._get(rows)
        if all(c is None or c.difficulty is None for c in got):
            return None
        return np.array([np.nan if c is None or c.difficulty is None else float(c.difficulty) for c in got],
                        dtype=np.float64)


# ------------------------------------------------------------------------------------------------- modules


@functools.cache
def _module_classes():
    import torch

    class ChoiceHead(torch.nn.Module):
        """``(B, n, d)`` features -> ``(B, n)`` scores: one scorer ``(d -> 1)`` shared by every candidate."""

        choice_head = True

        def __init__(self, scorer):
            super().__init__()
            self.scorer = scorer

        def forward(self, x):
            return self.scorer(x).squeeze(-1)

    class ChoiceScorer(torch.nn.Module):
        """``[(t_1, ..., t_n), ...]`` -> ``(B, n)`` scores: a one-output text classifier on the flattened texts."""

        def __init__(self, scorer):
            super().__init__()
            self.scorer = scorer

        def forward(self, items):
            items = list(items)
            if not items:
                raise InputError("choice scorer: no examples")
            n = len(items[0])
            flat = [t for item in items for t in item]
            return self.scorer(flat).reshape(len(items), n)

    return ChoiceHead, ChoiceScorer


def choice_module(model: Any, n: int, in_features: int | None, device: Any):
    """The trainable module of a choice task with ``n`` candidates: the model's own head (``in_features`` given:
    cached features) or classifier (fine-tuning), built with ONE output and shared by the candidates."""
    head_cls, scorer_cls = _module_classes()
    if in_features is not None:
        return head_cls(model.head(1, in_features, device))
    return scorer_cls(model.classifier(1, device))


def is_choice_head(module: Any) -> bool:
    return bool(getattr(module, "choice_head", False))


__all__ = [
    "Choice",
    "ChoiceData",
    "ChoiceDataset",
    "choice_class_names",
    "choice_fingerprint",
    "choice_module",
    "is_choice",
    "shuffle_order",
]
