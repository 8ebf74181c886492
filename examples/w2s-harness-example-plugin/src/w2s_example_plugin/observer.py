"""An observer with its own command-line option: ``--example-log FILE`` appends one JSON line per run.

* ``w2s_add_options(parser)`` adds ``--example-log`` to ``w2s-harness run`` and ``validate``; the parsed value
  arrives in ``config.extra["example_log"]`` (the argparse destination) and results.json records it there.
* ``w2s_configure(config)`` reads it (falling back to ``$W2S_EXAMPLE_RUN_LOG``) and fails early, under
  ``validate`` too, if its directory does not exist.
* ``w2s_run_start`` / ``w2s_stage_end`` / ``w2s_run_end`` count the stages computed and served from the cache,
  and write ``{"status", "output_dir", "stages": {"computed", "cached"}, "experiments": {row: PGR mean}}``.

Lifecycle hooks run in the main process, one run at a time, so the run's state can live in a module global.
An exception raised in a lifecycle hook stops the run, so the observer catches its own I/O errors.
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


class _Run:
    """What the observer knows about the run in progress."""

    def __init__(self, log: str | None = None):
        self.log = log
        self.computed = 0
        self.cached = 0


_run = _Run()


@hookimpl
def w2s_add_options(parser):
    parser.add_argument("--example-log", dest=OPTION, metavar="FILE", default=None,
                        help=f"(example plugin) append one JSON line per run to FILE (default: ${RUN_LOG_ENV})")


@hookimpl
def w2s_configure(config):
    path = config.extra.get(OPTION) or os.environ.get(RUN_LOG_ENV) or None
    if path is not None and not Path(path).expanduser().absolute().parent.is_dir():
        raise ConfigError(f"--example-log {path}: the directory {str(Path(path).parent)!r} does not exist")
    config.extra[OPTION] = path  # the run, and results.json, see the path actually used


@hookimpl
def w2s_run_start(config):
    global _run
    _run = _Run(config.extra.get(OPTION))  # .get: a run started from Python may not have passed the CLI


@hookimpl
def w2s_stage_end(stage, result):
    if result.cached:
        _run.cached += 1
    else:
        _run.computed += 1


@hookimpl
def w2s_run_end(results):
    if not _run.log:
        return
    line = {
        "status": results.status,
        "output_dir": results.config["run"]["output_dir"],
        "stages": {"computed": _run.computed, "cached": _run.cached},
        "experiments": {e.name: e.pgr.mean for e in results.experiments},
    }
    try:
        with open(Path(_run.log).expanduser(), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, sort_keys=True) + "\n")
    except OSError as exc:
        print(f"warning: w2s-harness-example-plugin could not write {_run.log}: {exc}")
