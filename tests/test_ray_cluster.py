"""The Ray executor on a real cluster: a head started with ``ray start --head --block`` from the repository root.

``tests/test_ray.py`` runs on an in-process ``ray.init``. Here the cluster is what a user starts from a checkout:
its own processes (GCS, raylet, workers), the repository root as their working directory, and a driver, the
``w2s-harness`` command, also started from the root, whose working directory Ray puts on the workers'
``sys.path``. That is the setup in which the root's old ``kernels/`` package shadowed Hugging Face's and every
``hf:`` stage failed (see ``tests/test_layout.py``), so the plan's models are ``hf:`` models (a tiny BERT written
here).

The head is private to the test: free ports, loopback only, a temp dir of its own, a token of its own, and it is
stopped by killing exactly its process group (never ``ray stop``, which stops every cluster of the machine); any
process it left (Ray workers start their own sessions) is found by a marker in its environment and killed by pid.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from run_config import local_run_config
from test_pipeline import make_csv

from w2s_harness._cli.cli import main
from w2s_harness._engine.stage import Stage, StageKind
from w2s_harness._execution.ray import DEFAULT_RESOURCES, stage_resources

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: the environment variable whose value marks every process of one test cluster (workers inherit it)
MARKER = "W2S_TEST_RAY_CLUSTER"
#: seconds to wait for the head to come up, and for its processes to go after SIGTERM
START_TIMEOUT, STOP_GRACE = 120, 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _marked(tag: str) -> list[int]:
    """The pids of the live processes whose environment carries ``MARKER=tag``: exactly this cluster's."""
    needle = f"{MARKER}={tag}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":  # a zombie has exited; its parent reaps it
                    pids.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return pids


