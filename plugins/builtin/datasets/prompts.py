"""How a causal LM is prompted for a dataset: the ``prompt`` of a dataset class (a recipe row's, or a class
attribute), read by the ``prompt`` and ``icm`` strategies through the dataset registry (docs/elicitation.md).

A module of its own, imported by the datasets that carry a prompt: their code fingerprints then hold this small
module only, not each other's."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    """How a causal LM is prompted for a dataset.

    :param template: the row's text in context; ``{text}`` is the text; the model continues after it.
    :param verbalisers: one continuation per class, scored by its tokens' log-probability after the prompt;
        ``None``: a space and each class name (``" negative"``, ``" positive"``).
    """

    template: str = "{text}\nAnswer:"
    verbalisers: tuple[str, ...] | None = None
