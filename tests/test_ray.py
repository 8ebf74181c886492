"""The Ray executor on a local Ray instance: the same numbers as the local executor, failures that leave the other
stages finished, and a killed driver that resumes from the stage store.

One Ray instance (two CPUs) serves the whole module and is shut down after it. Runs use the interrupt tests'
plugin (``slow_plugin``: a deterministic character-trigram encoder, cheap in every worker) and ``flaky_plugin``
(a loss that raises while a trigger file exists); Ray workers import both by name, from this folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import flaky_plugin
import pytest
import slow_plugin
from test_reliability import HERE, LAUNCH, finished_stages, write_slow_config

from w2s_harness._cli.cli import main
from w2s_harness._execution.store import StageStore

try:
    import ray
except ImportError:  # the tests that need no cluster still run
    ray = None

# every run here is in-process on 1 thread per stage, so the two executors are compared on identical arithmetic
COMMON = ["--threads", "1", "--workers", "1"]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance with two CPUs; its workers find this folder's plugins through PYTHONPATH."""
    if ray is None:
        pytest.skip("ray is not installed (pip install 'w2s-harness[ray]')")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), old or ""])
    if ray.is_initialized():  # pragma: no cover - another module left one running
        ray.shutdown()
    # the workers (started by the raylet, with the environment it had) slow every training step a little, so a
    # test can kill a driver between stages; runs in this process are not slowed (the variable is unset again)
    os.environ["SLOW_LOSS_DELAY"] = "0.01"
    try:
        ctx = ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    finally:
        del os.environ["SLOW_LOSS_DELAY"]
    try:
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def everything(out: Path) -> dict:
    """Every number of a run that must not depend on where it ran: per-stage metrics and every row."""
    res = results(out)
    return {"status": res["status"], "experiments": res["experiments"], "comparisons": res["comparisons"],
            "stages": {(s["seed"], s["name"]): s["metrics"] for s in res["stages"]}}


