"""``prompt``: the strong model elicited by prompting alone (no fine-tuning), zero-shot and k-shot with gold or with
weak-labelled demonstrations, reported as rows with PGR like any transfer (docs/elicitation.md).

Its stages are the ``hf:`` plugin's op ``prompt-lm`` (``output = "model"``): a prompted causal LM's predictions on
the test rows, standing for a model (a row's transfer, or a row's ceiling).
"""

from __future__ import annotations

from w2s_harness import check_bool, check_int

from .prompting import dataset_prompt


class Prompt:
    """The strong model prompted, never fine-tuned: zero-shot, k-shot with gold demonstrations, k-shot with the
    weak model's labels as demonstrations.

    Options (``[strategy]`` keys):

    * ``model``: the causal LM to prompt (default ``"strong"``: the run's strong model, read as a causal LM: its
      head-related and ``layers`` parameters do not apply, the full LM scores).
    * ``k``: demonstrations per prompt (default 4; keep the prompt within the model's context: longer prompts lose
      their oldest tokens). The demonstration rows are drawn from train2 per run seed, the same rows for gold and
      weak demonstrations.
    * ``calibrate``: contextual calibration of every prompt row (default false; see the ``prompt-lm`` op): the
      class probabilities divided by those of a content-free row ``"N/A"`` in the same prompt.
    * ``template`` / ``verbalisers``: the prompt (default the dataset's, see docs/elicitation.md); checked by the
      op when the plan is built.

    Rows (PGR between the run's weak model and the fine-tuned ceiling, unless said otherwise):
    ``prompt/zero-shot``, ``prompt/k-shot-gold``, ``prompt/k-shot-weak``, and ``prompt/k-shot-weak vs gold demos``
    (the weak-demonstration prompt between the weak model and the GOLD-demonstration prompt as its ceiling: how
    much of gold demonstrations' accuracy weak ones recover); beside the ``naive/<loss>`` rows. Comparisons:
    ``prompt/k-shot-weak - naive/<first loss>`` and ``prompt/k-shot-weak - prompt/k-shot-gold``.
    """

    name = "prompt"

    def __init__(self, model="strong", k: int = 4, template: str | None = None, verbalisers: list | None = None,
                 calibrate: bool = False):
        check_int(k, "k", owner=f"strategy {self.name!r}", lo=1)
        check_bool(calibrate, "calibrate", owner=f"strategy {self.name!r}")
        self.model, self.k, self.template, self.verbalisers = model, k, template, verbalisers
        self.calibrate = calibrate

    def plan(self, b) -> None:
        ref, naive = b.naive_rows()
        model = b.model_ref(self.model, "strategy.model")
        template, verbalisers = dataset_prompt(b, self.template, self.verbalisers)
        base = {"model": model, "template": template, "verbalisers": verbalisers, "calibrate": self.calibrate}
        zero = b.op("prompt-lm", params={**base, "k": 0, "demos": "none"}, name="prompt zero-shot")
        gold = b.op("prompt-lm", params={**base, "k": self.k, "demos": "gold"}, name=f"prompt {self.k}-shot gold")
        weak = b.op("prompt-lm", inputs={"demo_labels": ref.labels}, params={**base, "k": self.k, "demos": "labels"},
                    name=f"prompt {self.k}-shot weak")
        lm = b.model_label(model)
        for row, stage, ceiling in (("zero-shot", zero, ref.ceiling), ("k-shot-gold", gold, ref.ceiling),
                                    ("k-shot-weak", weak, ref.ceiling), ("k-shot-weak vs gold demos", weak, gold)):
            b.experiment(f"{self.name}/{row}", strategy=self.name, loss=row, weak=ref.weak, ceiling=ceiling,
                         transfer=stage, strong_model=lm)
        first = next(iter(naive.values()), None)
        if first is not None:
            b.compare(f"{self.name}/k-shot-weak", first)
        b.compare(f"{self.name}/k-shot-weak", f"{self.name}/k-shot-gold")
