"""Eliciting an ``hf:`` causal LM without fine-tuning it: the stage ops ``prompt-lm`` (a prompted LM's predictions,
standing for a model) and ``icm-labels`` (Internal Coherence Maximization: labels the LM finds by itself), which the
``prompt`` and ``icm`` strategies declare by name (docs/elicitation.md).

numpy, torch and transformers load inside functions only: ``w2s-harness list ops`` imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from w2s_harness import (
    ConfigError,
    OpInput,
    StageKind,
    StageOp,
    check_bool,
    check_choice,
    check_int,
    check_number,
    ref_dict,
)


def check_common(owner: str, template: Any, verbalisers: Any) -> None:
    from .scorer import check_template, check_verbalisers

    check_template(template, owner)
    check_verbalisers(verbalisers, owner)


#: ``icm-labels``' searches: a fixed set labelled at random, annealed; or the reference's growing set.
ICM_INITS = ("random", "grow")


def check_icm_params(owner: str, *, n_search, n_context, steps, alpha, t0, t_min, beta, init="random",
                     n_seed=8) -> None:
    """The search parameters of ICM (the ``icm`` strategy repeats these checks for its options)."""
    check_int(n_search, "n_search", owner=owner, lo=2)
    check_choice(init, "init", ICM_INITS, owner=owner)
    check_int(n_seed, "n_seed", owner=owner, lo=1, hi=n_search if init == "grow" else None)
    check_int(n_context, "n_context", owner=owner, lo=1)
    check_int(steps, "steps", owner=owner, lo=0, optional=True)
    for key, value in (("alpha", alpha), ("t0", t0), ("t_min", t_min)):
        check_number(value, key, owner=owner, lo=0.0, lo_open=True)
    check_number(beta, "beta", owner=owner, lo=0.0)


def check_causal(owner: str, ref: dict, why: str = "prompting scores the next tokens with the LM's own head") -> None:
    """A one-line error now, when the plan is built, unless ``ref`` is an ``hf:`` causal LM (the check reads the
    checkpoint's config only, no weights), so a prompt, ICM or generative stage never fails after the weak model
    trained. ``why``: what needs the next-token head, for the message."""
    from w2s_harness import create_model

    from .model import HFModel

    params = {k: v for k, v in ref.items() if k != "name"}
    model = create_model(ref["name"], **params)
    if not isinstance(model, HFModel) or not model.is_causal():
        raise ConfigError(f"{owner}: model {ref['name']!r} is not an hf: causal LM ({why}); set strategy.model "
                          "(or [strong]) to one, e.g. \"preset:smollm2-135m-gguf\"")


def scorer_for(ctx, model_ref: dict):
    """The :class:`CausalLMScorer` of ``model_ref`` on the run's device, caching scores under
    ``<output_dir>/prompt-scores``: the run's one model component's scorer (:meth:`HFModel.scorer`), so every
    prompt stage and search of a run shares one loaded LM."""
    from .model import HFModel

    model = ctx.model(model_ref)
    if not isinstance(model, HFModel):  # check_causal ran when the plan was built: a plugin changed the model
        raise ConfigError(f"model {model_ref['name']!r} is not an hf: causal LM; prompting scores with one")
    return model.scorer(ctx.device, ctx.output_dir / "prompt-scores")


def row_continuations(data, verbalisers: list | None, owner: str):
    """``continuations(row) -> list[str]``: the class verbalisations (every row the same), or for a choice task the
    row's candidates as the model reads them after its prompt (the pair text less the prompt: with the default
    pair template, a newline and the candidate)."""
    from w2s_harness import ChoiceData

    from .scorer import check_verbalisers, default_verbalisers

    if isinstance(data, ChoiceData):
        if verbalisers is not None:
            raise ConfigError(f"{owner}: a choice task scores each row's own candidates; remove verbalisers")

        def candidates(row: int) -> list[str]:
            prompt, pairs = data.texts[row], data.pairs[row]
            if not all(p.startswith(prompt) and len(p) > len(prompt) for p in pairs):
                raise ConfigError(f"{owner}: the choice task's pair texts do not start with their prompt (a custom "
                                  "pair_template), so the candidates cannot be scored as continuations")
            return [p[len(prompt):] for p in pairs]

        return candidates
    verbs = check_verbalisers(verbalisers, owner, data.n_classes) or default_verbalisers(data.class_names)
    return lambda row: verbs


def sample_rows(rows, n: int, seed: int, salt: int):
    """``n`` of ``rows`` (all if fewer), drawn without replacement by a generator of (seed, salt), in drawn order."""
    import numpy as np

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), salt]))
    rows = np.asarray(rows)
    return rows[rng.permutation(len(rows))[:min(n, len(rows))]]


# ------------------------------------------------------------------------------------ prompt-lm

#: Salt of the demonstration draw (independent of every other seeded draw of a run).
DEMO_SALT = 0x64656D6F
DEMOS = ("none", "gold", "labels")
#: The content-free text of contextual calibration (Zhao et al. 2021).
CONTENT_FREE = "N/A"


class LMScoringOp(StageOp):
    """What the ops that score with a causal LM share (``prompt-lm``, ``icm-labels``): the spec stores the model
    reference flat and the verbalisers as a list; the stage id hashes the checkpoint's content (not its path), and
    a model that is not an ``hf:`` causal LM is a one-line error when the plan is built."""

    #: The op's registered name, for messages.
    op_name = ""

    def spec(self, params, inputs):
        verbalisers = params["verbalisers"]
        return {**params, "model": ref_dict(params["model"]),
                "verbalisers": None if verbalisers is None else list(verbalisers)}

    def identity(self, spec, builder):
        check_causal(f"op {self.op_name!r}", spec["model"])
        return {"model": builder.identify(spec["model"])}


class PromptLM(LMScoringOp):
    """Predict the test rows with a prompted causal LM: no training.

    :param model: the ``hf:`` causal LM (a model reference: ``{"name": "hf:...", ...}``).
    :param template: the prompt of one row, ``{text}`` its text (see :func:`render_prompt
        <w2s_harness.plugins.models.hf.render_prompt>`).
    :param verbalisers: one continuation per class; ``None``: a space and the class name. Choice tasks: ``None``
        (each row's candidates are scored).
    :param k: demonstrations before each test row (0: zero-shot).
    :param demos: ``"none"`` (k = 0), ``"gold"`` (the demonstration rows' ground truth) or ``"labels"`` (the hard
        labels, argmax, of the ``demo_labels`` input stage on those rows, e.g. the weak model's).
    :param calibrate: contextual calibration (Zhao et al. 2021, "Calibrate Before Use"): divide each row's class
        probabilities by those of a content-free row (the text ``"N/A"`` in the same prompt, with the same
        demonstrations) and renormalise, which removes the prompt's own lean to a class (small LMs in k-shot
        prompts tend to repeat the last demonstration's label). Classification only.

    The ``k`` demonstration rows are drawn from train2 per run seed (a generator of the seed and
    :data:`DEMO_SALT`), in drawn order, and are the same rows for ``gold`` and ``labels``: two such stages differ
    only in the demonstrations' labels. Every test row gets the same demonstrations.
    """

    op_name = "prompt-lm"
    inputs = (OpInput("demo_labels", artifact="labels", min=0, max=1),)
    output = "model"
    kinds = (StageKind.TRAIN_TRANSFER, StageKind.OP)

    def __init__(self, model, template: str = "{text}\nAnswer:", verbalisers: list | None = None, k: int = 0,
                 demos: str = "none", calibrate: bool = False):
        owner = "op 'prompt-lm'"
        check_bool(calibrate, "calibrate", owner=owner)
        check_common(owner, template, verbalisers)
        check_int(k, "k", owner=owner, lo=0)
        check_choice(demos, "demos", DEMOS, owner=owner)
        if (demos == "none") != (k == 0):
            raise ConfigError(f"{owner}: demos='none' goes with k = 0 and 'gold'/'labels' with k >= 1; got "
                              f"demos={demos!r}, k={k}")
        self.demos = demos

    def spec(self, params, inputs):
        if (self.demos == "labels") != bool(inputs.get("demo_labels")):
            raise ConfigError("op 'prompt-lm': demos='labels' needs a demo_labels input stage (e.g. the weak "
                              "labels), and the other demos none")
        return super().spec(params, inputs)

    def run(self, ctx, inputs):
        import numpy as np

        from .scorer import render_prompt

        p = ctx.params
        data, splits = ctx.data, ctx.splits
        conts = row_continuations(data, p["verbalisers"], f"stage {ctx.stage.name!r}")
        demo_rows = sample_rows(splits.train2, p["k"], ctx.seed, DEMO_SALT) if p["k"] else np.zeros(0, np.int64)
        if p["demos"] == "gold":
            demo_labels = np.asarray(data.labels)[demo_rows]
        elif p["demos"] == "labels":
            demo_labels = ctx.take(inputs["demo_labels"], demo_rows).argmax(axis=1)
        else:
            demo_labels = np.zeros(0, np.int64)
        demos = [(data.texts[r], conts(r)[y]) for r, y in zip(demo_rows.tolist(), demo_labels.tolist())]
        test = np.asarray(splits.test)
        contexts = [render_prompt(p["template"], data.texts[r], demos) for r in test.tolist()]
        scorer = scorer_for(ctx, p["model"])
        probs = scorer.probs(contexts, [conts(r) for r in test.tolist()], progress=ctx.progress)
        content_free = None
        if p["calibrate"]:
            from w2s_harness import ChoiceData

            if isinstance(data, ChoiceData):
                raise ConfigError(f"stage {ctx.stage.name!r}: calibrate applies to classification (one set of "
                                  "verbalisers); a choice task's candidates differ per row")
            content_free = scorer.probs([render_prompt(p["template"], CONTENT_FREE, demos)], [conts(0)])[0]
            probs = probs / content_free
            probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
        truth = np.asarray(data.labels)[test]
        metrics = {
            "test_acc": float((probs.argmax(axis=1) == truth).mean()),
            "n_test": len(test),
            "k": int(p["k"]),
            "demo_rows": demo_rows.astype(int).tolist(),
            "demo_labels": demo_labels.astype(int).tolist(),
            # how many demonstrations carry their true label: diagnosis only, nothing is chosen by it
            "demo_label_acc": (float((demo_labels == np.asarray(data.labels)[demo_rows]).mean())
                               if len(demo_rows) else None),
            # a prompted LM often answers one class for every row: the share of test rows per predicted class
            "test_pred_frac": (np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
                               / max(1, len(test))).tolist(),
            "prompt_example": contexts[0] if contexts else "",
        }
        if content_free is not None:
            metrics["content_free_probs"] = content_free.astype(float).tolist()
        return metrics, {"indices": test.astype(np.int64), "probs": probs}


# ----------------------------------------------------------------------------------- icm-labels
#
# ``icm``: Internal Coherence Maximization (Wen et al. 2025, "Unsupervised Elicitation of Language Models"): the
# strong model labels train2 by itself, no weak labels, and is then trained on its own labels (docs/elicitation.md).
#
# The search (op ``icm-labels``) looks for the labelling ``y`` of ``n_search`` rows of train2 that maximises
#
#     score(y) = alpha * U(y) - I(y),   U(y) = sum_i log P(y_i | x_i, {(x_j, y_j): j in C_i})
#
# the **mutual predictability** U: how well the strong causal LM predicts each label from the others in context,
# plus **logical consistency** I. Approximations, stated:
#
# * **Sampled context.** The paper puts every other labelled row in context; here ``C_i`` is a fixed random set of
#   ``n_context`` other search rows per row (drawn once per seed), so a term costs one prompt of ``n_context``
#   demonstrations, and a proposal at row ``i`` rescores only row ``i``'s term and the terms whose context holds
#   ``i``. ``P`` is normalised over the classes (the softmax of the verbalisations' log-probabilities).
# * **Consistency.** A choice task's labelling is "which candidate is true", so exactly one candidate per question
#   is true in every labelling the search can visit: the paper's fix-up is built into the representation and
#   ``I = 0``. Binary tasks have no logical constraint between rows here, so ``I = 0`` too.
# * **Search.** Every search row starts with a seeded random label (the paper starts from a few labelled rows and
#   grows the set); each step picks a row ``i`` and proposes the label the model predicts for it in its current
#   context (a different random label if that is its current one), accepted by Metropolis with temperature
#   ``T_n = max(t_min, t0 / (1 + beta * log n))`` (the paper's schedule and defaults: t0 = 10, t_min = 0.01,
#   beta = 0.99, alpha = 50). The result is the best labelling visited: with the slowly cooling logarithmic
#   schedule the last state can be a worse neighbour of it.
#
# The found labels (one-hot) are a ``labels`` stage: the usual ``train`` op trains the run's strong model on them.

#: Salts of the search's seeded draws: the search rows, the contexts, the annealing.
ROWS_SALT, CONTEXT_SALT, ANNEAL_SALT = 0x69636D31, 0x69636D32, 0x69636D33

#: ``cond(requests) -> (len(requests), k) log-probabilities``; a request is ``(i, labels of C_i in order)``.
CondLogprobs = Callable[[Sequence[tuple[int, tuple[int, ...]]]], Any]


def sample_contexts(n: int, n_context: int, rng) -> list[tuple[int, ...]]:
    """For each of ``n`` rows, ``min(n_context, n - 1)`` distinct other rows, in drawn order."""
    out = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        pick = rng.permutation(len(others))[:min(n_context, len(others))]
        out.append(tuple(others[p] for p in pick))
    return out


class ICMSearch:
    """The objective and the annealing, over a conditional log-probability function (a prompted LM, or a table in
    the tests). Conditionals are memoised by ``(i, context labels)``: the annealing revisits labellings.

    :param cond: see :data:`CondLogprobs`.
    :param n_classes: classes per row.
    :param contexts: ``C_i`` per row (:func:`sample_contexts`).
    """

    def __init__(self, cond: CondLogprobs, n_classes: int, contexts: Sequence[tuple[int, ...]]):
        self.cond, self.k, self.contexts = cond, n_classes, [tuple(c) for c in contexts]
        self.n = len(self.contexts)
        self.readers: list[list[int]] = [[] for _ in range(self.n)]  # rows whose context holds row i
        for j, ctx in enumerate(self.contexts):
            for i in ctx:
                self.readers[i].append(j)
        self._memo: dict[tuple[int, tuple[int, ...]], Any] = {}
        self.evaluations = 0  # conditionals computed (memo misses)

    def conditionals(self, y: Sequence[int], rows: Sequence[int]) -> list:
        """``log P(. | x_i, context of i labelled by y)`` (``(k,)`` arrays) for ``rows``, in one ``cond`` call."""
        keys = [(i, tuple(int(y[j]) for j in self.contexts[i])) for i in rows]
        missing = list(dict.fromkeys(key for key in keys if key not in self._memo))
        if missing:
            values = self.cond(missing)
            self.evaluations += len(missing)
            for key, v in zip(missing, values):
                self._memo[key] = v
        return [self._memo[key] for key in keys]

    def terms(self, y: Sequence[int], rows: Sequence[int]) -> list[float]:
        return [float(c[int(y[i])]) for i, c in zip(rows, self.conditionals(y, rows))]

    def predictability(self, y: Sequence[int]) -> float:
        """``U(y) = sum_i log P(y_i | x_i, {(x_j, y_j): j in C_i})``."""
        return float(sum(self.terms(y, range(self.n))))

    @staticmethod
    def temperature(step: int, t0: float, t_min: float, beta: float) -> float:
        """The paper's schedule at step ``step`` (1-based): ``max(t_min, t0 / (1 + beta * log step))``."""
        return max(t_min, t0 / (1.0 + beta * math.log(step)))

    def anneal(self, y0: Sequence[int], steps: int, rng, *, alpha: float = 50.0, t0: float = 10.0,
               t_min: float = 0.01, beta: float = 0.99, on_step: Callable[[int], None] | None = None
               ) -> tuple[list[int], dict[str, Any]]:
        """Simulated annealing from ``y0``; returns the best labelling visited and what happened (``u_initial``,
        ``u_final`` (of the returned labelling), ``u_last`` (of the last state), ``accepted``, ``improved``). The
        score is ``alpha * U`` (``I = 0``, see the module docstring). ``on_step(1)`` is called after each step
        (an op's progress)."""
        y = [int(v) for v in y0]
        u = self.predictability(y)
        u0, accepted, improved = u, 0, 0
        best, best_u = list(y), u  # the slowly cooling schedule may leave the last state below the best visited
        for step in range(1, steps + 1):
            temp = self.temperature(step, t0, t_min, beta)
            i = int(rng.integers(self.n))
            (pred,) = self.conditionals(y, [i])
            new = int(max(range(self.k), key=lambda c: float(pred[c])))
            if new == y[i]:  # the model already agrees: flip to another label instead of a no-op proposal
                new = int((y[i] + 1 + rng.integers(self.k - 1)) % self.k)
            affected = [i, *self.readers[i]]
            before = sum(self.terms(y, affected))
            y_new = list(y)
            y_new[i] = new
            after = sum(self.terms(y_new, affected))
            delta = alpha * (after - before)
            if delta >= 0 or rng.random() < math.exp(delta / temp):
                y, u = y_new, u + (after - before)
                accepted += 1
                improved += delta > 0
                if u > best_u + 1e-12:
                    best, best_u = list(y), u
            if on_step is not None:
                on_step(1)
        return best, {"u_initial": u0, "u_final": self.predictability(best), "u_last": self.predictability(y),
                      "accepted": accepted, "improved": int(improved), "steps": steps,
                      "evaluations": self.evaluations}


class ICMLabels(LMScoringOp):
    """Label ``n_search`` rows of train2 by Internal Coherence Maximization with a causal LM (module docstring).

    :param model: the ``hf:`` causal LM whose coherence is maximised.
    :param template/verbalisers: the prompt, as the ``prompt-lm`` op's.
    :param n_search: rows of train2 searched (and then trained on).
    :param n_context: other labelled rows in each row's context.
    :param steps: annealing steps; ``None``: ``8 * n_search``.
    :param alpha/t0/t_min/beta: the score's weight of U and the temperature schedule.
    :param init: ``"random"`` (every search row starts with a random label; the fixed search of this module) or
        ``"grow"`` (``n_seed`` random labels, the set grows: :mod:`.icm_grow`, the reference implementation's
        procedure).
    :param n_seed: with ``init = "grow"``, the rows labelled at random to start from.
    """

    op_name = "icm-labels"
    inputs = ()
    output = "labels"
    kinds = (StageKind.OP,)

    def __init__(self, model, template: str = "{text}\nAnswer:", verbalisers: list | None = None,
                 n_search: int = 32, n_context: int = 4, steps: int | None = None, alpha: float = 50.0,
                 t0: float = 10.0, t_min: float = 0.01, beta: float = 0.99, init: str = "random", n_seed: int = 8):
        owner = "op 'icm-labels'"
        check_common(owner, template, verbalisers)
        check_icm_params(owner, n_search=n_search, n_context=n_context, steps=steps, alpha=alpha, t0=t0,
                         t_min=t_min, beta=beta, init=init, n_seed=n_seed)


    def run(self, ctx, inputs):
        import numpy as np

        from .scorer import render_prompt, softmax

        p = ctx.params
        data = ctx.data
        conts = row_continuations(data, p["verbalisers"], f"stage {ctx.stage.name!r}")
        rows = sample_rows(ctx.splits.train2, p["n_search"], ctx.seed, ROWS_SALT).astype(np.int64)
        n, k = len(rows), data.n_classes
        if n < 2:
            raise ConfigError(f"stage {ctx.stage.name!r}: ICM needs >= 2 rows of train2, the split has {n}")
        seq = lambda salt: np.random.default_rng(np.random.SeedSequence([int(ctx.seed), salt]))
        scorer = scorer_for(ctx, p["model"])
        texts = [data.texts[r] for r in rows.tolist()]
        row_conts = [conts(r) for r in rows.tolist()]
        steps = 8 * n if p["steps"] is None else p["steps"]
        on_step = ctx.progress(f"ICM search over {n} rows", steps, "steps")
        if p["init"] == "grow":
            return self._grow(ctx, rows, texts, row_conts, scorer, seq, steps, on_step)
        contexts = sample_contexts(n, p["n_context"], seq(CONTEXT_SALT))

        def cond(requests):
            prompts = [render_prompt(p["template"], texts[i], [(texts[j], row_conts[j][y])
                                                               for j, y in zip(contexts[i], labels)])
                       for i, labels in requests]
            logp = scorer.logprobs(prompts, [row_conts[i] for i, _ in requests], cache=False)  # memoised here
            return np.log(softmax(logp))  # normalised over the classes

        search = ICMSearch(cond, k, contexts)
        rng = seq(ANNEAL_SALT)
        y0 = rng.integers(k, size=n).tolist()
        y, info = search.anneal(y0, steps, rng, alpha=p["alpha"], t0=p["t0"], t_min=p["t_min"], beta=p["beta"],
                                on_step=on_step)
        truth = np.asarray(data.labels)[rows]
        y = np.asarray(y, dtype=np.int64)
        metrics = {
            "n": n,
            "init": "random",
            # accuracy of the found labels against ground truth: diagnosis only, the search never sees it
            "label_acc": float((y == truth).mean()),
            "initial_label_acc": float((np.asarray(y0) == truth).mean()),
            "label_frac": (np.bincount(y, minlength=k) / n).tolist(),
            **info,
        }
        probs = np.eye(k, dtype=np.float32)[y]
        return metrics, ctx.labels(rows, probs)

    @staticmethod
    def _grow(ctx, rows, texts, row_conts, scorer, seq, steps, on_step):
        """``init = "grow"``: :class:`~.icm_grow.GrowingSearch`; the found labels are those of the rows it
        labelled (the ``n_seed`` start rows and the rows it added)."""
        import numpy as np

        from .icm_grow import GrowingSearch, sample_orders, seed_labels
        from .scorer import render_prompt, softmax

        p, data = ctx.params, ctx.data
        n, k = len(rows), data.n_classes

        def cond(requests):
            prompts = [render_prompt(p["template"], texts[i], [(texts[j], row_conts[j][y]) for j, y in context])
                       for i, context in requests]
            logp = scorer.logprobs(prompts, [row_conts[i] for i, _ in requests], cache=False)  # memoised there
            return np.log(softmax(logp))

        search = GrowingSearch(cond, k, sample_orders(n, seq(CONTEXT_SALT)), p["n_context"])
        rng = seq(ANNEAL_SALT)
        # the rows are in drawn (random) order: the first n_seed are the seeds
        y0 = [*seed_labels(p["n_seed"], k, rng), *([None] * (n - p["n_seed"]))]
        y, info = search.run(y0, steps, rng, alpha=p["alpha"], t0=p["t0"], t_min=p["t_min"], beta=p["beta"],
                             on_step=on_step)
        keep = [i for i in range(n) if y[i] is not None]
        found = np.asarray([y[i] for i in keep], dtype=np.int64)
        truth = np.asarray(data.labels)[rows]
        metrics = {
            "n": n,
            "init": "grow",
            # accuracy of the labels found, against ground truth: diagnosis only, the search never sees it
            "label_acc": float((found == truth[keep]).mean()),
            "initial_label_acc": float((np.asarray(y0[:p["n_seed"]]) == truth[:p["n_seed"]]).mean()),
            "label_frac": (np.bincount(found, minlength=k) / len(keep)).tolist(),
            **info,
        }
        return metrics, ctx.labels(rows[keep], np.eye(k, dtype=np.float32)[found])

