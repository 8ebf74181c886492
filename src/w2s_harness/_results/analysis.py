"""Why a transfer generalised: agreement with the weak supervisor, misfit, AUROC, computed from stage arrays.

Everything here is numpy on predicted probabilities (``(N, k)`` rows) and is called at assemble time on the arrays
every train and label stage stores (see :func:`w2s_harness._engine.ops.op_train`), so adding an analysis never changes a
stage id. Definitions:

* **agreement**: the fraction of rows where two models' argmax classes are equal. The student-supervisor
  agreement on test is split into the test rows the weak model got right and those it got wrong (Burns et al.
  2023, "imitation"): a student that agrees with the weak model where it is *wrong* imitates its errors.
* **misfit** of a student to its supervision (Charikar et al. 2024, "Quantifying the gain in weak-to-strong
  generalization"): the error ``mean(argmax student != argmax supervisor)`` and the KL divergence
  ``mean_i KL(supervisor_i || student_i)`` (what a cross-entropy student minimises, minus the labels' entropy).
  The gain over the weak model is bounded by the misfit: on accuracy, ``transfer acc - weak acc <= misfit error
  on test`` always holds (a student can only gain where it disagrees with the weak model), and Charikar et al.
  show the gain in loss is at least the misfit for a convex class of strong models.
* **AUROC**: the Mann-Whitney statistic (ties count one half) of the positive-class probability; for ``k > 2``
  the macro mean of the one-vs-rest AUROCs of the classes that occur (and do not make up every row). It is
  defined next to ``accuracy`` in :mod:`w2s_harness._engine.training` (``test_auroc`` is a train stage metric).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._engine.training import auroc, binary_auroc, class_ids

#: Probabilities are clipped to this before a logarithm (a zero supervisor probability contributes zero).
EPS = 1e-12


def _probs(p: Any) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"expected (N, k) probabilities, got shape {p.shape}")
    return p


def agreement(a: Any, b: Any) -> float | None:
    """Fraction of rows whose argmax classes agree (``a``, ``b``: ``(N, k)`` probabilities, or ``(N,)`` class
    ids); ``None`` for no rows."""
    ca, cb = class_ids(a), class_ids(b)
    if ca.shape != cb.shape:
        raise ValueError(f"agreement: {ca.shape[0]} rows against {cb.shape[0]}")
    return float(np.mean(ca == cb)) if ca.size else None


def agreement_split(student: Any, supervisor: Any, labels: Any) -> dict[str, float | None]:
    """Agreement of ``student`` with ``supervisor`` overall (``"all"``) and on the rows the supervisor classifies
    correctly (``"weak_right"``) or wrongly (``"weak_wrong"``) against ``labels``; ``None`` where a part is empty."""
    s, w, y = class_ids(student), class_ids(supervisor), class_ids(labels)
    right = w == y
    return {"all": agreement(s, w), "weak_right": agreement(s[right], w[right]),
            "weak_wrong": agreement(s[~right], w[~right])}


def kl_rows(p: Any, q: Any) -> np.ndarray:
    """``KL(p_i || q_i)`` per row, in nats (``0 * log 0 = 0``; ``q`` clipped to :data:`EPS`)."""
    p, q = _probs(p), _probs(q)
    if p.shape != q.shape:
        raise ValueError(f"kl: shapes {p.shape} and {q.shape} differ")
    safe_p = np.where(p > 0, p, 1.0)
    return np.sum(np.where(p > 0, p * (np.log(safe_p) - np.log(np.clip(q, EPS, None))), 0.0), axis=1)


def misfit(student: Any, supervisor: Any) -> dict[str, float | None]:
    """``{"err": fraction of rows where the argmax classes differ, "kl": mean KL(supervisor || student)}``
    (``None`` for no rows)."""
    student, supervisor = _probs(student), _probs(supervisor)
    if len(student) == 0:
        return {"err": None, "kl": None}
    return {"err": 1.0 - agreement(student, supervisor), "kl": float(np.mean(kl_rows(supervisor, student)))}


def lookup(table: dict, rows: Any) -> np.ndarray:
    """``table["probs"]`` at the dataset rows ``rows`` (through ``table["indices"]``); ``KeyError`` for a missing
    row."""
    idx = np.asarray(table["indices"])
    rows = np.asarray(rows, dtype=idx.dtype if idx.size else np.int64)
    order = np.argsort(idx, kind="stable")
    at = np.searchsorted(idx[order], rows)
    at = np.clip(at, 0, max(len(idx) - 1, 0))
    found = order[at] if len(idx) else np.zeros(0, dtype=np.int64)
    if len(rows) and (len(idx) == 0 or not np.array_equal(idx[found], rows)):
        raise KeyError("rows missing from the stage's arrays")
    return np.asarray(table["probs"])[found]


def merged_labels(tables: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(indices, probs)`` of several label artifacts concatenated (as a train stage merges them)."""
    if not tables:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return (np.concatenate([np.asarray(t["indices"]) for t in tables]),
            np.concatenate([np.asarray(t["probs"]) for t in tables]))


