"""The local executor: linear-head stages in forked worker processes give the in-process numbers."""

from __future__ import annotations

import json
import os

import pytest
from test_pipeline import write_config

from w2s_harness import hookimpl
from w2s_harness._cli.cli import main
from w2s_harness._config.config import RunSection
from w2s_harness._contracts.errors import ConfigError
from w2s_harness._execution.local import MAX_AUTO_WORKERS, available_cores, resolve_workers


class PidXent:
    """Soft-label cross-entropy that records which process computed it (one file per process id)."""

    def __init__(self, pid_dir: str):
        self.pid_dir = pid_dir

    def __call__(self, logits, targets, step_frac=0.0):
        import torch

        open(os.path.join(self.pid_dir, str(os.getpid())), "a").close()
        return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


class PidPlugin:
    @hookimpl
    def w2s_register_losses(self, registry):
        registry.add("pid-xent", PidXent, description="xent that records the computing process (test)")


def run(tmp_path, name, workers, pid_dir=None):
    out = tmp_path / name
    block = f'[loss]\nname = "pid-xent"\npid_dir = "{pid_dir}"\n' if pid_dir else '[loss]\nname = "xent"\n'
    cfg = write_config(tmp_path, seeds="[0, 1, 2]", loss_block=block)
    code = main(["run", "--config", str(cfg), "-o", str(out), "--workers", str(workers)], plugins=[PidPlugin()])
    assert code == 0
    return json.loads((out / "results.json").read_text())


def test_workers_reproduce_in_process_numbers_exactly(tmp_path, capsys):
    pids = tmp_path / "pids"
    pids.mkdir()
    serial = run(tmp_path, "serial", 1)
    pooled = run(tmp_path, "pooled", 2, pid_dir=str(pids))
    # the pid-recording loss computes xent exactly like the built-in one, so every stage id differs but every
    # number must be bit-identical between one process and a pool of two
    assert len(serial["stages"]) == len(pooled["stages"]) == 12  # weak, labels, ceiling, transfer per seed
    for a, b in zip(serial["stages"], pooled["stages"]):
        assert a["kind"] == b["kind"] and a["seed"] == b["seed"]
        if a["kind"].startswith("train"):
            assert a["metrics"]["test_acc"] == b["metrics"]["test_acc"]
            assert a["metrics"]["final_train_loss"] == pytest.approx(b["metrics"]["final_train_loss"], abs=1e-6)
    assert serial["experiments"][0]["pgr"] == pooled["experiments"][0]["pgr"]
    # the transfers really ran in worker processes, not in this one
    ran_in = {int(p.name) for p in pids.iterdir()}
    assert ran_in and os.getpid() not in ran_in


def test_workers_setting_is_validated_and_resolved(tmp_path, capsys):
    with pytest.raises(ConfigError, match="run.workers must be an integer >= 0"):
        RunSection(workers=-1).validate()
    assert resolve_workers(3) == 3
    assert resolve_workers(0) == min(available_cores(), MAX_AUTO_WORKERS)
    cfg = write_config(tmp_path)
    assert main(["run", "--config", str(cfg), "--set", "run.workers=-2"]) == 2
    assert "run.workers must be an integer >= 0" in capsys.readouterr().err
