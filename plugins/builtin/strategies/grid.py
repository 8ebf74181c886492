"""``grid``: every weak <= strong pair of an ordered list of models, as the reference sweep runs them
(Burns et al. 2023, figure 3: PGR against strong-model size, one line per weak model)."""

from __future__ import annotations

from typing import Any

from w2s_harness import ConfigError, StageKind, check_bool

#: The default list when the run's strong model is the embedded default MiniLM: GloVe, then the encoder
#: truncated to 1, 3 and 6 layers (one encoder pass serves all three).
MINILM = "hf:sentence-transformers/all-MiniLM-L6-v2"


class Grid:
    """Every pair ``models[i] -> models[j]`` with ``i <= j``, for every configured loss.

    Options (``[strategy]`` keys):

    * ``models``: the models, smallest first, n >= 2 items, each a model name, ``"weak"`` / ``"strong"`` (the
      run's models with their parameters) or a table ``{name = "hf:...", layers = 1}``. Default: ``[weak,
      strong@L1, strong@L3, strong]`` when the run's strong model is the default MiniLM, else ``[weak,
      strong]``.
    * ``diagonal``: also run the pairs ``i == j`` (weak == strong; default true, as the reference does). They
      are reported but left out of the grid summary.

    Each model is trained once on train1 ground truth (its weak role: the labels it gives every larger model)
    and once on train2 ground truth (its ceiling role); both stages are shared by every pair through the stage
    cache. A pair's transfer trains ``models[j]`` on ``models[i]``'s soft labels of train2. Rows are named
    ``grid/<weak>-><strong>/<loss>``; ``w2s-harness report`` draws accuracy and PGR against the strong model,
    one line per weak model, and prints the median PGR per dataset and loss over the pairs.
    """

    name = "grid"

    def __init__(self, models: list | None = None, diagonal: bool = True):
        if models is not None and (not isinstance(models, list) or len(models) < 2):
            raise ConfigError(f"strategy 'grid': models must be a list of >= 2 models, smallest first, got "
                              f"{models!r}")
        diagonal = check_bool(diagonal, "diagonal", owner="strategy 'grid'")
        self.models = models
        self.diagonal = diagonal

    def _models(self, b) -> list[dict[str, Any]]:
        if self.models is not None:
            return [b.model_ref(m, "strategy.models") for m in self.models]
        strong = b.config.strong.as_dict()
        if strong["name"] == MINILM and "layers" not in strong:
            return [b.config.weak.as_dict(), *({**strong, "layers": n} for n in (1, 3)), strong]
        return [b.config.weak.as_dict(), strong]

    def plan(self, b) -> None:
        models = self._models(b)
        # row names use the last path component of hub ids / directories: "all-MiniLM-L6-v2@L3"
        labels = [b.model_label(m).rsplit("/", 1)[-1] for m in models]
        if len(set(labels)) != len(labels):  # same model, other parameters: name them
            labels = [b.loss_label({**m, "name": lab}) for m, lab in zip(models, labels)]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"strategy 'grid': models must differ, got {labels}")
        weak = [b.train(m, on="train1", kind=StageKind.TRAIN_WEAK, name=f"gt[{lab}] on train1")
                for m, lab in zip(models, labels)]
        soft = [b.label(w, on="train2", name=f"labels[{lab}]") for w, lab in zip(weak, labels)]
        ceiling = [b.train(m, on="train2", kind=StageKind.TRAIN_CEILING, name=f"gt[{lab}] on train2")
                   for m, lab in zip(models, labels)]
        for i in range(len(models)):
            for j in range(i if self.diagonal else i + 1, len(models)):
                for loss in b.config.losses:
                    tag = b.loss_label(loss)
                    transfer = b.train(models[j], on="train2", labels=soft[i], loss=loss,
                                       kind=StageKind.TRAIN_TRANSFER, name=f"transfer[{labels[i]}->{labels[j]}, {tag}]")
                    b.experiment(f"grid/{labels[i]}->{labels[j]}/{tag}", strategy=self.name, loss=tag,
                                 weak=weak[i], ceiling=ceiling[j], transfer=transfer,
                                 weak_model=labels[i], strong_model=labels[j])