def _stop(head: subprocess.Popen, tag: str) -> list[int]:
    """Stop the head: SIGTERM to its process group (``ray start --block`` then stops the processes it started;
    about 3 s), SIGKILL to the group if the head is still there after :data:`STOP_GRACE`, then SIGKILL by pid to
    any marked process left (workers run in sessions of their own). Returns the marked pids still alive at the
    end: none."""
    try:
        os.killpg(head.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        head.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait(timeout=30)
    deadline = time.monotonic() + STOP_GRACE
    while _marked(tag) and time.monotonic() < deadline:  # workers exit once their raylet is gone
        time.sleep(0.2)
    for pid in _marked(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while _marked(tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _marked(tag)


@pytest.fixture
def ray_head(tmp_path):
    """A Ray head on 127.0.0.1 with 2 CPUs, started from the repository root: ``(address, env)``, ``env`` being
    what a driver needs to join it (its auth token, loopback addressing)."""
    if shutil.which("ray", path=str(BIN)) is None:
        pytest.skip("ray is not installed (pip install 'w2s-harness[ray]')")
    # Ray's unix sockets live under --temp-dir and must fit in 107 bytes with a ~65-character session suffix
    temp = tmp_path / "ray"
    private = len(str(temp)) > 40
    if private:
        temp = Path(tempfile.mkdtemp(prefix="w2s-ray-"))
    temp.mkdir(exist_ok=True)
    tag = secrets.token_hex(8)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    env.update({
        MARKER: tag,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # a single-node cluster: Ray keeps 127.0.0.1, binds loopback
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),  # not ~/.ray/auth_token
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # SIGTERM stops it now, not after a 30 s drain
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
    })
    ports = {flag: str(_free_port()) for flag in (
        "--dashboard-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port", "--metrics-export-port",
        "--node-manager-port", "--object-manager-port")}  # no default port shared with another cluster
    cmd = [str(BIN / "ray"), "start", "--head", "--port", str(port), "--num-cpus", "2", "--num-gpus", "0",
           "--include-dashboard=false", "--block", "--temp-dir", str(temp), "--node-ip-address", "127.0.0.1",
           "--object-store-memory", str(100 * 2**20), "--disable-usage-stats",
           *[x for flag, p in ports.items() for x in (flag, p)]]
    log = tmp_path / "head.log"
    with open(log, "wb") as out:
        head = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "Ray runtime started" not in log.read_text(errors="replace"):
            assert head.poll() is None, f"ray start exited {head.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no Ray head after {START_TIMEOUT} s:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # the GCS accepts connections
        yield f"127.0.0.1:{port}", env, temp
    finally:
        left = _stop(head, tag)
        if private:
            shutil.rmtree(temp, ignore_errors=True)
        assert left == [], f"processes of the test cluster still alive: {left}"


@pytest.fixture
def tiny_bert_and_data(tmp_path):
    """A 320-row CSV and a randomly initialised 2-layer BERT (hidden 32) with a vocabulary of its words."""
    transformers = pytest.importorskip("transformers")
    csv = make_csv(tmp_path / "reviews.csv")
    words = sorted({w for line in csv.read_text().splitlines()[1:] for w in line.split(",")[0].split()})
    d = tmp_path / "tiny-bert"
    d.mkdir()
    (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    # from the folder: transformers >= 5 ignores BertTokenizerFast(vocab_file=...) and keeps the 5 special tokens
    tokenizer = transformers.BertTokenizerFast.from_pretrained(d)
    assert len(tokenizer) == len(words) + 5 and "[UNK]" not in tokenizer.tokenize(words[0])
    tokenizer.save_pretrained(d)
    transformers.set_seed(0)
    transformers.BertModel(transformers.BertConfig(
        vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32)).save_pretrained(d)
    return csv, d


def _config(tmp_path: Path, csv: Path, bert: Path) -> Path:
    """Naive strategy, one seed, one loss: 4 stages (weak, its labels, ceiling, transfer), both models ``hf:``
    linear probes (the BERT's first layer is the weak model)."""
    return local_run_config(tmp_path / "cluster.toml", csv, weak=f'name = "hf:{bert.as_posix()}"\nlayers = 1',
                            strong=f'name = "hf:{bert.as_posix()}"', losses='[loss]\nname = "xent"',
                            run="threads = 1\nworkers = 1")


def _numbers(out: Path) -> dict:
    res = json.loads((out / "results.json").read_text())
    return {"status": res["status"], "experiments": res["experiments"],
            "stages": {(s["seed"], s["name"]): s["metrics"] for s in res["stages"]}}


def test_hf_stages_run_on_a_ray_head_started_from_the_checkout(tmp_path, ray_head, tiny_bert_and_data, capsys):
    address, env, temp = ray_head
    cfg = _config(tmp_path, *tiny_bert_and_data)
    done = subprocess.run([str(BIN / "w2s-harness"), "run", "--config", str(cfg), "-o", str(tmp_path / "ray"),
                           "--executor", "ray", "--ray-address", address, "--json"],
                          cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    timings = json.loads(done.stdout)["timings"]
    assert (timings["stages_computed"], timings["stages_cached"]) == (4, 0), timings
    # every stage ran as a task of the cluster: its workers log each task's name (w2s:<stage>) in the head's dir
    ran = set()
    for f in temp.glob("session_*/logs/worker-*"):
        ran |= {ln.split(":task_name:", 1)[1].strip() for ln in f.read_text(errors="replace").splitlines()
                if ln.startswith(":task_name:w2s:")}
    assert ran == {"w2s:weak", "w2s:weak labels", "w2s:ceiling", "w2s:transfer[xent]"}, ran
    # and they ran where the old `kernels/` shadowing struck: in the root, with the root first on sys.path
    probe = ("import json, os, sys, ray\nray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n"
             "where = ray.remote(lambda: (os.getcwd(), sys.path))\nprint(json.dumps(ray.get(where.remote())))")
    done = subprocess.run([sys.executable, "-c", probe, address], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    cwd, path = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(cwd) == REPO and Path(path[0]).resolve() == REPO, (cwd, path[:3])
    # the same config on the local executor, in this process: the same numbers, stage by stage
    capsys.readouterr()
    assert main(["run", "--config", str(cfg), "-o", str(tmp_path / "local")]) == 0, capsys.readouterr().err
    remote, local = _numbers(tmp_path / "ray"), _numbers(tmp_path / "local")
    assert remote["status"] == "complete" and all(m is not None for m in remote["stages"].values()), remote
    accs = {k: m["test_acc"] for k, m in remote["stages"].items() if "test_acc" in m}
    assert len(accs) == 3 and accs == {k: m["test_acc"] for k, m in local["stages"].items() if "test_acc" in m}
    assert max(accs.values()) > 0.6, accs  # the BERT's features carry the label: not a constant prediction
    assert remote == local, (remote, local)


# ------------------------------------------------------------------------------------------- op resources


class _Op:
    def __init__(self, declared):
        self.declared = declared

    def resources(self):
        return self.declared


class _Ctx:
    """What :func:`stage_resources` reads of a run context for a non-train stage: the stage's op."""

    def __init__(self, declared):
        self.declared = declared

    def op(self, stage):
        return _Op(self.declared)


def _op_stage() -> Stage:
    return Stage(id="0" * 16, op="agree", kind=StageKind.LABEL, name="agree", spec={}, deps=(), seed=0)


def test_an_op_declared_resources_are_its_stages_ray_request():
    """A plugin op's ``resources()`` (``_ops.op_resources``) replaces the ``op`` class defaults; ``run.resources``
    still wins, unknown keys are ignored, and without GPUs no stage asks for one."""
    stage = _op_stage()
    assert stage_resources(_Ctx({}), stage, {}, gpus=True) == DEFAULT_RESOURCES["op"]
    declared = {"num_cpus": 2, "num_gpus": 0.5, "memory": "1GiB", "accelerator": "tpu"}
    assert stage_resources(_Ctx(declared), stage, {}, gpus=True) == {
        "num_cpus": 2, "num_gpus": 0.5, "memory": 2**30}
    assert stage_resources(_Ctx(declared), stage, {}, gpus=False) == {"num_cpus": 2, "num_gpus": 0, "memory": 2**30}
    assert stage_resources(_Ctx(declared), stage, {"op": {"num_cpus": 1}}, gpus=True)["num_cpus"] == 1