#: The per-seed values :func:`seed_analysis` returns (``None`` where undefined).
SEED_KEYS = ("agreement", "agreement_weak_right", "agreement_weak_wrong", "misfit_err_train2", "misfit_kl_train2",
             "misfit_err_test", "misfit_kl_test", "label_acc_train2")


def seed_analysis(*, labels: Any, test_rows: Any, weak: dict, transfer: dict,
                  supervision: tuple[np.ndarray, np.ndarray] | None, train_rows: Any | None) -> dict[str, float | None]:
    """One seed of one experiment row.

    :param labels: ground-truth class ids of every dataset row.
    :param test_rows: the seed's test rows.
    :param weak: the weak train stage's arrays (``indices``, ``probs`` over every split row).
    :param transfer: the transfer train stage's arrays.
    :param supervision: ``(indices, probs)`` of the labels the transfer trained on (its label stages merged), or
        ``None`` when it trained on ground truth.
    :param train_rows: the rows the transfer stage was given (its ``on`` subset); supervised rows outside it are
        ignored.
    :returns: the :data:`SEED_KEYS` values. ``misfit_*_train2`` compare the student with its own training labels on
        the rows it was given labels for (held-out early-stopping rows included); ``misfit_*_test`` and the
        agreements compare it with the weak model on test; ``label_acc_train2`` is the accuracy of the training
        labels against ground truth.
    """
    labels = np.asarray(labels)
    test_rows = np.asarray(test_rows)
    student_test, weak_test = lookup(transfer, test_rows), lookup(weak, test_rows)
    split = agreement_split(student_test, weak_test, labels[test_rows])
    on_test = misfit(student_test, weak_test)
    out: dict[str, float | None] = {
        "agreement": split["all"], "agreement_weak_right": split["weak_right"],
        "agreement_weak_wrong": split["weak_wrong"], "misfit_err_test": on_test["err"],
        "misfit_kl_test": on_test["kl"], "misfit_err_train2": None, "misfit_kl_train2": None,
        "label_acc_train2": None,
    }
    if supervision is not None and len(supervision[0]):
        idx, probs = supervision
        if train_rows is not None:
            keep = np.isin(idx, np.asarray(train_rows))
            idx, probs = idx[keep], probs[keep]
        if len(idx):
            fit = misfit(lookup(transfer, idx), probs)
            out["misfit_err_train2"], out["misfit_kl_train2"] = fit["err"], fit["kl"]
            out["label_acc_train2"] = float(np.mean(class_ids(probs) == labels[idx]))
    return out


__all__ = ["agreement", "agreement_split", "auroc", "binary_auroc", "kl_rows", "lookup", "merged_labels", "misfit",
           "seed_analysis"]
