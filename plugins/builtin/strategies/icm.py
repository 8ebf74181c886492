"""``icm``: Internal Coherence Maximization (Wen et al. 2025, "Unsupervised Elicitation of Language Models"): the
strong model labels train2 by itself, no weak labels, and is then trained on its own labels (docs/elicitation.md).

The search is the ``hf:`` plugin's op ``icm-labels`` (its objective, approximations and annealing are documented
there and in docs/elicitation.md); its labels feed the usual ``train`` op.
"""

from __future__ import annotations

from w2s_harness import check_choice, check_int, check_number

from .prompting import dataset_prompt


class ICM:
    """Unsupervised elicitation: the strong model labels train2 by ICM (no weak labels), then trains on them.

    Options (``[strategy]`` keys): ``model`` (the causal LM searched with; default ``"strong"``), ``n_search``
    (rows of train2 labelled and trained on; default 32), ``n_context`` (other labelled rows in each prompt;
    4), ``steps`` (default ``8 * n_search``), ``alpha``, ``t0``, ``t_min``, ``beta`` (the paper's 50, 10, 0.01,
    0.99), ``template`` / ``verbalisers`` (default the dataset's prompt), ``init`` (``"random"``: every search
    row starts labelled at random, a fixed set annealed; ``"grow"``: ``n_seed`` random labels (default 8) and the
    set grows, as the reference implementation searches).

    Rows: ``icm/<loss>`` per configured loss (the strong model trained on the ``n_search`` found labels; PGR
    between the run's weak model and the ceiling), beside ``naive/<loss>``, compared per seed. The found labels'
    accuracy is ``label_acc`` in the ``icm labels`` stage's metrics (results.json).
    """

    name = "icm"

    def __init__(self, model="strong", n_search: int = 32, n_context: int = 4, steps: int | None = None,
                 alpha: float = 50.0, t0: float = 10.0, t_min: float = 0.01, beta: float = 0.99,
                 template: str | None = None, verbalisers: list | None = None, init: str = "random",
                 n_seed: int = 8):
        # the same checks as the op 'icm-labels' (built-in plugin packages never import each other: they meet
        # through the registries), here so that a bad option names the strategy the user configured
        owner = f"strategy {self.name!r}"
        check_int(n_search, "n_search", owner=owner, lo=2)
        check_choice(init, "init", ("random", "grow"), owner=owner)
        check_int(n_seed, "n_seed", owner=owner, lo=1, hi=n_search if init == "grow" else None)
        check_int(n_context, "n_context", owner=owner, lo=1)
        check_int(steps, "steps", owner=owner, lo=0, optional=True)
        for key, value in (("alpha", alpha), ("t0", t0), ("t_min", t_min)):
            check_number(value, key, owner=owner, lo=0.0, lo_open=True)
        check_number(beta, "beta", owner=owner, lo=0.0)
        self.model = model
        self.params = {"n_search": n_search, "n_context": n_context, "steps": steps, "alpha": alpha, "t0": t0,
                       "t_min": t_min, "beta": beta, "init": init, "n_seed": n_seed}
        self.template, self.verbalisers = template, verbalisers

    def plan(self, b) -> None:
        ref, naive = b.naive_rows()
        model = b.model_ref(self.model, "strategy.model")
        template, verbalisers = dataset_prompt(b, self.template, self.verbalisers)
        labels = b.op("icm-labels", params={"model": model, "template": template, "verbalisers": verbalisers,
                                            **self.params}, name="icm labels")
        b.transfers(self.name, ref, labels, baseline=naive)