def run(cfg: Path, out: Path, *args: str, plugins=(slow_plugin,)) -> int:
    return main(["run", "--config", str(cfg), "-o", str(out), *COMMON, *args], plugins=list(plugins))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The two-seed config (its data file is part of every stage id, so the tests share it) and its numbers
    from the local executor."""
    tmp = tmp_path_factory.mktemp("reference")
    cfg = write_slow_config(tmp)
    assert run(cfg, tmp / "out") == 0
    return cfg, everything(tmp / "out")


def test_a_multi_seed_run_on_ray_gives_the_local_numbers(tmp_path, cluster, reference, capsys):
    cfg, local = reference
    assert run(cfg, tmp_path / "ray", "--executor", "ray", "--json") == 0
    timings = json.loads(capsys.readouterr().out)["timings"]
    assert timings["stages_computed"] == 8 and timings["stages_cached"] == 0
    remote = everything(tmp_path / "ray")
    assert remote["status"] == "complete" and len(remote["stages"]) == 8
    assert all(m is not None for m in remote["stages"].values())
    assert remote == local
    # run again on Ray: every stage is served from the store the first run wrote, nothing is recomputed
    assert run(cfg, tmp_path / "ray", "--executor", "ray", "--json") == 0
    timings = json.loads(capsys.readouterr().out)["timings"]
    assert (timings["stages_computed"], timings["stages_cached"]) == (0, 8)


def test_a_grid_on_ray_gives_the_local_numbers(tmp_path, cluster):
    cfg = write_slow_config(tmp_path)
    cfg.write_text(cfg.read_text().replace('[strategy]\nname = "naive"\n', (
        '[strategy]\nname = "grid"\nmodels = [{name = "slow-charhash", dim = 16, epochs = 3}, '
        '{name = "slow-charhash", dim = 64, epochs = 4}, {name = "slow-charhash", dim = 256, epochs = 5}]\n')))
    args = ["--seeds", "0"]
    assert run(cfg, tmp_path / "local", *args) == 0
    assert run(cfg, tmp_path / "ray", *args, "--executor", "ray") == 0
    local, remote = everything(tmp_path / "local"), everything(tmp_path / "ray")
    assert remote["status"] == "complete" and len(remote["experiments"]) == 6  # every weak <= strong pair
    assert remote == local


def flaky_config(tmp_path: Path, trigger: Path) -> Path:
    """Two rows per seed: the transfer with ``flaky-xent`` raises, the one with ``slow-xent`` (planned after it)
    works."""
    cfg = write_slow_config(tmp_path)
    cfg.write_text(cfg.read_text().replace('[loss]\nname = "slow-xent"\n', (
        f'[[loss]]\nname = "flaky-xent"\ntrigger = "{trigger.as_posix()}"\n[[loss]]\nname = "slow-xent"\n')))
    return cfg


@pytest.mark.parametrize("fail_fast", [False, True])
def test_a_failed_stage_leaves_the_others_finished_and_a_rerun_computes_only_it(tmp_path, cluster, capsys,
                                                                                 fail_fast):
    trigger = tmp_path / "fail-now"
    trigger.touch()
    cfg = flaky_config(tmp_path, trigger)
    plugins = (slow_plugin, flaky_plugin)
    args = ["--seeds", "0"] + (["--fail-fast"] if fail_fast else [])
    reports = {}
    for executor in ("local", "ray"):  # the local executor keeps going (or fails fast) in exactly the same way
        out = tmp_path / executor
        assert run(cfg, out, *args, "--executor", executor, plugins=plugins) == 1  # a RuntimeError: exit 1
        err = capsys.readouterr().err
        res = results(out)
        failed = [ln for ln in err.splitlines() if ln.startswith("failed:")]
        assert failed == [(f"failed: stage 'transfer[flaky-xent(trigger={trigger.as_posix()})]' "
                           f"({res['failures'][0]['id']}): RuntimeError: the trigger file {trigger} exists")]
        assert [ln for ln in err.splitlines() if ln.startswith("error:")] == [
            ("error: RuntimeError: injected failure (results.json, if any, keeps finished stages; set W2S_DEBUG=1 "
             "for the traceback)")]
        assert res["status"] == "partial" and len(res["failures"]) == 1
        done = {s["name"] for s in res["stages"] if s["metrics"] is not None}
        reports[executor] = (res["failures"], done, len(StageStore(out).stored_ids()))
    # both executors report the same failure; keeping going, both finish every other stage (the working
    # transfer too, planned after the failing one); failing fast, the local executor (one stage at a time)
    # starts nothing after the failure, and Ray (two at a time) at most what already ran beside it
    assert reports["ray"][0] == reports["local"][0]
    others = {"weak", "weak labels", "ceiling", "transfer[slow-xent]"}
    if fail_fast:
        assert reports["local"][1] == {"weak", "weak labels", "ceiling"}
        assert {"weak", "weak labels"} <= reports["ray"][1] <= others
    else:
        assert reports["ray"] == reports["local"] and reports["ray"][1] == others
    trigger.unlink()
    out = tmp_path / "ray"
    kept = len(StageStore(out).stored_ids())
    assert run(cfg, out, *args, "--executor", "ray", "--json", plugins=plugins) == 0
    timings = json.loads(capsys.readouterr().out)["timings"]
    assert (timings["stages_computed"], timings["stages_cached"]) == (5 - kept, kept)
    assert results(out)["status"] == "complete" and "failures" not in results(out)


def test_several_failures_are_listed_in_one_line(tmp_path, cluster, capsys):
    trigger = tmp_path / "fail-now"
    trigger.touch()
    cfg = flaky_config(tmp_path, trigger)
    assert run(cfg, tmp_path / "out", "--executor", "ray", plugins=(slow_plugin, flaky_plugin)) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert line.startswith("error: 2 stages failed ('transfer[flaky-xent(")
    assert "RuntimeError: the trigger file" in line and "fix the cause and run the same command" in line
    res = results(tmp_path / "out")
    assert sorted(f["seed"] for f in res["failures"]) == [0, 1] and res["status"] == "partial"
    assert sum(s["metrics"] is not None for s in res["stages"]) == 8  # 10 stages, the 2 flaky transfers failed


# a second driver process, whose Ray job starts its own workers: ~15-35 s on two cores; in the default suite, as
# the issue asks (the store-resume path is the point of the Ray executor)
def test_a_killed_driver_resumes_from_the_store_recomputing_nothing_finished(tmp_path, cluster, reference, capsys):
    cfg, local = reference
    out = tmp_path / "ray"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "W2S_DEBUG": ""}
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "run", "--config", str(cfg), "-o", str(out), *COMMON,
                             "--executor", "ray", "--ray-address", cluster], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while finished_stages(out) < 2:
            assert proc.poll() is None, f"the driver ended before it was killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "timed out waiting for two finished stages"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    kept = finished_stages(out)
    assert 2 <= kept < 8 and not (out / "results.json").exists(), kept
    capsys.readouterr()
    assert run(cfg, out, "--executor", "ray", "--json") == 0
    timings = json.loads(capsys.readouterr().out)["timings"]
    # the tasks of a dead driver die with it; whatever they stored before is served, the rest computed once
    assert timings["stages_cached"] >= kept, (timings, kept)
    assert timings["stages_computed"] + timings["stages_cached"] == 8, timings
    assert everything(out) == local


def test_without_ray_the_ray_executor_is_one_line_with_the_install_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without the extra has
    cfg = write_slow_config(tmp_path)
    assert run(cfg, tmp_path / "out", "--executor", "ray") == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert line == ("error: run.executor = 'ray' (--executor ray) needs Ray, which is not installed: "
                    "pip install 'w2s-harness[ray]'")


def test_an_unreachable_ray_address_is_one_line_naming_it(tmp_path):
    cfg = write_slow_config(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", LAUNCH, "run", "--config", str(cfg), "-o", str(tmp_path / "out"),
                           "--executor", "ray", "--ray-address", "ray://127.0.0.1:9"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert line.startswith("error: no Ray cluster reachable at --ray-address 'ray://127.0.0.1:9' (")
    assert "ray start --head" in line


def test_bad_executor_settings_are_one_line(tmp_path, capsys):
    cfg = write_slow_config(tmp_path)
    for args, message in [(["--executor", "dask"], "run.executor (--executor): unknown executor 'dask'. Available: local, ray"),
                          (["--executor", "rya"], "unknown executor 'rya'. Did you mean: ray?"),
                          (["--set", "run.resources={gpu = {num_gpus = 1}}"], "unknown run.resources.gpu."),
                          (["--set", "run.resources={head = {num_gpus = -1}}"],
                           "run.resources.head.num_gpus must be a number >= 0, got -1"),
                          (["--set", 'run.resources={finetune = {memory = "lots"}}'],
                           "run.resources.finetune.memory must be a positive number of bytes or a size like")]:
        assert run(cfg, tmp_path / "out", *args) == 2
        (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
        assert message in line
