"""w2s-harness example plugin: the template for third-party plugins.

w2s-harness imports this module through the entry point ``[project.entry-points.w2s_harness]`` and calls the
``@hookimpl`` functions it finds on it: one registration hook per component kind and the report view of its
strategy (``w2s_report_views``), below, and the CLI-option hooks of the observer, defined in :mod:`.observer` (which registers a per-run object
for the lifecycle hooks) and imported here so that they are attributes of this module too.

Keep this module import-light: ``w2s-harness list`` and ``--help`` import every plugin. The component modules
are imported inside the hooks, and torch only when a loss or a head is actually used.
"""

from __future__ import annotations

from w2s_harness import hookimpl

from .observer import w2s_add_options, w2s_configure

__version__ = "0.1.0"

__all__ = [
    "w2s_add_options",
    "w2s_configure",
    "w2s_register_datasets",
    "w2s_register_executors",
    "w2s_register_losses",
    "w2s_register_models",
    "w2s_register_ops",
    "w2s_register_strategies",
    "w2s_report_views",
]


@hookimpl
def w2s_register_datasets(registry):
    from .dataset import ParityDataset

    registry.add("example-parity", ParityDataset,
                 description="(example plugin) 400 synthetic 'the number N' sentences, even/odd")


@hookimpl
def w2s_register_models(registry):
    from .model import CharHash

    registry.add("example-charhash", CharHash,
                 description="(example plugin) hashed character trigram counts + linear head (numpy only)")


@hookimpl
def w2s_register_losses(registry):
    from .loss import SmoothedXent

    registry.add("example-smoothed-xent", SmoothedXent,
                 description="(example plugin) soft cross-entropy with label smoothing")


@hookimpl
def w2s_register_strategies(registry):
    from .strategy import NaiveTwice

    registry.add("example-naive-twice", NaiveTwice,
                 description="(example plugin) naive transfer, then the student relabels train2 and retrains")

    from .agreement import Agreement

    registry.add("example-agreement", Agreement,
                 description="(example plugin) two weak supervisors label train2; transfer on the rows they agree on")


@hookimpl
def w2s_register_ops(registry):
    from .op import AgreementFilter  # a StageOp: declared in a plan with builder.op("example-agree", ...)

    registry.add("example-agree", AgreementFilter,
                 description="(example plugin) keep the rows where every input label stage's argmax agrees")


@hookimpl
def w2s_register_executors(registry):
    from .executor import ThreadExecutor

    registry.add("example-threads", ThreadExecutor,
                 description="(example plugin) every stage in a thread pool of this process (run.workers threads)")


@hookimpl
def w2s_report_views(results):
    from .report import naive_twice_view  # None unless the results have example-naive-twice rows

    return naive_twice_view(results)
