"""Executors are plugins: the registry, ``--executor`` / ``run.executor`` checked against it, and the example plugin's
thread executor, really installed, running a real plan with the local executor's numbers.

The example plugin is pip-installed into a ``--target`` directory (the ``example_site`` fixture of
``test_pluginmanager``) and loaded through its entry point, as a third-party executor would be.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import flaky_plugin
import pytest
from test_pluginmanager import cli, example_site  # noqa: F401 - example_site is a fixture

import w2s_harness
from w2s_harness import Executor, hookimpl
from w2s_harness._cli.cli import main
from w2s_harness._plugin_system.manager import create_plugin_manager

#: every thread that computed a stage with ``thread-xent`` (runs here are in-process)
THREADS: set[str] = set()


class ThreadXent:
    """Soft-label cross-entropy that records the thread computing it."""

    def __call__(self, logits, targets, step_frac=0.0):
        import torch

        THREADS.add(threading.current_thread().name)
        return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


class ThreadXentPlugin:
    @hookimpl
    def w2s_register_losses(self, registry):
        registry.add("thread-xent", ThreadXent, description="xent that records its thread (test)")


# a small real plan with the example plugin's components: two seeds, two rows (naive and the example strategy)
RUN = ["--dataset", "example-parity", "--weak", "example-charhash", "--set", "weak.dim=8",
       "--strong", "example-charhash", "--loss", "thread-xent", "--strategy", "example-naive-twice",
       "--seeds", "0,1", "--device", "cpu", "--threads", "1"]


def everything(out: Path) -> dict:
    res = json.loads((out / "results.json").read_text())
    return {"status": res["status"], "experiments": res["experiments"], "comparisons": res["comparisons"],
            "stages": {(s["seed"], s["name"]): s["metrics"] for s in res["stages"]}}


@pytest.fixture
def installed(example_site, monkeypatch):  # noqa: F811 - the imported fixture
    monkeypatch.syspath_prepend(str(example_site))
    THREADS.clear()
    return example_site


def test_the_builtin_executors_are_registered_through_the_hook():
    pm = create_plugin_manager(entry_points=False)
    assert pm.registered_by("builtin:executors") == {"executor": ["local", "ray"]}
    assert isinstance(pm.create("executor", "local"), Executor)
    assert isinstance(pm.create("executor", "ray"), w2s_harness.RayExecutor)  # Ray itself is not imported yet
    assert pm.registry("executor").kind == "executor"
    kind = w2s_harness.KINDS[[k.name for k in w2s_harness.KINDS].index("executor")]
    assert (kind.plural, kind.hook, kind.sections, kind.run_key) == ("executors", "w2s_register_executors", (),
                                                                     "executor")


def test_the_thread_executor_gives_the_local_numbers(installed, tmp_path, capsys):
    plugins = [ThreadXentPlugin()]
    assert main(["run", *RUN, "--workers", "1", "-o", str(tmp_path / "local")], plugins=plugins) == 0
    assert THREADS == {threading.main_thread().name}  # --workers 1: the local executor computes in this thread
    THREADS.clear()
    assert main(["run", *RUN, "--workers", "2", "--executor", "example-threads", "--json",
                 "-o", str(tmp_path / "threads")], plugins=plugins) == 0
    timings = json.loads(capsys.readouterr().out)["timings"]
    assert timings["stages_computed"] == 12 and timings["stages_cached"] == 0
    # the transfers really ran in the pool's threads
    assert THREADS and all(name.startswith("w2s-example-stage") for name in THREADS), THREADS
    local, threads = everything(tmp_path / "local"), everything(tmp_path / "threads")
    assert threads["status"] == "complete" and len(threads["stages"]) == 12
    assert threads == local
    # the store is shared: the local executor serves everything the thread executor stored
    assert main(["run", *RUN, "--workers", "1", "--json", "-o", str(tmp_path / "threads")], plugins=plugins) == 0
    timings = json.loads(capsys.readouterr().out)["timings"]
    assert (timings["stages_computed"], timings["stages_cached"]) == (0, 12)


def test_a_failed_stage_keeps_going_on_the_thread_executor_as_on_the_local_one(installed, tmp_path, capsys):
    trigger = tmp_path / "trigger"
    trigger.touch()
    args = [*RUN, "--loss", "flaky-xent,thread-xent", "--set", f'loss.trigger="{trigger.as_posix()}"',
            "--strategy", "naive"]
    plugins = [ThreadXentPlugin(), flaky_plugin]
    reports = {}
    for executor, workers in (("local", "1"), ("example-threads", "2")):
        out = tmp_path / executor
        assert main(["run", *args, "--workers", workers, "--executor", executor, "-o", str(out)],
                    plugins=plugins) == 2  # two failures: StagesFailed, a W2SError
        err = capsys.readouterr().err
        assert "2 stages failed" in err and err.count("failed: stage 'transfer[flaky-xent") == 2
        res = json.loads((out / "results.json").read_text())
        assert res["status"] == "partial"
        reports[executor] = (sorted((f["name"].split("(")[0], f["seed"]) for f in res["failures"]),
                             sorted((s["name"], s["seed"]) for s in res["stages"]))
    assert reports["example-threads"] == reports["local"]
    failures, done = reports["local"]
    assert failures == [("transfer[flaky-xent", 0), ("transfer[flaky-xent", 1)]
    assert ("transfer[thread-xent]", 0) in done and ("transfer[thread-xent]", 1) in done  # the others ran


def test_list_executors_shows_the_builtins_and_the_installed_one(example_site):  # noqa: F811
    proc = cli("list", "executors", path=[example_site])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "executors"
    names = {line.split()[0]: line for line in lines[1:]}
    assert set(names) == {"local", "ray", "example-threads"}
    assert names["local"].endswith("(builtin:executors)") and names["example-threads"].endswith("(example)")


def test_an_unknown_executor_is_one_line_with_did_you_mean(installed, tmp_path, capsys):
    assert main(["validate", *RUN, "--executor", "example-thread"], plugins=[ThreadXentPlugin()]) == 2
    assert capsys.readouterr().err.splitlines() == [(
        "error: run.executor (--executor): unknown executor 'example-thread'. Did you mean: example-threads? "
        "Available: example-threads, local, ray (see `w2s-harness list executors`)")]
    cfg = tmp_path / "run.toml"
    cfg.write_text('[run]\nexecutor = "lcoal"\n')
    assert main(["run", "--config", str(cfg), "-o", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: run.executor (--executor): unknown executor 'lcoal'. Did you mean: local? ")
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written
    cfg.write_text('[run]\nexecutor = "example-threads"\n')
    assert main(["validate", "--config", str(cfg), *RUN[:-2]], plugins=[ThreadXentPlugin()]) == 0


def test_the_docs_thread_executor_example_runs_a_plan(installed, tmp_path, capsys):
    from test_docs import _doc_plugins

    [docs_example] = [m for m in _doc_plugins() if hasattr(m, "w2s_register_executors")]
    assert isinstance(docs_example.ThreadExecutor(), Executor)
    assert main(["run", *RUN, "--workers", "2", "--executor", "my-threads", "--seeds", "0", "-o", str(tmp_path)],
                plugins=[ThreadXentPlugin(), docs_example]) == 0
    assert THREADS and all(name.startswith("my-stage") for name in THREADS), THREADS
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "complete"
