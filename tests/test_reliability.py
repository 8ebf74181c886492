"""Interrupts, kills, concurrent runs and corrupted files, on real subprocesses.

Every scenario ends with a resumed run whose numbers must equal an uninterrupted run's (same config and seeds),
stage by stage. The plugin ``slow_plugin`` (in this folder) slows the encoder pass and the training steps down on
request through the environment, so a test can interrupt a run at a known point; slowing changes no number.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import slow_plugin
from run_config import local_run_config
from test_pipeline import make_csv

from w2s_harness._cli.cli import main
from w2s_harness._execution.store import StageStore

HERE = Path(__file__).parent
N_ROWS = 320
CHUNK = 32
LAUNCH = "import sys; from w2s_harness._cli.cli import main; sys.exit(main(sys.argv[1:], plugins=['slow_plugin']))"


def write_slow_config(tmp_path: Path) -> Path:
    csv = tmp_path / "reviews.csv"
    if not csv.exists():
        make_csv(csv, n=N_ROWS)
    return local_run_config(tmp_path / "slow.toml", csv, seeds="[0, 1]", losses='[loss]\nname = "slow-xent"',
                            weak='name = "slow-charhash"\ndim = 16\nepochs = 5',
                            strong='name = "slow-charhash"\ndim = 256\nepochs = 10',
                            run=f"workers = 1\nfeature_chunk = {CHUNK}")


def numbers(out: Path) -> dict:
    """Per-stage metrics and per-row PGR of a finished run, keyed so two runs compare equal."""
    res = json.loads((out / "results.json").read_text())
    stages = {(s["seed"], s["name"]): (s["metrics"] or {}).get("test_acc", (s["metrics"] or {}).get("label_acc"))
              for s in res["stages"]}
    rows = {e["name"]: e["pgr"]["per_seed"] for e in res["experiments"]}
    return {"stages": stages, "rows": rows, "status": res["status"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run, in-process, without delays."""
    tmp = tmp_path_factory.mktemp("reference")
    cfg = write_slow_config(tmp)
    assert main(["run", "--config", str(cfg), "-o", str(tmp / "out")], plugins=[slow_plugin]) == 0
    ref = numbers(tmp / "out")
    assert ref["status"] == "complete" and len(ref["stages"]) == 8
    return ref


@pytest.fixture(autouse=True)
def _no_leftover_processes():
    """Every run a test starts is killed (with its workers) when the test ends, passed or failed: a hung run must
    fail its test, not keep burning a core after it."""
    yield
    for proc in STARTED:
        if proc.poll() is None:
            for child in _children(proc.pid):
                try:
                    os.kill(child, signal.SIGKILL)
                except OSError:
                    pass
            proc.kill()
            proc.communicate()
    STARTED.clear()


STARTED: list[subprocess.Popen] = []


def launch(cfg: Path, out: Path, *args: str, log: Path | None = None, feature_delay: float = 0.0,
           loss_delay: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "SLOW_FEATURE_DELAY": str(feature_delay), "SLOW_LOSS_DELAY": str(loss_delay),
           "SLOW_LOG": str(log or out.parent / f"{out.name}.log"), "W2S_DEBUG": ""}
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "run", "--config", str(cfg), "-o", str(out), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    STARTED.append(proc)
    return proc


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before the point to interrupt it:\n"
                                 f"{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the point to interrupt the run")
        time.sleep(0.02)


def chunks(out: Path) -> list[Path]:
    return list((out / "features").glob("*.partial/*.npz"))


def finished_stages(out: Path) -> int:
    return len(StageStore(out).stored_ids())


def resume(cfg: Path, out: Path, *args: str, log: Path | None = None) -> subprocess.CompletedProcess:
    proc = launch(cfg, out, *args, log=log)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def embedded_rows(log: Path) -> dict[int, int]:
    """Texts embedded per feature dim, from a run's SLOW_LOG."""
    out: dict[int, int] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        dim, n = map(int, line.split())
        out[dim] = out.get(dim, 0) + n
    return out


