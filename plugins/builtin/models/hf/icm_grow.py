"""ICM's growing search (``icm-labels`` with ``init = "grow"``): the procedure of the reference implementation of
Wen et al. 2025, "Unsupervised Elicitation of Language Models", rather than a fixed set labelled at random.

* **Start**: ``n_seed`` rows get random labels, balanced over the classes (the reference: 8, half of each); every
  other search row is unlabelled.
* **Step**: a row ``i`` is drawn uniformly; its proposed label is the one the LM predicts for it from the
  labelled rows in its context. If the row already has that label the step changes nothing; otherwise (a new row
  joins the labelled set, or a labelled row flips) the labelling is scored and accepted by Metropolis:
  always when the score rises, else with probability ``exp(delta / T_n)``, ``T_n`` the paper's schedule
  (:meth:`ICMSearch.temperature <w2s_harness.plugins.models.hf.elicit.ICMSearch.temperature>`).
* **Score**: ``alpha * mean over the labelled rows i of log P(y_i | x_i, C_i)``. The MEAN, as the reference code
  scores (a sum would fall with every row added, so the set could not grow); ``P`` is normalised over the
  classes.
* **Context** ``C_i``: the first ``n_context`` LABELLED rows of a fixed random order of the other search rows
  (drawn once per seed), so it fills up as the set grows; conditionals are memoised by the context's rows and
  labels.
* **Result**: the last state (the best one visited is meaningless here: a mean over two lucky rows beats one
  over all of them). Rows the search never labelled are left out of the found labels.

Consistency ``I`` is 0 as in the fixed search (see :mod:`.elicit`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

#: ``cond(requests) -> one (k,) array of log-probabilities per request``; a request is ``(i, ((j, y_j), ...))``:
#: the row and its context rows with their labels, in order.
GrowCond = Callable[[Sequence[tuple[int, tuple[tuple[int, int], ...]]]], Any]


def sample_orders(n: int, rng) -> list[tuple[int, ...]]:
    """For each of ``n`` rows, the other rows in a random order (a row's context is read from its front)."""
    out = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        out.append(tuple(others[p] for p in rng.permutation(len(others))))
    return out


def seed_labels(n_seed: int, n_classes: int, rng) -> list[int]:
    """``n_seed`` random labels as balanced over the classes as ``n_seed`` allows, in a random order."""
    labels = [c % n_classes for c in range(n_seed)]
    return [labels[p] for p in rng.permutation(n_seed)]


class GrowingSearch:
    """The growing search over a conditional log-probability function (a prompted LM, or a table in the tests).

    :param cond: see :data:`GrowCond`.
    :param n_classes: classes per row.
    :param orders: per row, the other rows in the order its context is filled (:func:`sample_orders`).
    :param n_context: labelled rows in a context, at most.
    """

    def __init__(self, cond: GrowCond, n_classes: int, orders: Sequence[Sequence[int]], n_context: int):
        self.cond, self.k, self.n_context = cond, n_classes, n_context
        self.orders = [tuple(o) for o in orders]
        self.n = len(self.orders)
        self._memo: dict[tuple, Any] = {}
        self.evaluations = 0  # conditionals computed (memo misses)

    def context(self, y: Sequence[int | None], i: int) -> tuple[tuple[int, int], ...]:
        """Row ``i``'s context under ``y``: the first ``n_context`` labelled rows of its order, with their labels."""
        out = []
        for j in self.orders[i]:
            if y[j] is not None:
                out.append((j, int(y[j])))
                if len(out) == self.n_context:
                    break
        return tuple(out)

    def conditionals(self, y: Sequence[int | None], rows: Sequence[int]) -> list:
        """``log P(. | x_i, C_i under y)`` (``(k,)`` arrays) for ``rows``, in one ``cond`` call."""
        keys = [(i, self.context(y, i)) for i in rows]
        missing = list(dict.fromkeys(key for key in keys if key not in self._memo))
        if missing:
            for key, value in zip(missing, self.cond(missing)):
                self._memo[key] = value
            self.evaluations += len(missing)
        return [self._memo[key] for key in keys]

    def predictability(self, y: Sequence[int | None]) -> float:
        """The mean over the labelled rows of ``log P(y_i | x_i, C_i)`` (``-inf`` with none labelled)."""
        rows = [i for i in range(self.n) if y[i] is not None]
        if not rows:
            return -math.inf
        return float(sum(float(c[int(y[i])]) for i, c in zip(rows, self.conditionals(y, rows))) / len(rows))

    def run(self, y0: Sequence[int | None], steps: int, rng, *, alpha: float = 50.0, t0: float = 10.0,
            t_min: float = 0.01, beta: float = 0.99, on_step: Callable[[int], None] | None = None
            ) -> tuple[list[int | None], dict[str, Any]]:
        """``steps`` steps from ``y0`` (``None``: unlabelled); returns the last labelling and what happened
        (``u_initial``, ``u_final``, ``accepted``, ``proposals`` (steps whose proposal changed the labelling),
        ``added`` (rows the search labelled), ``n_labelled``)."""
        from .elicit import ICMSearch

        y = list(y0)
        u = self.predictability(y)
        u0, accepted, proposals = u, 0, 0
        for step in range(1, steps + 1):
            i = int(rng.integers(self.n))
            (pred,) = self.conditionals(y, [i])
            new = int(max(range(self.k), key=lambda c: float(pred[c])))
            if y[i] != new:  # the model agrees with the row's label: nothing to score (the reference's no-op)
                proposals += 1
                y_new = list(y)
                y_new[i] = new
                u_new = self.predictability(y_new)
                delta = alpha * (u_new - u)
                temp = ICMSearch.temperature(step, t0, t_min, beta)
                if delta >= 0 or rng.random() < math.exp(delta / temp):
                    y, u = y_new, u_new
                    accepted += 1
            if on_step is not None:
                on_step(1)
        n_labelled = sum(v is not None for v in y)
        return y, {"u_initial": u0, "u_final": u, "accepted": accepted, "proposals": proposals, "steps": steps,
                   "added": n_labelled - sum(v is not None for v in y0), "n_labelled": n_labelled,
                   "evaluations": self.evaluations}
