"""w2s-harness example plugin: the template for third-party plugins.

w2s-harness imports this module through the entry point ``[project.entry-points.w2s_harness]`` and calls
the ``@hookimpl`` functions below. Keep this module import-light: components live in submodules that are
imported inside the hooks, and torch is imported only when a loss is actually called.
"""

from __future__ import annotations

import json
import os

from w2s_harness import hookimpl

__version__ = "0.1.0"

#: Set this environment variable to a file path to make the observer append one JSON line per run.
RUN_LOG_ENV = "W2S_EXAMPLE_RUN_LOG"


@hookimpl
def w2s_register_datasets(registry):
    from .dataset import ParityDataset

    registry.add("example-parity", ParityDataset,
                 description="(example plugin) 400 synthetic 'the number N' sentences, even/odd")


@hookimpl
def w2s_register_losses(registry):
    from .loss import SmoothedXent

    registry.add("example-smoothed-xent", SmoothedXent,
                 description="(example plugin) soft cross-entropy with label smoothing")


@hookimpl
def w2s_register_strategies(registry):
    from .strategy import NaiveTwice

    registry.add("example-naive-twice", NaiveTwice,
                 description="(example plugin) weak -> strong, then the strong student relabels and retrains")


@hookimpl
def w2s_run_end(results):
    """Observer: append ``{"status", "experiments": {name: pgr mean}}`` to ``$W2S_EXAMPLE_RUN_LOG``.

    Writes nothing unless the variable is set; catches its own I/O errors (an exception raised from a
    lifecycle hook would abort the run).
    """
    path = os.environ.get(RUN_LOG_ENV)
    if not path:
        return
    summary = {
        "status": results.get("status"),
        "experiments": {
            e.get("strategy", "?") + "/" + str(e.get("loss", "?")): (e.get("pgr") or {}).get("mean")
            for e in results.get("experiments", [])
        },
    }
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(summary, sort_keys=True) + "\n")
    except OSError as exc:
        print(f"warning: w2s-harness-example-plugin could not write {path}: {exc}")
