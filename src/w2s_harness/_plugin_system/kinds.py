"""The one table of component kinds: what each is called, which hook fills its registry, which config
sections name one. The registry, the plugin manager, the CLI (``list``, did-you-mean) and the config all read this
table, so a new kind is one row here plus its registration hookspec in :mod:`w2s_harness.hookspecs` (and whatever
consumes the components: the ops, the executors, the report)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ComponentKind:
    """One kind of pluggable component.

    :param name: singular, as in error messages (``"loss"``).
    :param plural: as in ``w2s-harness list <plural>`` (``"losses"``).
    :param hook: the registration hook that fills its :class:`~w2s_harness.Registry`.
    :param sections: the config sections whose ``name`` is a component of this kind.
    :param run_key: the ``[run]`` key that names one component of this kind instead of a section
        (``executor``: ``run.executor`` / ``--executor``); empty for section kinds.
    """

    name: str
    plural: str
    hook: str
    sections: tuple[str, ...]
    run_key: str = ""

    @property
    def title(self) -> str:
        return self.plural


KINDS: tuple[ComponentKind, ...] = (
    ComponentKind("dataset", "datasets", "w2s_register_datasets", ("dataset",)),
    ComponentKind("model", "models", "w2s_register_models", ("weak", "strong")),
    ComponentKind("loss", "losses", "w2s_register_losses", ("loss",)),
    ComponentKind("strategy", "strategies", "w2s_register_strategies", ("strategy",)),
    ComponentKind("op", "ops", "w2s_register_ops", ()),
    ComponentKind("executor", "executors", "w2s_register_executors", (), run_key="executor"),
)

BY_NAME = {k.name: k for k in KINDS}
BY_PLURAL = {k.plural: k for k in KINDS}
#: ``[run]`` key -> kind name (``executor`` -> ``executor``): kinds selected by a run setting, not a section
RUN_KEY_KIND = {k.run_key: k.name for k in KINDS if k.run_key}
#: config section -> kind name (``weak`` -> ``model``)
SECTION_KIND = {s: k.name for k in KINDS for s in k.sections}
#: the config sections that name components, in config order
COMPONENT_SECTIONS = ("dataset", "weak", "strong", "loss", "strategy")
assert set(COMPONENT_SECTIONS) == set(SECTION_KIND)


def plural(kind: str) -> str:
    return BY_NAME[kind].plural if kind in BY_NAME else kind + "s"