def test_kill_9_during_the_encoder_pass_resumes_from_its_chunks(tmp_path, reference):
    cfg, out = write_slow_config(tmp_path), tmp_path / "out"
    proc = launch(cfg, out, feature_delay=0.3)
    wait_for(lambda: len(chunks(out)) >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    saved = len(chunks(out))
    assert saved >= 3 and not (out / "results.json").exists()
    log = tmp_path / "resume.log"
    resume(cfg, out, log=log)
    # the weak model's pass (dim 16) resumed: only the rows of the chunks that were not saved were embedded again
    assert embedded_rows(log)[16] == N_ROWS - saved * CHUNK
    assert embedded_rows(log)[256] == N_ROWS
    assert numbers(out) == reference


def test_kill_9_between_stages_keeps_only_complete_checksummed_stages(tmp_path, reference):
    cfg, out = write_slow_config(tmp_path), tmp_path / "out"
    proc = launch(cfg, out, loss_delay=0.01)
    wait_for(lambda: finished_stages(out) >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    store = StageStore(out)
    kept = store.stored_ids()
    assert 3 <= len(kept) < 8
    for sid in kept:  # every stage directory under a real id is complete and passes its checksums
        store.load(sid)
    done = resume(cfg, out, "--json")
    timings = json.loads(done.stdout)["timings"]
    assert timings["stages_cached"] == len(kept) and timings["stages_computed"] == 8 - len(kept)
    assert numbers(out) == reference


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc to find worker processes")
def test_a_killed_worker_fails_the_run_in_one_line_and_the_run_resumes(tmp_path, reference):
    cfg, out = write_slow_config(tmp_path), tmp_path / "out"
    proc = launch(cfg, out, "--workers", "2", loss_delay=0.02)
    wait_for(lambda: finished_stages(out) >= 1 and len(_children(proc.pid)) >= 2, proc)
    os.kill(_children(proc.pid)[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: a worker process died (killed, or out of memory) while running '")
    assert "run the same command to resume" in last
    assert json.loads((out / "results.json").read_text())["status"] == "partial"
    resume(cfg, out, "--workers", "2")
    assert numbers(out) == reference


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_after_the_current_stage_with_a_partial_results_json(tmp_path, reference, sig, code):
    cfg, out = write_slow_config(tmp_path), tmp_path / "out"
    proc = launch(cfg, out, loss_delay=0.01)
    wait_for(lambda: finished_stages(out) >= 2, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "partial" and res["error"].startswith(f"stopped by {sig.name}")
    kept = finished_stages(out)
    assert 2 <= kept < 8
    # the stage that was running when the signal came was finished and stored, not thrown away
    assert len([s for s in res["stages"] if s["metrics"] is not None]) == kept
    assert "Resume with:" in stderr and f"w2s-harness run --config {cfg} -o {out}" in stderr
    resume(cfg, out)
    assert numbers(out) == reference


def test_sigint_during_the_encoder_pass_stops_at_a_chunk_boundary(tmp_path, reference):
    cfg, out = write_slow_config(tmp_path), tmp_path / "out"
    proc = launch(cfg, out, feature_delay=0.3)
    wait_for(lambda: len(chunks(out)) >= 1, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert json.loads((out / "results.json").read_text())["status"] == "partial"
    saved = len(chunks(out))
    assert 1 <= saved < N_ROWS // CHUNK
    log = tmp_path / "resume.log"
    resume(cfg, out, log=log)
    assert embedded_rows(log)[16] == N_ROWS - saved * CHUNK
    assert numbers(out) == reference


def test_two_concurrent_runs_share_the_work_and_never_compute_a_stage_twice(tmp_path, reference):
    cfg, out = write_slow_config(tmp_path), tmp_path / "out"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [launch(cfg, out, "--json", log=log, feature_delay=0.05, loss_delay=0.005) for log in logs]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        results.append(json.loads(stdout)["timings"])
    assert sum(r["stages_computed"] for r in results) == 8  # every stage computed once, by one of the two
    assert all(r["stages_computed"] + r["stages_cached"] == 8 for r in results)
    rows = [embedded_rows(log) for log in logs]
    assert sum(r.get(16, 0) for r in rows) == N_ROWS and sum(r.get(256, 0) for r in rows) == N_ROWS
    assert numbers(out) == reference
    assert not list((out / "stages").glob(".*.tmp*")) and not list((out / "stages").glob(".????????????????.*"))


def test_a_corrupted_stage_file_is_reported_and_recomputed(tmp_path, reference, capsys):
    cfg, out = write_slow_config(tmp_path), tmp_path / "out"
    args = ["run", "--config", str(cfg), "-o", str(out)]
    assert main(args, plugins=[slow_plugin]) == 0
    store = StageStore(out)
    victim = next(sid for sid in store.stored_ids() if (store.root / sid / "artifact.npz").exists())
    artifact = store.root / victim / "artifact.npz"
    artifact.write_bytes(artifact.read_bytes()[:-100])  # truncated
    capsys.readouterr()
    assert main([*args, "--json"], plugins=[slow_plugin]) == 0
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if victim in line]
    assert len(warning) == 1 and "is corrupt (artifact.npz does not match its checksum); recomputing it" in warning[0]
    timings = json.loads(captured.out)["timings"]
    assert (timings["stages_computed"], timings["stages_cached"]) == (1, 7)
    assert numbers(out) == reference
