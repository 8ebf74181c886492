"""``generative``: generative fine-tuning (Burns et al. 2023, section 5.2.2): the strong causal LM is first trained as
a language model on the task's unlabelled train1 + train2 texts, then the ceiling (train2 ground truth) and the
transfers (weak labels on train2) start from that LM-adapted model (docs/elicitation.md).

Its stages are the ``hf:`` plugin's op ``generative-train`` (``output = "model"``), met through the op registry:
the LM step is cached by content under ``<output_dir>/lm-adapted``, so a seed's ceiling and transfers share it.
"""

from __future__ import annotations

from w2s_harness import StageKind, check_int, check_number


class Generative:
    """LM-adapted strong model, then the usual ceiling and transfers; ``naive`` beside it as the control.

    Options (``[strategy]`` keys): ``model`` (the causal LM; default ``"strong"``), ``lm_epochs`` (passes of the LM
    step over the texts; 2), ``lm_lr`` (its AdamW learning rate; 1e-4), ``lm_max_length`` (tokens per text; default
    the model's ``max_length``), ``lm_batch_size`` (8).

    Rows: ``generative/<loss>`` per configured loss: the LM-adapted model trained on the weak labels, with PGR
    between the run's weak model and the LM-ADAPTED ceiling (the LM-adapted model on train2 ground truth), compared
    per seed with ``naive/<loss>`` (plain model, plain ceiling); and ``generative/lm-adapted ceiling``: the
    LM-adapted ceiling as the "transfer" between the weak model and the plain ceiling (PGR above 1: the LM step
    raised the ceiling).
    """

    name = "generative"

    def __init__(self, model="strong", lm_epochs: int = 2, lm_lr: float = 1e-4, lm_max_length: int | None = None,
                 lm_batch_size: int = 8):
        # the same checks as the op 'generative-train' (built-in plugin packages never import each other: they meet
        # through the registries), here so that a bad option names the strategy the user configured
        owner = f"strategy {self.name!r}"
        check_int(lm_epochs, "lm_epochs", owner=owner, lo=1)
        check_number(lm_lr, "lm_lr", owner=owner, lo=0.0, lo_open=True, hi=1.0)
        check_int(lm_max_length, "lm_max_length", owner=owner, lo=2, optional=True)
        check_int(lm_batch_size, "lm_batch_size", owner=owner, lo=1)
        self.model = model
        self.lm = {"lm_epochs": lm_epochs, "lm_lr": lm_lr, "lm_max_length": lm_max_length,
                   "lm_batch_size": lm_batch_size}

    def plan(self, b) -> None:
        ref, naive = b.naive_rows()
        model = b.model_ref(self.model, "strategy.model")
        base = {"model": model, "on": "train2", **self.lm}
        ceiling = b.op("generative-train", params={**base, "loss": "xent"}, kind=StageKind.TRAIN_CEILING,
                       name="generative ceiling")
        strong = b.model_label(model)
        for loss in b.config.losses:
            tag = b.loss_label(loss)
            transfer = b.op("generative-train", inputs={"labels": ref.labels}, params={**base, "loss": loss.as_dict()},
                            kind=StageKind.TRAIN_TRANSFER, name=f"generative transfer[{tag}]")
            row = f"{self.name}/{tag}"
            b.experiment(row, strategy=self.name, loss=tag, weak=ref.weak, ceiling=ceiling, transfer=transfer,
                         baseline=naive.get(tag), strong_model=strong)
            if tag in naive:
                b.compare(row, naive[tag])
        b.experiment(f"{self.name}/lm-adapted ceiling", strategy=self.name, loss="lm-adapted ceiling",
                     weak=ref.weak, ceiling=ref.ceiling, transfer=ceiling, strong_model=strong)
