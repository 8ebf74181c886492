"""Easy-to-hard splits: weak supervision from the easy rows of a dataset, evaluation on its hard rows.

A ``[dataset]`` table with difficulty thresholds runs twice, side by side: once on the usual seeded split
(``split = "random"``) and once on its easy-to-hard restriction (``split = "easy-to-hard"``)::

    [dataset]
    name = "local"
    path = "reviews.csv"
    difficulty_column = "rating"   # the dataset's own parameter: where its difficulty comes from
    easy_max = 1200                # easy: rating <= 1200 (or easy_quantile = 0.3)
    hard_min = 1800                # hard: rating >= 1800 (or hard_quantile = 0.7)

For seed ``s`` the easy-to-hard split is cut from the usual split of seed ``s``: **train1** and **train2** keep
their easy rows (``difficulty <= easy_max``), **test** keeps its hard rows (``difficulty >= hard_min``); rows in
between are used by neither. So the weak model trains on easy train1, labels easy train2, the ceiling and the
transfer train on easy train2, and all three are scored on the hard test rows. Every part is a subset of the same
part of the usual split, so the split is exactly as reproducible (``test_seed`` for the test rows and the training
pool, the run seed for train1/train2).

A quantile threshold (``easy_quantile`` / ``hard_quantile`` in [0, 1]) is the value of that quantile of the
difficulty over every row the run uses (its test split and training pool; linear interpolation, as
``numpy.quantile``), so it is the same for every seed. Each side takes a value or a quantile, not both.

The thresholds are the run's (the dataset's factory never sees them); the difficulty itself is the dataset's:
:meth:`BaseDataset.difficulty <w2s_harness.BaseDataset.difficulty>`, from its ``difficulty_column`` parameter
(``local`` files and choice files: any numeric column; ``lichess_puzzles``: the puzzle rating by default).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .._contracts.errors import ConfigError, DataError
from .._contracts.validate import check_number

#: The ``[dataset]`` keys that configure an easy-to-hard split (the dataset's own factory never sees them).
KEYS = ("easy_max", "hard_min", "easy_quantile", "hard_quantile")
#: ``split`` of the rows of results.json: the usual seeded split, and its easy-to-hard restriction.
RANDOM, EASY_TO_HARD = "random", "easy-to-hard"


def _number(owner: str, key: str, value: Any, lo: float | None = None, hi: float | None = None) -> float | None:
    return check_number(value, key, owner=f"dataset {owner!r}", lo=lo, hi=hi, optional=True)


@dataclass(frozen=True)
class DifficultySplit:
    """The easy-to-hard settings of one dataset (validated by :meth:`from_params`); ``column`` is the dataset's
    ``difficulty_column`` (``None``: its default difficulty), for messages."""

    column: str | None
    easy_max: float | None = None
    hard_min: float | None = None
    easy_quantile: float | None = None
    hard_quantile: float | None = None

    @classmethod
    def from_params(cls, owner: str, params: dict[str, Any]) -> DifficultySplit | None:
        """The settings in a ``[dataset]`` table's ``params`` (``None`` when it has no threshold); a one-line
        :class:`ConfigError` for a bad or missing threshold."""
        given = {k: params[k] for k in KEYS if params.get(k) is not None}
        if not given:
            return None
        column = params.get("difficulty_column")
        column = column if isinstance(column, str) and column else None
        easy_max = _number(owner, "easy_max", given.get("easy_max"))
        hard_min = _number(owner, "hard_min", given.get("hard_min"))
        easy_q = _number(owner, "easy_quantile", given.get("easy_quantile"), 0.0, 1.0)
        hard_q = _number(owner, "hard_quantile", given.get("hard_quantile"), 0.0, 1.0)
        for side, value, quantile in (("easy", easy_max, easy_q), ("hard", hard_min, hard_q)):
            key = "easy_max" if side == "easy" else "hard_min"
            if value is not None and quantile is not None:
                raise ConfigError(f"dataset {owner!r}: give {key} or {side}_quantile, not both")
            if value is None and quantile is None:
                raise ConfigError(f"dataset {owner!r}: an easy-to-hard split needs the {side} threshold too: "
                                  f"{key} = <value> or {side}_quantile = <0..1>")
        if easy_max is not None and hard_min is not None and easy_max >= hard_min:
            raise ConfigError(f"dataset {owner!r}: easy_max ({easy_max:g}) must be below hard_min ({hard_min:g})")
        if easy_q is not None and hard_q is not None and easy_q >= hard_q:
            raise ConfigError(f"dataset {owner!r}: easy_quantile ({easy_q:g}) must be below hard_quantile "
                              f"({hard_q:g})")
        return cls(column, easy_max, hard_min, easy_q, hard_q)

    def as_dict(self) -> dict[str, Any]:
        return {"easy_max": self.easy_max, "hard_min": self.hard_min, "easy_quantile": self.easy_quantile,
                "hard_quantile": self.hard_quantile}


def dataset_params(component) -> dict[str, Any]:
    """The parameters of a ``[dataset]`` component its factory receives (the easy-to-hard keys removed)."""
    return {k: v for k, v in component.params.items() if k not in KEYS}


def split_of(component) -> str:
    """``"easy-to-hard"`` for a component with easy-to-hard thresholds, else ``"random"``."""
    return EASY_TO_HARD if any(component.params.get(k) is not None for k in KEYS) else RANDOM


def parts(component) -> list:
    """The dataset components a run makes of one ``[dataset]`` table: ``[component]``, or, with easy-to-hard
    thresholds, the usual split (the thresholds removed) followed by the easy-to-hard one."""
    split = DifficultySplit.from_params(component.name, component.params)
    if split is None:
        return [component]
    usual = copy.deepcopy(component)
    usual.params = dataset_params(component)
    return [usual, copy.deepcopy(component)]


def create(pm, component, seeds=None) -> Any:
    """The dataset instance of a component: the registered factory's, wrapped in :class:`EasyToHard` when the
    component has easy-to-hard thresholds. ``seeds`` (the run's) are told to the dataset before anything loads
    (``use_seeds``), so every process that creates it for a run (the planner, each run context) gets the same
    rows."""
    dataset = pm.create("dataset", component.name, **dataset_params(component))
    use = getattr(dataset, "use_seeds", None)
    if seeds is not None and callable(use):
        use(list(seeds))
    split = DifficultySplit.from_params(component.name, component.params)
    return dataset if split is None else EasyToHard(dataset, split)


class EasyToHard:
    """A dataset whose splits are the easy-to-hard restriction of another dataset's (see the module docstring).

    It serves the same rows (:meth:`load`, so the same cached features) and adds its settings to
    :meth:`identity`, so its stages never share an id with the usual split's.
    """

    def __init__(self, inner: Any, split: DifficultySplit):
        self.inner = inner
        self.split = split
        self.name = inner.name
        self._thresholds: tuple[float, float] | None = None
        self._values = None

    def load(self):
        return self.inner.load()

    def identity(self) -> dict[str, Any]:
        return {**self.inner.identity(), "split": {"kind": EASY_TO_HARD, **self.split.as_dict()}}

    def difficulty(self):
        """The difficulty of every row of :meth:`load` (float64)."""
        if self._values is None:
            getter = getattr(self.inner, "difficulty", None)
            if getter is None:
                raise DataError(f"dataset {self.name!r} has no difficulty (it does not implement difficulty()); "
                                f"remove the easy-to-hard thresholds")
            self._values = getter()
        return self._values

    def thresholds(self) -> tuple[float, float]:
        """``(easy_max, hard_min)``: the configured values, or the configured quantiles of :meth:`difficulty`."""
        if self._thresholds is None:
            import numpy as np

            d = self.difficulty()
            s = self.split
            easy = s.easy_max if s.easy_max is not None else float(np.quantile(d, s.easy_quantile))
            hard = s.hard_min if s.hard_min is not None else float(np.quantile(d, s.hard_quantile))
            if easy >= hard:
                raise DataError(
                    f"dataset {self.name!r}: the easy threshold ({easy:g}) is not below the hard one ({hard:g}) "
                    f"(tied difficulties at the quantiles); set easy_max / hard_min instead")
            self._thresholds = (easy, hard)
        return self._thresholds

    def splits(self, seed: int):
        from .._contracts.components import Splits

        usual = self.inner.splits(seed)
        d = self.difficulty()
        easy, hard = self.thresholds()
        out = Splits(train1=usual.train1[d[usual.train1] <= easy], train2=usual.train2[d[usual.train2] <= easy],
                     test=usual.test[d[usual.test] >= hard])
        col = self.split.column or "difficulty"
        for part, rows, rule, fix in (("train1", out.train1, f"{col} <= {easy:g}", "raise easy_max"),
                                      ("train2", out.train2, f"{col} <= {easy:g}", "raise easy_max"),
                                      ("test", out.test, f"{col} >= {hard:g}", "lower hard_min or raise n_test")):
            if len(rows) == 0:
                raise DataError(f"dataset {self.name!r}: the easy-to-hard split leaves {part} empty for seed {seed} "
                                f"(no row with {rule}); {fix}")
        return out

    def split_sizes(self, seed: int = 0) -> tuple[int, int, int]:
        """``(n_train1, n_train2, n_test)`` of the easy-to-hard split of ``seed`` (they vary with the seed)."""
        s = self.splits(seed)
        return len(s.train1), len(s.train2), len(s.test)

    def __getattr__(self, name: str):
        # anything else (a choice dataset's extras, split_sizes, ...) is the wrapped dataset's
        if name == "inner" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"EasyToHard({self.inner!r}, {self.split})"


def labels(components: list) -> list[str]:
    """The dataset label of each part of a run (``per_dataset`` order): the dataset's name, ``name#i`` when the
    run names one dataset twice, and ``[easy-to-hard]`` after the easy-to-hard part's."""
    usual = [c.name for c in components if split_of(c) == RANDOM]
    out, i = [], 0
    for c in components:
        if split_of(c) == RANDOM:
            i += 1
            base = c.name if usual.count(c.name) == 1 else f"{c.name}#{i}"
            out.append(base)
        else:
            base = out[-1] if out else c.name
            out.append(f"{base}[{EASY_TO_HARD}]")
    return out
