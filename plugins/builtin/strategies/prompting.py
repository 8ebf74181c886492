"""What the ``prompt`` and ``icm`` strategies share: the dataset's prompt. The stage ops they declare
(``prompt-lm``, ``icm-labels``) are the ``hf:`` models plugin's, met through the op registry."""

from __future__ import annotations


def dataset_prompt(b, template: str | None, verbalisers: list | None) -> tuple[str, list[str] | None]:
    """The template and verbalisers a strategy declares its stages with: its own options, else the dataset's
    (the ``prompt`` attribute of the run's dataset, ``b.dataset``: a recipe row's ``prompt`` field, or a class
    attribute, see docs/elicitation.md), else the default (``"{text}\\nAnswer:"``; verbalisers ``None``: from
    the class names).

    Resolved at plan time so that they are the stages' parameters, in their ids: editing a dataset's prompt
    reruns its prompting stages only. The dataset is the one the run's plugin manager created, so a dataset that
    a run's own plugin registers brings its prompt too."""
    prompt = getattr(b.dataset, "prompt", None)
    t = template if template is not None else getattr(prompt, "template", "{text}\nAnswer:")
    v = verbalisers if verbalisers is not None else getattr(prompt, "verbalisers", None)
    return t, None if v is None else list(v)


