"""An observer with its own command-line option: ``--example-log FILE`` appends one JSON line per run.

* ``w2s_add_options(parser)`` adds ``--example-log`` to ``w2s-harness run`` and ``validate``; the parsed value
  arrives in ``config.extra["example_log"]`` (the argparse destination) and results.json records it there.
* ``w2s_configure(config, pm)`` reads it (falling back to ``$W2S_EXAMPLE_RUN_LOG``), fails early, under
  ``validate`` too, if its directory does not exist, and registers a :class:`RunLog` for the run on ``pm``.
* The :class:`RunLog`'s ``w2s_stage_end`` / ``w2s_run_end`` count the stages computed and served from the cache,
  and write ``{"status", "output_dir", "stages": {"computed", "cached"}, "experiments": {row: PGR mean}}``.

The run's state lives on an object registered for that run, not in a module global. An exception raised in a
lifecycle hook stops the run, so the observer catches its own I/O errors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from w2s_harness import ConfigError, hookimpl

#: The argparse destination of ``--example-log``: its key in ``config.extra`` and in results.json.
OPTION = "example_log"
#: Used when ``--example-log`` is not given.
RUN_LOG_ENV = "W2S_EXAMPLE_RUN_LOG"


#: The name one run's log object is registered under on the run's plugin manager.
RUN_PLUGIN = "w2s-example-run-log"


class RunLog:
    """One run's counts and log file. ``w2s_configure`` registers it on that run's plugin manager, so the state
    belongs to the run, not to the module: two runs in one process (two plugin managers) never share it."""

    def __init__(self, log: str):
        self.log = log
        self.computed = 0
        self.cached = 0

    @hookimpl
    def w2s_stage_end(self, stage, result):
        if result.cached:
            self.cached += 1
        else:
            self.computed += 1

    @hookimpl
    def w2s_run_end(self, results):
        line = {
            "status": results.status,
            "output_dir": results.config["run"]["output_dir"],
            "stages": {"computed": self.computed, "cached": self.cached},
            "experiments": {e.name: e.pgr.mean for e in results.experiments},
        }
        try:
            with open(Path(self.log).expanduser(), "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line, sort_keys=True) + "\n")
        except OSError as exc:
            print(f"warning: w2s-harness-example-plugin could not write {self.log}: {exc}")


@hookimpl
def w2s_add_options(parser):
    parser.add_argument("--example-log", dest=OPTION, metavar="FILE", default=None,
                        help=f"(example plugin) append one JSON line per run to FILE (default: ${RUN_LOG_ENV})")


@hookimpl
def w2s_configure(config, pm):
    path = config.extra.get(OPTION) or os.environ.get(RUN_LOG_ENV) or None
    if path is not None and not Path(path).expanduser().absolute().parent.is_dir():
        raise ConfigError(f"--example-log {path}: the directory {str(Path(path).parent)!r} does not exist")
    config.extra[OPTION] = path  # the run, and results.json, see the path actually used
    if pm.get_plugin(RUN_PLUGIN) is not None:  # configured again (validate, then run): start over
        pm.unregister(name=RUN_PLUGIN)
    if path is not None:
        pm.register(RunLog(path), name=RUN_PLUGIN)
