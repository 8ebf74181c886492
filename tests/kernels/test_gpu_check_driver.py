"""The GPU check's driver (``benchmarks/gpu_check.py``, run by ``gpu_check.sh``), on a CPU: what can run without
a GPU runs, so the script cannot rot between GPU loans.

* ``gpu_check.sh --help`` lists every step with its time budget, and the ``--quick`` budgets add up to one
  5-minute call;
* a ``--quick`` run without CUDA records each GPU step as skipped with the reason, still runs the CPU-side
  launch-budget step (real numbers: the public logconf step is 8 launches, the checked one 1 host sync), writes
  one JSON file and prints the table;
* the ratio table is built from a partial results file (a run cut off mid-step), as the driver leaves it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.kernels

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_help_lists_every_step_with_its_budget():
    import gpu_check

    out = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--help"], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHON=sys.executable), timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    budgets = {m[1]: int(m[2]) for m in re.finditer(r"^  (\S+)\s+(\d+) /\s+(\d+)", out.stdout, re.MULTILINE)}
    assert list(budgets) == ["install"] + [name for name, *_ in gpu_check.STEPS], out.stdout
    assert sum(budgets.values()) <= 300
    total = int(re.search(r"--quick (\d+) s", out.stdout)[1])
    assert total == sum(budgets.values())
    assert "--quick" in out.stdout and "budget" in out.stdout


def test_quick_run_without_cuda_skips_the_gpu_steps_and_keeps_the_cpu_numbers(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("on a GPU the GPU check itself runs these steps")
    env = dict(os.environ, TRITON_INTERPRET="0")
    out = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--quick", "--out", str(tmp_path),
                          "--steps", "kernel-tests,losses,train-step,launch-budget"],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=240, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]
    for name in ("kernel-tests", "losses", "train-step"):
        assert data[name] == {"status": "skipped", "reason": "no CUDA GPU (torch.cuda.is_available() is False)"}
    assert "linear-head" not in data  # not asked for
    rows = data["launch-budget"]["rows"]
    assert data["launch-budget"]["status"] == "done"
    assert rows["logconf public"] == {"launches": 8, "triton": 4, "mib": 51.0, "syncs": 0}
    assert rows["logconf public checked"]["syncs"] == 1 and rows["logconf public checked"]["launches"] == 23
    assert rows["xent public"]["launches"] == 4 and rows["product public"]["launches"] == 4
    assert "[losses] skipped: no CUDA GPU" in out.stdout
    assert "launch budget logconf public: 8 launches (4 Triton), 51.0 MiB, 0 host syncs" in out.stdout


def test_table_of_a_partial_run(tmp_path):
    """A run cut off inside the losses step: the numbers taken are in the file and in the table, the rest is
    '-'; an unknown step is refused."""
    import gpu_check

    res = gpu_check.Results(tmp_path / "gpu_check.json")
    res.update("kernel-tests", status="done", passed=120, failed=1, skipped=3, error=0, rc=1, seconds=80.0)
    res.update("losses", status="running", n=1 << 20, k=2)
    res.put("losses", "xent", {"fused": 0.05})
    res.put("losses", "xent", {"eager": 0.2})
    res.update("losses", status="timeout")
    text = gpu_check.table(res.load())
    assert "[losses] timeout" in text and "[linear-head] not run" in text
    assert "kernel tests: 120 passed, 1 failed, 3 skipped" in text
    xent = next(line for line in text.splitlines() if line.strip().startswith("xent"))
    assert xent.split()[1:5] == ["0.050", "-", "0.200", "-"] and "4.00" in xent  # eager / fused = 4
    assert json.loads((tmp_path / "gpu_check.json").read_text())["steps"]["losses"]["xent"] == {
        "fused": 0.05, "eager": 0.2}
    with pytest.raises(SystemExit):
        gpu_check.main(["--out", str(tmp_path), "--steps", "nope"])
